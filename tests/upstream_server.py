"""A real OpenAI-compatible HTTP server on loopback, for tests of the upstream backend.

It counts TCP connections and requests, so a test can prove zero bytes went to it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeUpstream:
    def __init__(self, models: list[str] | None = None, *, status: int = 200, delay: float = 0.0,
                 words: int = 5, malformed: bool = False, always_stream: bool = False,
                 texts: list[str] | None = None, usage: bool = True, tool_args: str | None = None,
                 api_key: str | None = None, text_field: str = "content",
                 call_extra: dict[str, Any] | None = None, chunk_extra: dict[str, Any] | None = None) -> None:
        """`texts`: choice k answers texts[k] word by word (default: "w0 w1 ..." for every choice);
        `usage=False`: like servers that report none; `tool_args`: choice 0 calls a tool with these
        arguments (streamed in 8-character pieces) instead of answering; `text_field`: the field the
        answers' text goes in ("refusal", "reasoning_content", "reasoning", or "function_call" for
        the legacy call's arguments; any other name too, a dotted one nested: "audio.transcript")
        instead of `content`; `call_extra`: keys added to the tool call's function (in its first
        piece); `chunk_extra`: keys added to every streamed chunk beside `choices`."""
        self.text_field = text_field
        self.call_extra = call_extra or {}
        self.chunk_extra = chunk_extra or {}
        self.api_key = api_key  # when set, a request without `Authorization: Bearer <api_key>` gets 401
        self.models = models or ["up-model"]
        self.texts = texts
        self.usage = usage
        self.tool_args = tool_args
        self.status = status
        self.delay = delay
        self.words = words
        self.malformed = malformed
        self.always_stream = always_stream
        self.connections = 0
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def _authorized(self) -> bool:
                if owner.api_key is None or self.headers.get("authorization") == f"Bearer {owner.api_key}":
                    return True
                self._json(401, {"error": {"message": "invalid api key", "type": "invalid_request_error",
                                           "param": None, "code": "invalid_api_key"}})
                return False

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                if self.path.endswith("/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in owner.models]})
                else:
                    self._json(404, {"error": {"message": "nope", "type": "x", "param": None, "code": None}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                if not self._authorized():
                    return
                if owner.status != 200:
                    self._json(owner.status, {"error": {"message": f"upstream says {owner.status}", "type": "x",
                                                        "param": None, "code": None}})
                    return
                if body.get("model") not in owner.models:
                    self._json(404, {"error": {"message": "model not found", "type": "x", "param": None,
                                               "code": None}})
                    return
                n = body.get("n", 1)
                pieces = [owner.pieces(k) for k in range(n)]
                spent = sum(len(p) for p in pieces)
                usage = {"prompt_tokens": 3, "completion_tokens": spent, "total_tokens": 3 + spent}
                if not body.get("stream") and not owner.always_stream:  # a plain `chat.completion`
                    if owner.malformed:
                        self._json(200, {"object": "chat.completion", "choices": "none"})
                        return
                    time.sleep(owner.delay * owner.words)  # a whole answer comes when it is done
                    answer: dict[str, Any] = {
                        "id": "up-1", "object": "chat.completion", "created": 1, "model": body["model"],
                        "choices": [owner.message(k, "".join(pieces[k])) for k in range(n)]}
                    if owner.usage:
                        answer["usage"] = usage
                    self._json(200, answer)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                base = {"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                        **owner.chunk_extra}
                for i in range(max(len(p) for p in pieces)):
                    if owner.delay:
                        time.sleep(owner.delay)
                    choices = [{"index": k, "delta": owner.delta(k, i, pieces[k][i]), "finish_reason": None}
                               for k in range(n) if i < len(pieces[k])]
                    self._event({**base, "choices": choices})
                self._event({**base, "choices": [{"index": k, "delta": {}, "finish_reason": owner.finish(k)}
                                                 for k in range(n)]})
                if owner.usage and (body.get("stream_options") or {}).get("include_usage"):
                    self._event({**base, "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _event(self, data: dict[str, Any]) -> None:
                self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
                self.wfile.flush()

            def _json(self, status: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        class CountingServer(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):  # type: ignore[no-untyped-def]
                conn = super().get_request()
                owner.connections += 1
                return conn

        self.server = CountingServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def calls_tool(self, choice: int) -> bool:
        return self.tool_args is not None and choice == 0

    def pieces(self, choice: int) -> list[str]:
        if self.calls_tool(choice):
            assert self.tool_args is not None
            return [self.tool_args[i:i + 8] for i in range(0, len(self.tool_args), 8)]
        if self.texts is not None:
            return re.findall(r"\S+\s*", self.texts[choice % len(self.texts)])
        return [f"w{i} " for i in range(self.words)]

    def finish(self, choice: int) -> str:
        return "tool_calls" if self.calls_tool(choice) else "stop"

    def delta(self, choice: int, i: int, piece: str) -> dict[str, Any]:
        if self.text_field == "function_call" and not self.calls_tool(choice):
            return {"function_call": {"arguments": piece, **({"name": "search"} if i == 0 else {})}}
        if not self.calls_tool(choice):
            return self._nested(piece)
        call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
        if i == 0:
            call.update(id="call_1", type="function")
            call["function"].update(name="search", **self.call_extra)
        return {"tool_calls": [call]}

    def _nested(self, text: str) -> dict[str, Any]:
        """``{text_field: text}``, a dotted name as nested objects."""
        *outer, last = self.text_field.split(".")
        value: dict[str, Any] = {last: text}
        for name in reversed(outer):
            value = {name: value}
        return value

    def message(self, choice: int, text: str) -> dict[str, Any]:
        if self.calls_tool(choice):
            message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "search", "arguments": text, **self.call_extra}}]}
        elif self.text_field == "function_call":
            message = {"role": "assistant", "content": None, "function_call": {"name": "search", "arguments": text}}
        else:
            message = {"role": "assistant", "content": None, "refusal": None, **self._nested(text)}
        return {"index": choice, "message": message, "finish_reason": self.finish(choice), "logprobs": None}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
