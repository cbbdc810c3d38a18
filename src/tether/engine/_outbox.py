"""The outbox: the one way effects leave the engine, and the only path to the store.

The session rules (`tether.rules._session`) hand it their effects in order:
events to publish, snapshot marks, status moves. It feeds the statistics,
publishes events (in durable mode it holds them until the snapshot that says
so is committed), and one flusher task writes every change since the last
write as one transaction. Each write carries the fencing token of every
session it touches (a shared store checks them); a session the store reports
as fenced was taken over by another process, and the engine stops it at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, final

import trio

from ..rules._errors import SnapshotError
from ..rules._events import Event, SessionOutput
from ..rules._osc import RunResult
from ..rules._output import LogFlush, OutputLog
from ..rules._snapshots import LoadReport, SessionSnapshot, SnapshotStore
from ..rules._state import SessionStatus
from ..rules._stats import StatsRecorder
from ._bus import EventBus

if TYPE_CHECKING:
    from ._session import Session

logger = logging.getLogger("tether.outbox")

RETRY_FAILED_FLUSH = 1.0
"""Seconds between tries while the store keeps failing."""


@final
class Outbox:
    """Effects out: statistics, events, snapshot marks and the write-behind flush."""

    def __init__(
        self,
        bus: EventBus,
        stats: StatsRecorder,
        store: SnapshotStore | None,
        *,
        durable: bool,
        flush_interval: float,
        snapshot_of: Callable[[str], SessionSnapshot | None],
        log_of: Callable[[str], OutputLog | None] = lambda sid: None,
        fence_of: Callable[[str], int | None] = lambda sid: None,
        on_fenced: Callable[[frozenset[str]], None] = lambda ids: None,
        on_readable: Callable[[str], None] = lambda sid: None,
        session_ids: Callable[[], Iterable[str]] = lambda: (),
    ) -> None:
        self.bus = bus
        self.stats = stats
        self._counters = stats.counters
        self.status_moved: Callable[[SessionStatus | None, SessionStatus | None], None] = stats.moved
        """For the per-status counts: the statistics' own method (one call per status move)."""
        self._store = store
        self._durable = durable and store is not None
        self._flush_interval = flush_interval
        self._snapshot_of = snapshot_of
        self._log_of = log_of
        self._logs: set[str] = set()
        """Sessions whose output log has something new to write."""
        self._fence_of = fence_of
        self._on_fenced = on_fenced
        self._on_readable = on_readable
        self._session_ids = session_ids
        """Every session this outbox writes for: a final flush writes each log that reserved ahead."""
        """A flush let readers see further into a session's log (its reservation was written down)."""
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        self._parting: dict[str, tuple[SessionSnapshot, int | None, OutputLog | None]] = {}
        """Last snapshots of sessions that ended without being unregistered (stopped by a cancel
        or a release before the final flush): written with the next flush."""
        self._held: list[tuple[type[Event], float, dict[str, Any]]] = []
        self._wanted = trio.Event()
        self._writing = trio.Lock()
        """One flush at a time: the final flush must be the last write, never overtaken by a
        regular one that was in flight or wakes after it (it would reserve ahead again)."""
        self.sealed = False
        """After the final flush: changes are no longer written and events are published at once."""

    # -- the Effects sink (tether.rules._session.Effects) -----------------------------------------

    def publish(self, cls: type[Event], /, **fields: Any) -> None:
        wall = time.time()
        count = self._counters.get(cls)  # the statistics' own table (StatsRecorder.observe)
        if count is not None:
            count(fields, wall)
        if self._durable and not self.sealed:
            self._held.append((cls, wall, fields))
            self._wanted.set()
        else:
            self.bus.emit(cls, wall, fields)

    def changed(self, session_id: str) -> None:
        if self._store is not None and not self.sealed:
            self._dirty.add(session_id)
            self._wanted.set()

    def output(self, session: Session, position: int, data: bytes, runs: list[RunResult]) -> None:
        """A chunk of output landed at `position` of the session's log: a live event, the log's
        next write, the runs it finished, the waiters it wakes."""
        self.bus.publish_live(SessionOutput, time.time(), {
            "session_id": session.sid, "data": session.decode(data), "offset": position,
        })
        if self._store is not None and not self.sealed:
            self._logs.add(session.sid)
            if session.console.log.wants_flush or not self._wanted.is_set():
                self._wanted.set()
        waiters = session.waiters
        if waiters is not None:
            if runs:
                waiters.completed(runs)
                self.changed(session.sid)  # the snapshot keeps finished runs until they are collected
            waiters.wake()

    def reopened(self, recovery_time: float) -> None:
        self.stats.reopened_episode(recovery_time)

    # -- deletions (only unregister asks) ---------------------------------------------------------

    def deleted(self, session_id: str) -> None:
        """Delete the session's snapshot with the next write."""
        if self._store is not None:
            self._dirty.discard(session_id)
            self._logs.discard(session_id)
            self._deleted.add(session_id)
            self._wanted.set()

    def forget(self, session_ids: Iterable[str]) -> None:
        """Write nothing more for these sessions (another process owns them now)."""
        for sid in session_ids:
            self._dirty.discard(sid)
            self._deleted.discard(sid)
            self._logs.discard(sid)
            self._parting.pop(sid, None)

    def parting(self, snapshot: SessionSnapshot, fence: int | None = None, log: OutputLog | None = None) -> None:
        """A session leaves without being unregistered: keep its last state (and the fence it was
        held under, and its output log) for the next write. A log whose stored head reserves
        positions ahead is kept even with nothing new: its head must be written exactly, or the
        next start would count those positions as lost (``unsaved``), and the final flush no
        longer finds a session that has left (a cancelled daemon's sessions leave before it)."""
        sid = snapshot.session_id
        reserved = log is not None and log.reserved_ahead
        if self._store is not None and not self.sealed and (sid in self._dirty or sid in self._logs or reserved):
            self._dirty.add(sid)
            self._parting[sid] = (snapshot, fence, log)

    async def load_all(self) -> LoadReport:
        """Every stored snapshot (at start)."""
        assert self._store is not None
        return await self._store.load_all()

    # -- writing ----------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The store's only writer: batches every change since the last write into one transaction."""
        task_status.started()
        while True:
            await self._wanted.wait()
            if not self._durable:
                await trio.sleep(self._flush_interval)
            if not await self.flush():
                await trio.sleep(max(self._flush_interval, RETRY_FAILED_FLUSH))

    async def flush(self, *, final: bool = False) -> bool:
        """Write every pending change now (one transaction) and release held events.

        `final` is the last flush of a clean stop: output logs reserve nothing ahead, so
        the next start continues them exactly.

        Returns False if the store failed; the changes stay queued (and, in
        durable mode, their events stay held) for the next try. A snapshot the
        store cannot encode is dropped from the batch with an error naming the
        session, so one bad session never blocks the others.
        """
        async with self._writing:
            if self.sealed:  # the final flush was the last write
                self._wanted = trio.Event()
                await trio.lowlevel.checkpoint()
                return True
            written = await self._flush(final=final)
            if final:
                self.sealed = True
            return written

    async def _flush(self, *, final: bool) -> bool:
        store = self._store
        self._wanted = trio.Event()
        if store is None:
            await trio.lowlevel.checkpoint()
            self._release(self._take_held())
            return True
        dirty, self._dirty = self._dirty, set()
        deleted, self._deleted = self._deleted, set()
        held = self._take_held()
        parting, self._parting = self._parting, {}
        snapshots = [
            snap for sid in dirty
            if (snap := self._snapshot_of(sid) or (parting[sid][0] if sid in parting else None)) is not None
        ]
        ids = [s.session_id for s in snapshots] + sorted(deleted)
        fences = {
            sid: fence for sid in ids
            if (fence := self._fence_of(sid) if sid not in parting else parting[sid][1]) is not None
        }
        log_ids, self._logs = self._logs, set()
        if final:  # a log with nothing new may still have a head that reserves ahead: write it exactly
            log_ids |= {sid for sid in self._session_ids() if (log := self._log_of(sid)) and log.reserved_ahead}
        logs: list[tuple[OutputLog, LogFlush]] = []
        for sid in log_ids | parting.keys():
            log = parting[sid][2] if sid in parting else self._log_of(sid)
            if log is not None and (final or log.needs_flush):
                logs.append((log, log.take_flush(sid, final=final or sid in parting)))
        for _, taken in logs:
            if taken.session_id not in fences and (fence := self._fence_of(taken.session_id)) is not None:
                fences[taken.session_id] = fence
        fenced: frozenset[str] = frozenset()
        while snapshots or deleted or logs:
            try:
                result = await store.write(
                    snapshots, sorted(deleted), fences=fences or None, logs=[taken for _, taken in logs]
                )
                fenced = result.fenced
                break
            except SnapshotError as exc:
                logger.error("not persisted: %s", exc)
                snapshots = [snap for snap in snapshots if snap.session_id != exc.session_id]
            except Exception:
                logger.exception("writing %d snapshots failed; will retry", len(snapshots))
                self._dirty |= {snap.session_id for snap in snapshots} - self._deleted
                self._deleted |= deleted
                self._logs |= {taken.session_id for _, taken in logs} - self._deleted
                self._held[:0] = held
                self._wanted.set()
                return False
        else:
            await trio.lowlevel.checkpoint()
        for log, taken in logs:
            if taken.session_id not in fenced:
                before = log.readable_end
                log.flushed(taken)
                if log.readable_end > before:  # output held back for this write: wake its readers
                    self._on_readable(taken.session_id)
        if fenced:
            logger.warning("%d sessions were taken over by another process: stopping them", len(fenced))
            self._on_fenced(fenced)
        self._release(held)
        return True

    def seal(self) -> None:
        """No more writes (after the final flush); held events are published now."""
        self.sealed = True
        self._release(self._take_held())

    @property
    def pending(self) -> int:
        """Sessions waiting to be written or deleted."""
        return len(self._dirty) + len(self._deleted) + len(self._logs)

    def _take_held(self) -> list[tuple[type[Event], float, dict[str, Any]]]:
        held, self._held = self._held, []
        return held

    def _release(self, held: list[tuple[type[Event], float, dict[str, Any]]]) -> None:
        for cls, wall, fields in held:
            self.bus.emit(cls, wall, fields)
