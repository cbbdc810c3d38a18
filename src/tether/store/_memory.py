"""The snapshot store interface: the seam where SQLite now and PostgreSQL later plug in.

A store is three async methods: load everything once at start, write a batch
of changed snapshots (and deletions) as one transaction, close. The
supervisor's single flusher task is the only writer, so a store need not
serialise writers against each other, only against its own worker thread.

`fencing_token` is the owner's per-lease counter for a future shared
database: a PostgreSQL store checks it in the same statement that writes, so a
process that lost its lease cannot overwrite a newer owner's snapshot. Stores
that have one owner by construction (memory, SQLite) accept and ignore it.

Rows that cannot be read come back in `LoadReport.errors` and are
*quarantined*: the store keeps them untouched and skips later writes and
deletes of those ids (counted in `StoreStats.rows_skipped`) until
`release` says they may be overwritten. A newer tether's row therefore
survives an older tether running against the same store.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Protocol, final, runtime_checkable

import attrs
import trio

from ..rules._errors import TetherError
from ._codec import (
    DEFAULT_SECRET_PATTERNS,
    SessionSnapshot,
    SnapshotError,
    snapshot_from_dict,
    snapshot_to_dict,
)

logger = logging.getLogger("tether.store")


class StoreError(TetherError):
    """The store itself is unusable (corrupt or foreign database file, failed transaction).

    `location` names the file (or database) and `problem` says what is wrong.
    Distinct from `SnapshotError`, which is about one session's row.
    """

    def __init__(self, location: str, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"{location}: {problem}")


class CorruptStoreError(StoreError):
    """The database file is damaged or is not a tether database; it was left untouched."""


@attrs.frozen
class LoadReport:
    """Everything a store held: the snapshots it could read and an error per row it could not."""

    snapshots: tuple[SessionSnapshot, ...]
    errors: tuple[SnapshotError, ...] = ()


@attrs.frozen(kw_only=True)
class StoreStats:
    """Counters for benchmarks and ``tether status``: what the store cost so far."""

    writes: int = 0
    """Transactions committed by `write` (one per batch, however large)."""
    rows_written: int = 0
    rows_deleted: int = 0
    rows_skipped: int = 0
    """Writes and deletes not done because the id is quarantined."""
    bytes_written: int = 0
    """Encoded snapshot bytes handed to the store (JSON text), excluding database overhead."""
    write_seconds: float = 0.0
    """Total wall time spent inside `write` (encoding + transaction)."""
    last_write_seconds: float = 0.0
    max_write_seconds: float = 0.0
    last_write_rows: int = 0
    last_write_bytes: int = 0
    loads: int = 0
    rows_loaded: int = 0
    load_errors: int = 0
    quarantined: int = 0
    """Ids currently quarantined."""

    @property
    def bytes_per_session(self) -> float:
        """Mean encoded size of one written snapshot."""
        return self.bytes_written / self.rows_written if self.rows_written else 0.0

    @property
    def writes_per_second(self) -> float:
        """Transactions per second of time spent writing (store throughput, not flush rate)."""
        return self.writes / self.write_seconds if self.write_seconds > 0 else 0.0

    @property
    def rows_per_second(self) -> float:
        """Snapshots per second of time spent writing."""
        return self.rows_written / self.write_seconds if self.write_seconds > 0 else 0.0

    @property
    def mean_write_seconds(self) -> float:
        return self.write_seconds / self.writes if self.writes else 0.0


@runtime_checkable
class SnapshotStore(Protocol):
    """Where snapshots live between runs. One writer: the supervisor's flusher task."""

    async def load_all(self) -> LoadReport:
        """Every stored snapshot; unreadable rows become errors and are quarantined, not dropped."""
        ...

    async def write(
        self,
        snapshots: Sequence[SessionSnapshot],
        deleted: Sequence[str] = (),
        *,
        fencing_token: int | None = None,
    ) -> None:
        """Upsert `snapshots` and delete `deleted` ids in ONE transaction: all or nothing."""
        ...

    async def aclose(self) -> None:
        """Finish the write in progress, release the database. Idempotent."""
        ...

    def stats(self) -> StoreStats:
        """Counters so far."""
        ...


@attrs.define
class _Counters:
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

    def loaded(self, rows: int, errors: int) -> None:
        self.loads += 1
        self.rows_loaded += rows
        self.load_errors += errors

    def freeze(self, quarantined: int) -> StoreStats:
        return StoreStats(quarantined=quarantined, **attrs.asdict(self))


def _json_default(value: object) -> str:
    """TOML gives dates and times; JSON has none, so they are kept as ISO text."""
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_snapshot(snapshot: SessionSnapshot, secret_patterns: Iterable[str]) -> str:
    """Compact JSON text of the redacted snapshot: what every text-keeping store writes.

    A value JSON cannot hold (in the spec's options) is a `SnapshotError` naming the session.
    """
    data = snapshot_to_dict(snapshot, secret_patterns=secret_patterns)
    try:
        return json.dumps(data, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise SnapshotError(snapshot.spec.id, f"cannot be encoded as JSON: {exc}") from exc


def decode_snapshot(session_id: str, text: str | bytes) -> SessionSnapshot:
    """The snapshot stored as `text` under `session_id`; any problem is a `SnapshotError`."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(session_id, f"is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SnapshotError(session_id, f"is not a JSON object (got {type(data).__name__})")
    return snapshot_from_dict(data, session_id=session_id)


class _Quarantine:
    """Ids whose stored rows could not be read: never overwritten or deleted until released."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self._warned: set[str] = set()

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


class _Bookkeeping:
    """What every store keeps besides its rows: counters and the quarantine of unreadable ids."""

    def __init__(self) -> None:
        self._counters = _Counters()
        self._quarantine = _Quarantine()

    def _loaded(self, snapshots: Sequence[SessionSnapshot], errors: Sequence[SnapshotError]) -> LoadReport:
        """Quarantine every row that failed, count the load, and report it."""
        for error in errors:
            self._quarantine.ids.add(error.session_id)
        self._counters.loaded(len(snapshots), len(errors))
        return LoadReport(tuple(snapshots), tuple(errors))

    def stats(self) -> StoreStats:
        return self._counters.freeze(len(self._quarantine.ids))

    @property
    def quarantined(self) -> frozenset[str]:
        """Ids whose rows failed to load and are left untouched."""
        return frozenset(self._quarantine.ids)

    def release(self, session_ids: Iterable[str]) -> None:
        """Allow writes to overwrite (and deletes to remove) these quarantined rows again."""
        self._quarantine.release(session_ids)


@final
class MemoryStore(_Bookkeeping):
    """A store in a dict: for tests and benchmarks, and the reference for what a store must do.

    Keeps the JSON text a real store would write, so every snapshot makes the
    full round trip (redaction, converter, JSON) and sizes are real.
    """

    def __init__(self, *, secret_patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS) -> None:
        self.rows: dict[str, str] = {}
        """Session id -> JSON text. Tests may plant bad rows here."""
        self.last_fencing_token: int | None = None
        self._patterns = tuple(secret_patterns)
        self._closed = False
        super().__init__()

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
        return self._loaded(snapshots, errors)

    async def write(
        self,
        snapshots: Sequence[SessionSnapshot],
        deleted: Sequence[str] = (),
        *,
        fencing_token: int | None = None,
    ) -> None:
        await trio.lowlevel.checkpoint()
        self._check_open()
        started = time.perf_counter()
        keep, drop, skipped = self._quarantine.split(snapshots, deleted)
        encoded = {s.spec.id: encode_snapshot(s, self._patterns) for s in keep}
        # All encoding happens before the first change, so a failure leaves the store as it was.
        self.rows.update(encoded)
        for sid in drop:
            self.rows.pop(sid, None)
        self.last_fencing_token = fencing_token
        nbytes = sum(len(text) for text in encoded.values())
        self._counters.wrote(len(encoded), len(drop), skipped, nbytes, time.perf_counter() - started)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the store is closed")
