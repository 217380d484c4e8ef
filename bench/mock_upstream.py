"""A minimal, fast OpenAI-compatible upstream for the gateway benchmark (loopback only).

It answers from memory, so that what a benchmark measures is the gateway in front of it:

- `GET /v1/models` -> one model (`mock-model` unless `--model`);
- `POST /v1/chat/completions` -> a fixed `chat.completion`, or with `"stream": true` a short SSE
  stream (role, three content deltas, finish, a usage chunk when `stream_options.include_usage`,
  `[DONE]`), sent in one write with chunked transfer encoding;
- `GET /mock/stats` -> `{"connections": N, "requests": M}` since start (a gateway that reuses its
  upstream connections opens few; one that reconnects per request opens about as many as requests);
- anything else -> 404 in OpenAI's error envelope.

It is a raw asyncio protocol with httptools' parser (no framework), HTTP/1.1 keep-alive, on
uvloop when available. Run it alone with `python bench/mock_upstream.py --port 9100`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httptools

T = TypeVar("T")

__all__ = ["run_fast", "serve"]

_WORDS = ["Hello", " from", " the mock."]


def _completion(model: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(_WORDS), "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
        },
        separators=(",", ":"),
    ).encode()


def _sse(model: str, include_usage: bool) -> bytes:
    base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    deltas: list[dict[str, object]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": w} for w in _WORDS]
    events = []
    for delta in deltas:
        events.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}]})
    if include_usage:
        events.append({**base, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 4,
                                                         "total_tokens": 16}})
    body = b"".join(b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


def _response(status: int, body: bytes, content_type: bytes, *, chunked: bool = False) -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"OK")
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\n" % (status, reason, content_type)
    if chunked:
        # One chunk for the whole stream, then the terminator: a real chunked SSE response.
        return head + b"transfer-encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


_STATS = {"connections": 0, "requests": 0}


class _MockProtocol(asyncio.Protocol):
    def __init__(self, model: str) -> None:
        self.model = model
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        # The answers are the same for every request: build them once per connection.
        self.models = _response(
            200,
            json.dumps({"object": "list", "data": [{"id": model, "object": "model", "created": 0,
                                                    "owned_by": "mock"}]}).encode(),
            b"application/json",
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _STATS["connections"] += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(_response(400, b'{"error":{"message":"bad request"}}', b"application/json"))
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        _STATS["requests"] += 1
        if method == b"GET" and path == b"/mock/stats":
            self.transport.write(_response(200, json.dumps(_STATS).encode(), b"application/json"))
        elif method == b"GET" and path == b"/v1/models":
            self.transport.write(self.models)
        elif method == b"POST" and path == b"/v1/chat/completions":
            try:
                req = json.loads(b"".join(self.body) or b"{}")
            except ValueError:
                req = {}
            model = str(req.get("model") or self.model)
            if req.get("stream"):
                include = bool((req.get("stream_options") or {}).get("include_usage"))
                self.transport.write(_response(200, _sse(model, include), b"text/event-stream", chunked=True))
            else:
                self.transport.write(_response(200, _completion(model), b"application/json"))
        else:
            self.transport.write(
                _response(404, b'{"error":{"message":"not found","type":"invalid_request_error"}}',
                          b"application/json")
            )
        if not self.parser.should_keep_alive():
            self.transport.close()


def run_fast(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (it is with uvicorn[standard]), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def serve(host: str, port: int, model: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _MockProtocol(model), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--model", default="mock-model")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the mock serves loopback only")
    try:
        run_fast(serve(args.host, args.port, args.model))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
