"""Which backend serves which model, which are healthy, and routing with one retry."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable, ConfigError, ModelNotFound
from .base import Backend, BackendConfig, CancelToken, ChatChunk

if TYPE_CHECKING:
    from ..hub import Hub
    from ..pipeline import ChatContext

__all__ = ["BackendRegistry"]

log = logging.getLogger("sovhub.backends")


class BackendRegistry:
    def __init__(self, hub: Hub, backends: list[Backend]) -> None:
        self.hub = hub
        self.backends = backends
        self._down_until: dict[str, float] = {}

    @classmethod
    def build(cls, hub: Hub, configs: list[BackendConfig]) -> BackendRegistry:
        factories: dict[str, Any] = {}
        for group in hub.pm.hook.sovhub_backend_types():
            factories.update(group or {})
        backends = []
        for config in configs:
            factory = factories.get(config.kind)
            if factory is None:
                raise ConfigError(
                    f"backend {config.name}: unknown kind {config.kind!r} (known: {', '.join(sorted(factories))})"
                )
            backends.append(factory(hub, config))
        return cls(hub, backends)

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        for backend in self.backends:
            await backend.start(progress)

    async def close(self) -> None:
        for backend in self.backends:
            await backend.close()

    def ready(self) -> bool:
        return all(b.ready() for b in self.backends)

    def model_ids(self) -> list[str]:
        seen: dict[str, None] = {}
        for backend in self.backends:
            for model in backend.models:
                seen.setdefault(model, None)
        return list(seen)

    def serving(self, model: str) -> list[Backend]:
        return [b for b in self.backends if model in b.models]

    def get(self, name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)

    def mark_down(self, backend: Backend) -> None:
        self._down_until[backend.name] = time.monotonic() + self.hub.settings.backend_cooldown_s

    def healthy(self, backend: Backend) -> bool:
        return self._down_until.get(backend.name, 0.0) <= time.monotonic() and backend.ready()

    def candidates(self, ctx: ChatContext | None, model: str) -> list[Backend]:
        """Backends allowed to serve this request, healthy first; raises when none may."""
        serving = self.serving(model)
        if not serving:
            raise ModelNotFound(f"The model `{model}` does not exist or is not served by this hub.", param="model")
        for policy in self.hub.route_policies:
            serving = policy.filter(ctx, model, serving)
        if not serving:
            raise BackendUnavailable(f"no backend is allowed to serve model {model}")
        return sorted(serving, key=lambda b: not self.healthy(b))

    async def open_stream(
        self,
        ctx: ChatContext,
        backends: list[Backend],
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        cancel: CancelToken,
    ) -> tuple[Backend, ChatChunk | None, AsyncIterator[ChatChunk]]:
        """Start a stream and wait for its first chunk, retrying once on the next backend.

        Retrying is safe only before any byte reached the client, which is why the first chunk
        is awaited here, before the response starts.
        """
        last: BackendUnavailable | None = None
        for attempt, backend in enumerate(backends[:2]):
            stream = backend.chat_stream(ctx.model, messages, params, cancel).__aiter__()
            try:
                first = await stream.__anext__()
            except StopAsyncIteration:
                return backend, None, stream
            except BackendUnavailable as exc:
                last = exc
                self.mark_down(backend)
                log.warning(
                    "backend %s failed before the first byte (attempt %d): %s", backend.name, attempt + 1, exc
                )
                continue
            ctx.backend_name = backend.name
            return backend, first, stream
        assert last is not None
        # Retry-After: when the first of the backends just tried comes out of its cooldown.
        wait = min(self._down_until.get(b.name, 0.0) for b in backends[:2]) - time.monotonic()
        last.retry_after = max(1.0, wait)
        last.headers["retry-after"] = str(max(1, int(last.retry_after + 0.999)))
        raise last
