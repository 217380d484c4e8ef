"""One assistant turn: sources from the knowledge base, the locale's system prompt, the core chat
service, the language-fidelity retry, and the encrypted record of the answer. No FastAPI here.

The turn is an async iterator of events, which the router writes as Server-Sent Events:

    {"event": "meta", "citations": [...]}        sources known before the answer (quoted answers)
    {"event": "delta", "text": "..."}            a piece of the answer
    {"event": "reset", "reason": "language"}     the answer restarts: in another language ("language") or
                                                 unreadable ("unreadable"), it is asked once more with a
                                                 stronger instruction; unfit again, the sources are quoted
                                                 (or "I do not know") in its place
    {"event": "done", "message_id", "html", "finish_reason", "block", "citations"}  the sources it used
    {"event": "error", "code", "message", "block"}

A person who presses Stop disconnects; the answer so far is kept, marked ``stopped``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from sovhub import linear_re

from ..admission import admit, settle
from ..api.chat.protocol import ChatCompletionRequest
from ..api.chat.service import ChatService
from ..backends.registry import BackendRegistry
from ..backends.window import Window, fit_prompt, window_of
from ..errors import ContentBlocked, RateLimited, SovhubError
from ..pipeline import ChatContext, ChatResult, OutputVerdict, Principal
from .answer_html import render_markdown
from .answering import AnswerCheck
from .attachments import AttachmentStore
from .chat_store import ChatStore, StoredMessage
from .fidelity import STATE_RETRIED, FidelityInterceptor, FidelityTracker, instruction, reminder, unfit
from .grounding import NO_SOURCES, cited_numbers, declined, quote_answer, searched_collections, writes_language
from .question_kinds import PERSONAL, SERVICE, QuestionKinds
from .quota_text import quota_message

if TYPE_CHECKING:
    from ..hub import Hub
    from .knowledge import SearchHit
    from .locales import LocalePack

__all__ = ["CURRENT_TURN", "Turn", "TurnMarker", "plan_turn", "run_turn"]

log = logging.getLogger("sovhub.assistant.web")

KB_PASSAGES = 4
_LATIN_WORD = linear_re.compile(r"[A-Za-z][A-Za-z0-9_.'-]*")
# Tokens kept free for what interceptors add to a fitted prompt (the language instruction).
FIDELITY_RESERVE = 96


@dataclass(frozen=True, slots=True)
class Turn:
    user_id: int
    conversation_id: str
    model: str
    ui_lang: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Regenerate: the new answer replaces the trailing one, which is kept as an earlier version.
    replace_answer: bool = False


# The web handler sets this around the core chat call, so interceptors know the request is an
# assistant conversation (the core request model has no field for it, nor should it).
CURRENT_TURN: ContextVar[Turn | None] = ContextVar("sovhub_assistant_turn", default=None)


class TurnMarker:
    """A ChatInterceptor, first in line: tags the context of web-assistant requests."""

    name = "assistant.turn"
    checks_output = False

    async def before(self, ctx: ChatContext) -> None:
        turn = CURRENT_TURN.get()
        if turn is None or ctx.principal.user_id != turn.user_id or ctx.principal.org_id is not None:
            return
        ctx.conversation_id = turn.conversation_id
        ctx.lang = ctx.lang or turn.ui_lang
        ctx.state["assistant"] = True

    async def check_output(self, ctx: ChatContext, text: str, final: bool) -> OutputVerdict | None:
        return None

    async def after(self, ctx: ChatContext, result: ChatResult) -> None:
        return None



def _block_of(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data.get(k) for k in ("explanation", "decision_id", "appeal_url", "categories")}


def _sources(hub: Hub, question: str, pack: LocalePack) -> list[SearchHit] | None:
    """The passages over the floor; None when the person's collections are empty (nothing was searched)."""
    from .knowledge import KnowledgeBase

    kb = hub.services.get(KnowledgeBase)
    # Only embed the question when there is something to search: loading the embedding model
    # for an empty knowledge base would slow the first answer for nothing.
    searched = set(searched_collections(hub, pack))
    if not any(c.chunks and c.name in searched for c in kb.list_collections()):
        return None
    return kb.search(question, k=KB_PASSAGES, collections=sorted(searched),
                     min_similarity=hub.settings.assistant.kb_min_similarity)


def _system_prompt(pack: LocalePack, hits: list[SearchHit], n: int, level: int) -> str:
    """The locale's prompt (level 0 in full, 1 without the glossary, 2 without the guidance) and passages."""
    from .knowledge import context_message

    parts = [pack.compose_system_prompt(guidance=level < 2, glossary=level < 1)]
    context = context_message(hits[:n])
    # One system message: several chat templates refuse a second one.
    parts.append(str(context["content"]) if context is not None else NO_SOURCES)
    return "\n\n".join(parts)


def _person_language(hub: Hub, question: str, pack: LocalePack) -> str:
    from .fidelity import detector_for

    detector = detector_for(hub.settings.assistant.languages)
    detected = detector.detect(question) if question else None
    if detected not in (None, pack.language) and detector.detect(_LATIN_WORD.sub(" ", question)) == pack.language:
        # "Напиши hello world мовою Python" reads as English to the detector: Latin-script words
        # (names of programs, products) in a question otherwise in the interface's language.
        detected = pack.language
    return detected or pack.language


def _window(hub: Hub, model: str) -> Window | None:
    registry = hub.services.get(BackendRegistry)
    if not registry.running:
        return None
    try:
        backends = registry.candidates(None, model)
    except SovhubError:
        return None  # prepare() says why, in the person's terms
    return window_of(backends[0]) if backends else None


@dataclass(slots=True)
class _Plan:
    """What one turn sends, or answers without a model."""

    lang: str
    hits: list[SearchHit]
    messages: list[dict[str, Any]] = field(default_factory=list)
    max_tokens: int | None = None
    quoted: str | None = None  # the answer, when quoted from the knowledge base instead of written
    cited: list[int] = field(default_factory=list)
    # Passages over the relevance floor that do not answer the question: named when declining.
    neighbours: list[SearchHit] = field(default_factory=list)


def plan_turn(hub: Hub, turn: Turn, history: list[StoredMessage]) -> _Plan:
    """Sources, language and prompt of a turn, fitted to the model's window; blocking (run in a thread)."""
    from .locales import LocaleRegistry

    question = history[-1].text if history and history[-1].role == "user" else ""
    pack = hub.services.get(LocaleRegistry).match(turn.ui_lang)
    lang = _person_language(hub, question, pack)
    try:
        found = _sources(hub, question, pack)
    except SovhubError as exc:
        # An answer without sources beats no answer; the operator sees why in the log.
        log.warning("knowledge base search failed: %s", exc.message)
        found = None
    neighbours: list[SearchHit] = []
    if found and hub.settings.assistant.kb_answer_check:
        # Over the floor is on the topic; quoted or given to a model only when it answers the question.
        answering = hub.services.get(AnswerCheck).answering(question, found)
        neighbours = [h for h in found if h not in answering]
        found = answering
    # The person's own documents in this conversation come first: that is what they ask about.
    attached = AttachmentStore(hub).hits(turn.user_id, turn.conversation_id, question) if question else []
    hits = [*attached, *(found or [])]
    plan = _Plan(lang, hits, neighbours=neighbours)
    quotes = bool(hits) and turn.model in hub.settings.assistant.quote_models
    if quotes or not writes_language(hub, turn.model, lang):
        quoted = quote_answer(hub, question, lang, hits) if hits else None
        plan.quoted, plan.cited = (quoted.text, quoted.cited) if quoted else (declined(lang, neighbours), [])
        return plan
    if found is not None and not hits and hub.settings.assistant.decline_unsourced and _asks_for_facts(
            hub, question, history):
        # The knowledge base was searched and has nothing: a model asked anyway invents fees,
        # deadlines or the person's name. Ordinary requests (greetings, code) still go to the model.
        plan.quoted = declined(lang, neighbours)
        return plan
    conversation = history_messages(history)
    window = _window(hub, turn.model)
    if window is None:
        plan.messages = [{"role": "system", "content": _system_prompt(pack, hits, len(hits), 0)}, *conversation]
        return plan
    answer = min(hub.settings.embedded_max_tokens, window.size // 4)
    # The retry of an unfit answer sends the strong instruction and a reminder instead: kept room for them,
    # counted in the model's tokens (Cyrillic or Arabic cost several times their Latin length).
    retry_text = f"{instruction(lang, strong=True)}\n\n{reminder(lang)}"
    reserve = max(FIDELITY_RESERVE, window.text_tokens(retry_text) + 16)
    fitted = fit_prompt(window, lambda n, level: _system_prompt(pack, hits, n, level), len(hits), conversation,
                        answer, levels=3, reserve=reserve)
    if fitted.dropped_history or fitted.passages < len(hits) or fitted.level:
        log.info("prompt fitted to %d tokens: %d old messages, %d passages left out, detail level %d",
                 window.size, fitted.dropped_history, len(hits) - fitted.passages, fitted.level)
    plan.hits = hits[: fitted.passages]
    plan.messages, plan.max_tokens = fitted.messages, fitted.answer_tokens
    return plan


def _asks_for_facts(hub: Hub, question: str, history: list[StoredMessage]) -> bool:
    """Public-service facts, or the person's own records when the conversation cannot hold them yet."""
    kind = hub.services.get(QuestionKinds).kind(question)
    first_question = not any(m.role == "user" for m in history[:-1])
    log.debug("question kind without sources: %s", kind)
    # "What is my name?" after "I am Ada" is the model's to answer from the conversation.
    return kind == SERVICE or (kind == PERSONAL and first_question)


def _fallback(hub: Hub, plan: _Plan, question: str) -> str:
    """What a model's unfit answer is replaced with: the passages quoted, or "I do not know"."""
    quoted = quote_answer(hub, question, plan.lang, plan.hits) if plan.hits else None
    return quoted.text if quoted is not None else declined(plan.lang, plan.neighbours)


def history_messages(history: list[StoredMessage]) -> list[dict[str, str]]:
    """The conversation as chat messages; blocked exchanges and empty answers are left out."""
    out: list[dict[str, str]] = []
    for i, message in enumerate(history):
        nxt = history[i + 1] if i + 1 < len(history) else None
        if message.role == "user" and nxt is not None and nxt.block and nxt.finish_reason == "blocked":
            continue
        if message.role == "assistant" and (message.block or not message.text):
            continue
        out.append({"role": message.role, "content": message.text})
    return out


def _fidelity(hub: Hub) -> FidelityInterceptor | None:
    return next((i for i in hub.interceptors if isinstance(i, FidelityInterceptor)), None)


async def run_turn(hub: Hub, store: ChatStore, turn: Turn) -> AsyncIterator[dict[str, Any]]:
    """Answer the last question of the conversation, yielding events; records the answer."""
    history = await anyio.to_thread.run_sync(store.messages, turn.user_id, turn.conversation_id)
    while turn.replace_answer and history and history[-1].role == "assistant":
        history.pop()
    if not history or history[-1].role != "user":
        yield {"event": "error", "code": "nothing_to_answer", "message": "there is no question to answer",
               "block": None}
        return
    plan = await anyio.to_thread.run_sync(plan_turn, hub, turn, history)
    numbered = [{"n": n, **hit.citation()} for n, hit in enumerate(plan.hits, start=1)]
    citations = [c for c in numbered if c["n"] in plan.cited]
    # The sources are known once the answer is: "done" carries those it used.
    yield {"event": "meta", "citations": citations}
    messages = plan.messages
    text: list[str] = []
    finish: str | None = None
    block: dict[str, Any] | None = None
    saved = False

    async def save(reason: str | None) -> tuple[int, str]:
        nonlocal saved
        saved = True
        answer = "".join(text)
        # Rendered once here and kept with the message: pages then never re-render Markdown.
        html = render_markdown(answer) if answer else ""
        message_id = await anyio.to_thread.run_sync(lambda: store.append(
            turn.user_id, turn.conversation_id, "assistant", answer, model=turn.model,
            finish_reason=reason, citations=citations, block=block, html=html, replace_answer=turn.replace_answer))
        return message_id, html

    try:
        if plan.quoted is not None:
            # Answered from the sources without a model: still one of the person's questions, counted
            # against their requests per minute and per day (and their tier) like one a model answers.
            admission = await admit(hub, Principal(org_id=None, user_id=turn.user_id), "assistant.sources",
                                    turn.model, request_id=turn.request_id)
            await settle(hub, admission, 0)
            text = [plan.quoted]
            yield {"event": "delta", "text": plan.quoted}
            message_id, html = await save("stop")
            yield {"event": "done", "message_id": message_id, "html": html, "finish_reason": "stop",
                   "block": None, "citations": citations}
            return
        attempt_messages = messages
        for attempt in range(2):
            text, finish = [], None
            ctx, stopped_by = None, None
            try:
                async with contextlib.aclosing(
                    _stream(hub, turn, attempt_messages, plan.max_tokens, retry=attempt > 0)
                ) as events:
                    async for kind, value in events:
                        if kind == "ctx":
                            ctx = value
                        elif kind == "delta":
                            text.append(value)
                            yield {"event": "delta", "text": value}
                        elif kind == "finish":
                            finish = value
                        elif kind == "verdict":
                            stopped_by = value
            except (ContentBlocked, RateLimited):
                raise
            except SovhubError as exc:
                if attempt == 0:
                    raise
                # The retry of an unfit answer failed (its longer instruction, a backend gone): the
                # first answer is still not shown; the sources' sentences or "I do not know" are.
                log.warning("retry of an unfit answer failed: %s", exc.message)
                fallback = await anyio.to_thread.run_sync(_fallback, hub, plan, history[-1].text)
                yield {"event": "reset", "reason": "unreadable"}
                text, finish = [fallback], "stop"
                yield {"event": "delta", "text": fallback}
                break
            if stopped_by is not None:
                block = _block_of(stopped_by)
            fidelity = _fidelity(hub)
            if attempt == 0 and ctx is not None and fidelity is not None and block is None:
                result = ChatResult("".join(text), finish, 0, 0, 0.0, ctx.backend_name)
                if fidelity.needs_retry(ctx, result):
                    why = unfit(ctx) or "language"
                    attempt_messages = fidelity.retry_messages(ctx)
                    yield {"event": "reset", "reason": why}
                    continue
            if attempt == 1 and ctx is not None and block is None and (still := unfit(ctx)) is not None:
                # Asked again with a stronger instruction and still gibberish or another language: the
                # person gets the sources' own sentences, or an honest "I do not know", not that.
                log.info("answer of %s still %s after a retry: answered from the sources", turn.model, still)
                fallback = await anyio.to_thread.run_sync(_fallback, hub, plan, history[-1].text)
                yield {"event": "reset", "reason": still}
                text, finish = [fallback], "stop"
                yield {"event": "delta", "text": fallback}
            break
        used = cited_numbers("".join(text))
        citations[:] = [c for c in numbered if c["n"] in used]
        message_id, html = await save(finish)
        yield {"event": "done", "message_id": message_id, "html": html,
               "finish_reason": finish, "block": block, "citations": citations}
    except ContentBlocked as exc:
        block = _block_of(exc.extra or {"explanation": exc.message})
        text = []
        message_id, _html = await save("blocked")
        yield {"event": "error", "code": exc.code, "message": exc.message, "block": block, "message_id": message_id}
    except RateLimited as exc:
        # The person's own quota: said in their language, not the API's English for developers.
        yield {"event": "error", "code": exc.code, "message": quota_message(turn.ui_lang, exc.retry_after),
               "block": None}
    except SovhubError as exc:
        hub.services.get(FidelityTracker).record(turn.model, plan.lang, None, failed=True)
        yield {"event": "error", "code": exc.code, "message": exc.message, "block": None}
    finally:
        if not saved and text:
            # Stopped by the person (disconnect): keep what they saw, even while being cancelled.
            with anyio.CancelScope(shield=True), contextlib.suppress(SovhubError):
                await save("stopped")


async def _stream(
    hub: Hub, turn: Turn, messages: list[dict[str, Any]], max_tokens: int | None, *, retry: bool
) -> AsyncGenerator[tuple[str, Any], None]:
    service = hub.services.get(ChatService)
    # store=False: the web app keeps this conversation itself (encrypted per person); the API's
    # content recorder must not keep a second copy.
    body: dict[str, Any] = {"model": turn.model, "messages": messages, "stream": True, "store": False}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    request = ChatCompletionRequest.model_validate(body)
    principal = Principal(org_id=None, user_id=turn.user_id)
    request_id = turn.request_id + ("-retry" if retry else "")
    token = CURRENT_TURN.set(turn)
    try:
        prepared = await service.prepare(request, principal, request_id)
    finally:
        CURRENT_TURN.reset(token)
    if retry:
        # Counted as a retry, not a first attempt, by the fidelity tracker.
        prepared.ctx.state[STATE_RETRIED] = True
    started = time.perf_counter()
    try:
        yield "ctx", prepared.ctx
        # Only text that passed the output checks arrives here (the service holds back the rest),
        # so a stopped answer's flagged text is never shown, nor stored by `run_turn`.
        async with contextlib.aclosing(service.chunks(prepared, lambda _s: None)) as chunks:
            async for chunk in chunks:
                for choice in chunk.get("choices", []):
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        yield "delta", content
                    if choice.get("finish_reason"):
                        yield "finish", choice["finish_reason"]
    finally:
        # Recorded however the turn ends, even when it is given up before the answer was read.
        await service.release(prepared)
    verdict = prepared.ctx.state.get("output_verdict")
    if verdict is not None:
        yield "verdict", dict(verdict.reason)
    log.debug("assistant answer streamed in %.3fs", time.perf_counter() - started)
