"""The policy: loading, decisions, the human-rights floor, versions and their published diffs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sovhub.errors import ConfigError
from sovhub.hub import Hub
from sovhub.safety.explain import LANGUAGES, explain, guess_lang
from sovhub.safety.guards import GuardFinding
from sovhub.safety.policy import (
    DEFAULT_POLICY,
    FloorViolation,
    Policy,
    check_floor,
    decide,
    load_policy,
    protected_speech,
)


def _write(tmp_path: Path, **changes: Any) -> Path:
    data = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    data.update(changes)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_default_policy_loads_and_passes_the_floor() -> None:
    loaded = load_policy()
    assert loaded.version == "2025.1" and len(loaded.digest) == 64
    assert set(loaded.policy.categories) == {f"S{i}" for i in range(1, 15)}


def test_check_set_covers_eight_languages_and_every_topic() -> None:
    items = protected_speech()
    assert {i.lang for i in items} == set(LANGUAGES)
    topics = {i.topic for i in items}
    assert len(topics) == 8
    for lang in LANGUAGES:
        assert {i.topic for i in items if i.lang == lang} == topics


def test_decide_takes_the_most_severe_rule_and_names_its_clause() -> None:
    policy = load_policy().policy
    findings = [GuardFinding("S12", 0.9, "g"), GuardFinding("S1", 0.8, "g"), GuardFinding("S2", 0.3, "g"),
                GuardFinding("EMAIL_ADDRESS", 0.95, "pii", 0, 5)]
    d = decide(policy, findings, "en")
    assert (d.action, d.categories, d.clauses) == ("block", ["S1"], ["categories.S1"])
    assert [f.category for f in d.redact_spans] == ["EMAIL_ADDRESS"]
    assert decide(policy, [GuardFinding("S12", 0.9, "g")], "en").action == "warn"
    assert decide(policy, [GuardFinding("S1", 0.49, "g")], "en").action == "allow"


def test_locale_override_applies_to_its_language_only(tmp_path: Path) -> None:
    path = _write(tmp_path, locales={"de": {"categories": {"S12": {"action": "block", "threshold": 0.6}}}})
    policy = load_policy(path).policy
    d = decide(policy, [GuardFinding("S12", 0.9, "g")], "de-AT")
    assert (d.action, d.clauses) == ("block", ["locales.de.categories.S12"])
    assert decide(policy, [GuardFinding("S12", 0.9, "g")], "fr").action == "warn"


def test_redact_without_span_degrades_to_warn() -> None:
    policy = Policy(version="t", categories={"S7": {"action": "redact"}})
    assert decide(policy, [GuardFinding("S7", 0.9, "g")], None).action == "warn"


@pytest.mark.parametrize(
    ("changes", "clause"),
    [
        ({"categories": {"S13": {"action": "block", "threshold": 0.1}}}, "floor.speech-sensitive"),
        ({"categories": {"S5": {"action": "redact", "threshold": 0.3}}}, "floor.speech-sensitive"),
        ({"locales": {"pl": {"categories": {"S13": {"action": "block", "threshold": 0.2}}}}}, "floor.speech-sensitive"),
        ({"categories": {"S1": {"action": "block", "threshold": 0.05}}}, "floor.threshold"),
        ({"custom_categories": {"political_criticism": {"description": "Criticism of the president",
                                                        "action": "block"}}}, "floor.protected-topic"),
        ({"custom_categories": {"x": {"description": "anything", "action": "block", "topics": ["religion"]}}},
         "floor.protected-topic"),
        ({"custom_categories": {"lgbt_content": {"description": "LGBT propaganda", "action": "redact"}}},
         "floor.protected-topic"),
        ({"custom_categories": {"c": {"description": "unrest", "action": "block"}},
          "lexicon": [{"phrase": "Протест", "category": "c", "lang": "uk"}]}, "floor.lexicon"),
        ({"custom_categories": {"c": {"description": "unrest", "action": "block"}},
          "lexicon": [{"phrase": "Ramadan", "category": "c"}]}, "floor.lexicon"),
        ({"lexicon": [{"phrase": "期日前投票", "category": "S1"}]}, "floor.lexicon"),
    ],
)
def test_floor_refuses_at_load_naming_the_clause(tmp_path: Path, changes: dict[str, Any], clause: str) -> None:
    with pytest.raises(FloorViolation) as info:
        load_policy(_write(tmp_path, **changes))
    assert info.value.clause == clause
    assert clause in str(info.value)


def test_floor_allows_what_does_not_restrict_speech(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        categories={"S13": {"action": "warn", "threshold": 0.1}, "S1": {"action": "block", "threshold": 0.7}},
        custom_categories={"political_ads": {"description": "Political advertising", "action": "warn"},
                           "casino": {"description": "Unlicensed casino bonus codes", "action": "block"}},
        lexicon=[{"phrase": "free spins bonus code", "category": "casino", "lang": "en"}],
    )
    assert load_policy(path).policy.custom_categories["casino"].action == "block"


def test_floor_check_set_with_guards() -> None:
    policy = load_policy().policy

    def topic_blocker(text: str, lang: str) -> list[GuardFinding]:
        # A guard that (wrongly) treats talk of elections as election misinformation.
        return [GuardFinding("S13", 0.95, "bad")] if any(w in text for w in ("vote", "投票", "élections")) else []

    with pytest.raises(FloorViolation) as info:
        check_floor(policy, topic_blocker)
    assert info.value.clause == "floor.check-set"
    assert "en-opinion" in str(info.value) or "en-elections" in str(info.value)
    check_floor(policy, lambda text, lang: [])


@pytest.mark.parametrize(
    ("content", "message"),
    [("version: [1", "not valid YAML"), ("- a\n- b\n", "mapping"), ("name: x\n", "version"),
     ("version: '1'\ncategories: {S99: {action: block}}\n", "unknown category"),
     ("version: '1'\ncategories: {S1: {action: delete}}\n", "action"),
     ("version: '1'\ncategories: {S1: {threshold: 2}}\n", "threshold"),
     ("version: '1'\ncustom_categories: {S1: {description: x}}\n", "reuses a hazard code"),
     ("version: '1'\nlexicon: [{phrase: abc, category: nope}]\n", "unknown category"),
     ("version: '1'\nsurprise: 1\n", "surprise")],
)
def test_bad_policy_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_policy(path)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy file"):
        load_policy(tmp_path / "absent.yaml")


def test_versions_are_recorded_emitted_and_published_with_diff(hub: Hub, tmp_path: Path) -> None:
    from sovhub.safety.interceptor import SafetyRuntime
    from sovhub.safety.plugin import sovhub_transparency

    events: list[Any] = []

    class Listener:
        from sovhub.hookspecs import hookimpl

        @hookimpl
        def sovhub_event(self, hub: Hub, event: Any) -> None:
            events.append(event)

    hub.pm.register(Listener(), name="tests.listener")
    try:
        SafetyRuntime(hub).ensure_version_recorded()
        SafetyRuntime(hub).ensure_version_recorded()  # same digest: not recorded twice
        changed = _write(tmp_path, version="2025.2", categories={
            **yaml.safe_load(DEFAULT_POLICY.read_text())["categories"], "S12": {"action": "block", "threshold": 0.5}})
        hub.settings.safety.policy_file = str(changed)
        restarted = SafetyRuntime(hub)  # what a restart with the changed file builds
        hub.services.replace(SafetyRuntime, restarted)
        restarted.ensure_version_recorded()
    finally:
        hub.pm.unregister(name="tests.listener")
    loaded = [e for e in events if e.name == "policy.loaded"]
    assert [e.data["version"] for e in loaded] == ["2025.1", "2025.2"]
    assert "S12" in loaded[1].data["diff"]
    report = sovhub_transparency(hub)["safety"]
    assert report["policy"]["in_force"] == "2025.2"
    assert [v["version"] for v in report["policy"]["versions"]] == ["2025.2", "2025.1"]
    assert "-  S12:" in report["policy"]["versions"][0]["diff"]


def test_explanations_exist_for_every_language_and_category() -> None:
    for lang in LANGUAGES:
        for code in [f"S{i}" for i in range(1, 15)]:
            text = explain("blocked", lang, [code], [f"categories.{code}"], "v1", "mod_x", "/appeal")
            assert code in text and "categories." in text and "mod_x" in text and "/appeal" in text
            assert code not in text.replace(f"({code})", "").replace(f"（{code}）", "").replace(
                f"categories.{code}", "")  # the category also appears by name, not only by code


def test_guess_lang() -> None:
    samples = {"en": "How do I do this?", "de": "Wie geht das und ist es nicht gut?", "fr": "Comment est-ce que je le fais pour vous ?",
               "es": "¿Cómo lo hago para mi casa con los niños?", "pl": "Jak to zrobić? Nie wiem.", "uk": "Як це зробити?",
               "ar": "كيف أفعل هذا؟", "ja": "これはどうすればいいですか"}
    for lang, text in samples.items():
        assert guess_lang(text) == lang, text
