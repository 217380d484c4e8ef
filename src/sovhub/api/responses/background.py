"""Background responses (``background: true``): run on this replica after the request returned,
read back by polling, cancelled by POST /v1/responses/{id}/cancel.

The stored response is the truth every replica reads: it is written ``queued`` before the
request returns, ``in_progress`` once the chat is admitted and routed, and in its final state
at the end. A cancel marks the stored response ``cancelled``; the replica running it stops its
generation at once when it runs here, and within :data:`POLL_S` when it runs on another replica
(each run reads its stored status that often). What ran is billed as any chat is: the chat
service records it once, however the run ended. When the hub stops, runs still going end as
``failed`` (the hub shutting down), so none stays ``in_progress`` for ever.

A replica that is killed ends nothing: each replica writes a heartbeat for its runs every
``responses_heartbeat_s`` (:meth:`BackgroundRuns.beat`), and a run whose heartbeat is
:data:`STALE_BEATS` heartbeats old is failed, by the next read of it (any replica) and by a sweep
that one replica at a time runs (a leased loop).

A background run can be streamed (``stream: true`` at its creation, or
``GET /v1/responses/{id}?stream=true&starting_after=N`` later, from any replica): the stream sends
its events with sequence numbers above N. Its events are kept in memory while it runs (a stream on
the replica running it follows them live) and stored with it (sealed, as its content is) when it
ends, so a later stream replays the very events, with their numbers; a stream on another replica
waits (reading the stored status every :data:`POLL_S`) until the run ended, then replays. A run
that ended without its terminal event (refused before it started, or failed by a stale
heartbeat) gets it synthesized from the stored response, numbered after the last stored one.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy.exc import SQLAlchemyError

from ...errors import InvalidRequest, ShuttingDown, SovhubError
from ...store.base import utcnow

if TYPE_CHECKING:
    from ...pipeline import Principal
    from .service import ResponseRun, ResponsesService
    from .store import StoredState

__all__ = ["POLL_S", "STALE_BEATS", "BackgroundRuns"]

log = logging.getLogger("sovhub.api.responses")

#: How often a background run reads its stored status (a cancel made on another replica).
POLL_S = 1.0
#: How long a cancel waits for the run to stop and store its final state.
_CANCEL_WAIT_S = 10.0
_ENDED = ("completed", "failed", "incomplete", "cancelled")
#: A run whose heartbeat is this many heartbeat intervals old was left by a replica that stopped.
STALE_BEATS = 6
_TERMINAL = ("response.completed", "response.failed", "response.incomplete")


class BackgroundRuns:
    """This replica's background runs, by response id."""

    def __init__(self, service: ResponsesService) -> None:
        self.service = service
        self.runs: dict[str, tuple[ResponseRun, asyncio.Task[None]]] = {}
        #: Set (and replaced) when a local run has a new event or ended: what live streams wait on.
        self._ticks: dict[str, asyncio.Event] = {}

    @property
    def heartbeat_s(self) -> float:
        return float(self.service.hub.settings.responses_heartbeat_s)

    @property
    def stale_s(self) -> float:
        return self.heartbeat_s * STALE_BEATS

    def _tick(self, response_id: str) -> None:
        tick = self._ticks.pop(response_id, None)
        if tick is not None:
            tick.set()

    async def submit(self, run: ResponseRun, request_id: str) -> dict[str, Any]:
        """Store the run as queued and start it; the queued response is the request's answer."""
        store = self.service.store
        if not store.keeps(run.principal):
            raise InvalidRequest("a background response must be stored, and this hub keeps no responses of yours "
                                 "(content storage is off, or your retention is zero days)", param="background")
        await self.service.save(run)
        task = asyncio.create_task(self._run(run, request_id), name=f"sovhub-response-{run.response['id']}")
        self.runs[run.response["id"]] = (run, task)

        def done(_task: asyncio.Task[None]) -> None:
            self.runs.pop(run.response["id"], None)
            self._tick(run.response["id"])

        task.add_done_callback(done)
        return self.service.snapshot(run.response)

    async def _run(self, run: ResponseRun, request_id: str) -> None:
        service = self.service
        try:
            await service.open(run, request_id)
        except asyncio.CancelledError:
            # Cancelled (or the hub stopping) while it waited to be admitted or for its first chunk.
            with anyio.CancelScope(shield=True):
                await service.end_unstarted(run, None)
            raise
        except SovhubError as exc:
            await service.end_unstarted(run, exc)
            return
        run.response["status"] = "in_progress"
        watcher = asyncio.create_task(self._watch(run))
        try:
            await service.save(run)
            async for event in service.events(run, lambda _s: None):
                run.log.append(event)
                self._tick(run.response["id"])
        except Exception:  # an unexpected failure must still end the stored response
            log.exception("background response %s failed", run.response["id"])
            await service.end_unstarted(run, ShuttingDown("the response failed on the hub; create it again"))
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await service.finish(run)
            if run.log:  # the stored state keeps every event, the terminal one with it
                with anyio.CancelScope(shield=True):
                    await service.save(run)

    async def _watch(self, run: ResponseRun) -> None:
        """Stop the generation when the stored response was cancelled (by any replica)."""
        while True:
            await asyncio.sleep(POLL_S)
            status = await asyncio.to_thread(self.service.store.status, run.response["id"])
            if status in ("cancelled", None):  # cancelled, or deleted meanwhile
                run.chat.cancel.cancel()
                return

    async def load(self, principal: Principal, response_id: str) -> StoredState:
        """The stored state, a run whose replica stopped (stale heartbeat) failed first."""
        store = self.service.store
        state = await asyncio.to_thread(store.load, principal, response_id)
        if state.response["status"] in _ENDED or response_id in self.runs:
            return state
        before = utcnow() - timedelta(seconds=self.stale_s)
        if await asyncio.to_thread(store.fail_stale, before, only=response_id):
            log.warning("background response %s failed: its replica stopped", response_id)
            state = await asyncio.to_thread(store.load, principal, response_id)
        return state

    def sweep(self) -> int:
        """Fail every run whose replica stopped (a worker thread; one replica at a time, leased)."""
        before = utcnow() - timedelta(seconds=self.stale_s)
        return self.service.store.fail_stale(before, keep=frozenset(self.runs))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await asyncio.to_thread(self.service.store.beat, list(self.runs))
            except SQLAlchemyError as exc:
                log.warning("heartbeat of background responses failed, will retry: %s", exc)

    async def stream(self, principal: Principal, response_id: str,
                     starting_after: int | None) -> AsyncIterator[dict[str, Any]]:
        """The run's events numbered above `starting_after` (all without), to its end. The caller's
        leaving never cancels the run. Checked before the first event: an error is an HTTP one."""
        state = await self.load(principal, response_id)
        if not state.response.get("background"):
            raise InvalidRequest("only a response created with background: true can be streamed again",
                                 param="stream")
        return self._follow(principal, response_id, -1 if starting_after is None else starting_after)

    async def _follow(self, principal: Principal, response_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
        local = self.runs.get(response_id)
        if local is not None:
            run = local[0]
            while True:
                for event in run.log[after + 1:]:
                    yield event
                    after = event["sequence_number"]
                if response_id not in self.runs:
                    break
                tick = self._ticks.setdefault(response_id, asyncio.Event())
                if len(run.log) <= after + 1:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(tick.wait(), POLL_S)
        state = await self.load(principal, response_id)
        while state.response["status"] not in _ENDED:  # running on another replica
            await asyncio.sleep(POLL_S)
            state = await self.load(principal, response_id)
        for event in replay(state):
            if event["sequence_number"] > after:
                yield event

    async def cancel(self, principal: Principal, response_id: str) -> dict[str, Any]:
        store = self.service.store
        state = await self.load(principal, response_id)
        if not state.response.get("background"):
            raise InvalidRequest("only a response created with background: true can be cancelled",
                                 param="response_id")
        if state.response["status"] in _ENDED:
            return state.response  # as it is: cancelling an ended response changes nothing
        await asyncio.to_thread(store.mark_cancelled, principal, response_id)
        local = self.runs.get(response_id)
        if local is not None:
            run, task = local
            if run.prepared is not None:
                run.prepared.cancel.cancel()  # the generation stops at its next token
            else:
                task.cancel()  # still waiting to be admitted: it never starts
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), _CANCEL_WAIT_S)
        return (await asyncio.to_thread(store.load, principal, response_id)).response

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        beat = asyncio.create_task(self._beat(), name="sovhub-responses-heartbeat")
        try:
            yield
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            for run, task in list(self.runs.values()):
                if run.prepared is not None:
                    run.prepared.interrupt()  # ends in-band: failed, shutting down
                else:
                    task.cancel()
            tasks = [task for _run, task in self.runs.values()]
            if tasks:
                await asyncio.wait(tasks, timeout=_CANCEL_WAIT_S)


def replay(state: StoredState) -> list[dict[str, Any]]:
    """An ended background run's events: those stored, and the terminal one synthesized from the
    stored response when the run could not send it (refused before it started, its replica stopped)."""
    events = list(state.events)
    response = state.response
    if events and events[-1]["type"] in _TERMINAL or response["status"] == "cancelled":
        return events  # a cancelled run has no terminal event (the spec has none)
    sequence = events[-1]["sequence_number"] + 1 if events else 0

    def event(kind: str, **data: Any) -> None:
        nonlocal sequence
        events.append({"type": kind, **data, "sequence_number": sequence})
        sequence += 1

    snapshot = copy.deepcopy  # each event carries the state of its moment
    if not events:
        event("response.created", response={**snapshot(response), "status": "queued", "error": None})
    if response["status"] == "failed":
        error = response.get("error") or {"code": "server_error", "message": "the response failed"}
        event("error", code=error["code"], message=error["message"], param=None)
        event("response.failed", response=snapshot(response))
    elif response["status"] == "incomplete":
        event("response.incomplete", response=snapshot(response))
    else:
        event("response.completed", response=snapshot(response))
    return events
