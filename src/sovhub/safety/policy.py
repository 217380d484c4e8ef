"""Policy as code: a versioned YAML file chooses an action per hazard, under a human-rights floor.

A policy maps each hazard code (S1..S14, :mod:`sovhub.safety.taxonomy`) and any custom category
to an action (``allow`` < ``warn`` < ``redact`` < ``block``) and a score threshold, sets how PII
is handled, and may override both per locale. :func:`decide` turns guard findings into one
:class:`Decision`; every rule that fired is named by its clause (``categories.S1``,
``locales.de.categories.S12``, ``pii``) so the person affected can be told exactly why.

**The floor.** Lawful speech is never blocked (or redacted) for its topic: political opinion,
criticism of the government or officials, religion, sexual orientation and gender identity,
journalism, facts about elections, protests and history. No policy can lower it; one that tries
is refused at load with a :class:`FloorViolation` naming the floor clause it breaks:

* ``floor.protected-topic``: a custom category that targets a protected topic blocks or redacts;
* ``floor.speech-sensitive``: S5/S6/S8/S13 (hazards next to lawful speech) block below score 0.5,
  i.e. on the topic rather than the harmful core the guards calibrate 0.5 to;
* ``floor.threshold``: any block rule below 0.2 blocks on noise, whatever the topic;
* ``floor.lexicon``: a lexicon phrase names a protected topic or matches protected speech;
* ``floor.check-set``: run with its guards, the policy blocks an item of the protected-speech
  check set (``data/policy/protected_speech.yaml``, eight languages).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sovhub import linear_re

from ..errors import ConfigError
from .guards import GuardFinding, normalize
from .taxonomy import HAZARD_CODES, SPEECH_SENSITIVE

__all__ = [
    "ACTIONS",
    "DEFAULT_POLICY",
    "Decision",
    "FloorViolation",
    "LoadedPolicy",
    "Policy",
    "PolicyLexiconGuard",
    "ProtectedItem",
    "check_floor",
    "decide",
    "load_policy",
    "protected_speech",
]

Action = Literal["allow", "warn", "redact", "block"]
ACTIONS: tuple[Action, ...] = ("allow", "warn", "redact", "block")
_DATA = Path(__file__).parent / "data" / "policy"
DEFAULT_POLICY = _DATA / "default.yaml"
SPEECH_SENSITIVE_MIN = 0.5
BLOCK_MIN = 0.2


class FloorViolation(ConfigError):
    """A policy that would lower the human-rights floor; ``clause`` names the floor rule."""

    code = "policy_floor_violation"

    def __init__(self, clause: str, message: str) -> None:
        super().__init__(f"policy refused by the human-rights floor ({clause}): {message}")
        self.clause = clause


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoryRule(_Strict):
    action: Action = "block"
    threshold: float = Field(0.5, ge=0.0, le=1.0)


class PiiRule(_Strict):
    action: Action = "redact"
    mode: Literal["mask", "hash", "pseudonymize"] = "pseudonymize"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    entities: list[str] | None = None
    restore_in_answer: bool = True


class CustomCategory(_Strict):
    description: str
    action: Action = "warn"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    topics: list[str] = Field(default_factory=list)


class LexiconEntry(_Strict):
    phrase: str = Field(min_length=2)
    category: str
    lang: str | None = None


class LocaleOverride(_Strict):
    categories: dict[str, CategoryRule] = Field(default_factory=dict)
    pii: PiiRule | None = None


class Policy(_Strict):
    version: str = Field(min_length=1, max_length=64)
    name: str = "policy"
    description: str = ""
    appeal_url: str = "/hub/v1/appeals"
    categories: dict[str, CategoryRule] = Field(default_factory=dict)
    pii: PiiRule = Field(default_factory=PiiRule)
    custom_categories: dict[str, CustomCategory] = Field(default_factory=dict)
    lexicon: list[LexiconEntry] = Field(default_factory=list)
    locales: dict[str, LocaleOverride] = Field(default_factory=dict)

    def rules(self, lang: str | None) -> tuple[dict[str, tuple[str, CategoryRule]], tuple[str, PiiRule]]:
        """Every category's rule with the clause it comes from, after the locale's overrides."""
        rules: dict[str, tuple[str, CategoryRule]] = {
            code: (f"categories.{code}", rule) for code, rule in self.categories.items()
        }
        for name, custom in self.custom_categories.items():
            rules[name] = (f"custom_categories.{name}", CategoryRule(action=custom.action,
                                                                     threshold=custom.threshold))
        pii: tuple[str, PiiRule] = ("pii", self.pii)
        override = self.locales.get(_base_lang(lang)) if lang else None
        if override is not None:
            prefix = f"locales.{_base_lang(lang)}"
            for code, rule in override.categories.items():
                rules[code] = (f"{prefix}.categories.{code}", rule)
            if override.pii is not None:
                pii = (f"{prefix}.pii", override.pii)
        return rules, pii


def _base_lang(lang: str | None) -> str:
    return (lang or "").split("-")[0].split("_")[0].lower()


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    policy: Policy
    text: str
    digest: str
    source: str

    @property
    def version(self) -> str:
        return self.policy.version


@dataclass(slots=True)
class Decision:
    action: Action = "allow"
    categories: list[str] = field(default_factory=list)
    clauses: list[str] = field(default_factory=list)
    redact_spans: list[GuardFinding] = field(default_factory=list)
    pii_mode: str = "pseudonymize"
    restore: bool = True


_SEVERITY = {a: i for i, a in enumerate(ACTIONS)}


def decide(policy: Policy, findings: Sequence[GuardFinding], lang: str | None) -> Decision:
    """The action the policy takes on these findings: the most severe rule that fired wins."""
    rules, (pii_clause, pii) = policy.rules(lang)
    decision = Decision(pii_mode=pii.mode, restore=pii.restore_in_answer)
    fired: dict[str, tuple[Action, str]] = {}
    for f in findings:
        entry = rules.get(f.category)
        if entry is not None:
            clause, rule = entry
            action, threshold = rule.action, rule.threshold
        elif f.category in HAZARD_CODES:
            continue  # a hazard this policy does not list is allowed
        else:
            clause, action, threshold = pii_clause, pii.action, pii.threshold
            if pii.entities is not None and f.category not in pii.entities:
                continue
        if f.score < threshold or action == "allow":
            continue
        if action == "redact" and f.start is not None and f.end is not None:
            decision.redact_spans.append(f)
        elif action == "redact":
            action = "warn"  # nothing to cut out of a text a guard judged as a whole
        previous = fired.get(f.category)
        if previous is None or _SEVERITY[action] > _SEVERITY[previous[0]]:
            fired[f.category] = (action, clause)
    if fired:
        decision.action = max((a for a, _ in fired.values()), key=_SEVERITY.__getitem__)
        top = [c for c, (a, _) in fired.items() if a == decision.action]
        decision.categories = sorted(top)
        decision.clauses = sorted({fired[c][1] for c in top})
    return decision


# -- loading -------------------------------------------------------------------------------------


def load_policy(path: str | Path | None = None) -> LoadedPolicy:
    """Read, validate and floor-check (static clauses) a policy file; the bundled default if None."""
    source = Path(path) if path else DEFAULT_POLICY
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"policy file {source}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"policy file {source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"policy file {source}: expected a mapping at the top level")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"policy file {source}: {problems}") from exc
    _check_references(policy, source)
    check_floor(policy)
    return LoadedPolicy(policy, text, hashlib.sha256(text.encode()).hexdigest(), str(source))


def _check_references(policy: Policy, source: Path) -> None:
    known = set(HAZARD_CODES) | set(policy.custom_categories)
    for code in policy.custom_categories:
        if code in HAZARD_CODES:
            raise ConfigError(f"policy file {source}: custom category {code} reuses a hazard code")
    categories = [*policy.categories, *(c for o in policy.locales.values() for c in o.categories)]
    for code in categories:
        if code not in known:
            raise ConfigError(f"policy file {source}: unknown category {code!r} (S1..S14 or a custom one)")
    for entry in policy.lexicon:
        if entry.category not in known:
            raise ConfigError(f"policy file {source}: lexicon phrase {entry.phrase!r} has unknown category")


# -- the floor -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProtectedItem:
    id: str
    lang: str
    topic: str
    text: str


@cache
def protected_speech() -> tuple[ProtectedItem, ...]:
    raw = yaml.safe_load((_DATA / "protected_speech.yaml").read_text(encoding="utf-8"))
    return tuple(ProtectedItem(str(r["id"]), str(r["lang"]), str(r["topic"]), str(r["text"])) for r in raw)


@cache
def _protected_terms() -> dict[str, tuple[str, linear_re.LinearPattern]]:
    raw = yaml.safe_load((_DATA / "protected_topics.yaml").read_text(encoding="utf-8"))
    out: dict[str, tuple[str, linear_re.LinearPattern]] = {}
    for topic, spec in raw.items():
        parts = []
        for term in spec["terms"]:
            escaped = linear_re.escape(str(term).lower())
            # Scripts written without spaces (Japanese) have no word starts to anchor on.
            spaced = all(ord(c) < 0x3000 for c in str(term))
            # RE2 has no lookbehind; for a search "start of text or a non-word character" is the same.
            parts.append(f"(?:^|[^{linear_re.WORD}]){escaped}" if spaced else escaped)
        out[topic] = (str(spec["label"]), linear_re.compile("|".join(parts)))
    return out


def _topic_of(text: str) -> str | None:
    lowered = text.lower()
    for topic, (label, pattern) in _protected_terms().items():
        if pattern.search(lowered):
            return f"{topic} ({label})"
    return None


def check_floor(
    policy: Policy, scan: Callable[[str, str], Sequence[GuardFinding]] | None = None
) -> None:
    """Refuse (FloorViolation) a policy that would lower the floor. With ``scan`` (the guards
    the policy will run with), also run the protected-speech check set through it."""
    restricting = ("block", "redact")
    for name, custom in policy.custom_categories.items():
        if custom.action not in restricting:
            continue
        named = set(custom.topics) & set(_protected_terms())
        topic = next(iter(sorted(named)), None) or _topic_of(f"{name} {custom.description}")
        if topic:
            raise FloorViolation(
                "floor.protected-topic",
                f"custom category {name!r} would {custom.action} speech on a protected topic: {topic}",
            )
    scopes: list[tuple[str, dict[str, CategoryRule]]] = [("categories", policy.categories)]
    scopes += [(f"locales.{lang}.categories", o.categories) for lang, o in policy.locales.items()]
    for prefix, rules in scopes:
        for code, rule in rules.items():
            if rule.action not in restricting:
                continue
            if code in SPEECH_SENSITIVE and rule.threshold < SPEECH_SENSITIVE_MIN:
                raise FloorViolation(
                    "floor.speech-sensitive",
                    f"{prefix}.{code} would {rule.action} at threshold {rule.threshold}: {code} borders lawful "
                    f"speech and may only act on its harmful core (threshold >= {SPEECH_SENSITIVE_MIN})",
                )
            if rule.threshold < BLOCK_MIN:
                raise FloorViolation(
                    "floor.threshold",
                    f"{prefix}.{code} would {rule.action} at threshold {rule.threshold} (< {BLOCK_MIN}): "
                    "that acts on noise, whatever the topic",
                )
    for entry in policy.lexicon:
        lexicon_rules, _ = policy.rules(entry.lang)
        action = lexicon_rules.get(entry.category, ("", CategoryRule(action="allow")))[1].action
        if action not in restricting:
            continue
        topic = _topic_of(entry.phrase)
        if topic:
            raise FloorViolation(
                "floor.lexicon", f"lexicon phrase {entry.phrase!r} ({entry.category}) targets {topic}"
            )
        matcher = PolicyLexiconGuard([entry])
        for item in protected_speech():
            if matcher.scan(item.text, item.lang):
                raise FloorViolation(
                    "floor.lexicon",
                    f"lexicon phrase {entry.phrase!r} ({entry.category}) matches protected speech {item.id}",
                )
    if scan is not None:
        for item in protected_speech():
            decision = decide(policy, scan(item.text, item.lang), item.lang)
            if decision.action == "block":
                raise FloorViolation(
                    "floor.check-set",
                    f"protected speech {item.id} ({item.topic}) would be blocked by "
                    f"{', '.join(decision.clauses)} ({', '.join(decision.categories)}): {item.text!r}",
                )


_W = linear_re.WORD


class PolicyLexiconGuard:
    """The policy's own phrases (deployment additions), matched on normalised, lower-cased text."""

    name = "policy-lexicon"

    def __init__(self, entries: Sequence[LexiconEntry]) -> None:
        self._entries: list[tuple[linear_re.LinearPattern, LexiconEntry]] = []
        for e in entries:
            phrase = normalize(e.phrase).lower()
            # Only searched (never spanned), so consuming the boundary characters is the same as
            # the lookarounds (?<!\w) / (?!\w) RE2 cannot run.
            self._entries.append((linear_re.compile(
                f"(?:^|[^{_W}]){linear_re.escape(phrase)}(?:$|[^{_W}])"), e))

    def scan(self, text: str, lang: str | None) -> list[GuardFinding]:
        if not self._entries or not text:
            return []
        norm = normalize(text).lower()
        out = []
        for pattern, entry in self._entries:
            if entry.lang and lang and _base_lang(lang) != entry.lang:
                continue
            if pattern.search(norm):
                out.append(GuardFinding(entry.category, 1.0, self.name))
        return out

