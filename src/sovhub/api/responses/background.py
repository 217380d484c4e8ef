"""Background responses (``background: true``): run on this replica after the request returned,
read back by polling, cancelled by POST /v1/responses/{id}/cancel.

The stored response is the truth every replica reads: it is written ``queued`` before the
request returns, ``in_progress`` once the chat is admitted and routed, and in its final state
at the end. A cancel marks the stored response ``cancelled``; the replica running it stops its
generation at once when it runs here, and within :data:`POLL_S` when it runs on another replica
(each run reads its stored status that often). What ran is billed as any chat is: the chat
service records it once, however the run ended. When the hub stops, runs still going end as
``failed`` (the hub shutting down), so none stays ``in_progress`` for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from ...errors import InvalidRequest, ShuttingDown, SovhubError

if TYPE_CHECKING:
    from ...pipeline import Principal
    from .service import ResponseRun, ResponsesService

__all__ = ["POLL_S", "BackgroundRuns"]

log = logging.getLogger("sovhub.api.responses")

#: How often a background run reads its stored status (a cancel made on another replica).
POLL_S = 1.0
#: How long a cancel waits for the run to stop and store its final state.
_CANCEL_WAIT_S = 10.0
_ENDED = ("completed", "failed", "incomplete", "cancelled")


class BackgroundRuns:
    """This replica's background runs, by response id."""

    def __init__(self, service: ResponsesService) -> None:
        self.service = service
        self.runs: dict[str, tuple[ResponseRun, asyncio.Task[None]]] = {}

    async def submit(self, run: ResponseRun, request_id: str) -> dict[str, Any]:
        """Store the run as queued and start it; the queued response is the request's answer."""
        store = self.service.store
        if not store.keeps(run.principal):
            raise InvalidRequest("a background response must be stored, and this hub keeps no responses of yours "
                                 "(content storage is off, or your retention is zero days)", param="background")
        await self.service.save(run)
        task = asyncio.create_task(self._run(run, request_id), name=f"sovhub-response-{run.response['id']}")
        self.runs[run.response["id"]] = (run, task)
        task.add_done_callback(lambda _t: self.runs.pop(run.response["id"], None))
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
            async for _event in service.events(run, lambda _s: None):
                pass
        except Exception:  # an unexpected failure must still end the stored response
            log.exception("background response %s failed", run.response["id"])
            await service.end_unstarted(run, ShuttingDown("the response failed on the hub; create it again"))
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await service.finish(run)

    async def _watch(self, run: ResponseRun) -> None:
        """Stop the generation when the stored response was cancelled (by any replica)."""
        while True:
            await asyncio.sleep(POLL_S)
            status = await asyncio.to_thread(self.service.store.status, run.response["id"])
            if status in ("cancelled", None):  # cancelled, or deleted meanwhile
                run.chat.cancel.cancel()
                return

    async def cancel(self, principal: Principal, response_id: str) -> dict[str, Any]:
        store = self.service.store
        state = await asyncio.to_thread(store.load, principal, response_id)
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
        try:
            yield
        finally:
            for run, task in list(self.runs.values()):
                if run.prepared is not None:
                    run.prepared.interrupt()  # ends in-band: failed, shutting down
                else:
                    task.cancel()
            tasks = [task for _run, task in self.runs.values()]
            if tasks:
                await asyncio.wait(tasks, timeout=_CANCEL_WAIT_S)
