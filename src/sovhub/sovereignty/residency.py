"""Residency: requests go only to backends in the allowed jurisdictions (home only by default).

The policy runs in the router before any connection is opened, so a refused request sends no
byte to a non-compliant backend. "EU" in the allowed list admits the member states too; a
backend declared only as "EU" is admitted only where "EU" itself is allowed (its country is
unknown). A backend with no declared jurisdiction is treated as non-compliant.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from ..errors import ResidencyViolation

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..events import Event
    from ..hub import Hub
    from ..pipeline import ChatContext
    from ..settings import Settings

__all__ = ["ResidencyPolicy", "allowed_jurisdictions", "is_compliant", "warn_noncompliant_backend"]

log = logging.getLogger("sovhub.residency")

EU_MEMBERS = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()
)


def allowed_jurisdictions(settings: Settings) -> frozenset[str]:
    sov = settings.sovereignty
    return frozenset(sov.allowed_jurisdictions or [sov.jurisdiction])


def is_compliant(jurisdiction: str | None, allowed: frozenset[str]) -> bool:
    if not jurisdiction:
        return False
    code = jurisdiction.upper()
    return code in allowed or ("EU" in allowed and code in EU_MEMBERS)


class ResidencyPolicy:
    """A RoutePolicy: keeps the compliant backends, refuses (403 residency_violation) when none is left."""

    name = "residency"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.allowed = allowed_jurisdictions(hub.settings)

    def filter(self, ctx: ChatContext | None, model: str, backends: list[Backend]) -> list[Backend]:
        kept = [b for b in backends if is_compliant(b.config.jurisdiction, self.allowed)]
        if kept:
            return kept
        allowed = ", ".join(sorted(self.allowed))
        abroad = sorted({b.config.jurisdiction or "undeclared" for b in backends})
        actor = ctx.principal.label if ctx is not None else "system"
        self.hub.emit("residency.refused", actor=actor, subject=f"model:{model}", model=model,
                      allowed=sorted(self.allowed), backend_jurisdictions=abroad,
                      request_id=ctx.request_id if ctx is not None else None)
        raise ResidencyViolation(
            f"model {model} is served only outside the allowed jurisdictions ({allowed}); "
            "the request was not sent to any backend",
            param="model",
        )


def warn_noncompliant_backend(hub: Hub, event: Event) -> None:
    """On `backend.added`: warn (stderr) and audit when the new backend may never be used."""
    jurisdiction: Any = event.data.get("jurisdiction")
    allowed = allowed_jurisdictions(hub.settings)
    if is_compliant(jurisdiction, allowed):
        return
    name = (event.subject or "").removeprefix("backend:")
    message = (f"warning: backend {name} is in jurisdiction {jurisdiction or 'undeclared'}, outside the allowed "
               f"jurisdictions ({', '.join(sorted(allowed))}); residency policy will never route requests to it")
    # The operator who ran `backends add` must see this even with logging unconfigured.
    sys.stderr.write(message + "\n")
    log.warning(message)
    hub.emit("backend.noncompliant", actor=event.actor, subject=event.subject, jurisdiction=jurisdiction,
             allowed=sorted(allowed))
