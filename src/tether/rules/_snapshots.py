"""What a snapshot is, and what a store must offer the engine: values and a Protocol, no I/O.

A snapshot is what survives a crash: the spec, the status, the current
episode with its attempts, the bounded history, the preserved state and the
per-session counters (all inside `SessionState`), and the `run`s a restart
must still answer (`SavedRuns`). The engine builds them and
hands them to a `SnapshotStore` through its outbox; how they are encoded and
where they live is the store layer's business (``tether.store``).

`fencing_token` is the owner's per-lease counter for a shared database: a
PostgreSQL store checks it in the same statement that writes, so a process
that lost its lease cannot overwrite a newer owner's snapshot. Stores that
have one owner by construction (memory, SQLite) accept and ignore it.

Rows that cannot be read come back in `LoadReport.errors` and are
*quarantined*: the store keeps them untouched and skips later writes and
deletes of those ids until `release` says they may be overwritten.

Output logs (`tether.rules._output`) travel with snapshots: a write carries
each changed session's `LogFlush` in the same transaction, so a log's head
never gets ahead of the snapshot written with it, and `load_all` returns every
stored log beside the snapshots. A log that cannot be read is reported in
`LoadReport.errors` (its session's snapshot still loads) and left as it is
until the session's next log write, which replaces it with a new log.
Deleting a session deletes its log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, final, runtime_checkable

import attrs

from ._console import SavedRuns
from ._errors import ConfigError, SnapshotError
from ._output import LogFlush, StoredLog
from ._spec import SessionSpec
from ._state import SessionState


def _same_session(instance: SessionSnapshot, attribute: attrs.Attribute[Any], value: SessionState) -> None:
    if value.id != instance.spec.id:
        raise ConfigError("state.id", f"is {value.id!r} but the spec is of session {instance.spec.id!r}")


@final
@attrs.frozen(kw_only=True)
class SessionSnapshot:
    """One session as it is persisted: what to run, where it was, and when we wrote it down."""

    spec: SessionSpec
    state: SessionState = attrs.field(validator=_same_session)
    saved_at: float
    """Wall-clock time (epoch seconds) the snapshot was taken."""
    declared: bool = False
    """The session came from a declaration (the daemon's config), not from a register call:
    a later start whose config no longer declares it unregisters it."""
    runs: SavedRuns | None = None
    """`run`s typed into its shell that a restart must answer (pending, or finished and not yet
    collected); None when there are none (the snapshot then has no ``runs`` key at all)."""

    @property
    def session_id(self) -> str:
        return self.spec.id


@final
@attrs.frozen
class LoadReport:
    """Everything a store held: the snapshots it could read and an error per row it could not."""

    snapshots: tuple[SessionSnapshot, ...]
    errors: tuple[SnapshotError, ...] = ()
    logs: Mapping[str, StoredLog] = attrs.field(factory=dict, hash=False)
    """Session id -> its output log as last written (only logs that could be read)."""


@final
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
    log_rows_written: int = 0
    """Output-log rows (data and losses) upserted, heads not counted."""
    log_bytes_written: int = 0
    """Output bytes in those rows."""
    logs_loaded: int = 0

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


@final
@attrs.frozen
class WriteResult:
    """What a write could not do."""

    fenced: frozenset[str] = frozenset()
    """Sessions another owner has taken over since our fence: nothing of theirs was written.
    The engine stops supervising them at once."""


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
        fences: Mapping[str, int] | None = None,
        logs: Sequence[LogFlush] = (),
    ) -> WriteResult:
        """Upsert `snapshots`, delete `deleted` ids (and their logs) and apply the output-log
        flushes `logs`, in ONE transaction: all or nothing.

        `fences` maps a session id to the fencing token its owner holds; a store
        shared by several processes writes a row only while its stored fence is
        that token and reports the others in `WriteResult.fenced`. A log flush
        for a session deleted in the same batch, or quarantined, is skipped.
        """
        ...

    async def aclose(self) -> None:
        """Finish the write in progress, release the database. Idempotent."""
        ...

    def stats(self) -> StoreStats:
        """Counters so far."""
        ...
