"""The usage ledger: exactly one record per admitted request, written off the hot path, never lost.

Durability is write-ahead: ``record`` appends the record as one JSON line to this process' current
log segment with a single ``write(2)`` before the caller answers the client, which costs a few
microseconds and no database round trip. Once the call returns, the line is in the kernel's page
cache, so it survives a crash (even ``kill -9``) of the process; with ``fsync=True`` every append is
also forced to disk, so it survives power loss too, at the price of a disk flush per request.

A background flusher seals the segment (a fresh one takes new appends), inserts its records in
one transaction, then deletes the file. Inserts are idempotent (the request id is the primary key:
``ON CONFLICT DO NOTHING``), so replaying a segment twice is harmless. At start, ``open`` replays
every segment no live process holds a lock on: whatever a crashed process appended reaches the
database before this one serves. A database that is down keeps segments on disk and in memory,
retried at the next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from hearth.platform.db.models import UsageRow

log = logging.getLogger("hearth.usage")

SEGMENT_SUFFIX = ".wal"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one request consumed. ``status`` is the HTTP status the client saw (499 when the client
    went away first); ``endpoint`` is ``completions``, ``embeddings`` or ``moderations``."""

    id: str
    created_at: int
    endpoint: str
    model: str
    org_id: str | None = None
    project_id: str | None = None
    api_key_id: str | None = None
    user_id: str | None = None
    batch: bool = False
    service_tier: str = "default"
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    latency_ms: int = 0
    status: int = 200
    cost_nanousd: int = 0

    def to_json(self) -> bytes:
        # A flat dict by hand: dataclasses.asdict deep-copies, which cost more than the write(2).
        return _ENCODE({f: getattr(self, f) for f in _FIELDS}).encode() + b"\n"

    @classmethod
    def from_json(cls, line: bytes) -> UsageRecord:
        return cls(**json.loads(line))


_FIELDS = tuple(f.name for f in dataclasses.fields(UsageRecord))
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def _row(r: UsageRecord) -> dict[str, object]:
    d: dict[str, object] = {f: getattr(r, f) for f in _FIELDS}
    d["batch"] = int(r.batch)
    return d


def insert_records(sessions: sessionmaker[Session], records: Iterable[UsageRecord]) -> int:
    """Insert records in one transaction, skipping ids already present. Returns how many were new."""
    rows = [_row(r) for r in records]
    if not rows:
        return 0
    with sessions.begin() as s:
        conn = s.connection()
        ins = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        # Core executemany of one cached statement: no ORM bookkeeping, no per-batch SQL compile.
        stmt = ins(UsageRow.__table__).on_conflict_do_nothing(index_elements=["id"])
        result = conn.execute(stmt, rows)
        return max(result.rowcount, 0)


@dataclass(slots=True)
class _Segment:
    path: Path
    fd: int
    records: list[UsageRecord] = dataclasses.field(default_factory=list)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)  # also releases the flock


def _open_segment(directory: Path) -> _Segment:
    path = directory / f"{os.getpid()}-{secrets.token_hex(6)}{SEGMENT_SUFFIX}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return _Segment(path, fd)


def read_segment(path: Path) -> list[UsageRecord]:
    out = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            out.append(UsageRecord.from_json(line))
        except (ValueError, TypeError):
            log.warning("skipping an unreadable usage line in %s", path.name)
    return out


class UsageLedger:
    """See the module docstring. ``record`` is safe to call from the event loop (it never blocks on
    the database); ``flush`` runs in a worker thread; ``run`` is the background flusher task."""

    def __init__(self, sessions: sessionmaker[Session], wal_dir: Path, *, flush_interval_s: float = 0.5,
                 max_batch: int = 1000, fsync: bool = False) -> None:
        self._sessions = sessions
        self._dir = wal_dir
        self._interval = flush_interval_s
        self._max_batch = max_batch
        self._fsync = fsync
        self._lock = threading.Lock()  # guards the active segment swap
        self._flush_lock = threading.Lock()  # one flush at a time
        self._active: _Segment | None = None
        self._sealed: list[_Segment] = []
        self._wake: asyncio.Event | None = None
        self.recorded = 0
        self.flushed = 0

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions

    def open(self) -> int:
        """Replay orphaned segments (a crashed process' records), then open this process' segment."""
        self._dir.mkdir(parents=True, exist_ok=True)
        replayed = 0
        for path in sorted(self._dir.glob(f"*{SEGMENT_SUFFIX}")):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process owns it
                records = read_segment(path)
                replayed += insert_records(self._sessions, records)
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        if replayed:
            log.info("usage ledger: replayed %d record(s) left by an earlier process", replayed)
        self._active = _open_segment(self._dir)
        return replayed

    def record(self, rec: UsageRecord) -> None:
        """Append ``rec`` to the write-ahead log. When this returns, the record survives a crash."""
        line = rec.to_json()
        with self._lock:
            seg = self._active
            if seg is None:
                raise RuntimeError("usage ledger is not open")
            os.write(seg.fd, line)
            if self._fsync:
                os.fsync(seg.fd)
            seg.records.append(rec)
            self.recorded += 1
            full = len(seg.records) >= self._max_batch
        if full and self._wake is not None:
            self._wake.set()

    def flush(self) -> int:
        """Move everything recorded so far into the database. Blocking: call it from a thread."""
        with self._flush_lock:
            with self._lock:
                seg = self._active
                if seg is not None and seg.records:
                    self._active = _open_segment(self._dir)
                    self._sealed.append(seg)
            done = 0
            while self._sealed:
                seg = self._sealed[0]
                try:
                    insert_records(self._sessions, seg.records)
                except Exception:
                    log.warning("usage ledger: database write failed; %d record(s) kept on disk for retry",
                                sum(len(s.records) for s in self._sealed), exc_info=True)
                    break
                done += len(seg.records)
                seg.path.unlink(missing_ok=True)
                seg.close()
                self._sealed.pop(0)
            self.flushed += done
            return done

    def pending(self) -> int:
        with self._lock:
            active = len(self._active.records) if self._active is not None else 0
        return active + sum(len(s.records) for s in self._sealed)

    async def run(self) -> None:
        """The background flusher: every ``flush_interval_s``, or at once when a batch fills up."""
        self._wake = asyncio.Event()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            if self.pending():
                await asyncio.to_thread(self.flush)

    def close(self) -> None:
        """Flush what is left and release the segment (an empty one is deleted)."""
        self.flush()
        with self._lock:
            seg, self._active = self._active, None
        if seg is not None:
            if not seg.records:
                seg.path.unlink(missing_ok=True)
            seg.close()
