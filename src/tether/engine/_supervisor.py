"""The supervisor: one nursery, one task per session, one retry loop per session, ever.

Each session task runs `_run`: connect, hold the link (parked until it
closes, a probe is due or a signal arrives), classify a drop, back off,
reconnect, or end failed. Each attempt, and the link it holds, gets one cancel
scope: its connect_timeout, the bound on closing, and what `_stop` cancels.
Signals (a drop report, a forced reconnect, a stop) only set a flag and wake
the parked task, so a second drop report or a force during backoff can never
start a second chain (flaw 3). Waiting is done on one shared timer heap, not a
sleep per session.
"""

from __future__ import annotations

import gc
import logging
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import ExitStack, asynccontextmanager
from typing import Any, Literal, final

import attrs
import trio

from ..contract._plugin import Backend, ConnectMode, Link, Strategy
from ..rules._backoff import retry_delay
from ..rules._classify import classify, describe_error, single_error
from ..rules._errors import (
    ConfigError,
    DuplicateSessionError,
    InvalidConfigError,
    LinkError,
    SessionNotFoundError,
    SnapshotError,
    SupervisorClosedError,
    TetherError,
)
from ..rules._events import (
    Event,
    HealthCheckFailed,
    PluginFailed,
    ReconnectFailed,
    ReconnectScheduled,
    ReconnectStarted,
    ReconnectSucceeded,
    RetriesExhausted,
    SessionConnected,
    SessionDisconnected,
    SessionFailed,
    SessionRegistered,
    SessionUnregistered,
)
from ..rules._policy import DEFAULT_STRATEGIES
from ..rules._reasons import Disconnect, DisconnectReason
from ..rules._secret_refs import validation_view
from ..rules._secrets import drop_redacted
from ..rules._snapshots import SessionSnapshot, SnapshotStore
from ..rules._spec import SessionSpec
from ..rules._state import Attempt, EpisodeOutcome, PreservedState, SessionState, SessionStatus
from ..rules._stats import StatsRecorder, SupervisorStats
from ._bus import EventBus, Subscription
from ._gc import ManagedCollector
from ._hooks import AttemptHooks
from ._plugins import PluginRegistry, discover_plugins
from ._recovery import AttemptContext
from ._session import EpisodeRecord, ForceRequest, Session
from ._timers import TimerQueue

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger("tether.supervisor")

FIRST_CONNECT = "connect"
"""Strategy name recorded for a session's very first connect."""

_FINAL_FLUSH_SECONDS = 10.0
"""How long leaving the supervisor may spend writing the last snapshots."""
_RETRY_FAILED_FLUSH = 1.0
"""Seconds between tries while the store keeps failing."""
_GRACEFUL_EXIT_SECONDS = 0.5
"""On exit, woken sessions get this long to end by themselves before the nursery is cancelled.
Ending normally costs a fraction of unwinding a Cancelled through each session's frames."""


@attrs.define
class _TargetLimit:
    """The connect limit of one target, kept while any session uses that target."""

    limiter: trio.CapacityLimiter
    sessions: int = 0


@attrs.frozen
class _Held:
    """The attempt connected; the link was held until it ended (or we were told to stop)."""

    attempt: Attempt
    drop: Disconnect | None
    """None when the session is stopping."""


@attrs.frozen
class _Missed:
    """The attempt failed; `disconnect` says why."""

    attempt: Attempt
    disconnect: Disconnect


@final
class Supervisor:
    """Keeps registered sessions alive. Get one from `open_supervisor`."""

    def __init__(
        self,
        nursery: trio.Nursery,
        registry: PluginRegistry,
        *,
        bus: EventBus,
        connect_limit: int | None,
        rng: random.Random,
        output_history_bytes: int,
        store: SnapshotStore | None = None,
        durable: bool = False,
        flush_interval: float = 0.5,
    ) -> None:
        self._nursery = nursery
        self.registry = registry
        self.bus = bus
        self._connect_limit = connect_limit
        self._limiters: dict[str, _TargetLimit] = {}
        self._rng = rng
        self._output_limit = output_history_bytes
        self._sessions: dict[str, Session] = {}
        self._stats = StatsRecorder()
        self._timers = TimerQueue()
        self._closed = False
        self._store = store
        self._durable = durable
        self._flush_interval = flush_interval
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        self._held: list[tuple[type[Event], dict[str, Any]]] = []
        self._flush_wanted = trio.Event()
        self._all_finished: trio.Event | None = None
        self.restore_errors: list[TetherError] = []
        """Snapshots that could not be restored at start (each names its session); kept in the store."""

    # -- public API ------------------------------------------------------------------------

    async def register(
        self,
        spec: SessionSpec,
        *,
        preserved: PreservedState | None = None,
        restore: SessionState | None = None,
        history: bytes = b"",
    ) -> SessionState:
        """Start supervising `spec`: exactly one task, in its own cancel scope.

        `restore` (a state from a snapshot) resumes the session's episode and
        history after a restart and reconnects it with the strategy mapped to
        ``supervisor-restart`` (force-reconnect: re-attach first).
        """
        await trio.lowlevel.checkpoint()
        return self._register_now(spec, preserved=preserved, restore=restore, history=history).view()

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

    async def unregister_many(self, session_ids: Iterable[str]) -> None:
        """Stop many sessions at once and wait until all have ended (one wait, not one per session)."""
        sessions = [self._get(sid) for sid in session_ids]
        for session in sessions:
            session.unregistering = True
            self._stop(session)
        for session in sessions:
            if not session.finished:
                if session.done is None:
                    session.done = trio.Event()
                await session.done.wait()
        await trio.lowlevel.checkpoint()

    async def unregister(self, session_id: str) -> None:
        """Stop supervising: cancel the session's task, close its link, and wait until it has."""
        session = self._get(session_id)
        session.unregistering = True
        self._stop(session)
        if not session.finished:
            if session.done is None:
                session.done = trio.Event()
            await session.done.wait()
        else:
            await trio.lowlevel.checkpoint()

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
        session = self._get(session_id)
        if session.link is None or session.status is not SessionStatus.CONNECTED:
            raise LinkError(
                f"session {session_id!r} is {session.status.value}, not connected",
                reason=DisconnectReason.REMOTE_CLOSED,
            )
        await session.link.send(data)

    def state(self, session_id: str) -> SessionState:
        """The session's state at this moment."""
        return self._get(session_id).view()

    def states(self) -> dict[str, SessionState]:
        """Every registered session's state, by id."""
        return {sid: s.view() for sid, s in self._sessions.items()}

    def output_history(self, session_id: str) -> bytes:
        """The session's recent output (bounded), kept across reconnections."""
        return bytes(self._get(session_id).output)

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
        return backend, backend.target(attrs.evolve(spec, options=validation_view(spec.options)))

    def _register_now(
        self,
        spec: SessionSpec,
        *,
        preserved: PreservedState | None = None,
        restore: SessionState | None = None,
        history: bytes = b"",
        checked: tuple[Backend, str] | None = None,
    ) -> Session:
        backend, target = checked if checked is not None else self._check_spec(spec)
        session = Session(spec, backend, target, self._timers, self._output_limit)
        if preserved is not None:
            session.preserved = preserved
        if history:
            session.output += history[-self._output_limit :]
        if restore is not None:
            self._resume_record(session, restore)
        self._sessions[spec.id] = session
        self._stats.moved(None, session.status)
        self._limiter_ref(target, +1)
        self._report(
            SessionRegistered,
            session_id=spec.id,
            backend=spec.backend,
            target=target,
            restored=restore is not None,
        )
        self._changed(session)
        self._nursery.start_soon(self._run, session, name=f"tether session {spec.id}")
        return session

    def _resume_record(self, session: Session, restore: SessionState) -> None:
        session.restored = restore.status
        if restore.next_attempt_at is not None:
            session.resume_at = trio.current_time() + max(0.0, restore.next_attempt_at - time.time())
        for past in restore.history:
            session.remember(past)
        session.episodes_total = restore.episodes_total
        session.episodes_recovered = restore.episodes_recovered
        session.episodes_failed = restore.episodes_failed
        session.last_disconnect = restore.last_disconnect
        if restore.preserved is not None and session.preserved is None:
            session.preserved = attrs.evolve(restore.preserved, env=drop_redacted(restore.preserved.env))
        if restore.episode is not None:
            session.episode = EpisodeRecord.thaw(restore.episode, trio.current_time())

    def _limiter_ref(self, target: str, delta: int) -> None:
        if self._connect_limit is None:
            return
        entry = self._limiters.get(target)
        if entry is None:
            entry = self._limiters[target] = _TargetLimit(trio.CapacityLimiter(self._connect_limit))
        entry.sessions += delta
        if entry.sessions <= 0:
            del self._limiters[target]

    def _get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionNotFoundError(session_id) from None

    def _stop(self, session: Session) -> None:
        """Ask a session to end: a parked one wakes and returns (cheap); a busy one is cancelled."""
        if session.stopping:
            return
        session.stopping = True
        if session.parked:
            session.wake()
        elif session.scope is not None:
            session.scope.cancel()
        # else: between awaits; the loop sees `stopping` before it next waits or connects

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

    async def _run(self, session: Session) -> None:
        """The session task: connect, hold, recover, until stopped. Written as one function
        (not a wrapper around the loop) because every frame is kept for every session."""
        try:
            policy = session.spec.policy
            drop: Disconnect | None
            if session.restored in (SessionStatus.FAILED, SessionStatus.DISCONNECTED):
                self._set_status(session, session.restored)  # stays down until someone forces it
                if not await self._wait_for_force(session):
                    return
                drop = Disconnect(DisconnectReason.FORCED, "revived by force_reconnect")
            elif session.restored is not None:
                drop = Disconnect(DisconnectReason.SUPERVISOR_RESTART, "tether restarted")
                self._set_status(session, SessionStatus.RECONNECTING)
            else:
                outcome = await self._try(session, None, 0, force=self._take_force(session))
                if session.stopping:
                    return
                drop = outcome.drop if isinstance(outcome, _Held) else outcome.disconnect
                assert drop is not None
            while not session.stopping:
                episode = self._on_drop(session, drop)
                if not policy.enabled or not policy.auto_reconnect:
                    self._set_status(session, SessionStatus.DISCONNECTED)
                    if not await self._wait_for_force(session):
                        return
                    if not policy.enabled:
                        drop = await self._single_manual_attempt(session, episode)
                        continue
                next_drop = await self._recover(session, episode)
                if next_drop is None:
                    return
                drop = next_drop
        except Exception as exc:  # a bug must cost one session, never the supervisor
            logger.exception("session %s crashed inside tether", session.spec.id)
            self._fail(session, Disconnect(DisconnectReason.BACKEND_ERROR, f"tether bug: {exc!r}"))
        finally:
            self._finish(session)

    def _finish(self, session: Session) -> None:
        session.finished = True
        session.link = None  # the link's reporter points back at the session: no cycle for the GC to find
        if session.episode is not None and session.episode.outcome is EpisodeOutcome.ONGOING:
            session.episode.outcome = EpisodeOutcome.ABANDONED
            session.episode.ended_at = time.time()
        self._set_status(session, SessionStatus.STOPPED)
        if session.force is not None:
            session.force.resolve(None, SessionNotFoundError(session.spec.id))
            session.force = None
        if self._sessions.get(session.spec.id) is session:
            del self._sessions[session.spec.id]
            # Only unregister deletes a snapshot. A session that ends any other way (shutdown, a
            # cancel from outside reaching its task before `_shutdown` ran, a bug) comes back on the
            # next start with everything it had.
            if session.unregistering:
                if self._store is not None:
                    self._dirty.discard(session.spec.id)
                    self._deleted.add(session.spec.id)
                    self._flush_wanted.set()
                self._report(SessionUnregistered, session_id=session.spec.id)
            self._stats.moved(session.status, None)
            self._limiter_ref(session.target, -1)
            if not self._sessions and self._all_finished is not None:
                self._all_finished.set()
        if session.done is not None:
            session.done.set()

    async def _recover(self, session: Session, episode: EpisodeRecord) -> Disconnect | None:
        """The retry loop of one episode; returns the next drop, or None when stopping."""
        policy = session.spec.policy
        fatal = None if episode.disconnect.reason.retryable else episode.disconnect
        while not session.stopping:
            if fatal is not None:
                self._fail(session, fatal)
            elif not policy.allows_retry(episode.attempts_made):
                if episode.outcome is EpisodeOutcome.ONGOING:
                    self._report(
                        RetriesExhausted,
                        session_id=session.spec.id,
                        episode=episode.number,
                        attempts=episode.attempts_made,
                    )
                self._fail(session, episode.disconnect, exhausted=True)
            else:
                waits = episode.attempts_made > 0 and session.force is None
                if waits and not await self._back_off(session, episode):
                    return None
                force = self._take_force(session)
                strategy = (force.strategy if force else None) or self._strategy_for(session, episode)
                outcome = await self._try(session, strategy, episode.attempts_made + 1, force=force)
                session.restored = None
                if isinstance(outcome, _Held):
                    return outcome.drop
                if not outcome.disconnect.reason.retryable:
                    fatal = outcome.disconnect
                continue
            # failed: wait for a forced reconnect to revive us with a fresh budget
            if not await self._wait_for_force(session):
                return None
            episode = self._on_drop(session, Disconnect(DisconnectReason.FORCED, "revived by force_reconnect"))
            fatal = None
        return None

    async def _single_manual_attempt(self, session: Session, episode: EpisodeRecord) -> Disconnect:
        force = self._take_force(session)
        strategy = (force.strategy if force else None) or self._strategy_for(session, episode)
        outcome = await self._try(session, strategy, episode.attempts_made + 1, force=force)
        if isinstance(outcome, _Held):
            return outcome.drop or Disconnect(DisconnectReason.FORCED, "stopping")
        return outcome.disconnect

    async def _back_off(self, session: Session, episode: EpisodeRecord) -> bool:
        """Wait the jittered delay; False when stopping. A force skips the rest of the wait."""
        policy = session.spec.policy
        if session.resume_at is not None:  # restored mid-backoff: keep the original schedule
            delay = max(0.0, session.resume_at - trio.current_time())
            session.resume_at = None
        else:
            delay = retry_delay(policy, episode.attempts_made, self._rng, episode.last_delay)
            episode.last_delay = delay
        session.next_attempt_at = time.time() + delay
        self._set_status(session, SessionStatus.BACKING_OFF)
        self._report(
            ReconnectScheduled,
            session_id=session.spec.id,
            episode=episode.number,
            attempt=episode.attempts_made + 1,
            delay=delay,
        )
        deadline = trio.current_time() + delay
        while not session.stopping and session.force is None and trio.current_time() < deadline:
            await session.park(deadline)
        session.next_attempt_at = None
        return not session.stopping

    async def _wait_for_force(self, session: Session) -> bool:
        while not session.stopping and session.force is None:
            await session.park(math.inf)
        return not session.stopping

    def _take_force(self, session: Session) -> ForceRequest | None:
        force = session.force
        session.force = None
        return force

    def _strategy_for(self, session: Session, episode: EpisodeRecord) -> str:
        # The first attempt after tether restarted may find the program still running (tmux,
        # a named terminal): try what supervisor-restart maps to, whatever began the episode.
        restarted = session.restored is not None
        reason = DisconnectReason.SUPERVISOR_RESTART if restarted else episode.disconnect.reason
        return (
            session.spec.policy.strategies.get(reason)
            or session.backend.default_strategies.get(reason)
            or DEFAULT_STRATEGIES.get(reason)
            or "simple-reconnect"
        )

    # -- episodes ---------------------------------------------------------------------------

    def _on_drop(self, session: Session, drop: Disconnect) -> EpisodeRecord:
        """Record a drop: continue a flapping episode or begin a new one."""
        now = trio.current_time()
        session.last_disconnect = drop
        session.link = None
        session.generation += 1  # late reports from the dead link are ignored from here on
        session.pending_drop = None
        self._stats.by_reason[drop.reason] += 1
        episode = session.episode
        flapping = (
            episode is not None
            and episode.outcome is EpisodeOutcome.RECOVERED
            and session.connected_mono is not None
            and now - session.connected_mono < session.spec.policy.stable_after
            and drop.reason is not DisconnectReason.FORCED
        )
        session.connected_mono = None
        session.connected_at = None
        if flapping:
            assert episode is not None
            self._stats.reopened_episode(episode.recovery_time or 0.0)
            session.episodes_recovered -= 1
            episode.outcome = EpisodeOutcome.ONGOING
            episode.ended_at = None
            episode.recovery_time = None
        elif episode is None or episode.outcome is not EpisodeOutcome.ONGOING or drop.reason is DisconnectReason.FORCED:
            if episode is not None:
                if episode.outcome is EpisodeOutcome.ONGOING:
                    episode.outcome = EpisodeOutcome.ABANDONED
                    episode.ended_at = time.time()
                session.remember(episode.freeze())
            session.episodes_total += 1
            episode = session.episode = EpisodeRecord(session.episodes_total, drop, now)
        assert episode is not None
        self._changed(session)
        self._report(
            SessionDisconnected,
            session_id=session.spec.id,
            reason=drop.reason,
            detail=drop.detail,
            episode=episode.number,
            exit_code=drop.exit_code,
            signal=drop.signal,
            flapping=flapping,
        )
        return episode

    def _fail(self, session: Session, why: Disconnect, *, exhausted: bool = False) -> None:
        episode = session.episode
        if episode is not None and episode.outcome is EpisodeOutcome.ONGOING:
            episode.outcome = EpisodeOutcome.FAILED
            episode.ended_at = time.time()
            session.episodes_failed += 1
            self._stats.failed += 1
        if session.status is not SessionStatus.FAILED:
            self._set_status(session, SessionStatus.FAILED)
            if not exhausted:
                self._report(SessionFailed, session_id=session.spec.id, reason=why.reason, detail=why.detail)

    def _set_status(self, session: Session, status: SessionStatus) -> None:
        if session.status is status:
            return
        if self._sessions.get(session.spec.id) is session:
            self._stats.moved(session.status, status)
        session.status = status
        session.status_since = time.time()
        self._changed(session)

    # -- persistence ------------------------------------------------------------------------

    def _changed(self, session: Session) -> None:
        """Queue the session for the next snapshot write (batched: one transaction per flush)."""
        if self._store is not None and not self._closed and session.status is not SessionStatus.STOPPED:
            self._dirty.add(session.spec.id)
            self._flush_wanted.set()

    def _report(self, cls: type[Event], /, **fields: Any) -> None:
        """Publish a transition. Durable mode holds it until the snapshot saying so is committed."""
        if self._durable and self._store is not None and not self._closed:
            self._held.append((cls, fields))
            self._flush_wanted.set()
        else:
            self.bus.publish(cls, **fields)

    async def _flusher(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The store's only writer: batches every change since the last write into one transaction."""
        task_status.started()
        while True:
            await self._flush_wanted.wait()
            if not self._durable:
                await trio.sleep(self._flush_interval)
            if not await self.flush():
                await trio.sleep(max(self._flush_interval, _RETRY_FAILED_FLUSH))

    async def flush(self) -> bool:
        """Write every pending change now (one transaction) and release held events.

        Returns False if the store failed; the changes stay queued (and, in
        durable mode, their events stay held) for the next try. A snapshot the
        store cannot encode is dropped from the batch with an error naming the
        session, so one bad session never blocks the others.
        """
        store = self._store
        self._flush_wanted = trio.Event()
        if store is None:
            await trio.lowlevel.checkpoint()
            return True
        dirty, self._dirty = self._dirty, set()
        deleted, self._deleted = self._deleted, set()
        held, self._held = self._held, []
        now = time.time()
        snapshots = [
            SessionSnapshot(spec=s.spec, state=s.view(), saved_at=now)
            for sid in dirty
            if (s := self._sessions.get(sid)) is not None
        ]
        while snapshots or deleted:
            try:
                await store.write(snapshots, sorted(deleted))
                break
            except SnapshotError as exc:
                logger.error("not persisted: %s", exc)
                snapshots = [snap for snap in snapshots if snap.session_id != exc.session_id]
            except Exception:
                logger.exception("writing %d snapshots failed; will retry", len(snapshots))
                self._dirty |= {snap.session_id for snap in snapshots} - self._deleted
                self._deleted |= deleted
                self._held[:0] = held
                self._flush_wanted.set()
                return False
        else:
            await trio.lowlevel.checkpoint()
        for cls, fields in held:
            self.bus.publish(cls, **fields)
        return True

    async def _restore(self, sessions: Iterable[SessionSpec], progress: Callable[[int, int], None] | None) -> None:
        """Load every snapshot and resume those sessions; `sessions` given now win over stored specs."""
        given = {spec.id: spec for spec in sessions}
        stored: dict[str, SessionSnapshot] = {}
        if self._store is not None:
            report = await self._store.load_all()
            self.restore_errors.extend(report.errors)
            stored = {snap.session_id: snap for snap in report.snapshots}
        total = len(given) + len(stored)
        if stored:
            logger.info("restoring %d sessions from the snapshot store", len(stored))
        done = 0
        for spec in given.values():
            snap = stored.pop(spec.id, None)
            self._register_now(spec, restore=snap.state if snap is not None else None)
            done += 1
            if progress is not None and done % 500 == 0:
                progress(done, total)
        for sid, snap in stored.items():
            try:
                self._register_now(snap.spec, restore=snap.state)
            except TetherError as exc:
                logger.error("session %s could not be restored: %s", sid, exc)
                self.restore_errors.append(SnapshotError(sid, f"cannot be restored: {exc}"))
            done += 1
            if progress is not None and done % 500 == 0:
                progress(done, total)
        if progress is not None:
            progress(total, total)
        await trio.lowlevel.checkpoint()

    # -- one attempt, and holding the link it opened -----------------------------------------------

    async def _try(
        self, session: Session, strategy_name: str | None, number: int, *, force: ForceRequest | None
    ) -> _Held | _Missed:
        """One attempt. If it connects, hold the link here until it drops: the link's
        context must close in the task and cancel scope that opened it."""
        spec = session.spec
        episode = session.episode
        label = strategy_name or FIRST_CONNECT
        if number > 0:
            assert episode is not None
            self._set_status(session, SessionStatus.RECONNECTING)
            self._report(
                ReconnectStarted,
                session_id=spec.id,
                episode=episode.number,
                attempt=number,
                strategy=label,
                forced=force is not None,
            )
        started_wall = time.time()
        started = trio.current_time()
        timeout = spec.policy.connect_timeout
        ctx: AttemptContext | None = None
        held: Attempt | None = None
        drop: Disconnect | None = None
        failure: Disconnect | None = None  # kept as a value: holding the exception would make a GC cycle
        try:
            # One scope per attempt: connect_timeout (ctx.connect / run_strategy arm its deadline),
            # the bound on closing the link, and `_stop` cancelling a busy session.
            with trio.CancelScope() as attempt_scope:
                session.scope = attempt_scope
                if session.stopping:
                    attempt_scope.cancel()
                ctx = self._context(session, episode, number, attempt_scope)
                try:
                    try:
                        link = await self._run_strategy(ctx, strategy_name)
                        attempt_scope.deadline = math.inf
                        held = Attempt(
                            number=number,
                            strategy=label,
                            started_at=started_wall,
                            duration=trio.current_time() - started,
                            success=True,
                            used_strategy=ctx.used_strategy or label,
                        )
                        ctx._settle()
                        self._on_connected(session, link, held, episode, force)
                        drop = await self._hold(session, link)
                        if not self._closed:  # bound the close; on shutdown the exit's grace period does
                            attempt_scope.deadline = trio.current_time() + timeout
                    except BaseException as exc:
                        if not await ctx.close_link(exc):
                            raise
                    else:
                        await ctx.close_link(None)
                except Exception as exc:
                    failure = classify(exc)
        finally:
            session.scope = None
            # No attempt will answer the force if the session is stopping, or if a cancel from
            # outside (the nursery, at exit) is unwinding through here.
            abandoned = session.stopping or not attempt_scope.cancelled_caught
            if force is not None and not force.done.is_set() and held is None and failure is None and abandoned:
                force.resolve(None, SessionNotFoundError(spec.id))
        if held is not None:
            if failure is not None and drop is None:
                drop = failure
            if drop is None and not session.stopping:
                drop = Disconnect(DisconnectReason.BACKEND_ERROR, "link closed without a reason")
            return _Held(held, drop)
        if session.stopping:  # stopped while connecting: nothing to record, the loop ends
            why = Disconnect(DisconnectReason.FORCED, "stopped")
        elif attempt_scope.cancelled_caught:
            why = Disconnect(DisconnectReason.TIMEOUT, f"attempt ran past connect_timeout ({timeout}s)")
        else:
            why = failure or Disconnect(DisconnectReason.BACKEND_ERROR, "the attempt ended without a link")
        attempt = Attempt(
            number=number,
            strategy=label,
            started_at=started_wall,
            duration=trio.current_time() - started,
            success=False,
            error=why.detail or why.reason.value,
            reason=why.reason,
            used_strategy=ctx.used_strategy if ctx is not None else None,
        )
        if not session.stopping:
            self._on_missed(session, attempt, episode)
            if force is not None:
                force.resolve(attempt)
        return _Missed(attempt, why)

    async def _run_strategy(self, ctx: AttemptContext, strategy_name: str | None) -> Link:
        if strategy_name is None:
            link = await ctx.connect(ConnectMode.FRESH, state=ctx.preserved)
        else:
            link = await ctx.run_strategy(strategy_name, announce=False)
        if link is None or link is not ctx.live_link:
            raise LinkError(
                "the strategy returned a link that tether did not open and probe",
                reason=DisconnectReason.BACKEND_ERROR,
            )
        return link

    def _context(
        self,
        session: Session,
        episode: EpisodeRecord | None,
        number: int,
        scope: trio.CancelScope,
    ) -> AttemptContext:
        spec = session.spec
        entry = self._limiters.get(session.target)
        return AttemptContext(
            spec=spec,
            backend=session.backend,
            target=session.target,
            disconnect=episode.disconnect if episode else None,
            attempt=number,
            preserved=session.preserved,
            strategies=self.registry.strategies,
            attempt_scope=scope,
            limiter=entry.limiter if entry is not None else None,
            hooks=AttemptHooks(self, session, episode, number),
        )

    def _on_connected(
        self,
        session: Session,
        link: Link,
        attempt: Attempt,
        episode: EpisodeRecord | None,
        force: ForceRequest | None,
    ) -> None:
        now = trio.current_time()
        session.link = link
        session.connected_mono = now
        session.connected_at = time.time()
        self._refresh_state(session, link)
        self._set_status(session, SessionStatus.CONNECTED)
        if attempt.number == 0 or episode is None:
            self._report(SessionConnected, session_id=session.spec.id, duration=attempt.duration)
        else:
            self._stats.total_attempts += 1
            if attempt.used_strategy == "process-restart":
                self._stats.process_restarts += 1
            episode.attempts.append(attempt)
            episode.attempts_made += 1
            episode.outcome = EpisodeOutcome.RECOVERED
            episode.ended_at = session.connected_at
            episode.recovery_time = now - episode.started_mono
            session.episodes_recovered += 1
            self._stats.recovered_episode(episode.recovery_time, session.connected_at)
            self._report(
                ReconnectSucceeded,
                session_id=session.spec.id,
                episode=episode.number,
                attempt=attempt.number,
                strategy=attempt.strategy,
                used_strategy=attempt.used_strategy or attempt.strategy,
                duration=attempt.duration,
                recovery_time=episode.recovery_time,
            )
        if force is not None:
            force.resolve(attempt)

    def _on_missed(self, session: Session, attempt: Attempt, episode: EpisodeRecord | None) -> None:
        if episode is None or attempt.number == 0:
            return
        self._stats.total_attempts += 1
        self._stats.failed_attempts += 1
        episode.attempts.append(attempt)
        episode.attempts_made += 1
        self._changed(session)
        self._report(
            ReconnectFailed,
            session_id=session.spec.id,
            episode=episode.number,
            attempt=attempt.number,
            strategy=attempt.strategy,
            reason=attempt.reason or DisconnectReason.BACKEND_ERROR,
            error=attempt.error or "",
        )

    async def _hold(self, session: Session, link: Link) -> Disconnect | None:
        """Stay parked while the link is up; probe on the health interval. None = stopping."""
        policy = session.spec.policy
        supervise = policy.enabled
        probe_every = policy.health_check_interval if supervise else 0.0
        keepalive = getattr(link, "keepalive", None) if supervise else None
        keep_every = policy.keepalive_interval if keepalive is not None else 0.0
        now = trio.current_time()
        next_probe = now + probe_every * self._rng.uniform(0.5, 1.0) if probe_every else math.inf
        next_keep = now + keep_every if keep_every else math.inf
        while True:
            if session.stopping:  # no refresh: shutdown has flushed already, unregister deletes the snapshot
                return None
            if session.pending_drop is not None:
                self._refresh_state(session, link)
                return session.pending_drop
            if session.force is not None:
                self._refresh_state(session, link)
                return Disconnect(DisconnectReason.FORCED, "reconnect requested")
            now = trio.current_time()
            if now >= next_probe:
                failure = await self._probe(session, link)
                if failure is not None:
                    return failure
                next_probe = trio.current_time() + probe_every * self._rng.uniform(0.9, 1.1)
                continue
            if now >= next_keep and keepalive is not None:
                await self._bounded(keepalive(), policy.connect_timeout)
                next_keep = trio.current_time() + keep_every
                continue
            await session.park(min(next_probe, next_keep))

    async def _probe(self, session: Session, link: Link) -> Disconnect | None:
        timeout = session.spec.policy.connect_timeout
        failure: Disconnect | None = None
        with trio.move_on_after(timeout) as scope:
            try:
                await link.probe()
            except Exception as exc:
                found = classify(exc)
                failure = (
                    found
                    if isinstance(exc, LinkError)
                    else Disconnect(DisconnectReason.HEALTH_CHECK, f"probe failed: {describe_error(exc)}")
                )
        if scope.cancelled_caught:
            failure = Disconnect(DisconnectReason.HEALTH_CHECK, f"probe timed out after {timeout}s")
        if failure is None:
            self._refresh_state(session, link)
            return None
        self.bus.publish(HealthCheckFailed, session_id=session.spec.id, error=failure.detail)
        return session.pending_drop or failure

    async def _bounded(self, awaitable: Any, limit: float) -> None:
        with trio.move_on_after(limit):
            try:
                await awaitable
            except Exception:
                logger.debug("keepalive failed", exc_info=True)

    def _refresh_state(self, session: Session, link: Link) -> None:
        """Keep preserved state current while connected (flaw 12)."""
        if not session.spec.policy.preserve_state:
            return
        try:
            state = link.current_state()
        except Exception:
            logger.warning("session %s: current_state() raised", session.spec.id, exc_info=True)
            return
        if state is not None and state != session.preserved:
            session.preserved = state
            self._changed(session)


@asynccontextmanager
async def open_supervisor(
    *,
    registry: PluginRegistry | None = None,
    backends: Iterable[Backend] = (),
    strategies: Iterable[Strategy] = (),
    connect_limit: int | None = 10,
    event_ring: int = 10_000,
    output_history_bytes: int = 64 * 1024,
    seed: int | None = None,
    store: SnapshotStore | None = None,
    durable: bool = False,
    flush_interval: float = 0.5,
    sessions: Iterable[SessionSpec] = (),
    on_restore: Callable[[int, int], None] | None = None,
    gc_policy: Literal["default", "managed"] = "default",
) -> AsyncIterator[Supervisor]:
    """Run a supervisor for the duration of the ``async with`` block.

    Plugins are discovered once here (unless `registry` is given); `backends`
    and `strategies` add objects directly, checked like plugins.
    `connect_limit` caps concurrent connects per target (OpenSSH's
    MaxStartups refuses past 10); None lifts it. Leaving the block stops
    every session at once (flaw 5). An exception from the block comes out
    as itself, not wrapped in an exception group.

    With a `store`, every stored session is restored and resumed on entry
    (`sessions` registered here take their stored state but keep the spec
    given now), changes are written behind by one flusher task every
    `flush_interval` seconds in one transaction, and pending changes are
    flushed on exit. `durable` commits each transition before its event is
    published (group commit: many sessions share one transaction).
    `on_restore(done, total)` reports progress while thousands come back.

    ``gc_policy="managed"`` turns the cyclic garbage collector's automatic
    runs off while the supervisor runs and collects only when the number of
    live objects keeps growing (see `tether._gc`): with 100,000 sessions the
    automatic collections were most of a storm's cost and all of the
    drop-to-reconnect tail (benchmarks/FINDINGS.md). It is process-wide, so it
    is opt-in for the library and on in the daemon.
    """
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
                    nursery,
                    registry,
                    bus=bus,
                    connect_limit=connect_limit,
                    rng=random.Random(seed),
                    output_history_bytes=output_history_bytes,
                    store=store,
                    durable=durable,
                    flush_interval=flush_interval,
                )
                await nursery.start(supervisor._timers.run)
                collector = ManagedCollector() if gc_policy == "managed" else None
                if collector is not None:
                    stack.enter_context(collector)
                    nursery.start_soon(collector.run)
                if store is not None:
                    await nursery.start(supervisor._flusher)
                try:
                    await supervisor._restore(sessions, on_restore)
                    yield supervisor
                finally:
                    if store is not None:
                        with trio.CancelScope(shield=True), trio.move_on_after(_FINAL_FLUSH_SECONDS):
                            await supervisor.flush()
                    supervisor._shutdown()
                    await supervisor._wait_finished(_GRACEFUL_EXIT_SECONDS)
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        single = single_error(group)
        if single is None:
            raise
        raise single from None
