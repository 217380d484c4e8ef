"""The credits built-in plugin: the ledger service, admission control, routes, commands, transparency."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..fleet.invalidation import Invalidations
from ..hookspecs import hookimpl
from ..services import Provide
from .control import CreditControl, Credits
from .ledger import Ledger

if TYPE_CHECKING:
    import click

    from ..events import Event
    from ..hub import Hub

#: Changes after which admission must see the grants and prices at once in this process (other replicas: on
#: the fleet's invalidation, which every change in INVALIDATING sends).
_RELOADS = frozenset({"grant.created", "price.set"})
#: What the credit state holds: another process's change to these reloads it.
_HELD = ("grant.", "price.", "prices.", "organization.erased")


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    from ..access.redis_conn import AccessRedis
    from ..mail import Mailer

    return [
        Provide(Ledger, lambda h: Ledger(h.db)),
        # The hub's one SMTP client (credits' notices are what it sends today); unused until [mail] is set.
        Provide(Mailer, lambda h: Mailer(h.settings.mail, h.settings.data_dir)),
        Provide(Credits, _credits, needs=(Ledger, AccessRedis, Mailer, Invalidations)),
    ]


def _credits(hub: Hub) -> Credits:
    from ..mail import Mailer

    credits = Credits(hub, hub.services.get(Ledger), hub.services.get(Mailer))
    # A price or grant changed on another replica (or by the CLI) is in force here within the second, not after
    # the next `access.state_refresh_s` reload.
    def reload(event: str) -> None:
        if event.startswith(_HELD) or event == "resubscribed":
            credits.state.load()

    hub.services.get(Invalidations).on_change(reload)
    return credits


@hookimpl(trylast=True)
def sovhub_admission(hub: Hub) -> list[Any]:
    # After the quotas: a request they refuse never reaches the credits store.
    return [CreditControl(hub)]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from .api import router as credits
    from .programmes_api import router as programmes
    from .staff_api import router as staff

    return [credits, programmes, staff]


@hookimpl
def sovhub_transparency(hub: Hub) -> dict[str, Any]:
    from .transparency import programmes_section

    return programmes_section(hub)


@hookimpl(trylast=True)
def sovhub_lifespan(hub: Hub) -> Any:
    # Entered after the access plugin's (and so left before it): the last settlements and the
    # journal's last batch still reach Redis before its client closes.
    return hub.services.get(Credits).running()


@hookimpl
def sovhub_event(hub: Hub, event: Event) -> None:
    if event.name in _RELOADS and Credits in hub.services:
        hub.services.get(Credits).state.load()


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    from .dashboards import partners_of

    # The partners the person works for (their organizations' memberships are in the core section).
    return {"credit_partners": [name for _, name in partners_of(hub, user_id)]}


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    from .dashboards import forget_person

    forget_person(hub, user_id)


@hookimpl
def sovhub_commands(cli: click.Group) -> None:
    from .cli import add_commands

    add_commands(cli)
