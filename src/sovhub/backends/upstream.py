"""The `openai` backend: any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, TGI...).

A streaming request goes upstream as a stream (with `include_usage`), and chunks are handed on as
they arrive: nothing is buffered. A non-streaming one goes upstream as it came (one JSON body is
far cheaper to relay than a chunk per token) and comes back to the service as a single chunk. The
connection comes from the egress-guarded aiohttp session (the :class:`~sovhub.egress.Egress` service's ``backend``).

A streamed answer has two read timeouts, each what an interactive client tolerates: until its
first chunk (`upstream_first_byte_timeout`: the prompt's evaluation included; then 503 and the
next backend) and between chunks (`upstream_chunk_timeout`: then the stream ends with an in-band
error). A non-streamed one comes whole, within `upstream_read_timeout`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from ..egress import Egress, GuardedSession
from ..errors import (
    BackendUnavailable,
    ConfigError,
    EgressRefused,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    SovhubError,
    UpstreamFailed,
)
from ..hookspecs import hookimpl
from .base import Backend, BackendConfig, BackendFactory, CancelToken, ChatChunk

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["UpstreamBackend"]

log = logging.getLogger("sovhub.backends.upstream")


class UpstreamBackend(Backend):
    max_n = 128
    extra_params = frozenset({"*"})

    def __init__(self, config: BackendConfig, session_getter: Callable[[], GuardedSession], *,
                 first_byte_timeout: float = 30.0, chunk_timeout: float = 15.0) -> None:
        super().__init__(config)
        if not config.url:
            raise ConfigError(f"backend {config.name}: an upstream needs a URL")
        self.base = config.url.rstrip("/")
        self._session = session_getter
        self.first_byte_timeout = first_byte_timeout
        self.chunk_timeout = chunk_timeout

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        return headers

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        if self.config.models:
            return
        try:
            async with self._session().request(
                "GET", f"{self.base}/models", headers=self._headers(), timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                resp.raise_for_status()
                data = await resp.json(content_type=None)
            self.config.models = [m["id"] for m in data.get("data", [])]
            if progress:
                progress(f"backend {self.name}: {len(self.config.models)} models at {self.base}")
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, SovhubError) as exc:
            log.warning("backend %s: cannot list models at %s: %s", self.name, self.base, exc)

    async def probe(self, timeout: float) -> bool | None:
        # Refused, reset or 5xx: dead now. No answer in time: unknown (llama.cpp's Python server, for one,
        # answers /models only between generations).
        try:
            async with self._session().request(
                "GET", f"{self.base}/models", headers=self._headers(), timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                await resp.read()
                return bool(resp.status < 500)
        except TimeoutError:
            return None
        except (aiohttp.ClientError, OSError, SovhubError):
            return False

    async def chat_stream(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], cancel: CancelToken
    ) -> AsyncIterator[ChatChunk]:
        streaming = params.get("_stream", True)
        body = {k: v for k, v in params.items() if not k.startswith("_")}
        body.update(model=model, messages=messages, stream=streaming)
        if streaming:
            body["stream_options"] = {"include_usage": True}
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        # Streamed: one deadline for the headers and the first chunk, then one per chunk.
        first_by = asyncio.get_running_loop().time() + self.first_byte_timeout if streaming else None
        try:
            async with asyncio.timeout_at(first_by):
                response = await self._session().request(
                    "POST", f"{self.base}/chat/completions", data=payload, headers=self._headers()
                ).__aenter__()
        except EgressRefused:
            raise
        except TimeoutError as exc:
            raise BackendUnavailable(f"backend {self.name} timed out before answering") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise BackendUnavailable(f"backend {self.name} unreachable: {type(exc).__name__}") from exc
        sent_any = False
        try:
            if response.status >= 400:
                raise _error_from(self.name, response.status, await response.read(), response.headers)
            if not streaming and response.content_type != "text/event-stream":
                # The client waits for the whole answer anyway: one JSON body instead of a chunk
                # per token, handed on as one chunk so the service treats both paths alike. (A
                # server that streams although asked not to is read as the stream it sent.)
                yield _as_chunk(self.name, await response.read())
                return
            content, finished = response.content, False
            while True:
                async with asyncio.timeout_at(first_by) if not sent_any else asyncio.timeout(self.chunk_timeout):
                    raw = await content.readline()
                if cancel.cancelled:
                    break
                if not raw:
                    if finished:
                        break
                    # The connection ended before [DONE] or any finish_reason: the server died.
                    raise ConnectionResetError("closed before the end of the stream")
                if not raw.startswith(b"data:"):
                    continue
                data = raw[5:].strip()
                if data == b"[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError as exc:
                    raise UpstreamFailed(f"backend {self.name} sent a malformed chunk") from exc
                if "error" in chunk:
                    raise UpstreamFailed(f"backend {self.name}: {chunk['error']}")
                sent_any = True
                finished = finished or any(c.get("finish_reason") for c in chunk.get("choices") or ())
                yield chunk
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else "dropped the connection"
            if not sent_any:  # nothing reached the client yet: the router may retry elsewhere
                raise BackendUnavailable(f"backend {self.name} {what} before answering") from exc
            raise UpstreamFailed(f"backend {self.name} {what} mid-stream") from exc
        finally:
            response.release()


def _as_chunk(name: str, raw: bytes) -> ChatChunk:
    """A `chat.completion` body as one `chat.completion.chunk` carrying the whole answer and usage."""
    try:
        data = json.loads(raw)
        choices = [
            {
                "index": c.get("index", 0),
                "delta": {k: v for k, v in (c.get("message") or {}).items() if v is not None},
                "finish_reason": c.get("finish_reason"),
                "logprobs": c.get("logprobs"),
            }
            for c in data["choices"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UpstreamFailed(f"backend {name} sent a malformed completion") from exc
    chunk: ChatChunk = {"object": "chat.completion.chunk", "choices": choices}
    if isinstance(data.get("usage"), dict):
        chunk["usage"] = data["usage"]
    return chunk


def _error_from(name: str, status: int, raw: bytes, headers: Any) -> SovhubError:
    try:
        message = json.loads(raw)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = raw[:300].decode("utf-8", "replace") or str(status)
    if status == 404:
        return ModelNotFound(f"backend {name}: {message}")
    if status == 429:
        try:
            retry = float(headers.get("retry-after", "1") or 1)
        except ValueError:
            retry = 1.0
        return RateLimited(f"backend {name} is rate limited: {message}", retry_after=retry)
    if status in (400, 422):
        return InvalidRequest(f"backend {name} refused the request: {message}")
    if status >= 500:
        return BackendUnavailable(f"backend {name} failed with {status}: {message}")
    return UpstreamFailed(f"backend {name} answered {status}: {message}")


def _factory(hub: Hub, config: BackendConfig) -> Backend:
    egress = hub.services.get(Egress)
    return UpstreamBackend(config, lambda: egress.backend, first_byte_timeout=hub.settings.upstream_first_byte_timeout,
                           chunk_timeout=hub.settings.upstream_chunk_timeout)


@hookimpl
def sovhub_backend_types() -> dict[str, BackendFactory]:
    return {"openai": _factory}
