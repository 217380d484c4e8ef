"""Which backend serves which model, which are healthy, and routing with one retry.

Several backends serving one model form a pool: a request goes to the healthy one with the fewest
requests in flight from this replica (ties in turn), or with ``backend_routing = "prefix_sticky"``
to the one its prompt's prefix hashes to (rendezvous hashing, so a backend's prefix cache stays
warm and a backend leaving moves only its own share) unless that one is ``backend_sticky_slack``
requests busier than the least loaded. A background task checks every backend each
``backend_probe_interval_s`` (those in a pool: a lone backend has nowhere to send its requests
instead): one that refuses a check (connection refused or reset, a 5xx), or fails a request
before answering (a first-byte timeout included), is out at once and back after
``backend_cooldown_s`` once its checks pass again.

The catalog can change while the hub serves (:meth:`BackendRegistry.reload`, from the operator
console or another replica's change): a new or changed backend starts and joins, a changed or
removed one leaves rotation at once and is closed once the requests it was serving end.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable, ConfigError, ModelNotFound
from ..tasks import cancel_and_wait
from .base import Backend, BackendConfig, CancelToken, ChatChunk

if TYPE_CHECKING:
    from ..hub import Hub
    from ..pipeline import ChatContext

__all__ = ["BackendRegistry"]

log = logging.getLogger("sovhub.backends")


class BackendRegistry:
    """The running backends: opened by the app's lifespan from the configured ones, closed after.

    ``running`` is False until every backend started (and again once closed): callers then answer
    that the hub is starting rather than that a model does not exist.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.backends: list[Backend] = []
        self.running = False
        self._down_until: dict[str, float] = {}
        #: Backends whose last active check failed: out until one passes (and their cooldown ends).
        self._failing: set[str] = set()
        #: Requests in flight per backend, from open_stream until `finished`.
        self.outstanding: dict[str, int] = {}
        self._turn = 0
        self._prober: asyncio.Task[None] | None = None
        #: Requests in flight per backend object (a replaced backend keeps its name, not its count).
        self._inflight: dict[int, int] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._declared: dict[int, BackendConfig] = {}
        self._reloading: asyncio.Lock | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def _make(self, config: BackendConfig) -> Backend:
        factories: dict[str, Any] = {}
        for group in self.hub.pm.hook.sovhub_backend_types():
            factories.update(group or {})
        factory = factories.get(config.kind)
        if factory is None:
            raise ConfigError(
                f"backend {config.name}: unknown kind {config.kind!r} (known: {', '.join(sorted(factories))})"
            )
        backend: Backend = factory(self.hub, config)
        # As declared, apart: an upstream fills in the models it discovers on its own config at start.
        self._declared[id(backend)] = copy.deepcopy(config)
        return backend

    def load(self, configs: list[BackendConfig]) -> None:
        """Make a backend of each configuration, by the kinds the plugins provide (nothing starts yet)."""
        self.backends = [self._make(config) for config in configs]

    async def reload(self, configs: list[BackendConfig]) -> tuple[list[str], list[str]]:
        """Serve `configs` from now on, without a restart: (names started, names retired).

        Backends whose configuration is unchanged keep serving untouched. A new or changed one is
        started before it joins (a failing start raises and changes nothing); a changed or removed
        one leaves rotation at once and is closed when its requests in flight have ended.
        """
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:
            current = {b.name: b for b in self.backends}
            fresh = [self._make(c) for c in configs
                     if c.name not in current or self._declared.get(id(current[c.name])) != c]
            for backend in fresh:
                await backend.start(None)
            started = {b.name: b for b in fresh}
            wanted = {c.name for c in configs}
            retired = [b for b in self.backends if b.name not in wanted or b.name in started]
            self.backends = [started.get(c.name) or current[c.name] for c in configs]
            for backend in retired:
                self._down_until.pop(backend.name, None)
                self._failing.discard(backend.name)
                task = asyncio.create_task(self._retire(backend), name=f"sovhub-retire-{backend.name}")
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            if fresh or retired:
                log.info("backends reloaded: started %s, retired %s", sorted(started) or "none",
                         sorted(b.name for b in retired) or "none")
            return sorted(started), sorted(b.name for b in retired)

    async def _retire(self, backend: Backend, patience_s: float = 600.0) -> None:
        deadline = time.monotonic() + patience_s
        while self._inflight.get(id(backend), 0) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._inflight.pop(id(backend), None)
        self._declared.pop(id(backend), None)
        try:
            await backend.close()
        except Exception:
            log.exception("closing retired backend %s failed", backend.name)

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        # Made on the loop that serves: a hub served by two apps in turn gets a lock for each.
        self.loop, self._reloading = asyncio.get_running_loop(), asyncio.Lock()
        for backend in self.backends:
            await backend.start(progress)
        self.running = True
        interval = self.hub.settings.backend_probe_interval_s
        if interval > 0 and self.backends:
            self._prober = asyncio.create_task(self._probe_forever(interval), name="sovhub-backend-probes")

    async def close(self) -> None:
        if self._prober is not None:
            await cancel_and_wait([self._prober])
            self._prober = None
        self.running = False
        for task in list(self._retiring):
            await task
        backends, self.backends = self.backends, []
        self._down_until.clear()
        self._failing.clear()
        self.outstanding.clear()
        for backend in backends:
            await backend.close()

    def pooled(self) -> list[Backend]:
        """Backends that share a model with another: taking one of them out sends its requests elsewhere."""
        counts: dict[str, int] = {}
        for backend in self.backends:
            for model in backend.models:
                counts[model] = counts.get(model, 0) + 1
        return [b for b in self.backends if any(counts[m] > 1 for m in b.models)]

    async def probe_once(self, timeout: float) -> None:
        """Check every pooled backend at once; a failing one is out from now, one that passes may come back."""
        pooled = self.pooled()
        results = await asyncio.gather(*(b.probe(timeout) for b in pooled), return_exceptions=True)
        for backend, ok in zip(pooled, results, strict=True):
            if ok is None:
                continue  # no answer in time: not proof of death (a hung server fails its requests' timeouts)
            if ok is True:
                if backend.name in self._failing:
                    self._failing.discard(backend.name)
                    log.info("backend %s answers its health check again (back after its cooldown)", backend.name)
            elif backend.name not in self._failing:
                self._failing.add(backend.name)
                self.mark_down(backend)
                log.warning("backend %s failed its health check: out of rotation", backend.name)
            else:
                self.mark_down(backend)  # still failing: its cooldown starts again from the last failure

    async def _probe_forever(self, interval: float) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.probe_once(timeout=interval)
            except Exception:
                log.exception("backend health checks failed")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    def finished(self, backend: Backend) -> None:
        """A request routed by open_stream has ended (however it ended)."""
        left = self.outstanding.get(backend.name, 0) - 1
        self.outstanding[backend.name] = max(0, left)
        self._inflight[id(backend)] = max(0, self._inflight.get(id(backend), 0) - 1)

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
        return (
            backend.name not in self._failing
            and self._down_until.get(backend.name, 0.0) <= time.monotonic()
            and backend.ready()
        )

    def candidates(self, ctx: ChatContext | None, model: str) -> list[Backend]:
        """Backends allowed to serve this request, healthy first; raises when none may."""
        serving = self.serving(model)
        if not serving:
            raise ModelNotFound(f"The model `{model}` does not exist or is not served by this hub.", param="model")
        for policy in self.hub.route_policies:
            serving = policy.filter(ctx, model, serving)
        if not serving:
            raise BackendUnavailable(f"no backend is allowed to serve model {model}")
        if len(serving) == 1:
            return serving
        return self._order(ctx, serving)

    def _order(self, ctx: ChatContext | None, serving: list[Backend]) -> list[Backend]:
        """Healthy first; among them the least loaded (or the prefix's own), ties in turn."""
        self._turn += 1
        n, turn = len(serving), self._turn
        load = {b.name: self.outstanding.get(b.name, 0) for b in serving}
        healthy = {b.name: self.healthy(b) for b in serving}
        sticky = self.hub.settings.backend_routing == "prefix_sticky" and ctx is not None
        if sticky:
            assert ctx is not None
            prefix = _prefix(ctx.messages)
            least = min(load[b.name] for b in serving if healthy[b.name]) if any(healthy.values()) else 0
            slack = self.hub.settings.backend_sticky_slack

            def sticky_key(i: int, b: Backend) -> tuple[bool, int, int]:
                over = max(0, load[b.name] - least - slack)
                score = int.from_bytes(hashlib.blake2b(prefix + b.name.encode(), digest_size=8).digest(), "big")
                return (not healthy[b.name], over, -score)

            ranked = sorted(enumerate(serving), key=lambda ib: sticky_key(*ib))
        else:
            ranked = sorted(enumerate(serving),
                            key=lambda ib: (not healthy[ib[1].name], load[ib[1].name], (ib[0] - turn) % n))
        return [b for _, b in ranked]

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
            self.outstanding[backend.name] = self.outstanding.get(backend.name, 0) + 1
            self._inflight[id(backend)] = self._inflight.get(id(backend), 0) + 1
            try:
                first = await stream.__anext__()
            except StopAsyncIteration:
                return backend, None, stream
            except BackendUnavailable as exc:
                self.finished(backend)
                last = exc
                self.mark_down(backend)
                log.warning(
                    "backend %s failed before the first byte (attempt %d): %s", backend.name, attempt + 1, exc
                )
                continue
            except BaseException:
                self.finished(backend)
                raise
            ctx.backend_name = backend.name
            return backend, first, stream
        assert last is not None
        # Retry-After: when the first of the backends just tried comes out of its cooldown.
        wait = min(self._down_until.get(b.name, 0.0) for b in backends[:2]) - time.monotonic()
        last.retry_after = max(1.0, wait)
        last.headers["retry-after"] = str(max(1, int(last.retry_after + 0.999)))
        raise last


def _prefix(messages: list[dict[str, Any]], chars: int = 512) -> bytes:
    """What a prefix cache would share: the start of the system prompt and first user message."""
    parts = []
    for message in messages[:2]:
        content = message.get("content")
        parts.append(content if isinstance(content, str) else repr(content))
    return "\x00".join(parts)[:chars].encode("utf-8", "surrogatepass")
