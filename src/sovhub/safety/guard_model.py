"""The optional guard-model guard: ask a chat model (Llama Guard 3, ShieldGemma, any model) to judge.

The prompt is built from the taxonomy in Llama Guard 3's format, so Llama Guard answers natively
and other models are told exactly what to say. The answer is parsed *strictly*: ``safe``, or
``unsafe`` followed by a line of known hazard codes. Anything else raises
:class:`~sovhub.errors.UpstreamFailed` — a guard that cannot be understood has failed; it is never
read as "safe". Off by default; the hub supplies ``complete(messages) -> str``.

In the hub (``safety.guard_model`` names a model served by a configured backend),
:func:`backend_complete` asks that model through the backend registry, under the same routing
policies (data residency) as the request it judges, and :func:`run_guard_model` applies the
deployment's failure mode: ``closed`` (default) turns a failed call into the request's error,
``open`` logs it and lets the other guards decide alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

from sovhub import linear_re

from ..backends.base import Backend, CancelToken, estimate_tokens
from ..backends.registry import BackendRegistry
from ..errors import BackendUnavailable, ModelNotFound, SovhubError, UpstreamFailed
from ..pipeline import SideCall
from .guards import GuardFinding
from .taxonomy import HAZARD_CODES, HAZARDS

if TYPE_CHECKING:
    from ..hub import Hub
    from ..pipeline import ChatContext

__all__ = [
    "Complete", "GuardModelGuard", "GuardVerdict", "backend_complete", "build_prompt", "parse_verdict",
    "reserve_tokens", "run_guard_model", "text_pieces",
]

log = logging.getLogger("sovhub.safety")

Complete = Callable[[list[dict[str, str]]], Awaitable[str]]

# The model judges at most this much text per verdict; a longer text is judged in overlapping pieces
# of this size (every piece, so a payload at the end of a long message is read too).
MAX_PROMPT_CHARS = 8000
PIECE_OVERLAP = 400
_CODE_RE = f"S[{linear_re.DIGIT}]{{1,2}}"
_CODES_LINE = linear_re.compile(f"{_CODE_RE}(?:[{linear_re.SPACE}]*,[{linear_re.SPACE}]*{_CODE_RE})*")


@dataclass(frozen=True)
class GuardVerdict:
    safe: bool
    codes: tuple[str, ...] = ()


def build_prompt(text: str, *, role: str = "User", history: Sequence[tuple[str, str]] = (),
                 codes: Sequence[str] = HAZARD_CODES) -> str:
    """Llama Guard 3's prompt for judging the last ``role`` message (role: "User" or "Agent")."""
    if role not in ("User", "Agent"):
        raise ValueError("role must be 'User' or 'Agent'")
    categories = "\n".join(f"{h.code}: {h.name}." for h in HAZARDS if h.code in codes)
    turns = [*history, (role, text[:MAX_PROMPT_CHARS])]
    conversation = "\n\n".join(f"{who}: {what}" for who, what in turns)
    return (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations according to our "
        "safety policy with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{conversation}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
    )


def parse_verdict(answer: str) -> GuardVerdict:
    """``"safe"`` or ``"unsafe\\nS1,S10"`` (surrounding whitespace allowed); anything else raises."""
    if not isinstance(answer, str):
        raise UpstreamFailed("the guard model returned no text", code="guard_model_invalid")
    lines = [line.strip() for line in answer.strip().splitlines()]
    if lines == ["safe"]:
        return GuardVerdict(safe=True)
    if len(lines) == 2 and lines[0] == "unsafe" and _CODES_LINE.fullmatch(lines[1]):
        codes = tuple(dict.fromkeys(c.strip() for c in lines[1].split(",")))
        unknown = [c for c in codes if c not in HAZARD_CODES]
        if unknown:
            raise UpstreamFailed(f"the guard model named unknown categories {unknown}",
                                 code="guard_model_invalid")
        return GuardVerdict(safe=False, codes=codes)
    shown = answer if len(answer) <= 80 else answer[:77] + "..."
    raise UpstreamFailed(f"the guard model's answer is not a verdict: {shown!r}", code="guard_model_invalid")


def text_pieces(text: str, size: int = MAX_PROMPT_CHARS, overlap: int = PIECE_OVERLAP) -> list[str]:
    """``text`` whole when it fits, else overlapping pieces of at most ``size`` characters, to its end."""
    if len(text) <= size:
        return [text]
    step = size - overlap
    return [text[i:i + size] for i in range(0, len(text) - overlap, step)]


def reserve_tokens(chars: int, *, role: str = "User", history: Sequence[tuple[str, str]] = ()) -> int:
    """The tokens one scan of a ``chars``-character text may use: each piece's prompt and verdict.

    Counted as :func:`estimate_tokens` counts a call the backend reports no usage for (a quarter of
    the characters), for admission to hold before the text exists (an answer is judged once written).
    """
    if chars <= 0:
        return 0
    if chars <= MAX_PROMPT_CHARS:
        lengths = [chars]
    else:  # as text_pieces cuts: full pieces, then the rest after the last overlap
        step = MAX_PROMPT_CHARS - PIECE_OVERLAP
        pieces = -(-(chars - PIECE_OVERLAP) // step)
        lengths = [MAX_PROMPT_CHARS] * (pieces - 1) + [chars - (pieces - 1) * step]
    template = len(build_prompt("", role=role, history=history))
    return sum((template + n + 3) // 4 + _VERDICT_MAX_TOKENS for n in lengths)


class GuardModelGuard:
    """Asynchronous guard: ``await guard.ascan(text, lang)``. Findings have score 1 and no span."""

    name = "guard_model"

    def __init__(self, complete: Complete, *, codes: Sequence[str] = HAZARD_CODES, role: str = "User") -> None:
        self.complete = complete
        self.codes = tuple(codes)
        self.role = role

    async def ascan(self, text: str, lang: str | None, *,
                    history: Sequence[tuple[str, str]] = ()) -> list[GuardFinding]:
        codes: dict[str, None] = {}
        # One verdict per piece, in order: a short text (nearly every request) costs one call.
        for piece in text_pieces(text):
            prompt = build_prompt(piece, role=self.role, history=history, codes=self.codes)
            answer = await self.complete([{"role": "user", "content": prompt}])
            codes.update(dict.fromkeys(parse_verdict(answer).codes))
        return [GuardFinding(category=c, score=1.0, guard=self.name) for c in codes]


# A verdict is two short lines; more tokens only cost time.
_VERDICT_MAX_TOKENS = 24


def backend_complete(
    hub: Hub, model: str, ctx: ChatContext | None, calls: list[SideCall] | None = None
) -> Complete:
    """``complete(messages)`` through the hub's backends serving ``model`` (greedy, a few tokens).

    The request's own routing policies choose the backend, so a message never reaches a guard
    model its owner's residency rules would not allow. One retry on the next backend, as for chat.
    Each answered call is appended to ``calls``, for metering: its tokens as the backend reported
    them, else counted with the backend's own tokenizer, else estimated (and marked so).
    """

    async def complete(messages: list[dict[str, str]]) -> str:
        registry = hub.services.get(BackendRegistry)
        if not registry.running:
            raise BackendUnavailable("the guard model cannot be asked: no backends are running")
        try:
            candidates = registry.candidates(ctx, model)
        except ModelNotFound as exc:
            raise UpstreamFailed(f"the guard model {model!r} is not served by any backend",
                                 code="guard_model_unavailable") from exc
        last: BackendUnavailable | None = None
        for backend in candidates[:2]:
            cancel = CancelToken()
            parts: list[str] = []
            usage: dict[str, Any] | None = None
            stream = backend.chat_stream(model, list(messages), {"temperature": 0.0, "max_tokens": _VERDICT_MAX_TOKENS},
                                         cancel)
            try:
                async with contextlib.aclosing(stream):  # type: ignore[type-var]
                    async for chunk in stream:
                        if isinstance(chunk.get("usage"), dict):
                            usage = chunk["usage"]
                        for choice in chunk.get("choices") or []:
                            content = (choice.get("delta") or {}).get("content")
                            if content:
                                parts.append(str(content))
            except BackendUnavailable as exc:
                registry.mark_down(backend)
                last = exc
                continue
            finally:
                cancel.cancel()
            answer = "".join(parts)
            if calls is not None:
                calls.append(_side_call(model, backend, messages, answer, usage or cancel.usage))
            return answer
        assert last is not None
        raise last

    return complete


def _side_call(
    model: str, backend: Backend, messages: list[dict[str, str]], answer: str, usage: dict[str, Any] | None
) -> SideCall:
    if usage:
        return SideCall(model, backend.name, int(usage.get("prompt_tokens") or 0),
                        int(usage.get("completion_tokens") or 0))
    prompt = "\n".join(m.get("content", "") for m in messages)
    counted = [backend.count_tokens(t) for t in (prompt, answer)]
    tokens = [estimate_tokens(t) if n is None else n for n, t in zip(counted, (prompt, answer), strict=True)]
    return SideCall(model, backend.name, tokens[0], tokens[1], estimated=None in counted)


async def run_guard_model(
    guard: GuardModelGuard, text: str, lang: str | None, *, failure: Literal["closed", "open"], timeout_s: float,
    history: Sequence[tuple[str, str]] = (),
) -> list[GuardFinding]:
    """The guard model's findings; on failure raise (``closed``) or log and return none (``open``)."""
    try:
        with anyio.fail_after(timeout_s):
            return await guard.ascan(text, lang, history=history)
    except TimeoutError:
        error: SovhubError = UpstreamFailed(f"the guard model did not answer within {timeout_s:g} s",
                                            code="guard_model_timeout")
    except SovhubError as exc:
        error = exc
    if failure == "open":
        log.warning("guard model failed, continuing without it (fail-open): %s", error.message,
                    extra={"code": error.code})
        return []
    raise error
