"""The typed service graph: plugins' services built once, in dependency order, and its refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sovhub.hookspecs import hookimpl
from sovhub.hub import Hub, build_hub
from sovhub.plugins import get_plugin_manager
from sovhub.services import Provide, ServiceGraphError, Services
from sovhub.sovereignty.crypto import ContentVault
from tests.conftest import make_settings


class Clock:
    """A third party's service."""

    def __init__(self, hub: Hub) -> None:
        self.ticks = 0


class Greeter:
    """A third party's service that needs another one (its own) and a built-in one."""

    def __init__(self, hub: Hub) -> None:
        self.clock = hub.services.get(Clock)
        self.vault = hub.services.get(ContentVault)


class ThirdParty:
    built: list[str]

    def __init__(self) -> None:
        self.built = []

    def _make(self, kind: type[Any]) -> Any:
        def build(hub: Hub) -> Any:
            self.built.append(kind.__name__)
            return kind(hub)

        return build

    @hookimpl
    def sovhub_services(self, hub: Hub) -> list[Provide[Any]]:
        # Listed before what it needs: the graph, not the list, decides the order.
        return [Provide(Greeter, self._make(Greeter), needs=(Clock, ContentVault)), Provide(Clock, self._make(Clock))]


def test_a_third_party_plugin_provides_services_like_the_built_ins(data_dir: Path) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    plugin = ThirdParty()
    pm.register(plugin, name="tests.third-party")
    hub = build_hub(make_settings(data_dir), pm=pm)
    try:
        greeter = hub.services.get(Greeter)
        assert greeter.clock is hub.services.get(Clock)
        assert greeter.vault is hub.services.get(ContentVault)
        assert plugin.built == ["Clock", "Greeter"]  # once each, what is needed first
        names = hub.services.names()
        assert names.index("tests.test_services.Clock") < names.index("tests.test_services.Greeter")
        assert names.index("sovhub.sovereignty.crypto.ContentVault") < names.index("tests.test_services.Greeter")
    finally:
        hub.close()


def test_every_built_in_service_is_built_by_build_hub(hub: Hub) -> None:
    for kind in hub.services:
        assert isinstance(hub.services.get(kind), kind)
    assert len(hub.services.names()) == len(set(hub.services.names())) >= 15


def test_the_embedder_is_one_service_built_before_what_needs_it(hub: Hub) -> None:
    from sovhub.assistant.knowledge import KnowledgeBase
    from sovhub.embedder import Embedder
    from sovhub.safety.builtin import BuiltinGuards

    embedder = hub.services.get(Embedder)
    assert hub.embedder is embedder  # the shorthand is the service, not a second model
    names = hub.services.names()
    for user in (BuiltinGuards, KnowledgeBase):
        assert names.index("sovhub.embedder.Embedder") < names.index(f"{user.__module__}.{user.__qualname__}")


class _A:
    pass


class _B:
    pass


def test_a_missing_dependency_is_refused_naming_both() -> None:
    with pytest.raises(ServiceGraphError, match=r"test_services\._A needs .*test_services\._B, which no plugin provides"):
        Services().build(None, [Provide(_A, lambda hub: _A(), needs=(_B,))])  # type: ignore[arg-type]


def test_a_cycle_is_refused_with_its_path() -> None:
    with pytest.raises(ServiceGraphError, match=r"service cycle: .*_A -> .*_B -> .*_A"):
        Services().build(None, [  # type: ignore[arg-type]
            Provide(_A, lambda hub: _A(), needs=(_B,)), Provide(_B, lambda hub: _B(), needs=(_A,)),
        ])


def test_a_service_provided_twice_is_refused(data_dir: Path) -> None:
    class Again:
        @hookimpl
        def sovhub_services(self, hub: Hub) -> list[Provide[Any]]:
            return [Provide(ContentVault, lambda hub: None)]  # type: ignore[arg-type, return-value]

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Again(), name="tests.again")
    with pytest.raises(ServiceGraphError, match="ContentVault is provided twice"):
        build_hub(make_settings(data_dir), pm=pm)


def test_asking_for_a_service_nobody_provides_says_so(hub: Hub) -> None:
    with pytest.raises(ServiceGraphError, match="no plugin provides .*_A"):
        hub.services.get(_A)
    assert _A not in hub.services


def test_replace_keeps_the_type(hub: Hub) -> None:
    with pytest.raises(ServiceGraphError, match="is not a"):
        hub.services.replace(ContentVault, object())  # type: ignore[arg-type]
    with pytest.raises(ServiceGraphError, match="never built"):
        hub.services.replace(_A, _A())


class _Guard:
    name = "late"

    def scan(self, text: str, lang: str | None) -> list[Any]:
        return []


class _LateGuards:
    @hookimpl
    def sovhub_guards(self, hub: Hub) -> list[Any]:
        return [_Guard()]


def test_a_plugin_registered_after_build_hub_is_collected_on_the_next_read(hub: Hub) -> None:
    before = hub.guards
    assert hub.guards is before  # collected once, not per read
    hub.pm.register(_LateGuards(), name="tests.late")
    try:
        assert [g.name for g in hub.guards if g.name == "late"] == ["late"]
    finally:
        hub.pm.unregister(name="tests.late")
    assert all(g.name != "late" for g in hub.guards)
