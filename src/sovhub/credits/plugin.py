"""The credits built-in plugin: the ledger service, admission control, routes, commands, transparency."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl
from ..services import Provide
from .ledger import Ledger

if TYPE_CHECKING:
    import click

    from ..hub import Hub


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    return [Provide(Ledger, lambda h: Ledger(h.db))]


@hookimpl
def sovhub_commands(cli: click.Group) -> None:
    from .cli import add_commands

    add_commands(cli)
