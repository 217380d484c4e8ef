"""The public transparency report: every plugin's `sovhub_transparency` section, plus ours.

Served as JSON at /hub/v1/transparency and, by the web app, as a translated page at /transparency; no
authentication, no personal data (counts only), and the audit chain head so that anyone can
compare it with a head anchored elsewhere.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..store.base import utcnow
from .audit import counts_by_event, head

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["own_section", "report"]

log = logging.getLogger("sovhub.transparency")

COUNTED = [
    "access.requested", "access.approved", "access.denied", "access.used", "user.erased", "user.exported",
    "residency.refused", "egress.refused", "backend.noncompliant", "retention.purged",
]


def own_section(hub: Hub) -> dict[str, Any]:
    from .residency import allowed_jurisdictions
    from .tables import AccessRequest

    counts = counts_by_event(hub, COUNTED)
    with hub.db.session() as s:
        from sqlalchemy import func, select

        held = s.scalar(select(func.count()).select_from(AccessRequest).where(AccessRequest.legal_hold.is_(True)))
    seq, digest = head(hub)
    sov = hub.settings.sovereignty
    return {"sovereignty": {
        "content_access_requests": {"requested": counts["access.requested"], "approved": counts["access.approved"],
                                    "denied": counts["access.denied"], "used": counts["access.used"],
                                    "under_legal_hold": int(held or 0)},
        "erasures": counts["user.erased"],
        "exports": counts["user.exported"],
        "residency_refusals": counts["residency.refused"],
        "egress_refusals": counts["egress.refused"],
        "noncompliant_backends_added": counts["backend.noncompliant"],
        "retention_purges": counts["retention.purged"],
        "policy": {"version": sov.policy_version, "home_jurisdiction": sov.jurisdiction,
                   "allowed_jurisdictions": sorted(allowed_jurisdictions(hub.settings)),
                   "default_retention_days": sov.retention_days, "encryption": "AES-256-GCM, per-owner data keys"},
        "audit_chain_head": {"seq": seq, "hash": digest},
    }}


def report(hub: Hub) -> dict[str, Any]:
    """Every plugin's section; one failing plugin is reported as unavailable, not the whole page."""
    sections: dict[str, Any] = {}
    unavailable: list[str] = []
    for impl in hub.pm.hook.sovhub_transparency.get_hookimpls():
        try:
            group = impl.function(hub=hub)
        except Exception:  # noqa: BLE001 - a public page must survive one plugin's fault; it is logged
            log.exception("transparency section of plugin %s failed", impl.plugin_name)
            unavailable.append(impl.plugin_name)
            continue
        if isinstance(group, dict):
            sections.update(group)
    return {"generated_at": utcnow().isoformat(), "sections": sections, "unavailable": unavailable}
