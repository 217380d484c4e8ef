"""The assistant built-in plugin: its hooks are registered like any third-party plugin's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl
from ..services import Provide
from ..web_assets import STATIC_DIR

if TYPE_CHECKING:
    import click
    from fastapi import FastAPI

    from ..hub import Hub
    from ..pipeline import ChatInterceptor



@hookimpl
def sovhub_commands(cli: click.Group) -> None:
    from ..sovereignty.cli import users_group
    from .cli import (
        kb_group,
        locales_group,
        users_create,
        users_set_limits,
        users_set_password,
        users_set_tier,
        users_staff,
    )

    cli.add_command(locales_group)
    cli.add_command(kb_group)
    for command in (users_create, users_set_password, users_staff, users_set_limits, users_set_tier):
        users_group.add_command(command)


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    from ..embedder import Embedder
    from ..observability import Metrics
    from .answering import AnswerCheck
    from .fidelity import FidelityTracker
    from .i18n import UiCatalogs
    from .knowledge import KnowledgeBase
    from .locales import LocaleRegistry
    from .question_kinds import QuestionKinds

    return [
        # Compiled at start: a broken .po fails here, not on a visitor.
        Provide(UiCatalogs, lambda hub: UiCatalogs(list(hub.settings.assistant.languages))),
        Provide(LocaleRegistry, _locale_registry),
        Provide(FidelityTracker, lambda hub: FidelityTracker(hub.services.get(Metrics).registry), needs=(Metrics,)),
        Provide(KnowledgeBase, KnowledgeBase, needs=(Embedder,)),
        Provide(QuestionKinds, lambda hub: QuestionKinds(hub.services.get(Embedder)), needs=(Embedder,)),
        Provide(AnswerCheck, _answer_check, needs=(Embedder, QuestionKinds)),
    ]


def _answer_check(hub: Hub) -> Any:
    from ..embedder import Embedder
    from .answering import AnswerCheck
    from .fidelity import detector_for
    from .question_kinds import QuestionKinds

    languages = list(hub.settings.assistant.languages)
    # The detector loads on first use (seconds), not at start-up.
    return AnswerCheck(hub.services.get(Embedder), lambda text: detector_for(languages).detect(text),
                       kinds=hub.services.get(QuestionKinds))


def _locale_registry(hub: Hub) -> Any:
    from .locales import LocaleRegistry, pack_dirs

    return LocaleRegistry(pack_dirs(hub.settings), hub.settings.assistant.default_locale)


# First in line, so the web turn is tagged before any other interceptor looks at the context.
@hookimpl(tryfirst=True)
def sovhub_chat_interceptors(hub: Hub) -> list[ChatInterceptor]:
    from .fidelity import FidelityInterceptor
    from .turns import TurnMarker

    return [TurnMarker(), FidelityInterceptor(hub)]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from .web import routers

    return routers()


@hookimpl
def sovhub_setup_app(app: FastAPI, hub: Hub) -> None:
    from fastapi.staticfiles import StaticFiles

    from .web.auth import install_page_handlers

    install_page_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    from .attachments import AttachmentStore
    from .chat_store import ChatStore

    return {"assistant_conversations": ChatStore(hub).export(user_id),
            "assistant_attachments": AttachmentStore(hub).export(user_id)}


@hookimpl
def sovhub_restored(hub: Hub) -> None:
    from .knowledge.lexical import reindex_all

    with hub.db.session() as s:
        reindex_all(s)


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    from .chat_store import ChatStore

    ChatStore(hub).delete_all(user_id)
