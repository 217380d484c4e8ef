"""The operator's list of backends, kept in the `backends` table (added with `sovhub backends add`).

An upstream's API key is stored sealed by the vault (`api_key_sealed`, under the hub's own data
key), never in plaintext. A plaintext key left by a version before migration 0009 is sealed and
its plaintext column cleared by `sovhub migrate` (which opens the vault after migrating, when the
master key is there), else the first time the catalog is read (every start, `sovhub backends list`).
Migrations themselves run without the master key.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import func, select

from ..errors import Conflict, InvalidRequest, NotFound
from ..sovereignty.crypto import ContentVault
from ..store.tables import BackendRow
from .base import BackendConfig

if TYPE_CHECKING:
    from ..hub import Hub
    from ..store.db import Database

__all__ = ["add_backend", "backend_configs", "edit_backend", "plaintext_key_count", "remove_backend",
           "seal_plaintext_keys"]

# The vault owner of hub-wide secrets (never erased with a person or an organization).
SECRETS_OWNER = ("hub", 0)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
EMBEDDED_NAME = "embedded"


def _seal(hub: Hub, api_key: str) -> bytes:
    return hub.services.get(ContentVault).encrypt(*SECRETS_OWNER, api_key)


def _api_key(hub: Hub, row: BackendRow) -> str | None:
    if row.api_key_sealed is not None:
        return hub.services.get(ContentVault).decrypt(*SECRETS_OWNER, row.api_key_sealed)
    return row.api_key


def _to_config(hub: Hub, row: BackendRow) -> BackendConfig:
    return BackendConfig(
        name=row.name,
        kind=row.kind,
        url=row.url,
        models=list(row.models or []),
        jurisdiction=row.jurisdiction,
        operator=row.operator,
        api_key=_api_key(hub, row),
        options=dict(row.options or {}),
    )


def default_embedded(hub: Hub) -> BackendConfig | None:
    s = hub.settings
    if not s.embedded_enabled:
        return None
    options = {"path": s.embedded_model_path} if s.embedded_model_path else {}
    return BackendConfig(
        name=EMBEDDED_NAME,
        kind="embedded",
        models=[s.embedded_model_id],
        jurisdiction=s.sovereignty.jurisdiction,
        operator="this hub",
        options=options,
    )


def plaintext_key_count(db: Database) -> int:
    """How many upstream API keys are still stored in plaintext (read without the vault)."""
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(BackendRow).where(BackendRow.api_key.is_not(None))) or 0)


def seal_plaintext_keys(hub: Hub) -> int:
    """Seal every API key still stored in plaintext (from before migration 0009); returns how many."""
    with hub.db.session() as s:
        rows = list(s.scalars(select(BackendRow).where(BackendRow.api_key.is_not(None)).with_for_update()))
        for row in rows:
            if row.api_key_sealed is None:
                row.api_key_sealed = _seal(hub, row.api_key or "")
            row.api_key = None
    return len(rows)


def backend_configs(hub: Hub) -> list[BackendConfig]:
    """Every backend: the bundled embedded model (unless disabled), then the stored ones."""
    seal_plaintext_keys(hub)
    with hub.db.session() as s:
        rows = list(s.scalars(select(BackendRow).where(BackendRow.enabled.is_(True)).order_by(BackendRow.id)))
    configs = [_to_config(hub, r) for r in rows]
    embedded = default_embedded(hub)
    return ([embedded] if embedded else []) + configs


def add_backend(
    hub: Hub,
    name: str,
    *,
    url: str | None = None,
    gguf: str | None = None,
    models: list[str] | None = None,
    jurisdiction: str | None = None,
    operator: str | None = None,
    api_key: str | None = None,
    actor: str = "cli",
) -> BackendConfig:
    if not _NAME.match(name) or name == EMBEDDED_NAME:
        raise InvalidRequest(
            f"invalid backend name {name!r}: lowercase letters, digits, '-' and '_' "
            f"(and not {EMBEDDED_NAME!r}, the bundled model)",
            param="name",
        )
    if (url is None) == (gguf is None):
        raise InvalidRequest("give exactly one of --url (an OpenAI-compatible server) or --gguf (a model file)")
    options: dict[str, str] = {}
    if url is not None:
        _check_url(url)
        kind = "openai"
    else:
        from pathlib import Path

        path = Path(gguf or "").expanduser().resolve()
        if not path.is_file():
            raise InvalidRequest(f"GGUF file not found: {gguf}", param="gguf")
        if not models:
            models = [path.stem.lower()]
        options["path"] = str(path)
        kind = "embedded"
    jurisdiction = jurisdiction.upper() if jurisdiction else hub.settings.sovereignty.jurisdiction
    with hub.db.session() as s:
        if s.scalar(select(BackendRow).where(BackendRow.name == name)) is not None:
            raise Conflict(f"backend {name!r} already exists")
        row = BackendRow(
            name=name,
            kind=kind,
            url=url,
            models=list(models or []),
            jurisdiction=jurisdiction,
            operator=operator,
            api_key_sealed=_seal(hub, api_key) if api_key else None,
            options=options,
        )
        s.add(row)
        s.flush()
        config = _to_config(hub, row)
    hub.emit(
        "backend.added", actor=actor, subject=f"backend:{name}", kind=kind, url=url,
        models=config.models, jurisdiction=jurisdiction, operator=operator,
    )
    return config


def _check_url(url: str) -> None:
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidRequest(f"invalid URL {url!r}: expected http(s)://host[:port]/v1", param="url")



def edit_backend(
    hub: Hub,
    name: str,
    *,
    url: str | None = None,
    models: list[str] | None = None,
    jurisdiction: str | None = None,
    operator: str | None = None,
    api_key: str | None = None,
    clear_api_key: bool = False,
    actor: str = "cli",
) -> BackendConfig:
    """Change a stored backend in place; what is None stays as it was. `url` only for an upstream
    (a model file is added anew); `models=[]` means "ask the server at start". Audited
    `backend.changed` with the fields changed (never the key, only whether it changed)."""
    if url is not None:
        _check_url(url)
    changed: dict[str, object] = {}
    with hub.db.session() as s:
        row = s.scalar(select(BackendRow).where(BackendRow.name == name))
        if row is None:
            raise NotFound(f"no backend named {name!r}")
        if url is not None and row.kind != "openai":
            raise InvalidRequest(f"backend {name!r} serves a model file: it has no address", param="url")
        for field, value in (("url", url), ("models", list(models) if models is not None else None),
                             ("jurisdiction", jurisdiction.upper() if jurisdiction else None),
                             ("operator", operator)):
            if value is not None and getattr(row, field) != value:
                setattr(row, field, value)
                changed[field] = value
        if api_key or clear_api_key:
            row.api_key_sealed = _seal(hub, api_key) if api_key else None
            row.api_key = None
            changed["credentials"] = "replaced" if api_key else "removed"
        config = _to_config(hub, row)
    if changed:
        hub.emit("backend.changed", actor=actor, subject=f"backend:{name}", **changed)
    return config


def remove_backend(hub: Hub, name: str, *, actor: str = "cli") -> None:
    with hub.db.session() as s:
        row = s.scalar(select(BackendRow).where(BackendRow.name == name))
        if row is None:
            raise NotFound(f"no backend named {name!r}")
        s.delete(row)
    hub.emit("backend.removed", actor=actor, subject=f"backend:{name}")
