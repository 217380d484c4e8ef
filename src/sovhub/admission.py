"""Admission: the quota and rate-limit controls plugins provide, run before each /v1 request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hub import Hub
    from .pipeline import Principal

__all__ = ["admit", "settle"]


def _controls(hub: Hub) -> list[Any]:
    controls: list[Any] | None = hub.services.get("admission")
    if controls is None:
        controls = [c for group in hub.pm.hook.sovhub_admission(hub=hub) for c in (group or [])]
        hub.services["admission"] = controls
    return controls


async def admit(hub: Hub, principal: Principal, endpoint: str, model: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for control in _controls(hub):
        headers.update(await control.admit(principal, endpoint, model) or {})
    return headers


async def settle(hub: Hub, principal: Principal, endpoint: str, model: str, tokens: int) -> None:
    for control in _controls(hub):
        await control.settle(principal, endpoint, model, tokens)
