"""A batch line's metering, held until the line's result is kept: one usage row and one charge per line.

A batch line may run more than once: its replica lost the lease (stalled, or died) and another
took the line over, or an interactive request preempted it. Whatever each attempt costs is held
here instead of being written: the usage records it would meter and the admissions it would
settle. The batch runner keeps them (writes the rows, settles the charges) only when the
attempt's result is the line's one result, that is when its conditional UPDATE on the line's
lease matched; otherwise it voids them. The rows carry a key per line (``batch_line_key``,
unique in the database), so even a bug that let two attempts through would write one row.

Every service meters through ``Meter.record`` and charges through ``admission.settle``; both
look at :func:`current_line` (a context variable the runner sets around one line's task, so
the services need no argument for it and concurrent lines never see each other's hold).

An attempt's admissions carry a ticket derived from the line and the attempt
(``bl:<batch>:<line>:<attempt>``): a replica that takes a line over voids the reservations of
the earlier attempts by their tickets (``admission.abandon``), so a replica killed mid-line
leaves no hold to be charged when it expires.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .admission import Admission
    from .metering import Usage

__all__ = ["LineHold", "current_line", "holding", "line_ticket"]


def line_ticket(batch_id: str, line_no: int, attempt: int, index: int = 0) -> str:
    """The admission ticket of a line's attempt (its `index`-th admission)."""
    return f"bl:{batch_id}:{line_no}:{attempt}" + (f":{index}" if index else "")


@dataclass(slots=True)
class LineHold:
    batch_id: str
    line_no: int
    attempt: int
    usages: list[Usage] = field(default_factory=list)
    admissions: list[Admission] = field(default_factory=list)
    #: (tokens, prompt_tokens, completion_tokens) per admission, as its service settled it.
    settlements: dict[str, tuple[int, int | None, int | None]] = field(default_factory=dict)

    def record(self, usage: Usage) -> None:
        if usage.batch_id is None:  # a guard model's call for the line is batch work too
            usage.batch_id = self.batch_id
        usage.batch_line_key = f"{self.batch_id}:{self.line_no}:{len(self.usages)}"
        self.usages.append(usage)

    def next_ticket(self) -> str:
        return line_ticket(self.batch_id, self.line_no, self.attempt, len(self.admissions))


_current: ContextVar[LineHold | None] = ContextVar("sovhub_batch_line", default=None)


def current_line() -> LineHold | None:
    return _current.get()


@contextlib.contextmanager
def holding(hold: LineHold) -> Iterator[LineHold]:
    """Hold the metering of everything run inside (this task and the tasks it starts) in `hold`."""
    token = _current.set(hold)
    try:
        yield hold
    finally:
        _current.reset(token)
