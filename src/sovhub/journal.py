"""An append-only journal, per process, of records not yet in the database.

The usage meter writes each record here (one ``write(2)`` on an ``O_APPEND`` file, no ``fsync``)
before it joins the in-memory batch: the answer's last byte leaves after it. The kernel keeps what
was written when the process is killed (``kill -9``, the OOM killer), so a replica that dies before
its batch reached the database loses nothing: the next process to start on the same data dir
replays the dead one's journal. A machine that loses power loses the page cache too; that case is
the database's and Redis's replication, not this file's.

Layout: ``<dir>/<owner>/lock`` (held with ``flock`` for the owner's life) and ``seg-<n>.jsonl``
segments. The writer rotates to a new segment when it starts a flush and deletes the sealed ones
once the flush wrote everything; a directory whose lock can be taken belongs to a dead process.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Journal"]

log = logging.getLogger("sovhub.journal")


class Journal:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.dir = root / self.owner
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._seq = 0
        self._written = 0
        self._sealed: list[Path] = []

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = os.open(self.dir / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._next_segment()

    def _segment(self, seq: int) -> Path:
        return self.dir / f"seg-{seq:08d}.jsonl"

    def _next_segment(self) -> None:
        self._seq += 1
        self._fd = os.open(self._segment(self._seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._written = 0

    def append(self, line: bytes) -> None:
        """Write one record (a line ending in a newline) in one system call."""
        assert self._fd is not None
        os.write(self._fd, line)
        self._written += 1

    def rotate(self) -> list[Path]:
        """Seal the current segment (if it holds anything); return every sealed segment not yet discarded."""
        if self._fd is not None and self._written:
            os.close(self._fd)
            self._sealed.append(self._segment(self._seq))
            self._next_segment()
        return list(self._sealed)

    def discard(self, segments: list[Path]) -> None:
        """Delete segments whose every record is now in the database."""
        for path in segments:
            path.unlink(missing_ok=True)
        self._sealed = [p for p in self._sealed if p not in segments]

    def close(self, *, keep: bool) -> None:
        """Stop writing; remove the journal unless `keep` (records not yet in the database)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock: a kept journal is replayed by the next start
            self._lock_fd = None

    def orphans(self) -> Iterator[tuple[Path, list[bytes]]]:
        """Each dead owner's directory and its records, oldest first; the caller removes the directory."""
        if not self.root.is_dir():
            return
        for owner in sorted(self.root.iterdir()):
            if owner == self.dir or not owner.is_dir():
                continue
            try:
                fd = os.open(owner / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
            except OSError as exc:
                log.warning("journal %s: cannot open its lock: %s", owner, exc)
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive (another replica sharing the data dir)
                lines: list[bytes] = []
                for segment in sorted(owner.glob("seg-*.jsonl")):
                    # A record cut by the kill has no newline: it was never acknowledged to anyone either.
                    lines += [x for x in segment.read_bytes().split(b"\n") if x.strip()]
                yield owner, lines
            finally:
                os.close(fd)
