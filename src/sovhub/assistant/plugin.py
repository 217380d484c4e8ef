"""The assistant built-in plugin: its hooks are registered like any third-party plugin's."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    import click
    from fastapi import FastAPI

    from ..hub import Hub

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"


@hookimpl
def sovhub_commands(cli: click.Group) -> None:
    from ..sovereignty.cli import users_group
    from .cli import kb_group, locales_group
    from .web.commands import users_create, users_set_password, users_staff

    cli.add_command(locales_group)
    cli.add_command(kb_group)
    for command in (users_create, users_set_password, users_staff):
        users_group.add_command(command)


# First in line, so the web turn is tagged before any other interceptor looks at the context.
@hookimpl(tryfirst=True)
def sovhub_chat_interceptors(hub: Hub) -> list[Any]:
    from .fidelity import FidelityInterceptor
    from .web.answer import TurnMarker

    return [TurnMarker(), FidelityInterceptor(hub)]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from .web import routers

    return routers()


@hookimpl
def sovhub_setup_app(app: FastAPI, hub: Hub) -> None:
    from fastapi.staticfiles import StaticFiles

    from .i18n import ui_catalogs

    ui_catalogs(hub)  # compile the catalogs at start: a broken .po fails here, not on a visitor
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    from .attachments import AttachmentStore
    from .web.conversations import ConversationStore

    return {"assistant_conversations": ConversationStore(hub).export(user_id),
            "assistant_attachments": AttachmentStore(hub).export(user_id)}


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    from .web.conversations import ConversationStore

    ConversationStore(hub).delete_all(user_id)
