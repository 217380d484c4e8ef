"""The Hub: the services one running sovhub shares (settings, database, plugins, models).

Built by :func:`build_hub` from validated settings; the CLI uses it without starting the
server, the app factory (:func:`sovhub.app.create_app`) wraps it for HTTP.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, cast

import pluggy

from .embedder import Embedder
from .events import Event
from .services import Services
from .settings import Settings
from .store.db import Database

if TYPE_CHECKING:
    from .admission import AdmissionControl
    from .pipeline import ChatInterceptor, RoutePolicy
    from .safety.guards import Guard

__all__ = ["Hub", "build_hub"]

log = logging.getLogger("sovhub")


class Hub:
    def __init__(self, settings: Settings, pm: pluggy.PluginManager, db: Database) -> None:
        self.settings = settings
        self.pm = pm
        self.db = db
        # The typed service graph (sovhub.services), built by build_hub from the plugins' providers.
        self.services = Services()
        self._collected: dict[str, tuple[list[Any], list[Any]]] = {}
        self._collect_lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        """The text embedder service: ``self.services.get(Embedder)``."""
        return self.services.get(Embedder)

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
