"""The hub's services as one typed graph, built once at start-up.

Each plugin says what it provides through the ``sovhub_services`` hook: a list of
:class:`Provide`, each naming the type it makes, the function that makes it from the hub,
and the types it needs built first. :func:`build_hub` assembles them in dependency order
before anything serves; code then asks for a service by its type::

    ledger = hub.services.get(Ledger)      # typed: mypy knows it is a Ledger

No string keys, no lazy get-or-create, nothing built on a worker thread. A third-party
plugin adds a service exactly the same way as the built-ins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from .errors import ConfigError

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Provide", "ServiceGraphError", "Services"]

T = TypeVar("T")


class ServiceGraphError(ConfigError):
    """The plugins' services cannot be assembled: a missing dependency, a cycle, a duplicate."""

    code = "service_graph"


@dataclass(frozen=True)
class Provide(Generic[T]):
    """One service a plugin contributes: its type, how to build it, what it needs first."""

    kind: type[T]
    build: Callable[[Hub], T]
    needs: tuple[type[Any], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.kind.__module__}.{self.kind.__qualname__}"


class Services:
    """The built services, looked up by type."""

    def __init__(self) -> None:
        self._built: dict[type[Any], Any] = {}
        self._order: list[type[Any]] = []

    def get(self, kind: type[T]) -> T:
        try:
            return cast(T, self._built[kind])
        except KeyError:
            raise ServiceGraphError(
                f"no plugin provides {kind.__module__}.{kind.__qualname__}",
            ) from None

    def __contains__(self, kind: object) -> bool:
        return kind in self._built

    def __iter__(self) -> Iterator[type[Any]]:
        return iter(self._order)

    def replace(self, kind: type[T], instance: T) -> None:
        """Put another instance of a built service in its place (tests share an expensive one this way)."""
        if kind not in self._built:
            raise ServiceGraphError(f"{_name(kind)} was never built, so it cannot be replaced")
        if not isinstance(instance, kind):
            raise ServiceGraphError(f"{instance!r} is not a {_name(kind)}")
        self._built[kind] = instance

    def names(self) -> list[str]:
        """Every built service, as module.Class, in the order they were built."""
        return [f"{k.__module__}.{k.__qualname__}" for k in self._order]

    def build(self, hub: Hub, provides: Iterable[Provide[Any]]) -> None:
        """Build every provided service once, each after the ones it needs."""
        specs: dict[type[Any], Provide[Any]] = {}
        for spec in provides:
            if spec.kind in specs or spec.kind in self._built:
                raise ServiceGraphError(f"{spec.name} is provided twice")
            specs[spec.kind] = spec
        state: dict[type[Any], str] = {}

        def visit(kind: type[Any], path: tuple[str, ...]) -> None:
            if kind in self._built:
                return
            if state.get(kind) == "visiting":
                raise ServiceGraphError("service cycle: " + " -> ".join((*path, _name(kind))))
            spec = specs.get(kind)
            if spec is None:
                raise ServiceGraphError(f"{path[-1] if path else '?'} needs {_name(kind)}, which no plugin provides")
            state[kind] = "visiting"
            for dep in spec.needs:
                visit(dep, (*path, spec.name))
            self._built[kind] = spec.build(hub)
            self._order.append(kind)
            state[kind] = "done"

        for kind in specs:
            visit(kind, ())


def _name(kind: type[Any]) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"
