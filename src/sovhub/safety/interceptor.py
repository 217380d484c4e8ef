"""The guard pipeline around every chat completion, as a ChatInterceptor.

``before``: each message is scanned by the guards of the ``sovhub_guards`` hook (semantic,
lexicon, PII, optional guard model) plus the policy's own lexicon; :func:`policy.decide` picks
the action. ``block`` raises :class:`ContentBlocked` carrying an explanation in the person's
language, the policy clause and how to appeal; ``redact`` rewrites ``ctx.messages`` (PII masked,
hashed or pseudonymised); ``warn`` is logged. ``check_output`` scans the growing answer (its
new part plus an overlap, so the cost stays linear) and stops it on ``block``; the core then
ends the stream with ``finish_reason: "content_filter"``.

Pseudonyms are put back into the answer by :class:`sovhub.safety.restore.RestoreMiddleware`
for HTTP clients, and by :meth:`SafetyRuntime.restore` for in-process callers (the web chat).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import ContentBlocked, InvalidRequest
from ..pipeline import ChatContext, ChatResult, OutputVerdict, Principal
from .explain import explain, pick_lang
from .fields import MessageField, argument_values, message_fields, tool_definition_texts, with_field
from .guard_model import GuardModelGuard, backend_complete, reserve_tokens, run_guard_model
from .guards import Guard, GuardFinding
from .pii import PiiAnalyzer, PiiEntity, PiiGuard, Redactor, Vault, VaultStore
from .policy import Decision, LoadedPolicy, PolicyLexiconGuard, check_floor, decide, load_policy
from .records import ModerationRecorder, PendingDecision, record_policy_version

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["QUESTION_CHARS", "SafetyInterceptor", "SafetyRuntime", "check_input_size", "message_text"]

log = logging.getLogger("sovhub.safety")

# The answer is re-scanned from this many characters before the last check, so a harmful
# sentence split across two checks is still seen whole.
_OUTPUT_OVERLAP = 400


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def check_input_size(hub: Hub, sizes: list[int], param: str) -> None:
    """400 when the texts the guards must read exceed ``safety.max_input_chars`` (guards read all of it)."""
    cap = hub.settings.safety.max_input_chars
    total = sum(sizes)
    if total > cap:
        raise InvalidRequest(
            f"The input has {total} characters of text; at most {cap} are accepted per request "
            "(safety.max_input_chars), as every character is checked. Send a shorter input.",
            param=param, code="input_too_long",
        )


class SafetyRuntime:
    """What the pipeline shares across requests: policy, analyzer, redactor, vaults, recorder."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        settings = hub.settings.safety
        self.loaded: LoadedPolicy = load_policy(settings.policy_file)
        self.analyzer = PiiAnalyzer(threshold=self.loaded.policy.pii.threshold, spacy_model=settings.pii_spacy_model)
        self.pii_guard = PiiGuard(self.analyzer)
        self.policy_lexicon = PolicyLexiconGuard(self.loaded.policy.lexicon)
        key = f"sovhub-pii-hash\x00{hub.settings.signing_key}".encode()
        self.redactor = Redactor(key)
        self.vaults = VaultStore(ttl_s=settings.pseudonym_ttl_s)
        # Vaults of requests whose answer is still being sent, for the restore middleware.
        self.live = VaultStore(ttl_s=600.0)
        self.recorder = ModerationRecorder(hub)
        self.version_recorded = False

    @property
    def policy(self) -> Any:
        return self.loaded.policy

    def guards(self, *, pii: bool = True) -> list[Guard]:
        found: list[Guard] = [*self.hub.guards, self.policy_lexicon]
        return [g for g in found if pii or g.name != "pii"]

    def scan(self, text: str, lang: str | None, *, pii: bool = True) -> list[GuardFinding]:
        findings: list[GuardFinding] = []
        for guard in self.guards(pii=pii):
            findings.extend(guard.scan(text, lang))
        return findings

    def warm(self) -> None:
        """Load models, check the policy against the protected-speech set, record its version."""
        self.analyzer.analyze("warm-up +44 20 7946 0958")
        check_floor(self.policy, lambda text, lang: self.scan(text, lang))
        self.ensure_version_recorded()

    def ensure_version_recorded(self) -> None:
        if not self.version_recorded:
            record_policy_version(self.hub, self.loaded)
            self.version_recorded = True

    def vault_for(self, ctx: ChatContext) -> Vault:
        vault = ctx.state.get("safety.vault")
        if vault is None:
            if ctx.conversation_id:
                vault = self.vaults.get(f"{_owner(ctx.principal)}|{ctx.conversation_id}")
            else:
                vault = Vault()
            ctx.state["safety.vault"] = vault
        return vault

    def restore(self, ctx: ChatContext, text: str) -> str:
        """The answer with pseudonyms replaced by the person's own values (in-process callers)."""
        vault = ctx.state.get("safety.vault")
        return vault.restore(text) if vault is not None else text

    def live_key(self, request_id: str, principal: Principal | None) -> str:
        return f"{request_id}|{_owner(principal)}"


def _hub_authored(ctx: ChatContext) -> frozenset[str]:
    """Roles the hub itself wrote in this request, judged for identifiers only.

    Only the web assistant's requests (a signed-in person, no API key) have them: it composes the
    system prompt (locale text and operator-loaded knowledge passages) and replays its own stored
    answers; the person writes only ``user`` turns. Every role of an API request is client-written.
    """
    p = ctx.principal
    if p.key_id is None and p.user_id is not None:
        return frozenset({"system", "assistant"})
    return frozenset()


#: How much of the last question the guard model reads an answer with.
QUESTION_CHARS = 2000


def _guard_conversation(ctx: ChatContext, authored: frozenset[str], tools: list[str]) -> str:
    """What the guard model reads of a request: one line per client-written text, then the tools."""
    # One line per message: the guard model judges it all as one turn (Llama Guard's "\n\n" separates turns).
    return "\n".join([
        *(part for m in ctx.messages if m.get("role") not in authored
          for part in (message_text(m), *(f.text for f in message_fields(m))) if part),
        *tools,
    ])


def _question(ctx: ChatContext) -> list[tuple[str, str]]:
    """The history the guard model reads an answer with: the end of the last question."""
    question = next((message_text(m) for m in reversed(ctx.messages) if m.get("role") == "user"), "")
    return [("User", question[-QUESTION_CHARS:])] if question else []


def _owner(principal: Principal | None) -> str:
    if principal is None:
        return "-"
    return f"{principal.org_id}:{principal.user_id}:{principal.key_id}"



class SafetyInterceptor:
    name = "safety"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @property
    def checks_output(self) -> bool:
        """Answers are held back for `check_output` only while the guards run (api/chat/gate.py)."""
        return self.hub.settings.safety.enabled

    @property
    def runtime(self) -> SafetyRuntime:
        return self.hub.services.get(SafetyRuntime)

    async def before(self, ctx: ChatContext) -> None:
        if not self.hub.settings.safety.enabled:
            return
        rt = self.runtime
        texts = [message_text(m) for m in ctx.messages]
        fields = [message_fields(m) for m in ctx.messages]
        tools = tool_definition_texts(ctx.params)
        check_input_size(self.hub, [len(t) for t in texts] + [len(f.text) for fs in fields for f in fs]
                         + [len(t) for t in tools], "messages")
        last_user = next((t for m, t in zip(reversed(ctx.messages), reversed(texts), strict=True)
                          if m.get("role") == "user"), "")
        lang = pick_lang(ctx.lang, last_user)
        ctx.state["safety.lang"] = lang

        authored = _hub_authored(ctx)

        def judge() -> list[tuple[int, MessageField | None, list[GuardFinding]]]:
            # One entry per text judged: a message's content (field None) or another field of it,
            # each with findings whose spans index that text alone.
            out: list[tuple[int, MessageField | None, list[GuardFinding]]] = []
            for i, message in enumerate(ctx.messages):
                hub_written = message.get("role") in authored
                targets: list[tuple[MessageField | None, str, bool]] = [(None, texts[i], True)]
                targets += [(f, f.text, f.redactable) for f in fields[i]]
                for target, text, redactable in targets:
                    if not text:
                        continue
                    # An API client writes every role (any "assistant" or "system" turn it likes), so
                    # every message is judged for hazards as well as redacted for identifiers.
                    if hub_written:
                        found = rt.pii_guard.scan(text, lang) if redactable else []
                    else:
                        found = rt.scan(text, lang, pii=redactable)
                    if found:
                        out.append((i, target, found))
                    if target is not None and target.path[-1] == "arguments" and not hub_written:
                        # Judged unwrapped too (index -1: judged, never rewritten; spans would not fit).
                        plain = argument_values(text)
                        hazards = rt.scan(plain, lang, pii=False) if plain else []
                        if hazards:
                            out.append((-1, None, hazards))
            for text in tools:
                # Index -1: judged (a tool's description is an instruction too), never rewritten.
                found = rt.scan(text, lang, pii=False)
                if found:
                    out.append((-1, None, found))
            return out

        # The guards are CPU work (embeddings, matrix products): off the event loop.
        decisions = [(i, target, decide(rt.policy, found, lang))
                     for i, target, found in await anyio.to_thread.run_sync(judge)]
        blocked = [d for _, _, d in decisions if d.action == "block"]
        if blocked:
            await self._block(ctx, lang, blocked)
        redacted = [(i, target, d) for i, target, d in decisions if d.redact_spans and i >= 0]
        if redacted:
            self._redact(ctx, texts, redacted)
        # Asked last, on the redacted messages: the guard model is a backend like any other and sees
        # no identifier the chat model would not see. It reads the whole conversation, in pieces.
        conversation = _guard_conversation(ctx, authored, tools)
        found = await self._ask_guard_model(ctx, conversation, lang, role="User")
        if found:
            verdict = decide(rt.policy, found, lang)
            if verdict.action == "block":
                await self._block(ctx, lang, [verdict])
            decisions.append((len(ctx.messages) - 1, None, verdict))
        warned = [d for _, _, d in decisions if d.action in ("warn", "redact")]
        if warned:
            self._record(ctx, "input", warned[0].action, warned, lang)

    async def _block(self, ctx: ChatContext, lang: str, blocked: list[Decision]) -> None:
        rt = self.runtime
        entry = self._record(ctx, "input", "block", blocked, lang)
        await anyio.to_thread.run_sync(rt.recorder.flush)
        policy = rt.policy
        text = explain("blocked", lang, entry.categories, entry.clauses, rt.loaded.version,
                       entry.id, policy.appeal_url)
        raise ContentBlocked(
            text,
            extra={
                "explanation": text, "lang": lang, "categories": entry.categories, "policy_clauses": entry.clauses,
                "policy_version": rt.loaded.version, "decision_id": entry.id, "appeal_url": policy.appeal_url,
            },
        )

    def _redact(
        self, ctx: ChatContext, texts: list[str], redacted: list[tuple[int, MessageField | None, Decision]]
    ) -> None:
        rt = self.runtime
        mode = redacted[0][2].pii_mode
        vault = rt.vault_for(ctx) if mode == "pseudonymize" else None
        for i, target, decision in redacted:
            spans = [_entity(f) for f in decision.redact_spans]
            source = texts[i] if target is None else target.text
            new = rt.redactor.redact(source, spans, mode, vault)  # type: ignore[arg-type]
            message = ctx.messages[i]
            if target is not None:
                message = with_field(message, target.path, new)
            elif isinstance(message.get("content"), list):
                message = {**message, "content": [{"type": "text", "text": new}]}
            else:
                message = {**message, "content": new}
            ctx.messages[i] = message
        ctx.state["safety.redacted"] = sorted({f.category for _, _, d in redacted for f in d.redact_spans})
        if vault is not None and len(vault) and redacted[0][2].restore:
            rt.live.put(rt.live_key(ctx.request_id, ctx.principal), vault)

    def _record(
        self, ctx: ChatContext, direction: str, action: str, decisions: list[Decision], lang: str
    ) -> PendingDecision:
        rt = self.runtime
        categories = sorted({c for d in decisions for c in d.categories})
        clauses = sorted({c for d in decisions for c in d.clauses})
        entry = PendingDecision(
            direction=direction, action=action, categories=categories, clauses=clauses,
            policy_version=rt.loaded.version, lang=lang, principal=ctx.principal.label,
            org_id=ctx.principal.org_id, user_id=ctx.principal.user_id,
        )
        rt.recorder.add(entry)
        log.info("moderation %s %s", direction, action, extra={"categories": categories, "decision": entry.id})
        return entry

    async def check_output(self, ctx: ChatContext, text: str, final: bool) -> OutputVerdict | None:
        if not self.hub.settings.safety.enabled or not text:
            return None
        rt = self.runtime
        start = max(0, int(ctx.state.get("safety.out_pos", 0)) - _OUTPUT_OVERLAP)
        ctx.state["safety.out_pos"] = len(text)
        lang = str(ctx.state.get("safety.lang") or pick_lang(ctx.lang, text))
        window = text[start:]
        findings = await anyio.to_thread.run_sync(lambda: rt.scan(window, lang, pii=False))
        decision = decide(rt.policy, findings, lang)
        if final and decision.action != "block":
            # The guard model is too slow for every partial check: it judges the whole answer once,
            # before the finishing chunk leaves, so what it stops still ends with content_filter.
            found = await self._ask_guard_model(ctx, text, lang, role="Agent")
            if found:
                decision = decide(rt.policy, [*findings, *found], lang)
        if decision.action != "block":
            return None
        entry = self._record(ctx, "output", "block", [decision], lang)
        await anyio.to_thread.run_sync(rt.recorder.flush)
        policy = rt.policy
        explanation = explain("stopped", lang, entry.categories, entry.clauses, rt.loaded.version,
                              entry.id, policy.appeal_url)
        return OutputVerdict("stop", {
            "explanation": explanation, "categories": entry.categories, "policy_clauses": entry.clauses,
            "policy_version": rt.loaded.version, "decision_id": entry.id, "appeal_url": policy.appeal_url,
        })

    async def after(self, ctx: ChatContext, result: ChatResult) -> None:
        return None

    def side_call_reserve(self, ctx: ChatContext) -> int:
        """The guard model's tokens for this request, held at admission with the rest (an estimate).

        The conversation in its pieces, and each choice's answer (``max_tokens`` at four characters
        a token) with the question, once; settled to what the calls used after the request.
        """
        settings = self.hub.settings.safety
        if not settings.enabled or not settings.guard_model:
            return 0
        conversation = _guard_conversation(ctx, _hub_authored(ctx), tool_definition_texts(ctx.params))
        answer = reserve_tokens(4 * int(ctx.params.get("max_tokens") or 0), role="Agent", history=_question(ctx))
        return reserve_tokens(len(conversation), role="User") + int(ctx.params.get("n") or 1) * answer

    async def _ask_guard_model(self, ctx: ChatContext, text: str, lang: str, *, role: str) -> list[GuardFinding]:
        settings = self.hub.settings.safety
        if not settings.guard_model or not text:
            return []
        history = _question(ctx) if role == "Agent" else []
        guard = GuardModelGuard(backend_complete(self.hub, settings.guard_model, ctx, ctx.side_calls), role=role)
        return await run_guard_model(guard, text, lang, failure=settings.guard_model_failure,
                                     timeout_s=settings.guard_model_timeout_s, history=history)


def _entity(f: GuardFinding) -> PiiEntity:
    assert f.start is not None and f.end is not None
    return PiiEntity(f.category, f.start, f.end, f.score)
