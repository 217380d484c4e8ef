"""A fake backend for unit tests of the HTTP layer (the contract suite uses the real model)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

from sovhub.backends.base import Backend, BackendConfig, CancelToken, ChatChunk
from sovhub.errors import BackendUnavailable, UpstreamFailed
from sovhub.hookspecs import hookimpl


class EchoBackend(Backend):
    """Answers with the last user message, word by word.

    Options: `fail` (an outage before the first chunk), `delay` (seconds per word), `first_delay` (seconds
    before the first chunk: a request still waiting for its backend), `fail_after`
    (dies mid-answer after that many words), `usage` (false: reports no usage, as some servers),
    `tool_call` (true: the words come back as the streamed arguments of a call to `echo`),
    `tokenizer: "chars"` (count_tokens counts one token per character, a dense script's tokenizer),
    `answers` (a list of recorded answers: call N answers the Nth, word by word; echoes once they run out).
    """

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.fail_before_first = bool(config.options.get("fail"))
        self.delay = float(config.options.get("delay", 0.0))
        self.first_delay = float(config.options.get("first_delay", 0.0))
        self.fail_after = config.options.get("fail_after")
        self.reports_usage = bool(config.options.get("usage", True))
        self.tool_call = bool(config.options.get("tool_call"))
        self.tokenizer = config.options.get("tokenizer")
        self.answers = [str(a) for a in config.options.get("answers", [])]
        self.calls = 0
        self.cancelled = 0
        self.yielded = 0
        # Every message list this backend was sent, as it received it (what "the model saw").
        self.received: list[list[dict[str, Any]]] = []

    def count_tokens(self, text: str) -> int | None:
        return len(text) if self.tokenizer == "chars" else None

    async def chat_stream(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], cancel: CancelToken
    ) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        self.received.append(copy.deepcopy(messages))
        if self.fail_before_first:
            raise BackendUnavailable(f"{self.name} is down")
        last = next((m for m in reversed(messages) if m["role"] == "user"), {"content": ""})
        content = self.answers[self.calls - 1] if self.calls <= len(self.answers) else last.get("content") or ""
        words = str(content).split() or ["(empty)"]
        limit = params.get("max_tokens") or 1000
        words = words[:limit]
        if self.first_delay:
            await asyncio.sleep(self.first_delay)
        yield {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        for i, word in enumerate(words):
            if cancel.cancelled:
                self.cancelled += 1
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail_after is not None and i >= int(self.fail_after):
                raise UpstreamFailed(f"{self.name} dropped the connection mid-stream")
            self.yielded += 1
            piece = word + (" " if i < len(words) - 1 else "")
            delta: dict[str, Any] = {"content": piece}
            if self.tool_call:
                call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
                if i == 0:
                    call.update(id="call_echo", type="function", function={"name": "echo", "arguments": piece})
                delta = {"tool_calls": [call]}
            yield {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        finish = "length" if len(str(content).split()) > limit else "tool_calls" if self.tool_call else "stop"
        yield {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        if not self.reports_usage:
            return
        yield {"choices": [], "usage": {"prompt_tokens": len(str(content).split()), "completion_tokens": len(words),
                                         "total_tokens": len(str(content).split()) + len(words)}}


class FakePlugin:
    def __init__(self) -> None:
        self.instances: dict[str, EchoBackend] = {}

    @hookimpl
    def sovhub_backend_types(self) -> dict[str, Any]:
        def factory(hub: Any, config: BackendConfig) -> Backend:
            backend = EchoBackend(config)
            self.instances[config.name] = backend
            return backend

        return {"fake": factory}
