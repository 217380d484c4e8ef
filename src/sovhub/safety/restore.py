"""Puts pseudonymised values back into chat answers on their way to the same caller.

The model only ever saw ``<IBAN_CODE_1>``; the person should read their own IBAN. The core's
interceptors can stop an answer but not rewrite it, so this pure ASGI middleware rewrites the
response of ``POST /v1/chat/completions`` when (and only when) the request's vault is registered
under its request id *and* the caller that made it: a client replaying another's
``x-request-id`` finds nothing. Streams are rewritten event by event, holding back a tail that
could be the start of a placeholder split across chunks; JSON bodies are rewritten whole.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .fields import ANSWER_TEXT_FIELDS, message_fields
from .pii import StreamRestorer, Vault
from .pipeline import SafetyRuntime

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["RestoreMiddleware"]

_PATH = "/v1/chat/completions"


class RestoreMiddleware:
    def __init__(self, app: ASGIApp, hub: Hub) -> None:
        self.app = app
        self.runtime = hub.services.get(SafetyRuntime)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != _PATH:
            await self.app(scope, receive, send)
            return
        session = _Rewrite(scope, send, self.runtime)
        await self.app(scope, receive, session.send)


class _Rewrite:
    def __init__(self, scope: Scope, send: Send, runtime: SafetyRuntime) -> None:
        self.scope = scope
        self.downstream = send
        self.runtime = runtime
        self.vault: Vault | None = None
        self.mode = "pass"
        self.start: Message | None = None
        self.buffer = b""
        self.restorers: dict[tuple[str | int, ...], StreamRestorer] = {}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            return await self._start(message)
        if message["type"] != "http.response.body" or self.mode == "pass":
            return await self.downstream(message)
        body = self.buffer + message.get("body", b"")
        more = bool(message.get("more_body", False))
        if self.mode == "json":
            self.buffer = body
            if more:
                return None
            out = self._json(body)
            assert self.start is not None
            headers = [(k, v) for k, v in self.start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(out)).encode()))
            await self.downstream({**self.start, "headers": headers})
            return await self.downstream({"type": "http.response.body", "body": out, "more_body": False})
        events, _, self.buffer = body.rpartition(b"\n\n")
        out = b"".join(self._event(e) + b"\n\n" for e in events.split(b"\n\n")) if events else b""
        if not more and self.buffer:
            out += self.buffer
            self.buffer = b""
        await self.downstream({"type": "http.response.body", "body": out, "more_body": more})

    async def _start(self, message: Message) -> None:
        state = self.scope.get("state", {})
        runtime = self.runtime
        if message.get("status") == 200:
            key = runtime.live_key(str(state.get("request_id", "")), state.get("principal"))
            self.vault = runtime.live.pop(key)
        if self.vault is None or not len(self.vault):
            self.mode = "pass"
            return await self.downstream(message)
        content_type = dict(message.get("headers", [])).get(b"content-type", b"")
        if content_type.startswith(b"text/event-stream"):
            self.mode = "sse"
            return await self.downstream(message)
        self.mode = "json"
        self.start = message  # sent with the rewritten body: its length changes
        return None

    def _json(self, body: bytes) -> bytes:
        assert self.vault is not None
        try:
            data = json.loads(body)
        except ValueError:
            return body
        for choice in data.get("choices", []) if isinstance(data, dict) else []:
            message = choice.get("message") or {}
            if isinstance(message.get("content"), str):
                message["content"] = self.vault.restore(message["content"])
            for f in message_fields(message):
                if f.redactable:
                    _put(message, f.path, self.vault.restore(f.text))
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    def _event(self, event: bytes) -> bytes:
        assert self.vault is not None
        if not event.startswith(b"data: ") or event == b"data: [DONE]":
            return event
        try:
            data = json.loads(event[6:])
        except ValueError:
            return event
        if not isinstance(data, dict):
            return event
        for choice in data.get("choices", []):
            index = int(choice.get("index", 0))
            delta = choice.get("delta") or {}
            # Each streamed text of a choice has its own restorer: a placeholder split across
            # chunks is split inside one field, and a held tail belongs to that field.
            slots: dict[tuple[str | int, ...], dict[str, Any]] = {}
            for name in ("content", *ANSWER_TEXT_FIELDS):
                slots[(name,)] = delta
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict) and isinstance(call.get("function"), dict):
                    slots[("tool_calls", int(call.get("index") or 0))] = call["function"]
            if isinstance(delta.get("function_call"), dict):
                slots[("function_call",)] = delta["function_call"]
            finished = bool(choice.get("finish_reason"))
            for key, holder in slots.items():
                name = key[0] if len(key) == 1 and key[0] in ("content", *ANSWER_TEXT_FIELDS) else "arguments"
                value = holder.get(name)
                if not isinstance(value, str):
                    continue
                holder[name] = self._restorer(index, key).feed(value)
            if finished:
                self._flush(index, delta)
            if delta:
                choice["delta"] = delta
        return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    def _restorer(self, index: int, key: tuple[str | int, ...]) -> StreamRestorer:
        assert self.vault is not None
        return self.restorers.setdefault((index, *key), StreamRestorer(self.vault))

    def _flush(self, index: int, delta: dict[str, Any]) -> None:
        """At a choice's end, what each of its restorers still holds goes out in the final delta."""
        for key, restorer in list(self.restorers.items()):
            if key[0] != index:
                continue
            rest = restorer.flush()
            if not rest:
                continue
            field = key[1:]
            if field[0] == "tool_calls":
                delta.setdefault("tool_calls", []).append({"index": field[1], "function": {"arguments": rest}})
            elif field[0] == "function_call":
                delta.setdefault("function_call", {})["arguments"] = rest
            else:
                name = str(field[0])
                delta[name] = (delta.get(name) or "") + rest


def _put(message: dict[str, Any], path: tuple[str | int, ...], text: str) -> None:
    node: Any = message
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = text
