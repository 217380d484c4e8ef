"""One generation on a llama.cpp context, token by token: stop strings, grammar, log probabilities.

Driven here rather than through llama-cpp-python's ``create_chat_completion`` because that one
gives log probabilities only for a model loaded with ``logits_all`` (a full logits row for every
position of the context: ~400 MB for a 2,048-token context over a 49k vocabulary). The row the
next token is sampled from is in the context anyway; its log-softmax is the token's log
probability, as OpenAI reports it (of the model's distribution, before the grammar narrows it).
"""

from __future__ import annotations

import codecs
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ContextLengthExceeded
from .base import CancelToken

__all__ = ["Decoded", "Decoder"]


@dataclass(slots=True)
class Decoded:
    """Text that may be sent now, with the log probabilities of the tokens that made it."""

    text: str
    logprobs: list[dict[str, Any]] = field(default_factory=list)


class Decoder:
    """Generates one answer from prompt tokens; iterate it for :class:`Decoded` pieces.

    ``finish`` is "stop" (end of turn or a stop string), "length" (max_tokens) or "cancelled";
    ``tokens`` counts the answer's tokens (the end-of-turn token is not part of the answer).
    """

    def __init__(
        self, llm: Any, prompt: list[int], *, max_tokens: int | None, temperature: float, top_p: float,
        stop: list[str], seed: int | None, presence_penalty: float = 0.0, frequency_penalty: float = 0.0,
        grammar: str | None = None, top_logprobs: int | None = None, cancel: CancelToken | None = None,
    ) -> None:
        self.llm = llm
        self.prompt = prompt
        room = int(llm.n_ctx()) - len(prompt)
        if room <= 0:
            raise ContextLengthExceeded(
                f"the prompt takes {len(prompt)} tokens, the model's context holds {llm.n_ctx()}", param="messages")
        self.max_tokens = min(max_tokens or room, room)
        self.temperature = temperature
        self.top_p = top_p
        self.stop = [s for s in stop if s]
        self.seed = seed
        self.presence_penalty = presence_penalty
        self.frequency_penalty = frequency_penalty
        self.grammar = grammar
        self.top_logprobs = top_logprobs
        self.cancel = cancel or CancelToken()
        self.finish: str | None = None
        self.tokens = 0
        self.text = ""

    def __iter__(self) -> Iterator[Decoded]:
        import llama_cpp
        import numpy as np
        from llama_cpp.llama_grammar import LlamaGrammar

        llm = self.llm
        vocab = llm._model.vocab
        llm.set_seed(self.seed if self.seed is not None else random.getrandbits(32))
        if self.seed is not None:
            # The prompt evaluated afresh, not continued from the context's cache: a prefix reused
            # from another request is evaluated in other batch sizes, whose logits differ in the last
            # bits, and a sampled answer would then differ for the same seed.
            llm.reset()
        grammar = LlamaGrammar.from_string(self.grammar) if self.grammar else None
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        sent = 0
        pending: list[dict[str, Any]] = []
        longest_stop = max((len(s) for s in self.stop), default=0)
        self.finish = "length"
        for token in llm.generate(
            self.prompt, temp=self.temperature, top_p=self.top_p, presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty, grammar=grammar,
        ):
            if self.cancel.cancelled:
                self.finish = "cancelled"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                self.finish = "stop"
                break
            self.tokens += 1
            piece = llm.detokenize([token], prev_tokens=self.prompt)
            if self.top_logprobs is not None:
                pending.append(self._logprob(np, token, piece))
            self.text += utf8.decode(piece)
            cut = self._stop_at(max(0, sent - longest_stop))
            if cut is not None:
                self.text = self.text[:cut]
                self.finish = "stop"
                break
            ready = len(self.text) - self._held()
            if ready > sent:
                yield Decoded(self.text[sent:ready], pending)
                sent, pending = ready, []
            if self.tokens >= self.max_tokens:
                break
        self.text += utf8.decode(b"", final=True) if self.finish == "length" else ""
        if len(self.text) > sent or pending:
            yield Decoded(self.text[sent:], pending)

    def _stop_at(self, start: int) -> int | None:
        found = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def _held(self) -> int:
        """Characters at the end that may begin a stop string: not sent until it is known."""
        held = 0
        for stop in self.stop:
            for k in range(min(len(stop) - 1, len(self.text)), held, -1):
                if self.text.endswith(stop[:k]):
                    held = k
                    break
        return held

    def _logprob(self, np: Any, token: int, piece: bytes) -> dict[str, Any]:
        llm = self.llm
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float64)
        peak = logits.max()
        logprobs = logits - (peak + np.log(np.exp(logits - peak).sum()))
        entry = _entry(piece, float(logprobs[token]))
        top: list[dict[str, Any]] = []
        if self.top_logprobs:
            best = np.argpartition(-logprobs, self.top_logprobs)[: self.top_logprobs]
            for other in sorted(best.tolist(), key=lambda t: -logprobs[t]):
                top.append(_entry(llm.detokenize([other], prev_tokens=self.prompt), float(logprobs[other])))
        entry["top_logprobs"] = top
        return entry


def _entry(piece: bytes, logprob: float) -> dict[str, Any]:
    return {"token": piece.decode("utf-8", errors="replace"), "logprob": max(logprob, -9999.0), "bytes": list(piece)}
