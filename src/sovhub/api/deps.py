"""Request dependencies: the hub, and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Request

from ..accounts import INFERENCE, KeyCache, authenticate, require_scope
from ..errors import AuthenticationFailed
from ..hub import Hub
from ..pipeline import Principal

__all__ = ["CurrentPrincipal", "HubDep", "InferencePrincipal", "get_hub", "get_inference_principal", "get_principal"]


async def get_hub(request: Request) -> Hub:
    # async: a sync dependency would cost a thread-pool hop on every request
    return request.app.state.hub  # type: ignore[no-any-return]


async def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as 'Authorization: Bearer sk-sov-...'.",
            code="missing_api_key",
        )
    secret = secret.strip()
    hub: Hub = request.app.state.hub
    cache = hub.services.get(KeyCache)
    principal = cache.get(secret)
    if principal is None:
        principal = await anyio.to_thread.run_sync(authenticate, hub, secret)
        cache.put(secret, principal)
    request.state.principal = principal
    return principal


HubDep = Annotated[Hub, Depends(get_hub)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_inference_principal(request: Request) -> Principal:
    """The principal of a key that may call models (scope ``inference``), else 403 insufficient_scope."""
    # Called, not declared as a sub-dependency: one level less for FastAPI to solve on every model call.
    principal = await get_principal(request)
    require_scope(principal, INFERENCE)
    return principal


InferencePrincipal = Annotated[Principal, Depends(get_inference_principal)]


def add_backend_time(request: Request, seconds: float) -> None:
    """Count time spent waiting for a backend, so it is not reported as gateway overhead."""
    request.scope["state"]["backend_s"] += seconds
