"""A cluster member for tests and benchmarks: scripted sessions, fenced snapshots, a supervision log.

`StandInMember` implements `tether.cluster._coordinator.ClusterMember` the
way the engine must (see there): one task per session holding a scripted
link, snapshots written behind through the store with ``fences=`` and
`WriteResult.fenced` treated as `fence_lost`. It is what the cluster tests
and benchmarks/cluster.py drive until the real supervisor speaks the same
interface.

Every start and stop of supervision is written at once (one ``write(2)``
per line, so a SIGKILL loses nothing already done) to a JSON-lines log with
CLOCK_MONOTONIC timestamps, which are machine-wide: the logs of several
processes on one machine can be merged and compared for overlaps
(`supervision_intervals`, `overlaps`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, final

import attrs
import trio

from ..contract._plugin import ConnectMode, LinkRequest
from ..rules._errors import DuplicateSessionError, SnapshotError, StoreError
from ..rules._snapshots import SessionSnapshot, SnapshotStore
from ..rules._spec import SessionSpec
from ..rules._state import PreservedState, SessionState, SessionStatus
from ._scripted import ScriptedBackend

logger = logging.getLogger("tether.testing.cluster")


def machine_clock() -> float:
    """CLOCK_MONOTONIC: one clock for every process on this machine."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@final
class SupervisionLog:
    """Append-only JSON lines, one ``write(2)`` each, so a killed process's log is complete."""

    def __init__(self, path: str | os.PathLike[str] | None, *, node: str) -> None:
        self.node = node
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if path is not None else None

    def event(self, kind: str, **fields: Any) -> None:
        if self._fd is None:
            return
        line = json.dumps({"ev": kind, "node": self.node, "t": machine_clock(), **fields}, separators=(",", ":"))
        os.write(self._fd, line.encode() + b"\n")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@attrs.define(eq=False)
class _Held:
    spec: SessionSpec
    fence: int
    scope: trio.CancelScope
    done: trio.Event
    writes: int = 0
    connected_at: float = 0.0


@final
class StandInMember:
    """A minimal supervisor implementing `ClusterMember`; run `run` in a nursery first."""

    def __init__(
        self,
        store: SnapshotStore,
        *,
        log: SupervisionLog | None = None,
        backend: ScriptedBackend | None = None,
        flush_interval: float = 0.2,
        churn: float = 0.2,
    ) -> None:
        self.store = store
        self.log = log if log is not None else SupervisionLog(None, node="")
        self.backend = backend if backend is not None else ScriptedBackend()
        self.flush_interval = flush_interval
        self.churn = churn
        """Fraction of the held sessions whose state changes (and is written) per second."""
        self.sessions: dict[str, _Held] = {}
        self._dirty: set[str] = set()
        self._releasing: set[str] = set()
        self._flush_now = trio.Event()
        self._flushed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.writes = 0
        self.rows_written = 0
        self.fenced = 0
        self.write_failures = 0
        self.registered = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the sessions' tasks and the flusher until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._flusher)
            if self.churn > 0:
                nursery.start_soon(self._churner)
            task_status.started()
            await trio.sleep_forever()

    # -- ClusterMember ---------------------------------------------------------------------

    async def register(self, spec: SessionSpec, *, restore: SessionState | None, fence: int) -> object:
        await trio.lowlevel.checkpoint()
        if spec.id in self.sessions:
            raise DuplicateSessionError(spec.id)
        assert self._nursery is not None, "run() first"
        self.backend.validate(spec)
        held = _Held(spec, fence, trio.CancelScope(), trio.Event())
        self.sessions[spec.id] = held
        self.log.event("start", sid=spec.id, fence=fence, restored=restore is not None)
        self._nursery.start_soon(self._hold, held)
        self._dirty.add(spec.id)
        self.registered += 1
        return held

    async def release(self, session_id: str) -> None:
        held = self.sessions.get(session_id)
        if held is None:
            await trio.lowlevel.checkpoint()
            return
        held.scope.cancel()
        await held.done.wait()
        # The last snapshot, with our fence, before the coordinator hands the row back; releases
        # that arrive together share one write (a clean stop of thousands is one transaction).
        self._dirty.add(session_id)
        self._releasing.add(session_id)
        self._flush_now.set()
        while session_id in self._releasing:
            await self._flushed.wait()
        if self.sessions.get(session_id) is held:
            del self.sessions[session_id]
        self.log.event("stop", sid=session_id, fence=held.fence, why="released")

    def fence_lost(self, session_ids: Collection[str]) -> None:
        for sid in session_ids:
            held = self.sessions.pop(sid, None)
            if held is None:
                continue
            held.scope.cancel()
            self._dirty.discard(sid)
            self.log.event("stop", sid=sid, fence=held.fence, why="fenced")

    # -- inside ----------------------------------------------------------------------------

    async def _hold(self, held: _Held) -> None:
        try:
            with held.scope:
                request = LinkRequest(
                    spec=held.spec,
                    mode=ConnectMode.FRESH,
                    state=None,
                    history=b"",
                    deadline=trio.current_time() + 30,
                    connect_timeout=30,
                    keepalive_interval=0,
                    report_closed=lambda _: None,
                    report_output=lambda _: None,
                    report_state=lambda _: None,
                )
                async with self.backend.open_link(request):
                    held.connected_at = time.time()
                    await trio.sleep_forever()
        finally:
            held.done.set()

    def _snapshot(self, held: _Held) -> SessionSnapshot:
        held.writes += 1
        now = time.time()
        state = SessionState(
            id=held.spec.id,
            backend=held.spec.backend,
            target=self.backend.target(held.spec),
            status=SessionStatus.CONNECTED,
            status_since=held.connected_at or now,
            episode=None,
            history=(),
            preserved=PreservedState(extra={"writes": str(held.writes), "fence": str(held.fence)}),
            last_disconnect=None,
            connected_at=held.connected_at or now,
            next_attempt_at=None,
            episodes_total=0,
            episodes_recovered=0,
            episodes_failed=0,
        )
        return SessionSnapshot(spec=held.spec, state=state, saved_at=now)

    async def _churner(self) -> None:
        """Mark a `churn` fraction of sessions changed per second, round robin."""
        cursor = 0
        while True:
            await trio.sleep(self.flush_interval)
            ids = list(self.sessions)
            if not ids:
                continue
            count = max(1, round(len(ids) * self.churn * self.flush_interval))
            for i in range(count):
                self._dirty.add(ids[(cursor + i) % len(ids)])
            cursor = (cursor + count) % len(ids)

    async def _flusher(self) -> None:
        while True:
            with trio.move_on_after(self.flush_interval):
                await self._flush_now.wait()
            self._flush_now = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Write every changed session with its fence; fenced ones are stopped here."""
        dirty, self._dirty = self._dirty, set()
        releasing, self._releasing = self._releasing, set()
        held = [h for sid in dirty if (h := self.sessions.get(sid)) is not None]
        try:
            if held:
                await self._write(held)
        finally:
            self._releasing -= releasing
            self._flushed.set()
            self._flushed = trio.Event()

    async def _write(self, held: list[_Held]) -> None:
        fences = {h.spec.id: h.fence for h in held}
        try:
            result = await self.store.write([self._snapshot(h) for h in held], fences=fences)
        except (StoreError, SnapshotError) as exc:
            self.write_failures += 1
            logger.warning("writing %d snapshots failed; will retry: %s", len(held), exc)
            self._dirty |= {h.spec.id for h in held if h.spec.id in self.sessions}
            return
        self.writes += 1
        self.rows_written += len(held) - len(result.fenced)
        if len(held) > len(result.fenced):
            self.log.event("wrote", count=len(held) - len(result.fenced))
        if result.fenced:
            self.fenced += len(result.fenced)
            self.log.event("write-fenced", count=len(result.fenced))
            self.fence_lost(result.fenced)


# -- reading the logs back ---------------------------------------------------------------------


@attrs.frozen
class Interval:
    session_id: str
    node: str
    start: float
    end: float
    fence: int


def read_log(paths: Iterable[str | os.PathLike[str]]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with open(path) as file:
            for line in file:
                if line.strip():
                    yield json.loads(line)


def supervision_intervals(
    paths: Iterable[str | os.PathLike[str]], *, ended: Mapping[str, float] | None = None, now: float | None = None
) -> list[Interval]:
    """Every [start, stop] of supervision in the logs; a start never stopped ends at `ended[node]`
    (the moment that node was killed) or `now`."""
    ended = ended or {}
    end_default = now if now is not None else machine_clock()
    open_: dict[tuple[str, str], dict[str, Any]] = {}
    intervals: list[Interval] = []
    for event in read_log(paths):
        key = (event["node"], event.get("sid", ""))
        if event["ev"] == "start":
            open_[key] = event
        elif event["ev"] == "stop" and key in open_:
            start = open_.pop(key)
            intervals.append(Interval(key[1], key[0], start["t"], event["t"], start["fence"]))
    for (node, sid), start in open_.items():
        intervals.append(Interval(sid, node, start["t"], ended.get(node, end_default), start["fence"]))
    return intervals


def overlaps(intervals: Sequence[Interval]) -> list[tuple[Interval, Interval]]:
    """Pairs of intervals of one session held by two nodes at once."""
    by_session: dict[str, list[Interval]] = {}
    for interval in intervals:
        by_session.setdefault(interval.session_id, []).append(interval)
    found = []
    for items in by_session.values():
        items.sort(key=lambda i: i.start)
        for index, before in enumerate(items):
            for after in items[index + 1 :]:
                if after.start >= before.end:
                    continue
                if before.node != after.node:
                    found.append((before, after))
    return found


def session_ids(count: int, prefix: str = "s") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(count)]


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))
