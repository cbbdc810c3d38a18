"""What every store keeps besides its rows: counters and the quarantine of unreadable ids.

Held by each store as a part (composition), so stores share the rules
without sharing a base class.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import attrs

from ..rules._errors import SnapshotError
from ..rules._output import LogFlush, StoredLog
from ..rules._snapshots import LoadReport, SessionSnapshot, StoreStats

logger = logging.getLogger("tether.store")


@attrs.define
class Counters:
    """Mutable twin of `StoreStats`, owned by one store."""

    writes: int = 0
    rows_written: int = 0
    rows_deleted: int = 0
    rows_skipped: int = 0
    bytes_written: int = 0
    write_seconds: float = 0.0
    last_write_seconds: float = 0.0
    max_write_seconds: float = 0.0
    last_write_rows: int = 0
    last_write_bytes: int = 0
    loads: int = 0
    rows_loaded: int = 0
    load_errors: int = 0
    log_rows_written: int = 0
    log_bytes_written: int = 0
    logs_loaded: int = 0

    def wrote(self, rows: int, deleted: int, skipped: int, nbytes: int, seconds: float) -> None:
        self.writes += 1
        self.rows_written += rows
        self.rows_deleted += deleted
        self.rows_skipped += skipped
        self.bytes_written += nbytes
        self.write_seconds += seconds
        self.last_write_seconds = seconds
        self.max_write_seconds = max(self.max_write_seconds, seconds)
        self.last_write_rows = rows
        self.last_write_bytes = nbytes

    def loaded(self, rows: int, errors: int, logs: int = 0) -> None:
        self.loads += 1
        self.rows_loaded += rows
        self.load_errors += errors
        self.logs_loaded += logs

    def wrote_logs(self, rows: int, nbytes: int) -> None:
        self.log_rows_written += rows
        self.log_bytes_written += nbytes

    def freeze(self, quarantined: int) -> StoreStats:
        return StoreStats(quarantined=quarantined, **attrs.asdict(self))


class Quarantine:
    """Ids whose stored rows could not be read: never overwritten or deleted until released."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self._warned: set[str] = set()

    def logs(self, flushes: Sequence[LogFlush], deleted: Sequence[str]) -> list[LogFlush]:
        """The log flushes to apply: not of a quarantined session, nor of one deleted in the same batch."""
        if not flushes:
            return []
        gone = set(deleted) | self.ids
        return [f for f in flushes if f.session_id not in gone]

    def split(
        self, snapshots: Sequence[SessionSnapshot], deleted: Sequence[str]
    ) -> tuple[list[SessionSnapshot], list[str], int]:
        if not self.ids:
            return list(snapshots), list(deleted), 0
        keep = [s for s in snapshots if s.spec.id not in self.ids]
        drop = [d for d in deleted if d not in self.ids]
        skipped = [s.spec.id for s in snapshots if s.spec.id in self.ids] + [d for d in deleted if d in self.ids]
        for sid in skipped:
            if sid not in self._warned:
                self._warned.add(sid)
                logger.warning(
                    "not writing session %r: its stored snapshot could not be read and is kept as it "
                    "is (release it to overwrite)",
                    sid,
                )
        return keep, drop, len(skipped)

    def release(self, session_ids: Iterable[str]) -> None:
        for sid in session_ids:
            self.ids.discard(sid)
            self._warned.discard(sid)


@attrs.define(eq=False)
class StoreBookkeeping:
    """Counters and quarantine of one store."""

    counters: Counters = attrs.field(factory=Counters)
    quarantine: Quarantine = attrs.field(factory=Quarantine)

    def loaded(
        self,
        snapshots: Sequence[SessionSnapshot],
        errors: Sequence[SnapshotError],
        logs: Mapping[str, StoredLog] | None = None,
        log_errors: Sequence[SnapshotError] = (),
    ) -> LoadReport:
        """Quarantine every snapshot row that failed, count the load, and report it.

        An unreadable log quarantines nothing: its session still loads, starts a new log,
        and that log's first write replaces the damaged one.
        """
        for error in errors:
            self.quarantine.ids.add(error.session_id)
        self.counters.loaded(len(snapshots), len(errors) + len(log_errors), len(logs or {}))
        return LoadReport(tuple(snapshots), (*errors, *log_errors), dict(logs or {}))

    def stats(self) -> StoreStats:
        return self.counters.freeze(len(self.quarantine.ids))

    @property
    def quarantined(self) -> frozenset[str]:
        """Ids whose rows failed to load and are left untouched."""
        return frozenset(self.quarantine.ids)

    def release(self, session_ids: Iterable[str]) -> None:
        """Allow writes to overwrite (and deletes to remove) these quarantined rows again."""
        self.quarantine.release(session_ids)
