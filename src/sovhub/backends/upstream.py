"""The `openai` backend: any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, TGI...).

Requests always go upstream as streams (with `include_usage`), and chunks are handed on as they
arrive: nothing is buffered, and non-streaming answers are assembled by the chat service.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx

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

    def __init__(self, config: BackendConfig, client_getter: Callable[[], httpx.AsyncClient]) -> None:
        super().__init__(config)
        if not config.url:
            raise ConfigError(f"backend {config.name}: an upstream needs a URL")
        self.base = config.url.rstrip("/")
        self._client = client_getter

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        return headers

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        if self.config.models:
            return
        try:
            resp = await self._client().get(f"{self.base}/models", headers=self._headers(), timeout=5.0)
            resp.raise_for_status()
            self.config.models = [m["id"] for m in resp.json().get("data", [])]
            if progress:
                progress(f"backend {self.name}: {len(self.config.models)} models at {self.base}")
        except (httpx.HTTPError, ValueError, KeyError, SovhubError) as exc:
            log.warning("backend %s: cannot list models at %s: %s", self.name, self.base, exc)

    async def chat_stream(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], cancel: CancelToken
    ) -> AsyncIterator[ChatChunk]:
        body = {k: v for k, v in params.items() if not k.startswith("_")}
        body.update(model=model, messages=messages, stream=True)
        body["stream_options"] = {"include_usage": True}
        client = self._client()
        request = client.build_request("POST", f"{self.base}/chat/completions", json=body, headers=self._headers())
        try:
            response = await client.send(request, stream=True)
        except EgressRefused:
            raise
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise BackendUnavailable(f"backend {self.name} unreachable: {type(exc).__name__}") from exc
        sent_any = False
        try:
            if response.status_code >= 400:
                await response.aread()
                raise _error_from(self.name, response)
            async for line in response.aiter_lines():
                if cancel.cancelled:
                    break
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError as exc:
                    raise UpstreamFailed(f"backend {self.name} sent a malformed chunk") from exc
                if "error" in chunk:
                    raise UpstreamFailed(f"backend {self.name}: {chunk['error']}")
                sent_any = True
                yield chunk
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            what = "timed out" if isinstance(exc, httpx.TimeoutException) else "dropped the connection"
            if not sent_any:  # nothing reached the client yet: the router may retry elsewhere
                raise BackendUnavailable(f"backend {self.name} {what} before answering") from exc
            raise UpstreamFailed(f"backend {self.name} {what} mid-stream") from exc
        finally:
            await response.aclose()


def _error_from(name: str, response: httpx.Response) -> SovhubError:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300] or response.reason_phrase
    status = response.status_code
    if status == 404:
        return ModelNotFound(f"backend {name}: {message}")
    if status == 429:
        retry = float(response.headers.get("retry-after", "1") or 1)
        return RateLimited(f"backend {name} is rate limited: {message}", retry_after=retry)
    if status in (400, 422):
        return InvalidRequest(f"backend {name} refused the request: {message}")
    if status >= 500:
        return BackendUnavailable(f"backend {name} failed with {status}: {message}")
    return UpstreamFailed(f"backend {name} answered {status}: {message}")


def _factory(hub: Hub, config: BackendConfig) -> Backend:
    def client() -> httpx.AsyncClient:
        http = hub.services.get("http")
        if http is None:
            raise BackendUnavailable("the hub's HTTP client is not running")
        return http  # type: ignore[no-any-return]

    return UpstreamBackend(config, client)


@hookimpl
def sovhub_backend_types() -> dict[str, BackendFactory]:
    return {"openai": _factory}
