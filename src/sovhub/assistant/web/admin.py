"""The staff area: knowledge base upload and removal, language fidelity per model, organizations.

Only accounts with ``is_staff`` reach it; anyone else gets 403. Everything here calls the
owning area's functions (knowledge base, fidelity tracker, access verification, accounts).
The access actions (verification decisions, keys, quotas, tiers) are in :mod:`.admin_access`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ...access.csrf import verify_csrf
from ...access.ratelimit import FIELDS
from ...errors import SovhubError
from ...hub import Hub
from .auth import signed_in
from .render import Page, render

__all__ = ["router", "staff_page"]

router = APIRouter(include_in_schema=False)
log = logging.getLogger("sovhub.assistant.web")


def staff_page(request: Request) -> Page | Response:
    """The page of a signed-in staff member; a sign-in redirect, or 403 for anyone else."""
    page = signed_in(request)
    if isinstance(page, Page) and (page.user is None or not page.user.is_staff):
        return render(page, "error.html", status=403, error="forbidden")
    return page


def _organizations(hub: Hub) -> list[dict[str, Any]]:
    from ...access.usage import usage_summary
    from ...access.verification import verification_states
    from ...accounts import list_keys, list_orgs

    keys: dict[str, int] = {}
    for key, org_name in list_keys(hub):
        if key.revoked_at is None:
            keys[org_name] = keys.get(org_name, 0) + 1
    states = verification_states(hub)
    out = []
    for org in list_orgs(hub):
        tokens = sum(row["total_tokens"] for row in usage_summary(hub, org.id, days=30))
        out.append({"name": org.name, "status": states.get(org.id, "unverified"), "active_keys": keys.get(org.name, 0),
                    "tokens": tokens})
    peak = max((o["tokens"] for o in out), default=0) or 1
    for row in out:
        row["share"] = round(100 * row["tokens"] / peak)
    return out


def _tiers(hub: Hub) -> dict[str, Any]:
    from ...access.state import OPEN, VERIFIED
    from ...access.tiers import list_tiers
    from ...backends.catalog import backend_configs
    from ...backends.registry import BackendRegistry

    tiers = list_tiers(hub)
    # Models the running backends serve (discovered ones included), else those configured.
    registry = hub.services.get(BackendRegistry)
    served = registry.model_ids() if registry.running else [
        m for c in backend_configs(hub) for m in c.models]
    models = sorted(set(served) | set(tiers))
    tier_limits = {t: dict(v) for t, v in sorted(hub.settings.access.tier_limits.items())}
    known = {OPEN, VERIFIED, *tiers.values(), *tier_limits}
    return {"models": [(m, tiers.get(m, OPEN)) for m in models], "tier_limits": tier_limits,
            "known_tiers": sorted(known)}


def _overview(hub: Hub) -> dict[str, Any]:
    from ...access.verification import verification_queue
    from ..fidelity import FidelityTracker
    from ..knowledge import KnowledgeBase

    kb = hub.services.get(KnowledgeBase)
    sections: dict[str, Any] = {
        "documents": kb.list_documents(),
        "collections": kb.list_collections(),
        "fidelity": hub.services.get(FidelityTracker).snapshot(),
    }
    # The access area's views are optional extras: a failure there must not hide the rest.
    try:
        sections["queue"] = [
            {**q, "created": datetime.fromisoformat(q["created_at"]) if q.get("created_at") else None}
            for q in verification_queue(hub)
        ]
        sections["organizations"] = _organizations(hub)
        sections.update(_tiers(hub))
    except (SovhubError, AttributeError, LookupError) as exc:
        log.warning("admin page: organization data unavailable: %s", exc)
        sections.update(queue=[], organizations=[], models=[], tier_limits={}, known_tiers=[])
    return sections


@router.get("/admin")
async def admin_page(request: Request) -> Response:
    page = staff_page(request)
    if not isinstance(page, Page):
        return page
    data = await anyio.to_thread.run_sync(_overview, page.hub)
    from ..locales import LocaleRegistry

    default_collection = page.hub.services.get(LocaleRegistry).match(page.lang).default_collection
    return render(page, "admin.html", default_collection=default_collection,
                  status_code=request.query_params.get("status"), status_title=request.query_params.get("title"),
                  done=request.query_params.get("done"), error=request.query_params.get("error"),
                  limit_fields=FIELDS, **data)


@router.post("/admin/kb")
async def upload(request: Request) -> Response:
    from ..knowledge import KnowledgeBase

    page = staff_page(request)
    if not isinstance(page, Page):
        return page
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    collection = str(form.get("collection") or "").strip()
    file = form.get("file")
    if not collection or file is None or isinstance(file, str) or not file.filename:
        return RedirectResponse("/admin?status=missing", status_code=303)
    data = await file.read()
    name = file.filename
    try:
        kb = page.hub.services.get(KnowledgeBase)
        result = await anyio.to_thread.run_sync(lambda: kb.ingest_bytes(name, data, collection))
    except SovhubError as exc:
        log.info("upload of %s refused: %s", name, exc.message)
        return RedirectResponse("/admin?status=failed", status_code=303)
    from urllib.parse import quote

    return RedirectResponse(f"/admin?status={result.status}&title={quote(result.title or name)}", status_code=303)


@router.post("/admin/kb/{document_id}/delete")
async def delete_document(document_id: int, request: Request) -> Response:
    from ..knowledge import KnowledgeBase

    page = staff_page(request)
    if not isinstance(page, Page):
        return page
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    await anyio.to_thread.run_sync(lambda: page.hub.services.get(KnowledgeBase).delete_document(document_id))
    return RedirectResponse("/admin?status=deleted", status_code=303)
