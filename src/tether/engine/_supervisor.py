"""The supervisor: one nursery, one task per session, one retry loop per session, ever.

It keeps three jobs: the public facade, the task per session (`_run`: ask the
session's rules for the next step, do it, tell the rules what happened), and
start-up restore. What an attempt does is in `tether.engine._attempt`; what a
transition means is in `tether.rules._session`; every effect leaves through
the outbox (`tether.engine._outbox`), the only path to the store.

Signals (a drop report, a forced reconnect, a stop) only set a flag and wake
the parked task, so a second drop report or a force during backoff can never
start a second retry chain. Waiting is done on one shared timer heap, not a
sleep per session.
"""

from __future__ import annotations

import gc
import logging
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import ExitStack, asynccontextmanager
from typing import Literal, final

import attrs
import trio

from ..contract._plugin import Backend, Link, Strategy
from ..rules._classify import single_error
from ..rules._console import RunOutcome, SavedRuns, WaitResult
from ..rules._errors import (
    ConfigError,
    DuplicateSessionError,
    InvalidConfigError,
    LinkError,
    SessionNotFoundError,
    SupervisorClosedError,
    TetherError,
)
from ..rules._events import PluginFailed, PluginMisbehaved, SessionMoved, SessionRegistered, SessionUnregistered
from ..rules._limits import ConnectLimits
from ..rules._output import LogLimits, LogRead, OutputLog, StoredLog
from ..rules._reasons import Disconnect, DisconnectReason
from ..rules._secret_refs import missing_literals
from ..rules._session import StepKind
from ..rules._snapshots import SessionSnapshot, SnapshotStore
from ..rules._spec import SessionSpec
from ..rules._state import Attempt, PreservedState, SessionState, SessionStatus
from ..rules._stats import StatsRecorder, SupervisorStats
from ._attempt import AttemptRunner
from ._bus import EventBus, Subscription
from ._console import (
    restore_runs,
    saved_runs,
    session_gone,
    start_run,
    until_runnable,
    wait_output,
    wait_readable,
    wait_run,
)
from ._gc import ManagedCollector
from ._outbox import Outbox
from ._plugins import BACKENDS_GROUP, PluginRegistry, discover_plugins, spec_for_checks
from ._readiness import Readiness, TargetState
from ._session import ForceRequest, Session
from ._stall import LoopWatchdog, Stall
from ._timers import TimerQueue

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger("tether.supervisor")

_FINAL_FLUSH_SECONDS = 10.0
"""How long leaving the supervisor may spend writing the last snapshots."""
_GRACEFUL_EXIT_SECONDS = 0.5
"""On exit, woken sessions get this long to end by themselves before the nursery is cancelled.
Ending normally costs a fraction of unwinding a Cancelled through each session's frames."""


@attrs.define
class _TargetLimit:
    """The connect limit of one target, kept while any session uses that target."""

    limiter: trio.CapacityLimiter
    sessions: int = 0


@attrs.frozen(kw_only=True)
class _Wiring:
    """What `open_supervisor` builds and hands the supervisor: not part of the public API."""

    nursery: trio.Nursery
    registry: PluginRegistry
    bus: EventBus
    connect_limits: ConnectLimits
    rng: random.Random
    output_history_bytes: int
    store: SnapshotStore | None
    durable: bool
    flush_interval: float


@final
class Supervisor:
    """Keeps registered sessions alive. Get one from `open_supervisor`."""

    def __init__(self, wiring: _Wiring) -> None:
        self._nursery = wiring.nursery
        self.registry = wiring.registry
        self.bus = wiring.bus
        self._connect_limits = wiring.connect_limits
        self._limiters: dict[str, _TargetLimit] = {}
        self._rng = wiring.rng
        self._log_limits = LogLimits(max_bytes=wiring.output_history_bytes)
        self._sessions: dict[str, Session] = {}
        self._stats = StatsRecorder()
        self._timers = TimerQueue()
        self._closed = False
        self._has_store = wiring.store is not None
        self._outbox = Outbox(
            self.bus, self._stats, wiring.store, durable=wiring.durable, flush_interval=wiring.flush_interval,
            snapshot_of=self._snapshot_of, fence_of=self._fence_of, on_fenced=self.fence_lost,
            log_of=self._log_of, on_readable=self._wake_readers, session_ids=lambda: self._sessions.keys(),
        )
        self._attempts = AttemptRunner(
            self._outbox, self.registry.strategies, self._limiter_for, self._rng, lambda: self._closed,
            distribution_of=lambda backend: self.registry.distribution(BACKENDS_GROUP, backend),
            respawn=self._respawn,
        )
        self._readiness = Readiness(
            self._nursery, self._outbox, self._rng,
            lambda target: self._connect_limits.limit_for(target) or 10,
        )
        self._reconnect_check: Callable[[str], Awaitable[bool]] | None = None
        self._all_finished: trio.Event | None = None
        self.restore_errors: list[TetherError] = []
        """Snapshots that could not be restored at start (each names its session); kept in the store."""
        self.removed_from_config: list[str] = []
        """Sessions a previous start declared that this start did not: unregistered at start."""

    # -- public API ------------------------------------------------------------------------

    async def register(
        self,
        spec: SessionSpec,
        *,
        preserved: PreservedState | None = None,
        restore: SessionState | None = None,
        history: bytes = b"",
        fence: int | None = None,
    ) -> SessionState:
        """Start supervising `spec`: exactly one task, in its own cancel scope.

        `restore` (a state from a snapshot) resumes the session's episode and
        history after a restart and reconnects it with the strategy mapped to
        ``supervisor-restart`` (force-reconnect: re-attach first). `fence` is
        the fencing token this process holds for the session in a shared store.
        """
        await trio.lowlevel.checkpoint()
        session = self._register_now(spec, preserved=preserved, restore=restore, history=history, fence=fence)
        return session.view()

    async def register_many(self, specs: Iterable[SessionSpec]) -> list[str]:
        """Register many sessions with a single checkpoint (bulk start-up); returns their ids.

        All are validated first: if one spec is bad, none is registered.
        """
        await trio.lowlevel.checkpoint()
        batch = list(specs)
        ids = [spec.id for spec in batch]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise DuplicateSessionError(dup)
        checked = [self._check_spec(spec) for spec in batch]
        for spec, backend_and_target in zip(batch, checked, strict=True):
            self._register_now(spec, checked=backend_and_target)
        return ids

    async def unregister(self, session_id: str) -> None:
        """Stop supervising and delete the session's snapshot: the one way a session is forgotten.

        Cancels the session's task, closes its link (ending a program kept in
        tmux), and waits until it has.
        """
        await self.unregister_many([session_id])

    async def unregister_many(self, session_ids: Iterable[str]) -> None:
        """Unregister many sessions at once and wait until all have ended (one wait, not one per session)."""
        sessions = [self._get(sid) for sid in session_ids]
        for session in sessions:
            session.unregistering = True
            self._stop(session)
        await self._wait_ended(sessions)

    async def release(self, session_id: str) -> None:
        """Stop supervising without deleting the snapshot or ending a program kept alive (tmux).

        For handing a session to another process: its state stays in the store.
        """
        session = self._get(session_id)
        self._stop(session)
        await self._wait_ended([session])
        await self._outbox.flush()  # its last state, under its fence, before the next owner reads it

    def fence_lost(self, session_ids: Iterable[str]) -> None:
        """Another process owns these sessions now: stop them at once and write nothing more for them.

        Their ids are free at once (the cluster may hand a session straight back); the old tasks
        wind down on their own, detached.
        """
        ids = [sid for sid in session_ids if sid in self._sessions]
        self._outbox.forget(ids)
        for sid in ids:
            session = self._sessions.pop(sid)
            session.fence = None
            session.fenced_out = True
            self._stats.removed(session)
            self._limiter_ref(session.target, -1)
            self._stop(session)

    def set_reconnect_check(self, check: Callable[[str], Awaitable[bool]] | None) -> None:
        """Ask `check(session_id)` before every reconnect attempt; False means the session was taken
        over by another process (a shared store's fence moved on): it is stopped instead."""
        self._reconnect_check = check

    def note_moved(self, session_id: str, from_node: int, to_node: int, fence: int) -> None:
        """A session another tether process held was claimed here (``session.moved``)."""
        self._outbox.publish(SessionMoved, session_id=session_id, from_node=from_node, to_node=to_node, fence=fence)

    async def force_reconnect(
        self, session_id: str, strategy: str | None = None, *, wait: bool = True
    ) -> Attempt | None:
        """Reconnect now, through the session's one retry loop (never a second chain).

        Connected: the link is closed and a new episode starts. Backing off:
        the wait is skipped. Failed or disconnected: the session is revived
        with a fresh budget. With `wait`, returns the attempt that answered.
        """
        session = self._get(session_id)
        if strategy is not None:
            self.registry.strategy(strategy)
        if session.force is None:
            session.force = ForceRequest(strategy)
        elif strategy is not None:
            session.force.strategy = strategy
        request = session.force
        session.wake()
        if not wait:
            await trio.lowlevel.checkpoint()
            return None
        await request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    async def send(self, session_id: str, data: bytes) -> None:
        """Write input to a connected session's console."""
        await self._connected_link(session_id).send(data)

    def state(self, session_id: str) -> SessionState:
        """The session's state at this moment."""
        return self._get(session_id).view()

    def states(self) -> dict[str, SessionState]:
        """Every registered session's state, by id."""
        return {sid: s.view() for sid, s in self._sessions.items()}

    def statuses(self) -> dict[str, SessionStatus]:
        """Every registered session's status, by id: cheap, no state built (summaries, filters)."""
        return {sid: s.status for sid, s in self._sessions.items()}

    def output_history(self, session_id: str) -> bytes:
        """The session's recent output (bounded), kept across reconnections."""
        return self._get(session_id).recent_output(self._log_limits.max_bytes)

    # -- the console -------------------------------------------------------------------------

    def read(
        self, session_id: str, since: int | None = None, max_bytes: int = 65536, *, log_id: str | None = None
    ) -> LogRead:
        """The session's exact output from log position `since` (default: the oldest kept), at most
        `max_bytes` bytes, with every range it cannot give as an explicit loss.

        Read on from ``result.next``: consecutive reads cover every position exactly once. Pass the
        `log_id` a cursor came from to be told (`CursorError`) if the session's log is another one.
        """
        log = self._get(session_id).console.log
        return log.read(log.start if since is None else since, max_bytes, expect_log=log_id)

    async def read_next(
        self, session_id: str, since: int | None = None, max_bytes: int = 65536, *, log_id: str | None = None,
        budget: float = 30.0,
    ) -> LogRead:
        """`read` from `since` once there is something there: waits server-side, at most `budget`
        seconds, for output (or a loss) past `since`; an empty read when the budget ran out.

        What a follower (``tether tail -f``, ``tether attach``) calls in a loop, from ``result.next``.
        Raises `SessionNotFoundError` when the session is unregistered while it waits.
        """
        session = self._get(session_id)
        log = session.console.log
        since = log.start if since is None else since
        log.read(since, 1, expect_log=log_id)  # a bad cursor fails now, not after the wait
        await wait_readable(session, since, budget)
        if session.unregistering:
            raise SessionNotFoundError(session_id)
        return log.read(since, max_bytes, expect_log=log_id)

    async def wait(
        self,
        session_id: str,
        *,
        pattern: str | None = None,
        since: int | None = None,
        quiet: float | None = None,
        connected: bool = False,
        budget: float = 30.0,
    ) -> WaitResult:
        """Wait server-side, at most `budget` seconds, for one of: `pattern` (a regex) in the output
        after log position `since` (default: from now), the output going `quiet` for that many
        seconds, or the session being `connected`."""
        return await wait_output(self._get(session_id), pattern=pattern, since=since, quiet=quiet,
                                 connected=connected, budget=budget)

    async def run(self, session_id: str, command: str, *, budget: float = 30.0) -> RunOutcome:
        """Run `command` in the session's shell; its exit status and the log range of its output.

        Completion comes from the shell integration's marks, with a fresh nonce per command. A
        command still running after `budget` returns ``done=False`` with a token for `wait_run`;
        the token is written down (with a store) before it is returned, so it outlives a restart.
        A session still connecting, or whose shell has not shown its first prompt, is waited for
        within the same budget.
        """
        session = self._get(session_id)
        deadline = trio.current_time() + budget
        await until_runnable(session, budget)
        line, token = start_run(session, command)
        assert session.link is not None
        self._outbox.changed(session_id)
        await session.link.send(line)
        outcome = self._collected(session, await wait_run(session, token, max(0.0, deadline - trio.current_time())))
        if not outcome.done:
            await self._outbox.flush()
        return outcome

    async def wait_run(self, session_id: str, token: str, *, budget: float = 30.0) -> RunOutcome:
        """The outcome of the run `token`, waiting at most `budget` for it to finish.

        Tokens outlive restarts: a run still pending when tether stopped (or was killed) is
        finished by the marks its program prints once re-attached, and answered as lost when a
        new program replaced it. Raises `SupervisorClosedError` if the session stops being
        supervised here while waiting (tether stopping): wait again after the next start.
        """
        session = self._get(session_id)
        return self._collected(session, await wait_run(session, token, budget))

    def _collected(self, session: Session, outcome: RunOutcome) -> RunOutcome:
        if outcome.done and not session.finished:
            self._outbox.changed(session.sid)  # answered: its snapshot no longer keeps it
        return outcome

    async def interrupt(self, session_id: str) -> None:
        """Interrupt what runs in the console (Ctrl-C), ahead of any input still being written."""
        link = self._connected_link(session_id)
        interrupt = getattr(link, "interrupt", None)
        if interrupt is not None:
            await interrupt()
        else:
            await link.send(b"\x03")

    async def resize(self, session_id: str, rows: int, cols: int) -> None:
        """Set the console's size (kept for every later link too)."""
        if not (1 <= rows <= 10_000 and 1 <= cols <= 10_000):
            raise ConfigError("size", f"rows and cols must be from 1 to 10000, got {rows}x{cols}")
        session = self._get(session_id)
        session.size = (rows, cols)
        link = session.link
        resize = getattr(link, "resize", None) if link is not None else None
        if resize is not None and session.status is SessionStatus.CONNECTED:
            await resize(rows, cols)
        else:
            await trio.lowlevel.checkpoint()

    def _connected_link(self, session_id: str) -> Link:
        session = self._get(session_id)
        if session.link is None or session.status is not SessionStatus.CONNECTED:
            raise LinkError(
                f"session {session_id!r} is {session.status.value}, not connected",
                reason=DisconnectReason.REMOTE_CLOSED,
            )
        return session.link

    def stats(self) -> SupervisorStats:
        """Supervisor-wide counters."""
        return self._stats.snapshot(len(self._sessions))

    def subscribe(
        self,
        *,
        session_ids: Iterable[str] = (),
        types: Iterable[str] = (),
        since: int | None = None,
        buffer: int = 1_000,
    ) -> Subscription:
        """Receive events; see `EventBus.subscribe`."""
        return self.bus.subscribe(session_ids=session_ids, types=types, since=since, buffer=buffer)

    @property
    def session_ids(self) -> list[str]:
        return list(self._sessions)

    def _on_stall(self, stall: Stall) -> None:
        session = self._sessions.get(stall.session_id)
        phase = self._attempts.calls.phase_of(session) if session is not None else "unknown"
        name = stall.backend or (session.backend.name if session is not None else "")
        distribution = self.registry.distribution(BACKENDS_GROUP, name) if name else stall.distribution
        if distribution == "(direct)":
            distribution = stall.distribution
        where = f" for session {stall.session_id}" if stall.session_id else ""
        detail = f"{stall.module} ({distribution}) held the event loop for {stall.seconds:.2f}s{where}"
        logger.warning("%s: every session waited", detail)
        self._outbox.publish(
            PluginMisbehaved, session_id=stall.session_id, group="tether.backends" if name else "",
            name=name, distribution=distribution, problem="blocked-loop", phase=phase,
            seconds=round(stall.seconds, 3), detail=detail,
        )

    def targets(self) -> list[TargetState]:
        """The targets whose readiness tether knows: up or down, and how many sessions wait for each."""
        return self._readiness.states()

    def stuck_report(self) -> str:
        """Plugin calls that never came back (their tasks were abandoned), for a forced exit's log."""
        stuck = self._attempts.stuck
        if not stuck:
            return ""
        shown = ", ".join(f"{sid}: {what}" for sid, what in sorted(stuck.items())[:10])
        more = f" and {len(stuck) - 10} more" if len(stuck) > 10 else ""
        return f"{len(stuck)} sessions' plugin calls never returned ({shown}{more})"

    async def flush(self) -> bool:
        """Write every pending change now (one transaction); False if the store failed (kept queued)."""
        return await self._outbox.flush()

    def freeze_gc(self) -> None:
        """Move everything alive now out of the garbage collector's sight (`gc.freeze`).

        With 100,000 sessions, every full collection walks millions of
        long-lived objects; the benchmarks measured this as the largest cost of
        a reconnect storm. Call it once after bulk start-up (the daemon does, after
        restoring); objects that die later are still freed by reference counting.
        """
        gc.collect()
        gc.freeze()

    # -- registration ------------------------------------------------------------------------

    def _check_spec(self, spec: SessionSpec) -> tuple[Backend, str]:
        """The spec's backend and target, or the error that names what is wrong with it."""
        if self._closed:
            raise SupervisorClosedError("the supervisor is closed")
        if spec.id in self._sessions:
            raise DuplicateSessionError(spec.id)
        backend = self.registry.backend(spec.backend)  # UnknownBackendError, listing the known ones
        problems = self.registry.check_spec(spec)
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise InvalidConfigError(f"session {spec.id!r}", problems)
        return backend, backend.target(spec_for_checks(spec))

    def _register_now(
        self,
        spec: SessionSpec,
        *,
        preserved: PreservedState | None = None,
        restore: SessionState | None = None,
        history: bytes = b"",
        fence: int | None = None,
        checked: tuple[Backend, str] | None = None,
        log: StoredLog | None = None,
        runs: SavedRuns | None = None,
    ) -> Session:
        backend, target = checked if checked is not None else self._check_spec(spec)
        output = self._output_log(spec.id, log)
        if restore is not None or log is not None:
            output.mark_interrupted()  # tether was away: the next chunk says whether bytes were lost
        session = Session(spec, backend, target, self._timers, output, time.time())
        session.fence = fence
        if preserved is not None:
            session.preserved = preserved
        if history:
            session.console.output(history[-self._log_limits.max_bytes :])
        if restore is not None:
            session.restore(restore, trio.current_time(), time.time())
        if runs is not None:
            restore_runs(session, runs)
        self._sessions[spec.id] = session
        self._stats.added(session)
        self._limiter_ref(target, +1)
        fx = self._outbox
        fx.publish(SessionRegistered, session_id=spec.id, backend=spec.backend, target=target,
                   restored=restore is not None)
        missing = missing_literals(spec.options) if session.secrets else None  # none: no walk again
        if missing:  # a literal secret is never written down: say so, never start the program without it
            why = Disconnect(
                DisconnectReason.SECRET_MISSING,
                f"{', '.join(missing)}: a literal secret is not kept across restarts; register the session "
                "again, or name the secret by reference ({ from_env = ... } or { from_file = ... })",
            )
            session.fail_now(fx, why, time.time())
        fx.changed(spec.id)
        self._nursery.start_soon(self._run, session, name=f"tether session {spec.id}")
        return session

    def _limiter_ref(self, target: str, delta: int) -> None:
        entry = self._limiters.get(target)
        if entry is None:
            limit = self._connect_limits.limit_for(target)
            if limit is None:
                return
            entry = self._limiters[target] = _TargetLimit(trio.CapacityLimiter(limit))
        entry.sessions += delta
        if entry.sessions <= 0:
            del self._limiters[target]

    def _limiter_for(self, target: str) -> trio.CapacityLimiter | None:
        entry = self._limiters.get(target)
        return entry.limiter if entry is not None else None

    def _get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionNotFoundError(session_id) from None

    def _snapshot_of(self, session_id: str) -> SessionSnapshot | None:
        session = self._sessions.get(session_id)
        if session is None or session.status is SessionStatus.STOPPED:
            return None
        return _snapshot(session)

    def _log_of(self, session_id: str) -> OutputLog | None:
        session = self._sessions.get(session_id)
        return session.console.log if session is not None else None

    def _output_log(self, session_id: str, stored: StoredLog | None) -> OutputLog:
        if stored is not None:
            try:
                return OutputLog.restore(stored, self._log_limits)
            except Exception as exc:  # a damaged log costs its bytes, never the session
                logger.error("session %s: its stored output log cannot be read (%s); starting a new one",
                             session_id, exc)
        return OutputLog(self._log_limits)

    def _wake_readers(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None and session.waiters is not None:
            session.waiters.wake()

    def _fence_of(self, session_id: str) -> int | None:
        session = self._sessions.get(session_id)
        return session.fence if session is not None else None

    def _stop(self, session: Session) -> None:
        """Ask a session to end: a parked one wakes and returns (cheap); a busy one is cancelled."""
        if session.stopping:
            return
        session.stopping = True
        if session.parked:
            session.wake()
        elif session.scope is not None:
            session.scope.cancel()
            self._attempts.calls.hurry(session)  # inside plugin code: it must come back, soon
        # else: between awaits; the loop sees `stopping` before it next waits or connects

    async def _wait_ended(self, sessions: list[Session]) -> None:
        for session in sessions:
            if not session.finished:
                if session.done is None:
                    session.done = trio.Event()
                await session.done.wait()
        await trio.lowlevel.checkpoint()

    def _shutdown(self) -> None:
        self._closed = True
        self._all_finished = trio.Event()
        if not self._sessions:
            self._all_finished.set()
        for session in list(self._sessions.values()):
            self._stop(session)

    async def _wait_finished(self, limit: float) -> None:
        """Let woken sessions end on their own (no Cancelled to unwind), up to `limit` seconds."""
        if self._all_finished is None:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(limit):
            await self._all_finished.wait()

    # -- the session task ----------------------------------------------------------------------

    def _respawn(self, session: Session) -> None:
        """A fresh task for a session whose task was abandoned in plugin code."""
        self._nursery.start_soon(self._run, session, name=f"tether session {session.sid} (epoch {session.epoch})")

    async def _run(self, session: Session) -> None:
        """The session task: ask the rules for the next step, do it, until stopped. One function
        (not a wrapper around a loop) because every frame is kept for every session."""
        fx = self._outbox
        rng = self._rng
        attempts = self._attempts
        readiness = self._readiness
        clock = attempts.now  # trio.current_time, one call
        epoch = session.epoch
        try:
            while not session.stopping and session.epoch == epoch:
                force = session.force
                now, wall = clock(), time.time()  # one clock read per step
                step = session.next_step(
                    fx, now, wall, rng,
                    forced=force is not None, force_strategy=force.strategy if force is not None else None,
                    target_down=readiness.target_down(session) and session.recovering,  # cheaper first
                )
                kind = step.kind
                if kind is StepKind.ATTEMPT:
                    check = self._reconnect_check if step.number > 0 else None
                    if check is not None:
                        if not await check(session.sid):
                            self.fence_lost([session.sid])  # another node owns it now
                            return
                        now, wall = clock(), time.time()
                    force, session.force = session.force, None  # the attempt answers it (take_force)
                    await attempts.run(session, step, force, now, wall)
                    gated = session.epoch == epoch and readiness.gated(session) and session.recovering
                    if gated and await readiness.confirm_down(session):  # one probe per target says so
                        session.unreachable(fx, time.time())
                elif kind is StepKind.WAIT:
                    await session.park(step.deadline)
                elif kind is StepKind.WAIT_FOR_TARGET:
                    readiness.park(session)
                    try:
                        await session.park(step.deadline)
                    finally:
                        readiness.leave(session)
                elif kind is StepKind.WAIT_FOR_FORCE:
                    await session.park(math.inf)
                else:
                    return
        except Exception as exc:  # a bug must cost one session, never the supervisor
            if session.epoch != epoch:
                return
            logger.exception("session %s crashed inside tether", session.sid)
            session.fail_now(fx, Disconnect(DisconnectReason.BACKEND_ERROR, f"tether bug: {exc!r}"), time.time())
        finally:
            if session.epoch == epoch:  # an abandoned task leaves the session to the one that replaced it
                self._finish(session)

    def _finish(self, session: Session) -> None:
        session.finished = True
        session.link = None
        fx = self._outbox
        if self._sessions.get(session.sid) is session:
            # Only unregister deletes a snapshot. A session that ends any other way (shutdown, a
            # cancel from outside reaching its task before `_shutdown` ran, a release, a bug) comes
            # back on the next start with everything it had; its last state is what was written.
            del self._sessions[session.sid]
            self._stats.removed(session)
            if session.unregistering:
                fx.deleted(session.sid)
                fx.publish(SessionUnregistered, session_id=session.sid)
            elif not session.fenced_out:
                fx.parting(_snapshot(session), session.fence, session.console.log)
            self._limiter_ref(session.target, -1)
            if not self._sessions and self._all_finished is not None:
                self._all_finished.set()
        session.stopped(_Silent, time.time())
        if session.force is not None:
            session.force.resolve(None, SessionNotFoundError(session.sid))
            session.force = None
        if session.done is not None:
            session.done.set()
        session_gone(session)  # its runs' waiters are answered (removed) or told it stopped here
        if session.waiters is not None:  # readers waiting on an unregistered session give up
            session.waiters.wake()

    # -- restore at start ----------------------------------------------------------------------

    async def _restore(
        self, declared: Iterable[SessionSpec] | None, progress: Callable[[int, int], None] | None
    ) -> None:
        """Load every snapshot and resume those sessions; `declared` sessions (the config's) win
        over stored specs. With a declaration, a stored session that an earlier declaration made
        and this one dropped is unregistered (its snapshot deleted, an event, a log line)."""
        given = {spec.id: spec for spec in declared} if declared is not None else {}
        stored: dict[str, SessionSnapshot] = {}
        logs: Mapping[str, StoredLog] = {}
        if self._has_store:
            report = await self._outbox.load_all()
            self.restore_errors.extend(report.errors)
            stored = {snap.session_id: snap for snap in report.snapshots}
            logs = report.logs
        total = len(given) + len(stored)
        if stored:
            logger.info("restoring %d sessions from the snapshot store", len(stored))
        done = 0
        for spec in given.values():
            snap = stored.pop(spec.id, None)
            self._register_now(spec, restore=snap.state if snap is not None else None, log=logs.get(spec.id),
                               runs=snap.runs if snap is not None else None)
            self._sessions[spec.id].declared = True
            done += 1
            if progress is not None and done % 500 == 0:
                progress(done, total)
        for sid, snap in stored.items():
            if declared is not None and snap.declared:
                logger.warning("session %s is no longer in the config: unregistered", sid)
                self.removed_from_config.append(sid)
                self._outbox.deleted(sid)
                self._outbox.publish(SessionUnregistered, session_id=sid, detail="removed from the config")
                continue
            try:
                self._register_now(snap.spec, restore=snap.state, log=logs.get(sid), runs=snap.runs)
                self._sessions[sid].declared = snap.declared
            except TetherError as exc:
                logger.error("session %s could not be restored: %s", sid, exc)
                self.restore_errors.append(exc)
            done += 1
            if progress is not None and done % 500 == 0:
                progress(done, total)
        if progress is not None:
            progress(total, total)
        await trio.lowlevel.checkpoint()


def _snapshot(session: Session) -> SessionSnapshot:
    return SessionSnapshot(spec=session.spec, state=session.view(), saved_at=time.time(), declared=session.declared,
                           runs=saved_runs(session))


class _SilentEffects:
    """Effects of a session that is gone: nothing to publish or write."""

    def publish(self, cls: object, /, **fields: object) -> None:
        pass

    def changed(self, session_id: str) -> None:
        pass

    def status_moved(self, old: SessionStatus | None, new: SessionStatus | None) -> None:
        pass

    def reopened(self, recovery_time: float) -> None:
        pass


_Silent = _SilentEffects()


@asynccontextmanager
async def open_supervisor(
    *,
    registry: PluginRegistry | None = None,
    backends: Iterable[Backend] = (),
    strategies: Iterable[Strategy] = (),
    connect_limit: int | None = 10,
    connect_limits: ConnectLimits | None = None,
    event_ring: int = 10_000,
    output_history_bytes: int = 64 * 1024,
    seed: int | None = None,
    store: SnapshotStore | None = None,
    durable: bool = False,
    flush_interval: float = 0.5,
    sessions: Iterable[SessionSpec] | None = None,
    on_restore: Callable[[int, int], None] | None = None,
    gc_policy: Literal["default", "managed"] = "default",
    stall_threshold: float | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a supervisor for the duration of the ``async with`` block.

    Plugins are discovered once here (unless `registry` is given); `backends`
    and `strategies` add objects directly, checked like plugins.
    `connect_limit` caps concurrent connects per target (OpenSSH's
    MaxStartups refuses past 10); None lifts it. `connect_limits` gives
    targets limits of their own (`tether.rules._limits.ConnectLimits`; its
    default then replaces `connect_limit`). Leaving the block stops
    every session at once and keeps every snapshot: only `unregister`
    deletes one. An exception from the block comes out as itself, not wrapped
    in an exception group.

    With a `store`, every stored session is restored and resumed on entry,
    changes are written behind by one flusher task every `flush_interval`
    seconds in one transaction, and pending changes are flushed on exit.
    `sessions` declares the sessions that must exist (the daemon's config):
    each takes its stored state but keeps the spec given now, and a stored
    session declared by an earlier start but not by this one is unregistered.
    `durable` commits each transition before its event is published (group
    commit: many sessions share one transaction). `on_restore(done, total)`
    reports progress while thousands come back.

    ``gc_policy="managed"`` turns the cyclic garbage collector's automatic
    runs off while the supervisor runs and collects only when the number of
    live objects keeps growing (see `tether.engine._gc`): with 100,000 sessions
    the automatic collections were most of a storm's cost and all of the
    drop-to-reconnect tail (benchmarks/FINDINGS.md). It is process-wide, so it
    is opt-in for the library and on in the daemon.

    `stall_threshold` (seconds) starts the loop-stall watchdog (`tether.engine._stall`):
    plugin code that holds the event loop longer than that is reported as a
    ``plugin.misbehaved`` event and a log line naming its distribution. The daemon sets 1 s.
    """
    if stall_threshold is not None and not stall_threshold > 0:
        raise ConfigError("stall_threshold", f"must be > 0 seconds, got {stall_threshold!r}")
    if gc_policy not in ("default", "managed"):
        raise ConfigError("gc_policy", f"must be 'default' or 'managed', got {gc_policy!r}")
    if flush_interval < 0:
        raise ConfigError("flush_interval", f"must be >= 0, got {flush_interval}")
    if connect_limit is not None and connect_limit < 1:
        raise ConfigError("connect_limit", f"must be >= 1 or None, got {connect_limit}")
    if output_history_bytes < 0:
        raise ConfigError("output_history_bytes", f"must be >= 0, got {output_history_bytes}")
    registry = registry if registry is not None else discover_plugins()
    for backend in backends:
        registry.add_backend(backend)
    for strategy in strategies:
        registry.add_strategy(strategy)
    bus = EventBus(event_ring)
    for failure in registry.failures:
        bus.publish(
            PluginFailed,
            session_id="",
            group=failure.group,
            name=failure.name,
            distribution=failure.distribution,
            error=failure.error,
        )
    try:
        with ExitStack() as stack:  # the managed collector is restored however the nursery ends
            async with trio.open_nursery() as nursery:
                supervisor = Supervisor(
                    _Wiring(
                        nursery=nursery, registry=registry, bus=bus,
                        connect_limits=connect_limits or ConnectLimits(default=connect_limit),
                        rng=random.Random(seed), output_history_bytes=output_history_bytes, store=store,
                        durable=durable, flush_interval=flush_interval,
                    )
                )
                await nursery.start(supervisor._timers.run)
                await nursery.start(supervisor._attempts.calls.run)
                collector = ManagedCollector() if gc_policy == "managed" else None
                if collector is not None:
                    stack.enter_context(collector)
                    nursery.start_soon(collector.run)
                if store is not None:
                    await nursery.start(supervisor._outbox.run)
                if stall_threshold is not None:
                    await nursery.start(LoopWatchdog(stall_threshold, supervisor._on_stall).run)
                try:
                    await supervisor._restore(sessions, on_restore)
                    yield supervisor
                finally:
                    if store is not None:
                        with trio.CancelScope(shield=True), trio.move_on_after(_FINAL_FLUSH_SECONDS):
                            await supervisor._outbox.flush(final=True)
                    supervisor._outbox.seal()
                    supervisor._shutdown()
                    await supervisor._wait_finished(_GRACEFUL_EXIT_SECONDS)
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        single = single_error(group)
        if single is None:
            raise
        raise single from None
