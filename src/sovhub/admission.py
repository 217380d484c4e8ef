"""Admission: the quota and rate-limit controls plugins provide, run before each /v1 request.

``admit`` runs every control with an :class:`Admission` that names the request and the tokens it
may use at most (``reserve``: for chat ``max_tokens x n`` plus an estimate of the prompt, for
text endpoints an upper bound of their tokens); the controls hold that many tokens against their
limits at once, so concurrent requests cannot together pass a token limit. ``settle`` replaces the
reservation by the tokens really used, once (a second call does nothing); ``release`` gives the
reservation back for a request that failed before it used a backend.

    admission = await admit(hub, principal, "chat", model, reserve=1024)
    try:
        ...
    except BaseException:
        await release(hub, admission)
        raise
    await settle(hub, admission, used_tokens)

A batch line's admissions are held (:mod:`sovhub.lineheld`): `settle` notes the tokens and the
batch runner applies them with `keep_held` once the line's result is kept, or voids them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .lineheld import LineHold, current_line

if TYPE_CHECKING:
    from .hub import Hub
    from .pipeline import Principal

__all__ = ["Admission", "AdmissionControl", "abandon", "admit", "keep_held", "release", "settle"]


@dataclass(slots=True)
class Admission:
    principal: Principal
    endpoint: str
    model: str
    reserved: int = 0
    ticket: str = field(default_factory=lambda: uuid.uuid4().hex)
    admitted_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False
    #: The request's id (x-request-id), for controls that record per request (the credits ledger).
    request_id: str | None = None
    #: The batch this request is a line of (None: interactive); batch work is priced at the batch discount.
    batch_id: str | None = None
    #: How the used tokens divide, when the endpoint knows (chat: prompt and completion); set by `settle`.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: Room for each control's own state between admit and settle, under its own key.
    notes: dict[str, Any] = field(default_factory=dict)
    #: The batch line whose attempt this is: its settlement waits for the line's result (lineheld.py).
    line: LineHold | None = None


@runtime_checkable
class AdmissionControl(Protocol):
    """A quota or rate limit (the ``sovhub_admission`` hook): see that hook for the contract."""

    async def admit(self, admission: Admission) -> dict[str, str] | None: ...

    async def settle(self, admission: Admission, tokens: int) -> None: ...


async def admit(
    hub: Hub, principal: Principal, endpoint: str, model: str, *, reserve: int = 0, request_id: str | None = None,
    batch_id: str | None = None,
) -> Admission:
    """Admit the request or raise (RateLimited...); the returned Admission must be settled or released."""
    admission = Admission(principal, endpoint, model, reserved=max(int(reserve), 0), request_id=request_id,
                          batch_id=batch_id)
    line = current_line()
    if line is not None:
        admission.ticket, admission.line = line.next_ticket(), line
        line.admissions.append(admission)
    passed: list[AdmissionControl] = []
    try:
        for control in hub.admission_controls:
            admission.headers.update(await control.admit(admission) or {})
            passed.append(control)
    except BaseException:
        # A later control refused: the earlier ones give their reservation back.
        for control in passed:
            await control.settle(admission, 0)
        raise
    return admission


async def settle(
    hub: Hub, admission: Admission, tokens: int, *, prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> None:
    """Replace the reservation by the tokens the request used (once per admission).

    `prompt_tokens`/`completion_tokens`, when given, say how `tokens` divide (they are priced apart).
    """
    if admission.settled:
        return
    if admission.line is not None:
        admission.line.settlements[admission.ticket] = (int(tokens), prompt_tokens, completion_tokens)
        return
    admission.settled = True
    admission.prompt_tokens, admission.completion_tokens = prompt_tokens, completion_tokens
    for control in hub.admission_controls:
        await control.settle(admission, max(int(tokens), 0))


async def release(hub: Hub, admission: Admission) -> None:
    """Give the reservation back: the request failed before it used anything."""
    await settle(hub, admission, 0)


async def keep_held(hub: Hub, line: LineHold, keep: bool) -> None:
    """Settle a batch line's held admissions as their services asked (`keep`), or void them all."""
    for admission in line.admissions:
        admission.line = None
        tokens, prompt, completion = line.settlements.get(admission.ticket, (0, None, None))
        if keep:
            await settle(hub, admission, tokens, prompt_tokens=prompt, completion_tokens=completion)
        else:
            await release(hub, admission)


async def abandon(hub: Hub, tickets: list[str]) -> None:
    """Void reservations whose holder is gone (a replica that died mid-line), by ticket.

    For the controls that keep them by ticket until an expiry that would charge them (credits:
    ``abandon(tickets)``); the others' reservations simply expire.
    """
    for control in hub.admission_controls:
        drop = getattr(control, "abandon", None)
        if drop is not None:
            await drop(tickets)
