"""A replica with no batch to run costs one indexed query a poll, not a round of claims and sweeps."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from sovhub.batches.runner import BatchRunner
from sovhub.batches.store import TERMINAL, UNFINISHED
from sovhub.hub import Hub


def _statements(hub: Hub) -> list[str]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(hub.db.engine, "before_cursor_execute", note)
    return seen


async def test_an_idle_round_reads_once_and_writes_nothing(hub: Hub) -> None:
    runner = hub.services.get(BatchRunner)
    seen = _statements(hub)
    assert await runner.step() is False
    assert len(seen) == 1, seen
    assert seen[0].lstrip().upper().startswith("SELECT") and "batches" in seen[0]


def test_every_status_is_either_unfinished_or_terminal() -> None:
    # A status in neither list would be a batch the idle probe never sees: work that never runs.
    openai_statuses = {"validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                       "cancelled"}
    assert set(UNFINISHED).isdisjoint(TERMINAL)
    assert set(UNFINISHED) | set(TERMINAL) == openai_statuses
