"""`MemoryStore`: a store in a dict, for tests and benchmarks, and the reference for what a store must do.

A store is three async methods (`tether.rules._snapshots.SnapshotStore`):
load everything once at start, write a batch of changed snapshots (and
deletions) as one transaction, close. The engine's outbox is the only
writer, so a store need not serialise writers against each other.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import final

import trio

from ..rules._errors import SnapshotError
from ..rules._output import LogFlush, LogHead, LogRow, StoredLog, apply_flush, check_stored
from ..rules._secrets import DEFAULT_SECRET_PATTERNS
from ..rules._snapshots import LoadReport, SessionSnapshot, StoreStats, WriteResult
from ._bookkeeping import StoreBookkeeping
from ._codec import decode_snapshot, encode_snapshot


@final
class MemoryStore:
    """A store in a dict: for tests and benchmarks, and the reference for what a store must do.

    Keeps the JSON text a real store would write, so every snapshot makes the
    full round trip (redaction, converter, JSON) and sizes are real.
    """

    def __init__(self, *, secret_patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS) -> None:
        self.rows: dict[str, str] = {}
        """Session id -> JSON text. Tests may plant bad rows here."""
        self.logs: dict[str, tuple[LogHead, dict[int, LogRow]]] = {}
        """Session id -> its output log's head and rows (keyed by start). Tests may damage them."""
        self.last_fences: Mapping[str, int] = {}
        """The fences handed to the last `write` (a memory store has one owner and checks none)."""
        self._patterns = tuple(secret_patterns)
        self._closed = False
        self._books = StoreBookkeeping()

    async def load_all(self) -> LoadReport:
        await trio.lowlevel.checkpoint()
        self._check_open()
        snapshots: list[SessionSnapshot] = []
        errors: list[SnapshotError] = []
        for sid, text in sorted(self.rows.items()):
            try:
                snapshots.append(decode_snapshot(sid, text))
            except SnapshotError as exc:
                errors.append(exc)
        logs: dict[str, StoredLog] = {}
        log_errors: list[SnapshotError] = []
        for sid, (head, rows) in sorted(self.logs.items()):
            stored = StoredLog(head, tuple(rows[start] for start in sorted(rows)))
            try:
                check_stored(stored)
            except ValueError as exc:
                log_errors.append(SnapshotError(sid, f"output log: {exc}"))
                continue
            logs[sid] = stored
        return self._books.loaded(snapshots, errors, logs, log_errors)

    async def write(
        self,
        snapshots: Sequence[SessionSnapshot],
        deleted: Sequence[str] = (),
        *,
        fences: Mapping[str, int] | None = None,
        logs: Sequence[LogFlush] = (),
    ) -> WriteResult:
        await trio.lowlevel.checkpoint()
        self._check_open()
        started = time.perf_counter()
        keep, drop, skipped = self._books.quarantine.split(snapshots, deleted)
        flushes = self._books.quarantine.logs(logs, deleted)
        encoded = {s.spec.id: encode_snapshot(s, self._patterns) for s in keep}
        # All encoding happens before the first change, so a failure leaves the store as it was.
        self.rows.update(encoded)
        for sid in drop:
            self.rows.pop(sid, None)
            self.logs.pop(sid, None)
        for flush in flushes:
            stored = self.logs.get(flush.session_id)
            rows = stored[1] if stored is not None and stored[0].log_id == flush.head.log_id else {}
            apply_flush(rows, flush)
            self.logs[flush.session_id] = (flush.head, rows)
        self._books.counters.wrote_logs(
            sum(len(f.rows) for f in flushes), sum(len(r.data) for f in flushes for r in f.rows)
        )
        self.last_fences = dict(fences or {})
        nbytes = sum(len(text) for text in encoded.values())
        self._books.counters.wrote(len(encoded), len(drop), skipped, nbytes, time.perf_counter() - started)
        return WriteResult()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self._closed = True

    def stats(self) -> StoreStats:
        return self._books.stats()

    @property
    def quarantined(self) -> frozenset[str]:
        """Ids whose rows failed to load and are left untouched."""
        return self._books.quarantined

    def release(self, session_ids: Iterable[str]) -> None:
        """Allow writes to overwrite (and deletes to remove) these quarantined rows again."""
        self._books.release(session_ids)

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the store is closed")
