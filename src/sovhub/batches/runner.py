"""The batch runner: a loop per replica that validates, runs and finalizes batches on idle capacity.

Every piece of work is leased in the database (see store.py), so any number of replicas run the
same batches together, and a replica that dies mid-line loses only its lease: another takes the
line over once the lease ends. Lines go to the backends as background work (served only when no
interactive request waits), and at most ``batch.max_capacity_share`` of this replica's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio

from ..accounts import principal_for_key
from ..admission import abandon, keep_held
from ..api.chat.service import ChatService
from ..backends.registry import BackendRegistry
from ..errors import NotFound, SovhubError
from ..fleet.drain import Drain
from ..lineheld import LineHold, holding, line_ticket
from ..metering import Meter
from ..pipeline import ChatContext, Principal
from ..store.base import utcnow
from .execute import LineOutcome, run_line
from .store import BatchStore, ClaimedLine
from .tables import BatchRow
from .validate import validate_input

if TYPE_CHECKING:
    from ..hub import Hub
    from .schedule import Scheduler

__all__ = ["BatchRunner"]

log = logging.getLogger("sovhub.batches")


class BatchRunner:
    """Started by the batches plugin's lifespan; ``wake()`` makes it look for work at once."""

    def __init__(self, hub: Hub, store: BatchStore, scheduler: Scheduler | None = None) -> None:
        self.hub = hub
        self.store = store
        self.scheduler = scheduler
        self.settings = hub.settings.batch
        self.owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.chat = hub.services.get(ChatService)
        self.registry = hub.services.get(BackendRegistry)
        self.drain = hub.services.get(Drain)
        self._held: set[int] = set()
        #: The task answering each held line: cancelled when the line's lease is lost (see `_heartbeat`).
        self._work: dict[int, asyncio.Future[LineOutcome]] = {}
        # Made by start(), on the loop that runs the runner: one hub may serve several apps in turn
        # (tests, a restarted lifespan), each on its own event loop.
        self._wake: asyncio.Event | None = None
        self._loop_of_wake: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.lines_run = 0

    def wake(self) -> None:
        """Look for work now; safe from any thread."""
        event, loop = self._wake, self._loop_of_wake
        if event is None or loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    async def start(self) -> None:
        if not self.settings.enabled:
            return
        self._wake = asyncio.Event()
        self._loop_of_wake = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._loop(self._wake), name="sovhub-batch-runner"),
                       asyncio.create_task(self._heartbeat(), name="sovhub-batch-leases")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks:
            given = await anyio.to_thread.run_sync(self.store.release, self.owner)
            if given:
                log.info("gave back %d batch lines at shutdown", given)
        self._tasks = []

    async def _loop(self, wake: asyncio.Event) -> None:
        while not self.registry.running:  # the lifespan starts the backends after this loop
            await asyncio.sleep(0.05)
        while True:
            try:
                busy = await self.step()
            except SovhubError as exc:
                log.error("batch step failed, will retry: %s", exc.message)
                busy = False
            except Exception:
                log.exception("batch step failed, will retry")
                busy = False
            if not busy:  # its own loop's event: a second app on this hub makes its own
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.settings.poll_interval_s)
                wake.clear()

    async def _heartbeat(self) -> None:
        """Renew the leases of the lines running here, and stop those this replica lost.

        The sweep runs here too, not only between steps: a line may wait for a long time (the embedded
        model's batch process is stopped while people use the model) and the step that would sweep waits
        for it; the batch's window still ends on time, and the line's answer is then dropped.
        """
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                await anyio.to_thread.run_sync(self.store.sweep)
                lost = await anyio.to_thread.run_sync(self.store.renew, self.owner, set(self._held))
            except Exception:
                log.exception("renewing batch line leases failed")
                continue
            for line_id in lost:
                work = self._work.get(line_id)
                if work is not None and not work.done():
                    log.info("batch line %d is no longer this replica's (expired, cancelled or taken over): "
                             "its answer is stopped and dropped", line_id)
                    work.cancel()

    @property
    def running_lines(self) -> int:
        return len(self._held)

    async def step(self) -> bool:
        """One round: validate a batch, expire and cancel, finalize one, run up to `concurrency` lines.

        Once the process drains (SIGTERM) nothing new is taken: the lines already running finish, or the
        drain's cut ends them and they go back to the queue (a 503 is retried), for another replica.
        """
        if self.drain.draining:
            return False
        # Most rounds find no batch at all: one indexed query instead of the five claims and sweeps below.
        if not await anyio.to_thread.run_sync(self.store.any_unfinished):
            return False
        busy = False
        row = await anyio.to_thread.run_sync(self.store.claim_validation, self.owner)
        if row is not None:
            await self._validate(row)
            busy = True
        await anyio.to_thread.run_sync(self.store.sweep)
        done = await anyio.to_thread.run_sync(self.store.claim_finalization, self.owner)
        if done is not None:
            await anyio.to_thread.run_sync(self.store.finalize, done, self.owner)
            busy = True
        lines = await anyio.to_thread.run_sync(self.store.claim_lines, self.owner, self.settings.concurrency)
        if lines:
            principals: dict[int | None, Principal | SovhubError] = {}
            await asyncio.gather(*(self._run(line, principals) for line in lines))
            busy = True
        return busy

    # --- validation ---

    def _model_check(self, endpoint: str, principal: Principal) -> Any:
        def check(model: str) -> tuple[str, str] | None:
            if endpoint == "/v1/embeddings":
                s = self.hub.settings
                if s.embeddings_enabled and model == s.embeddings_model_id:
                    return None
                return "model_not_found", f"The model `{model}` is not an embedding model of this hub."
            if endpoint == "/v1/moderations":
                return None
            registry = self.registry
            if not registry.running:
                return "backend_unavailable", "the hub is starting"
            ctx = ChatContext(request_id="validate", principal=principal, model=model, messages=[], params={},
                              stream=False, store=False)
            try:
                registry.candidates(ctx, model)
            except SovhubError as exc:
                return exc.code or "invalid_model", exc.message
            return None
        return check

    async def _validate(self, row: BatchRow) -> None:
        try:
            principal = await anyio.to_thread.run_sync(principal_for_key, self.hub, row.key_id or -1)
            data = await anyio.to_thread.run_sync(self.store.files.read, row.org_id, row.input_file_id)
        except NotFound as exc:
            await anyio.to_thread.run_sync(self.store.fail_validation, row, [
                {"code": "file_not_found", "message": exc.message, "param": "input_file_id", "line": None}])
            return
        except SovhubError as exc:
            await anyio.to_thread.run_sync(self.store.fail_validation, row, [
                {"code": exc.code or "invalid_request", "message": exc.message, "param": None, "line": None}])
            return
        result = await anyio.to_thread.run_sync(
            validate_input, data, row.endpoint, self.settings.max_lines, self._model_check(row.endpoint, principal))
        if result.errors:
            await anyio.to_thread.run_sync(self.store.fail_validation, row, result.errors)
            self.hub.emit("batch.failed", actor=principal.label, subject=f"batch:{row.id}", org_id=row.org_id,
                          errors=len(result.errors))
            return
        not_before, schedule = None, None
        if self.scheduler is not None:
            plan = await anyio.to_thread.run_sync(self.scheduler.plan, row, [ln.line_no for ln in result.lines])
            not_before, schedule = plan.not_before, plan.summary
        started = await anyio.to_thread.run_sync(
            lambda: self.store.start(row, result.lines, result.model, not_before, schedule))
        if started:
            self.hub.emit("batch.in_progress", actor=principal.label, subject=f"batch:{row.id}", org_id=row.org_id,
                          lines=len(result.lines), model=result.model)

    # --- lines ---

    async def _principal(self, key_id: int | None, cache: dict[int | None, Principal | SovhubError]
                         ) -> Principal | SovhubError:
        if key_id not in cache:
            try:
                cache[key_id] = await anyio.to_thread.run_sync(principal_for_key, self.hub, key_id or -1)
            except SovhubError as exc:
                cache[key_id] = exc
        return cache[key_id]

    async def _run(self, line: ClaimedLine, principals: dict[int | None, Principal | SovhubError]) -> None:
        self._held.add(line.id)
        started = time.perf_counter()
        hold = LineHold(line.batch_id, line.line_no, line.attempt)
        kept = False
        try:
            if line.attempt > 1:
                # Earlier attempts' replicas lost the line (died or stalled): their reservations are voided,
                # so the one attempt whose result is kept is the one charged.
                await abandon(self.hub, [line_ticket(line.batch_id, line.line_no, n) for n in range(1, line.attempt)])
            principal = await self._principal(line.key_id, principals)
            if isinstance(principal, SovhubError):
                outcome = LineOutcome(principal.status, principal.to_dict(), "none")
            else:
                with holding(hold):
                    work = asyncio.ensure_future(run_line(self.hub, self.chat, principal, line.endpoint, line.body,
                                                          line.batch_id))
                self._work[line.id] = work
                try:
                    outcome = await work
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if not work.cancelled() or (task is not None and task.cancelling()):
                        raise  # the runner stops: not the heartbeat's doing
                    return  # the heartbeat found the lease lost: nothing to record, nothing metered
                finally:
                    self._work.pop(line.id, None)
            if outcome.retry_after is not None:
                later = utcnow() + timedelta(seconds=outcome.retry_after)
                await anyio.to_thread.run_sync(self.store.retry_line, line, self.owner, later)
                return
            status = "succeeded" if outcome.status_code == 200 else "failed"
            kept = await anyio.to_thread.run_sync(lambda: self.store.finish_line(
                line, self.owner, status=status, result=outcome.output_line(line.custom_id),
                prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.completion_tokens))
            if not kept:
                log.warning("batch %s line %d was taken over by another replica; its result here is dropped",
                            line.batch_id, line.line_no)
            self.lines_run += 1
        finally:
            self._held.discard(line.id)
            # Metered and charged once per line: only the attempt whose result is the line's (kept).
            with anyio.CancelScope(shield=True):
                await self._meter(hold, kept)
        share = self.settings.max_capacity_share
        if share < 1:
            # Leave the rest of the time to interactive work: a line that took t runs at most every t / share.
            await asyncio.sleep((time.perf_counter() - started) * (1 / share - 1))

    async def _meter(self, hold: LineHold, kept: bool) -> None:
        if kept:
            meter = self.hub.services.get(Meter)
            for usage in hold.usages:
                meter.record(usage)
        await keep_held(self.hub, hold, kept)
