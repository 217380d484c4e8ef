"""A model's context window: counting a request in the model's own tokens, checking it, fitting it.

Two uses. The API checks a client's request (:func:`check_request`): a request whose own
messages, with the answer's budget, do not fit gets OpenAI's 400 ``context_length_exceeded``
before any backend sees it (a backend that overflows fails, and the router would retry it on the
next one and answer 503). The web assistant builds its own prompt, so it fits it instead
(:func:`fit_prompt`): the oldest history goes first, then passages from the lowest ranked, then
the locale's guidance, and the answer's budget is kept.

Chat templates add a few tokens per message (``<|im_start|>role\\n`` ... ``<|im_end|>\\n``);
:data:`MESSAGE_OVERHEAD` over-counts them for the templates sovhub ships with, so a fitted
prompt never overflows by the template's doing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ContextLengthExceeded
from .base import Backend

__all__ = [
    "MESSAGE_OVERHEAD",
    "MIN_ANSWER_TOKENS",
    "FittedPrompt",
    "Window",
    "check_request",
    "fit_prompt",
    "window_of",
]

MESSAGE_OVERHEAD = 8
REPLY_PRIMER = 6
# An answer shorter than this is not worth generating: below it the request is refused (API) or
# the question itself is shortened (web).
MIN_ANSWER_TOKENS = 32


@dataclass(frozen=True, slots=True)
class Window:
    size: int
    count: Callable[[str], int | None]

    def text_tokens(self, text: str) -> int:
        counted = self.count(text)
        # A backend that stopped counting (unloaded meanwhile): a pessimistic estimate.
        return counted if counted is not None else len(text.encode("utf-8")) // 2 + 1

    def message_tokens(self, message: dict[str, Any]) -> int:
        return self.text_tokens(_content_text(message.get("content"))) + MESSAGE_OVERHEAD

    def prompt_tokens(self, messages: Sequence[dict[str, Any]]) -> int:
        return sum(self.message_tokens(m) for m in messages) + REPLY_PRIMER


def window_of(backend: Backend) -> Window | None:
    """The backend's window when it has one and can count its tokens here; else None (not checked)."""
    size = backend.context_window
    if size is None or backend.count_tokens("") is None:
        return None
    return Window(size, backend.count_tokens)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def check_request(
    window: Window, messages: Sequence[dict[str, Any]], requested: int | None, default: int | None
) -> int | None:
    """The answer's max_tokens for this request, or ContextLengthExceeded (param ``messages``).

    `requested` is the client's own max_tokens: prompt plus it must fit, as on OpenAI. Without
    one, the hub's `default` is cut to what the window has left.
    """
    prompt = window.prompt_tokens(messages)
    if requested is not None:
        if prompt + requested > window.size:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {window.size} tokens. However, you requested "
                f"{prompt + requested} tokens ({prompt} in the messages, {requested} in the completion). "
                "Please reduce the length of the messages or completion.", param="messages",
            )
        return requested
    room = window.size - prompt
    if room < MIN_ANSWER_TOKENS:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {window.size} tokens. However, your messages resulted "
            f"in {prompt} tokens, leaving no room for an answer. Please reduce the length of the messages.",
            param="messages",
        )
    return room if default is None else min(default, room)


@dataclass(frozen=True, slots=True)
class FittedPrompt:
    messages: list[dict[str, Any]]  # the system message first, then the history kept
    passages: int  # how many of the ranked passages the system message quotes
    level: int  # 0: the full system prompt; higher: the shorter fallbacks used
    dropped_history: int  # messages left out, oldest first
    answer_tokens: int  # the answer's budget


def fit_prompt(
    window: Window,
    system: Callable[[int, int], str],
    passages: int,
    history: Sequence[dict[str, Any]],
    answer_tokens: int,
    *,
    levels: int = 1,
    reserve: int = 0,
) -> FittedPrompt:
    """Fit a system prompt quoting ranked passages, and a conversation, into the window.

    `system(n, level)` writes the system message quoting the first n passages, at a level of
    detail (0 the fullest, up to `levels - 1`). `reserve` is kept free for what interceptors add
    later (the language instruction). Dropped, in order, until it fits: the oldest history (the
    last message always stays), passages from the lowest ranked, detail levels; then the
    answer's budget shrinks to :data:`MIN_ANSWER_TOKENS` and, last, the last message is cut.
    """
    kept = [dict(m) for m in history]
    budget = window.size - answer_tokens - reserve
    n, level = passages, 0

    def used() -> int:
        return window.prompt_tokens([{"role": "system", "content": system(n, level)}, *kept])

    while used() > budget and len(kept) > 1:
        kept.pop(0)
        # A conversation the model reads starts with a question, not with an answer.
        while len(kept) > 1 and kept[0].get("role") != "user":
            kept.pop(0)
    while used() > budget and n > 0:
        n -= 1
    while used() > budget and level < levels - 1:
        level += 1
    over = used() - budget
    if over > 0:
        answer_tokens = max(MIN_ANSWER_TOKENS, answer_tokens - over)
        budget = window.size - answer_tokens - reserve
    if used() > budget and kept:
        kept[-1] = _shortened(window, kept[-1], used() - budget)
    return FittedPrompt(
        [{"role": "system", "content": system(n, level)}, *kept], n, level, len(history) - len(kept), answer_tokens,
    )


def _shortened(window: Window, message: dict[str, Any], over: int) -> dict[str, Any]:
    """The message with its start cut until `over` tokens are gone (the question is at its end)."""
    text = _content_text(message.get("content"))
    while over > 0 and text:
        cut = max(1, len(text) * over // max(1, window.text_tokens(text)))
        before = window.text_tokens(text)
        text = text[cut:]
        over -= before - window.text_tokens(text)
    return {**message, "content": text}
