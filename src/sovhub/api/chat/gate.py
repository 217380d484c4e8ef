"""What of an answer may reach the client: output checks per choice, and the held-back tail.

Each choice of an answer (``n`` > 1 gives several) is checked on its own: its content, its
``refusal`` and reasoning (``reasoning_content``, ``reasoning``), each of its tool calls' arguments
and the legacy ``function_call``'s are separate texts (arguments twice: as the raw JSON, and as its
string values unwrapped, which is how a guard reads a sentence hidden in ``{"q": "..."}``), each
seen by the interceptors' ``check_output`` through its own copy of the request context (a guard
that remembers how far it read keeps one position per text). A choice's chunks are held until every
text they carry passed a check, and released together; checks run when a choice's unchecked text
reaches :data:`CHECK_EVERY` characters and, with ``final=True``, at the choice's own
``finish_reason`` (or when the stream ends without one). A choice that a check stops loses its held chunks and ends with
``finish_reason: "content_filter"``; the other choices go on. The client therefore never receives
text that no check has passed, at the cost of receiving it in steps of about CHECK_EVERY
characters (docs/safety.md). With no interceptor that checks output, chunks pass at once.

An upstream may put text where the protocol has none: a field under a name the gate does not know
(``delta.thinking``, ``delta.audio.transcript``, a key added to a tool call or its function, a key
beside ``delta``). Every string under such a name is a text of its own (by its path), checked like
the others, and the unknown names themselves are one more text, so nothing the client receives
escapes the checks; what the protocol names and no guard reads is an index, a role, a call's id and
type, a function's name and the logprobs. Fields of the chunk itself other than the hub's envelope
are not forwarded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ...backends.base import ChatChunk
from ...pipeline import ANSWER_TEXT_FIELDS, ChatContext, ChatInterceptor, OutputVerdict
from ...tool_arguments import argument_values

__all__ = ["CHECK_EVERY", "OutputGate", "checks_output"]

# Check a choice when its unchecked text grew by this many characters (and at its end): guards
# are cheap, but not free, and per-token checks would multiply their cost by the answer's length.
# It is also the step in which a streamed answer reaches the client.
CHECK_EVERY = 96

# The names of a choice's entry the gate reads or that carry no text a guard could judge; a string
# under any other name is checked as a text of its own.
_ENTRY_NAMES = frozenset({"index", "delta", "finish_reason", "logprobs"})
_DELTA_NAMES = frozenset({"role", "content", "tool_calls", "function_call", *ANSWER_TEXT_FIELDS})
_DELTA_TEXTS = frozenset({"role", "content", *ANSWER_TEXT_FIELDS})
_CALL_NAMES = frozenset({"index", "id", "type", "function"})
_FUNCTION_NAMES = frozenset({"name", "arguments"})
#: The key of the text that holds the unknown names themselves.
_NAMES = "names"


def _unknown_fields(entry: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(path, value)`` of each field of a choice's entry the protocol does not name (one level)."""
    for name, value in entry.items():
        if name not in _ENTRY_NAMES or (name in ("index", "finish_reason") and not _scalar(value)):
            yield name, value
    delta = entry.get("delta")
    if not isinstance(delta, dict):
        if delta is not None:
            yield "delta", delta  # not an object: all of it is unknown
        return
    for name, value in delta.items():
        # A text field that holds no text (an object, a list) is read like an unknown one.
        if name not in _DELTA_NAMES or (name in _DELTA_TEXTS and not isinstance(value, str | None)):
            yield f"delta.{name}", value
    calls = delta.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        yield "delta.tool_calls", calls
    for position, call in enumerate(calls if isinstance(calls, list) else []):
        if not isinstance(call, dict):
            yield f"delta.tool_calls.{position}", call
            continue
        at = f"delta.tool_calls.{call.get('index') if isinstance(call.get('index'), int) else position}"
        for name, value in call.items():
            if name not in _CALL_NAMES or (name != "function" and not _scalar(value)):
                yield f"{at}.{name}", value
        yield from _unknown_of_function(call.get("function"), f"{at}.function")
    yield from _unknown_of_function(delta.get("function_call"), "delta.function_call")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _unknown_of_function(function: Any, at: str) -> Iterator[tuple[str, Any]]:
    if isinstance(function, dict):
        for name, value in function.items():
            if name not in _FUNCTION_NAMES or not isinstance(value, str | None):
                yield f"{at}.{name}", value
    elif function is not None:
        yield at, function


def _leaves(path: str, value: Any) -> Iterator[tuple[str, str | None]]:
    """Every leaf under ``value`` with its path: its text for a string, None for another value.

    A loop, not recursion: an upstream's JSON may nest as deep as its parser allows.
    """
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        at, node = stack.pop()
        if isinstance(node, dict):
            stack.extend((f"{at}.{k}", v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((f"{at}.{i}", v) for i, v in reversed(list(enumerate(node))))
        else:
            yield at, node if isinstance(node, str) else None


def checks_output(interceptor: ChatInterceptor) -> bool:
    """Whether an interceptor judges answers (one that says nothing about them sets `checks_output = False`)."""
    return bool(getattr(interceptor, "checks_output", True))


@dataclass(slots=True)
class _Text:
    """One checked text of a choice: its content, refusal, reasoning, or one call's arguments."""

    ctx: ChatContext
    parts: list[str] = field(default_factory=list)
    length: int = 0
    checked: int = 0
    #: For a call's arguments: their string values, read again from the raw text before each check.
    unwrapped: _Text | None = None
    unwrapped_of: int = 0

    def add(self, piece: str) -> None:
        self.parts.append(piece)
        self.length += len(piece)

    def unwrap(self) -> None:
        if self.unwrapped is not None and self.length > self.unwrapped_of:
            values = argument_values(self.text)
            self.unwrapped.parts, self.unwrapped.length = [values], len(values)
            self.unwrapped_of = self.length

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass(slots=True)
class _Choice:
    index: int
    content: _Text
    #: Its other texts, by field ("refusal", "reasoning_content", "reasoning", "function_call",
    #: "tool:<index>", "field:<path>" for a name the protocol lacks, "names" for those names),
    #: each checked apart from the content.
    others: dict[str, _Text] = field(default_factory=dict)
    #: The paths of its fields under names the protocol lacks, seen so far.
    named: set[str] = field(default_factory=set)
    held: list[ChatChunk] = field(default_factory=list)
    finish: str | None = None
    stopped: OutputVerdict | None = None
    sent: list[str] = field(default_factory=list)
    # Everything the backend generated for this choice, checked or not, sent or not: what is
    # billed when the backend reports no usage.
    generated: list[str] = field(default_factory=list)

    def texts(self) -> list[_Text]:
        out = [self.content]
        for key in sorted(self.others):
            text = self.others[key]
            out.append(text)
            if text.unwrapped is not None and text.unwrapped.length:
                out.append(text.unwrapped)
        return out

    @property
    def unchecked(self) -> int:
        return sum(t.length - t.checked for t in self.texts())


class OutputGate:
    """Feeds backend chunks in, hands out the chunks the client may have (one choice each)."""

    def __init__(self, ctx: ChatContext, checkers: list[ChatInterceptor], envelope: dict[str, Any]) -> None:
        self.ctx = ctx
        self.checkers = checkers
        self.envelope = envelope
        self.n = int(ctx.params.get("n") or 1)
        self.choices: dict[int, _Choice] = {}

    def _choice(self, index: int) -> _Choice:
        choice = self.choices.get(index)
        if choice is None:
            # Choice 0's content is checked through the request's own context, as with n=1;
            # every other text gets a copy, so per-text state of a guard stays apart.
            ctx = self.ctx if index == 0 else self._copy()
            choice = self.choices[index] = _Choice(index, _Text(ctx))
        return choice

    def _copy(self) -> ChatContext:
        return dataclasses.replace(self.ctx, state=dict(self.ctx.state))

    @property
    def all_stopped(self) -> bool:
        return sum(1 for c in self.choices.values() if c.stopped is not None) >= self.n

    async def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        """Take one chunk from the backend; return what may be sent now."""
        # The hub's own envelope only: an upstream's other fields of the chunk are not forwarded.
        envelope = self.envelope
        touched: dict[int, _Choice] = {}
        for entry in chunk.get("choices") or []:
            choice = self._choice(int(entry.get("index") or 0))
            self._take(choice, entry)
            if choice.stopped is not None:
                continue  # still generated (and billed), never sent
            choice.held.append({**envelope, "choices": [entry]})
            if entry.get("finish_reason"):
                choice.finish = entry["finish_reason"]
            touched[choice.index] = choice
        out: list[ChatChunk] = []
        for choice in touched.values():
            final = choice.finish is not None
            # Nothing unchecked held (a role, an empty delta): no reason to wait.
            if not self.checkers or final or not choice.unchecked or choice.unchecked >= CHECK_EVERY:
                out.extend(await self._step(choice, final=final))
        return out

    async def end(self) -> list[ChatChunk]:
        """The stream ended: each choice still open gets its final check and what passes is sent."""
        out: list[ChatChunk] = []
        for choice in self.choices.values():
            if choice.stopped is None and choice.finish is None:
                out.extend(await self._step(choice, final=True))
        return out

    def _take(self, choice: _Choice, entry: dict[str, Any]) -> None:
        """Add an entry's texts to its choice: to what is checked while the choice is not stopped."""
        delta = entry.get("delta")
        if not isinstance(delta, dict):
            delta = {}
        content = delta.get("content")
        if isinstance(content, str) and content:
            choice.generated.append(content)
            if choice.stopped is None:
                choice.content.add(content)
        pieces: list[tuple[str, Any]] = [(name, delta.get(name)) for name in ANSWER_TEXT_FIELDS]
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                pieces.append((f"tool:{int(call.get('index') or 0)}", (call.get("function") or {}).get("arguments")))
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            pieces.append(("function_call", legacy.get("arguments")))
        for key, piece in pieces:
            if not isinstance(piece, str) or not piece:
                continue
            choice.generated.append(piece)
            if choice.stopped is None:
                text = choice.others.get(key)
                if text is None:
                    text = choice.others[key] = _Text(self._copy())
                    if key not in ANSWER_TEXT_FIELDS:  # a call's arguments
                        text.unwrapped = _Text(self._copy())
                text.add(piece)
        for top, value in _unknown_fields(entry):
            for path, piece in _leaves(top, value):
                self._take_unknown(choice, path, piece)

    def _take_unknown(self, choice: _Choice, path: str, piece: str | None) -> None:
        """A leaf under a name the protocol does not have: its text and its path are checked."""
        if piece:
            choice.generated.append(piece)
        if choice.stopped is not None:
            return
        if path not in choice.named:
            choice.named.add(path)
            names = choice.others.get(_NAMES)
            if names is None:
                names = choice.others[_NAMES] = _Text(self._copy())
            names.add(path.replace(".", " ").replace("_", " ") + "\n")
        if piece:
            key = f"field:{path}"
            text = choice.others.get(key)
            if text is None:
                text = choice.others[key] = _Text(self._copy())
            text.add(piece)

    async def _step(self, choice: _Choice, *, final: bool) -> list[ChatChunk]:
        for text in choice.others.values():
            text.unwrap()
        for text in choice.texts():
            if not (final or text.length > text.checked):
                continue
            text.checked = text.length
            verdict = await self._check(text, final)
            if verdict is not None:
                choice.stopped = verdict
                choice.held.clear()
                self.ctx.state.setdefault("output_verdict", verdict)
                return [{**self.envelope, "choices": [
                    {"index": choice.index, "delta": {}, "finish_reason": "content_filter", "logprobs": None}]}]
        released, choice.held = choice.held, []
        for chunk in released:
            for entry in chunk["choices"]:
                delta = entry.get("delta")
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str):
                    choice.sent.append(content)
        return released

    async def _check(self, text: _Text, final: bool) -> OutputVerdict | None:
        whole = text.text
        for interceptor in self.checkers:
            verdict = await interceptor.check_output(text.ctx, whole, final)
            if verdict is not None:
                return verdict
        return None

    # --- what the answer was, for metering and the interceptors' `after` ---

    def generated(self) -> str:
        return "".join(part for i in sorted(self.choices) for part in self.choices[i].generated)

    def sent_text(self) -> str:
        """What the client received: choice 0's content, or each choice's separated by a blank line."""
        return "\n\n".join("".join(self.choices[i].sent) for i in sorted(self.choices))

    def finish_reason(self) -> str | None:
        if any(c.stopped is not None for c in self.choices.values()):
            return "content_filter"
        first = self.choices.get(0)
        return first.finish if first is not None else None
