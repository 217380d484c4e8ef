"""One chat generation on a llama.cpp model: the prompt from the chat template, each choice decoded into chunks.

Shared by the in-process embedded backend (on its generation thread) and the batch process
(:mod:`.batch_child`, its own llama.cpp instance of the same GGUF): the same code makes the same
answer for the same seed in both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .base import CancelToken, ChatChunk
from .constrain import Constraint
from .decoding import Decoded, Decoder
from .toolcalls import parse_calls, render_messages

__all__ = ["Counted", "chat_formatter", "generate"]


@dataclass(slots=True)
class Counted:
    """Tokens a generation evaluated so far: read however it ended (finished, cut, cancelled, failed)."""

    prompt: int = 0
    completion: int = 0

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt, "completion_tokens": self.completion,
                "total_tokens": self.prompt + self.completion}


def generate(llm: Any, formatter: Any, messages: list[dict[str, Any]], params: dict[str, Any],
             constraint: Constraint, cancel: CancelToken, emit: Callable[[ChatChunk], None],
             counted: Counted) -> None:
    """Render, tokenize and answer every choice, emitting chunks; ``counted`` follows as it goes."""
    # Tools are offered only where the grammar lets the model call them.
    offer = constraint.mode if constraint.mode in ("call", "either") else "none"
    formatted = formatter(messages=render_messages(messages, constraint.tools, offer))
    prompt = llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
    counted.prompt = len(prompt)
    for index in range(int(params.get("n") or 1)):
        decoder = _decoder(llm, prompt, params, constraint, index, cancel)
        done = counted.completion

        def counting(chunk: ChatChunk, decoder: Decoder = decoder, done: int = done) -> None:
            counted.completion = done + decoder.tokens
            emit(chunk)

        try:
            _answer(decoder, index, constraint, params.get("logprobs") is True, counting)
        finally:
            counted.completion = done + decoder.tokens
        if cancel.cancelled:
            break


def _decoder(llm: Any, prompt: list[int], params: dict[str, Any], constraint: Constraint, index: int,
             cancel: CancelToken) -> Decoder:
    stop = params.get("stop") or []
    seed = params.get("seed")
    return Decoder(
        llm, prompt, max_tokens=params.get("max_tokens"), temperature=float(params.get("temperature", 0.8)),
        top_p=float(params.get("top_p", 0.95)), stop=[stop] if isinstance(stop, str) else list(stop),
        # Each choice its own draw, reproducible: choice k of seed s is drawn with seed s + k.
        seed=None if seed is None else int(seed) + index,
        presence_penalty=float(params.get("presence_penalty", 0.0)),
        frequency_penalty=float(params.get("frequency_penalty", 0.0)), grammar=constraint.grammar,
        top_logprobs=int(params.get("top_logprobs") or 0) if params.get("logprobs") is True else None,
        cancel=cancel,
    )


def _answer(decoder: Decoder, index: int, constraint: Constraint, logprobs: bool,
            emit: Callable[[ChatChunk], None]) -> None:
    """Run one choice's generation, emitting it as chunks: text as it comes, each tool call once complete."""

    def chunk(delta: dict[str, Any], finish: str | None = None, entries: list[dict[str, Any]] | None = None) -> None:
        emit({"object": "chat.completion.chunk", "created": int(time.time()), "choices": [{
            "index": index, "delta": delta, "finish_reason": finish,
            "logprobs": {"content": entries, "refusal": None} if logprobs and entries is not None else None}]})

    chunk({"role": "assistant", "content": ""})
    # "call": only calls; "either": the first character says (the grammar starts a call with "<").
    buffering = constraint.mode == "call"
    deciding = constraint.mode == "either"
    held: list[Decoded] = []
    for piece in decoder:
        if deciding and decoder.text:
            deciding = False
            buffering = decoder.text.startswith("<")
            if not buffering:
                for earlier in held:
                    chunk({"content": earlier.text}, entries=earlier.logprobs)
                held = []
        if buffering or deciding:
            held.append(piece)
        else:
            chunk({"content": piece.text}, entries=piece.logprobs)
    if decoder.finish == "cancelled":
        return
    # Cut by max_tokens in a later call: the calls written in full are the answer.
    calls = parse_calls(decoder.text, complete_only=decoder.finish == "length") if buffering else None
    if calls is not None:
        for number, call in enumerate(calls):
            function = call["function"]
            # One delta per call, its name with its arguments: the output checks then hold the call
            # as a whole, and a call they stop never reaches the client even by its name.
            chunk({"tool_calls": [{"index": number, "id": call["id"], "type": "function",
                                   "function": {"name": function["name"], "arguments": function["arguments"]}}]})
        chunk({}, "tool_calls")
        return
    for earlier in held:  # cut by max_tokens inside a call: what was written, as text
        chunk({"content": earlier.text}, entries=earlier.logprobs)
    chunk({}, decoder.finish)


def chat_formatter(llm: Any) -> Any:
    """The model's own chat template (from the GGUF), rendering messages to the prompt text."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    eos = llm.token_eos()
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise ConfigError("the model has no chat template in its GGUF metadata")
    return Jinja2ChatFormatter(template=template, eos_token=llm._model.token_get_text(eos), bos_token="",
                               stop_token_ids=[eos])
