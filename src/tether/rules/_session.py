"""The rules of one session's life, as a state machine with no awaits, no clock and no I/O.

`SessionRecord` holds everything tether knows about a session (what a
snapshot keeps) and changes only through its input methods: ``restore``,
``next_step``, ``attempt_started``, ``connected``, ``missed``, ``dropped``,
``revived``, ``stopped``, ``preserved_changed``. Each input takes the time
as an argument (``now`` is trio time, ``wall`` is epoch seconds) and hands its
effects, in order, to an `Effects` sink: events to publish, snapshot marks,
status moves for the statistics. The engine's sink is its outbox; a test's
sink records them. ``next_step`` answers what the session task must do next:
make an attempt, wait until a deadline (a backoff), wait for a forced
reconnect, or stop.

The lifecycle it encodes::

    connecting -> connected -> backing-off -> reconnecting -> connected
                     |              ^   (budget spent, auth, host key)
                     v              |          -> failed
                 disconnected  (auto_reconnect off: waits for a force)

- The first attempt of an episode runs at once; later ones wait the
  jittered backoff (`tether.rules._backoff`).
- A link that drops sooner than ``stable_after`` after connecting continues
  its episode (same budget, same backoff): flapping protection.
- Auth and host-key failures end the episode failed at once, never retried.
- A failed or disconnected session waits for a forced reconnect, which
  starts a fresh episode with a fresh budget. A forced reconnect always makes
  at least one attempt, even with ``max_retries = 0``.
- A session restored from a snapshot resumes its episode (and its backoff
  schedule) and first tries the strategy mapped to ``supervisor-restart``.
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, final

import attrs

from ._backoff import retry_delay
from ._events import (
    Event,
    HealthCheckFailed,
    ReconnectFailed,
    ReconnectScheduled,
    ReconnectStarted,
    ReconnectSucceeded,
    RetriesExhausted,
    SessionConnected,
    SessionDisconnected,
    SessionFailed,
)
from ._policy import DEFAULT_STRATEGIES
from ._reasons import Disconnect, DisconnectReason
from ._secrets import drop_redacted, redact_text, secret_values
from ._spec import SessionSpec
from ._state import Attempt, Episode, EpisodeOutcome, PreservedState, SessionState, SessionStatus

ATTEMPTS_KEPT = 50
"""Attempts kept per episode; `attempts_made` still counts every one."""

FIRST_CONNECT = "connect"
"""Strategy name recorded for a session's very first connect."""

REVIVED = Disconnect(DisconnectReason.FORCED, "revived by force_reconnect")
RESTARTED = Disconnect(DisconnectReason.SUPERVISOR_RESTART, "tether restarted")


class Effects(Protocol):
    """Where a transition's effects go, in the order they happen."""

    def publish(self, cls: type[Event], /, **fields: Any) -> None:
        """An event to publish (the outbox holds it back until a durable write in durable mode)."""

    def changed(self, session_id: str) -> None:
        """The session's snapshot is out of date."""

    def status_moved(self, old: SessionStatus | None, new: SessionStatus | None) -> None:
        """For the per-status counts."""

    def reopened(self, recovery_time: float) -> None:
        """A flapping link reopened an episode that was counted as recovered."""


class StepKind(enum.Enum):
    ATTEMPT = "attempt"
    WAIT = "wait"
    """Park until `Step.deadline` (trio time) or a signal, then ask again."""
    WAIT_FOR_TARGET = "wait-for-target"
    """Park on the target's readiness gate until it answers (or `Step.deadline`, the
    unreachable bound), then ask again."""
    WAIT_FOR_FORCE = "wait-for-force"
    STOP = "stop"


@final
class Step(NamedTuple):
    """What the session task does next.

    A named tuple, not an attrs class: one is built for every step of every session, and a
    tuple is built in one call (benchmarks/FINDINGS.md, "Update, 1 Dec (afternoon)").
    """

    kind: StepKind
    number: int = 0
    """The attempt's number within its episode (0: the very first connect)."""
    strategy: str | None = None
    """None: the first connect (a fresh link, no strategy)."""
    deadline: float = math.inf


WAIT_FOR_FORCE = Step(StepKind.WAIT_FOR_FORCE)
STOP = Step(StepKind.STOP)
FIRST_ATTEMPT = Step(StepKind.ATTEMPT, 0, None)


class _Phase(enum.Enum):
    NEW = "new"
    """Registered this run, nothing tried yet."""
    HOLDING = "holding"
    """An attempt is running or its link is held: the engine reports what happens."""
    DROPPED = "dropped"
    """A drop (or a failed first connect) waits to be recorded."""
    RECOVERING = "recovering"
    BACKING_OFF = "backing-off"
    DOWN = "down"
    """Failed or disconnected: waits for a forced reconnect."""
    WAITING = "waiting"
    """The target is unreachable: parked on its readiness gate, spending no budget."""
    STOPPED = "stopped"


class EpisodeRecord:
    """The episode in progress (mutable); `freeze` gives the public `Episode`."""

    __slots__ = (
        "attempts",
        "attempts_made",
        "disconnect",
        "ended_at",
        "last_delay",
        "number",
        "outcome",
        "recovery_time",
        "started_at",
        "started_mono",
        "unreachable",
    )

    def __init__(self, number: int, disconnect: Disconnect, started_mono: float, started_at: float) -> None:
        self.number = number
        self.disconnect = disconnect
        self.started_at = started_at
        self.started_mono = started_mono
        self.outcome = EpisodeOutcome.ONGOING
        self.attempts: deque[Attempt] = deque(maxlen=ATTEMPTS_KEPT)
        self.attempts_made = 0
        self.ended_at: float | None = None
        self.recovery_time: float | None = None
        self.last_delay: float | None = None
        self.unreachable = 0
        """Attempts that found the target down: they spend no budget."""

    @property
    def budget_used(self) -> int:
        return self.attempts_made - self.unreachable

    def freeze(self) -> Episode:
        return Episode(
            number=self.number,
            disconnect=self.disconnect,
            started_at=self.started_at,
            outcome=self.outcome,
            attempts_made=self.attempts_made,
            attempts=tuple(self.attempts),
            ended_at=self.ended_at,
            recovery_time=self.recovery_time,
            attempts_unreachable=self.unreachable,
        )

    @classmethod
    def thaw(cls, episode: Episode, started_mono: float) -> EpisodeRecord:
        """An episode restored from a snapshot, continuing where it stopped."""
        record = cls(episode.number, episode.disconnect, started_mono, episode.started_at)
        record.outcome = episode.outcome
        record.attempts.extend(episode.attempts)
        record.attempts_made = episode.attempts_made
        record.unreachable = episode.attempts_unreachable
        record.ended_at = episode.ended_at
        record.recovery_time = episode.recovery_time
        return record


class SessionRecord:
    """One session's state and the rules that change it (see the module docstring)."""

    __slots__ = (
        "_down_manual",
        "_fatal",
        "_pending",
        "_phase",
        "_until",
        "attempts_failed",
        "attempts_total",
        "backend_strategies",
        "connected_at",
        "connected_mono",
        "episode",
        "episodes_failed",
        "episodes_recovered",
        "episodes_total",
        "failure",
        "history",
        "known_secrets",
        "last_disconnect",
        "last_failure",
        "next_attempt_at",
        "preserved",
        "restored",
        "resume_at",
        "sid",
        "spec",
        "status",
        "status_since",
        "target",
    )

    def __init__(
        self, spec: SessionSpec, target: str, backend_strategies: Mapping[DisconnectReason, str], wall: float
    ) -> None:
        self.spec = spec
        self.sid = spec.id
        self.target = target
        self.backend_strategies = backend_strategies
        self.known_secrets = secret_values(spec.options)
        """Values no text about this session may show: its literal secrets (the engine adds the
        values of references it resolves). Every reason entering the record is scrubbed of them."""
        self.status = SessionStatus.CONNECTING
        self.status_since = wall
        self.episode: EpisodeRecord | None = None
        self.history: tuple[Episode, ...] = ()
        """Past episodes, newest last; a tuple, since it changes once per episode (a deque costs 600 B)."""
        self.episodes_total = 0
        self.episodes_recovered = 0
        self.episodes_failed = 0
        self.attempts_total = 0
        """Reconnect attempts over the session's life (kept across restarts)."""
        self.attempts_failed = 0
        self.preserved: PreservedState | None = None
        self.last_disconnect: Disconnect | None = None
        self.connected_at: float | None = None
        self.connected_mono: float | None = None
        self.next_attempt_at: float | None = None
        self.restored: SessionStatus | None = None
        """The status a snapshot recorded, until the first attempt after a restart."""
        self.resume_at: float | None = None
        """Trio time a restored mid-backoff session had its next attempt scheduled for."""
        self._phase = _Phase.NEW
        self._pending: Disconnect | None = None
        """A drop (or the first connect's failure) the next step records."""
        self._fatal: Disconnect | None = None
        """A failure no retry can fix (auth, host key): the episode ends failed."""
        self._until = math.inf
        """Trio time the backoff in progress ends."""
        self._down_manual = False
        """Down because the policy does not reconnect by itself (not because the episode failed)."""
        self.failure: Disconnect | None = None
        """Why the session is failed, while it is."""
        self.last_failure: Disconnect | None = None
        """Why the last attempt failed (None after a connect): the engine asks the target's
        readiness gate when it says the target may be unreachable."""

    # -- inputs ---------------------------------------------------------------------------------

    def restore(self, state: SessionState, now: float, wall: float) -> None:
        """Take the record a snapshot kept: the next step resumes it (before the first step only)."""
        self.restored = state.status
        if state.next_attempt_at is not None:
            self.resume_at = now + max(0.0, state.next_attempt_at - wall)
        limit = self.spec.policy.history_limit
        self.history = state.history[-limit:] if limit else ()
        self.episodes_total = state.episodes_total
        self.episodes_recovered = state.episodes_recovered
        self.episodes_failed = state.episodes_failed
        self.attempts_total = state.attempts_total
        self.attempts_failed = state.attempts_failed
        self.failure = state.failure
        self.last_disconnect = state.last_disconnect
        if state.preserved is not None and self.preserved is None:  # a redacted value is never handed on
            self.preserved = attrs.evolve(state.preserved, env=drop_redacted(state.preserved.env))
        if state.episode is not None:
            self.episode = EpisodeRecord.thaw(state.episode, now)

    def next_step(
        self,
        fx: Effects,
        now: float,
        wall: float,
        rng: random.Random,
        *,
        forced: bool,
        force_strategy: str | None,
        target_down: bool = False,
    ) -> Step:
        """What to do now. `forced`: a forced reconnect is waiting (with `force_strategy`, if it named
        one). `target_down`: the target's readiness gate knows the target is unreachable."""
        phase = self._phase
        if phase is _Phase.WAITING:
            if not forced and target_down:
                return self._wait_for_target(fx, now, wall)
            self._phase = _Phase.RECOVERING  # the target answers again: try at once, no backoff
            episode = self.episode
            if forced or (episode is not None and self.spec.policy.allows_retry(episode.budget_used)):
                return self._attempt(force_strategy)
            return self._recover(fx, now, wall, rng, forced=forced, force_strategy=force_strategy)
        if phase is _Phase.BACKING_OFF:
            if not forced and now < self._until:
                return Step(StepKind.WAIT, deadline=self._until)
            self.next_attempt_at = None
            return self._attempt(force_strategy)
        if phase is _Phase.NEW:
            if self.restored in (SessionStatus.FAILED, SessionStatus.DISCONNECTED):
                self._set_status(fx, self.restored, wall)
                self._phase = phase = _Phase.DOWN
            elif self.restored is not None:
                self._set_status(fx, SessionStatus.RECONNECTING, wall)
                self._pending = RESTARTED
                self._phase = phase = _Phase.DROPPED
            else:
                self._phase = _Phase.HOLDING
                return FIRST_ATTEMPT
        if phase is _Phase.DROPPED:
            assert self._pending is not None
            drop, self._pending = self._pending, None
            self._record_drop(fx, drop, now, wall)
            policy = self.spec.policy
            if (not policy.enabled or not policy.auto_reconnect) and drop is not REVIVED:
                self._set_status(fx, SessionStatus.DISCONNECTED, wall)
                self._down_manual = True
                self._phase = phase = _Phase.DOWN
            else:
                self._fatal = None if drop.reason.retryable else drop
                self._phase = phase = _Phase.RECOVERING
        if phase is _Phase.DOWN:
            if not forced:
                return WAIT_FOR_FORCE
            if self._down_manual:  # the policy waits for a force: recover the episode it left off
                self._down_manual = False
                self._fatal = None
                self._phase = _Phase.RECOVERING
            else:  # failed: a fresh episode with a fresh budget
                self._pending = REVIVED
                self._phase = _Phase.DROPPED
                return self.next_step(fx, now, wall, rng, forced=forced, force_strategy=force_strategy)
        if self._phase is _Phase.RECOVERING:
            if target_down and not forced and self._fatal is None:
                self._phase = _Phase.WAITING
                self._set_status(fx, SessionStatus.WAITING, wall)
                return self._wait_for_target(fx, now, wall)
            return self._recover(fx, now, wall, rng, forced=forced, force_strategy=force_strategy)
        if self._phase is _Phase.STOPPED:
            return STOP
        raise AssertionError(f"next_step called while {self._phase.value}")  # pragma: no cover

    def attempt_started(self, fx: Effects, step: Step, wall: float, *, forced: bool) -> None:
        """The engine began the attempt `next_step` asked for."""
        self._phase = _Phase.HOLDING
        if step.number > 0:
            episode = self.episode
            assert episode is not None
            self._set_status(fx, SessionStatus.RECONNECTING, wall)
            fx.publish(
                ReconnectStarted,
                session_id=self.sid,
                episode=episode.number,
                attempt=step.number,
                strategy=step.strategy or FIRST_CONNECT,
                forced=forced,
            )

    def connected(self, fx: Effects, attempt: Attempt, now: float, wall: float) -> None:
        """The attempt handed back a live, probed link."""
        self.restored = None
        self.last_failure = None
        self.connected_mono = now
        self.connected_at = wall
        self._set_status(fx, SessionStatus.CONNECTED, wall)
        episode = self.episode
        if attempt.number == 0 or episode is None:
            fx.publish(SessionConnected, session_id=self.sid, duration=attempt.duration)
            return
        self.attempts_total += 1
        episode.attempts.append(attempt)
        episode.attempts_made += 1
        episode.outcome = EpisodeOutcome.RECOVERED
        episode.ended_at = wall
        episode.recovery_time = now - episode.started_mono
        self.episodes_recovered += 1
        fx.publish(
            ReconnectSucceeded,
            session_id=self.sid,
            episode=episode.number,
            attempt=attempt.number,
            strategy=attempt.strategy,
            used_strategy=attempt.used_strategy or attempt.strategy,
            duration=attempt.duration,
            recovery_time=episode.recovery_time,
            same_program=attempt.same_program,
        )

    def missed(self, fx: Effects, attempt: Attempt, why: Disconnect) -> None:
        """The attempt failed for `why` (the first connect's failure is the episode's drop)."""
        raw, why = why.detail, self.scrubbed(why)
        if attempt.error:  # most often the reason's own detail, scrubbed just now
            error = why.detail if attempt.error == raw else redact_text(attempt.error, self.known_secrets)
            if error != attempt.error:
                attempt = attrs.evolve(attempt, error=error)
        self.restored = None
        self.last_failure = why
        if attempt.number == 0 or self.episode is None:
            self._pending = why
            self._phase = _Phase.DROPPED
            return
        episode = self.episode
        self.attempts_total += 1
        self.attempts_failed += 1
        episode.attempts.append(attempt)
        episode.attempts_made += 1
        if not why.reason.retryable:
            self._fatal = why
        if self.spec.policy.enabled:
            self._phase = _Phase.RECOVERING
        else:  # supervision off: one attempt per force, then down again
            self._pending = why
            self._phase = _Phase.DROPPED
        fx.changed(self.sid)
        fx.publish(
            ReconnectFailed,
            session_id=self.sid,
            episode=episode.number,
            attempt=attempt.number,
            strategy=attempt.strategy,
            reason=attempt.reason or DisconnectReason.BACKEND_ERROR,
            error=attempt.error or "",
        )

    def unreachable(self, fx: Effects, wall: float) -> None:
        """The target's readiness probe confirmed the last attempt's failure: the target is down.
        That attempt spends no budget; the session waits for the target (`next_step`)."""
        episode = self.episode
        if episode is not None and self._phase is _Phase.RECOVERING and self.last_failure is not None:
            episode.unreachable += 1
            fx.changed(self.sid)

    def dropped(self, why: Disconnect) -> None:
        """The held link ended (or was closed for a forced reconnect); recorded by the next step."""
        self._pending = self.scrubbed(why)
        self._phase = _Phase.DROPPED

    def probe_failed(self, fx: Effects, detail: str) -> None:
        fx.publish(HealthCheckFailed, session_id=self.sid, error=redact_text(detail, self.known_secrets))

    def preserved_changed(self, fx: Effects, preserved: PreservedState) -> None:
        if preserved != self.preserved:
            self.preserved = preserved
            fx.changed(self.sid)

    def stopped(self, fx: Effects, wall: float) -> None:
        """The session task ended: an episode in progress is abandoned."""
        self._phase = _Phase.STOPPED
        episode = self.episode
        if episode is not None and episode.outcome is EpisodeOutcome.ONGOING:
            episode.outcome = EpisodeOutcome.ABANDONED
            episode.ended_at = wall
        self._set_status(fx, SessionStatus.STOPPED, wall)

    def fail_now(self, fx: Effects, why: Disconnect, wall: float) -> None:
        """End the session failed for a reason no retry can fix (a bug in tether, a missing secret)."""
        self._fail(fx, self.scrubbed(why), wall, exhausted=False)
        self._phase = _Phase.DOWN

    def scrubbed(self, why: Disconnect) -> Disconnect:
        """`why` with this session's secrets and any token-looking text out of its detail: what
        events, status replies and snapshots then carry (one redaction, `tether.rules._secrets`)."""
        detail = redact_text(why.detail, self.known_secrets)
        return why if detail == why.detail else attrs.evolve(why, detail=detail)

    # -- views ----------------------------------------------------------------------------------

    @property
    def waiting_for_force(self) -> bool:
        return self._phase is _Phase.DOWN

    @property
    def recovering(self) -> bool:
        """Between attempts of an episode, retrying by itself: where the readiness gate may park it
        (never for a policy that does not retry: ``max_retries = 0`` means no second try at all)."""
        policy = self.spec.policy
        return (
            self._phase in (_Phase.RECOVERING, _Phase.WAITING, _Phase.DROPPED)
            and policy.max_retries != 0 and policy.enabled and policy.auto_reconnect
        )

    def view(self) -> SessionState:
        return SessionState(
            id=self.sid,
            backend=self.spec.backend,
            target=self.target,
            status=self.status,
            status_since=self.status_since,
            episode=self.episode.freeze() if self.episode is not None else None,
            history=self.history,
            preserved=self.preserved,
            last_disconnect=self.last_disconnect,
            connected_at=self.connected_at,
            next_attempt_at=self.next_attempt_at,
            episodes_total=self.episodes_total,
            episodes_recovered=self.episodes_recovered,
            episodes_failed=self.episodes_failed,
            attempts_total=self.attempts_total,
            attempts_failed=self.attempts_failed,
            failure=self.failure,
        )

    # -- the rules ------------------------------------------------------------------------------

    def _recover(
        self, fx: Effects, now: float, wall: float, rng: random.Random, *, forced: bool, force_strategy: str | None
    ) -> Step:
        episode = self.episode
        assert episode is not None
        policy = self.spec.policy
        if self._fatal is not None or (not forced and not policy.allows_retry(episode.budget_used)):
            if self._fatal is not None:
                self._fail(fx, self._fatal, wall, exhausted=False)
            else:
                if episode.outcome is EpisodeOutcome.ONGOING:
                    fx.publish(
                        RetriesExhausted, session_id=self.sid, episode=episode.number, attempts=episode.attempts_made
                    )
                self._fail(fx, episode.disconnect, wall, exhausted=True)
            self._fatal = None
            self._down_manual = False
            self._phase = _Phase.DOWN
            if not forced:
                return WAIT_FOR_FORCE
            return self.next_step(fx, now, wall, rng, forced=forced, force_strategy=force_strategy)
        if episode.attempts_made > 0 and not forced:
            if self.resume_at is not None:  # restored mid-backoff: keep the original schedule
                delay = max(0.0, self.resume_at - now)
                self.resume_at = None
            else:
                delay = retry_delay(policy, episode.attempts_made, rng, episode.last_delay)
                episode.last_delay = delay
            self.next_attempt_at = wall + delay
            self._until = now + delay
            self._phase = _Phase.BACKING_OFF
            self._set_status(fx, SessionStatus.BACKING_OFF, wall)
            fx.publish(
                ReconnectScheduled,
                session_id=self.sid,
                episode=episode.number,
                attempt=episode.attempts_made + 1,
                delay=delay,
            )
            if delay > 0:
                return Step(StepKind.WAIT, deadline=now + delay)
            self.next_attempt_at = None
        return self._attempt(force_strategy)

    def _wait_for_target(self, fx: Effects, now: float, wall: float) -> Step:
        episode = self.episode
        assert episode is not None
        bound = self.spec.policy.unreachable_timeout
        deadline = math.inf if bound is None else episode.started_mono + bound
        if now >= deadline:
            why = Disconnect(DisconnectReason.NETWORK, f"{self.target} stayed unreachable for {bound:g}s")
            self._fail(fx, why, wall, exhausted=False)
            self._phase = _Phase.DOWN
            return WAIT_FOR_FORCE
        return Step(StepKind.WAIT_FOR_TARGET, deadline=deadline)

    def _attempt(self, force_strategy: str | None) -> Step:
        episode = self.episode
        assert episode is not None
        self._phase = _Phase.HOLDING
        return Step(StepKind.ATTEMPT, episode.attempts_made + 1, force_strategy or self.strategy_for(episode))

    def strategy_for(self, episode: EpisodeRecord) -> str:
        """Policy map, then the backend's defaults, then tether's; the first attempt after tether
        restarted may find the program still running (tmux, a named terminal), so it maps
        ``supervisor-restart`` whatever began the episode."""
        reason = DisconnectReason.SUPERVISOR_RESTART if self.restored is not None else episode.disconnect.reason
        return (
            self.spec.policy.strategies.get(reason)
            or self.backend_strategies.get(reason)
            or DEFAULT_STRATEGIES.get(reason)
            or "simple-reconnect"
        )

    def _record_drop(self, fx: Effects, drop: Disconnect, now: float, wall: float) -> None:
        """Record a drop: continue a flapping episode or begin a new one."""
        self.last_disconnect = drop
        episode = self.episode
        flapping = (
            episode is not None
            and episode.outcome is EpisodeOutcome.RECOVERED
            and self.connected_mono is not None
            and now - self.connected_mono < self.spec.policy.stable_after
            and drop.reason is not DisconnectReason.FORCED
        )
        self.connected_mono = None
        self.connected_at = None
        if flapping:
            assert episode is not None
            fx.reopened(episode.recovery_time or 0.0)
            self.episodes_recovered -= 1
            episode.outcome = EpisodeOutcome.ONGOING
            episode.ended_at = None
            episode.recovery_time = None
        elif episode is None or episode.outcome is not EpisodeOutcome.ONGOING or drop.reason is DisconnectReason.FORCED:
            if episode is not None:
                if episode.outcome is EpisodeOutcome.ONGOING:
                    episode.outcome = EpisodeOutcome.ABANDONED
                    episode.ended_at = wall
                self._remember(episode.freeze())
            self.episodes_total += 1
            episode = self.episode = EpisodeRecord(self.episodes_total, drop, now, wall)
        assert episode is not None
        fx.changed(self.sid)
        fx.publish(
            SessionDisconnected,
            session_id=self.sid,
            reason=drop.reason,
            detail=drop.detail,
            episode=episode.number,
            exit_code=drop.exit_code,
            signal=drop.signal,
            flapping=flapping,
        )

    def _fail(self, fx: Effects, why: Disconnect, wall: float, *, exhausted: bool) -> None:
        episode = self.episode
        if episode is not None and episode.outcome is EpisodeOutcome.ONGOING:
            episode.outcome = EpisodeOutcome.FAILED
            episode.ended_at = wall
            self.episodes_failed += 1
        if self.status is not SessionStatus.FAILED:
            self._set_status(fx, SessionStatus.FAILED, wall)
            detail = why.detail
            if exhausted and episode is not None:
                detail = f"gave up after {episode.attempts_made} attempts" + (f": {detail}" if detail else "")
            self.failure = attrs.evolve(why, detail=detail)
            fx.publish(SessionFailed, session_id=self.sid, reason=why.reason, detail=detail)

    def _remember(self, episode: Episode) -> None:
        limit = self.spec.policy.history_limit
        self.history = (*self.history, episode)[-limit:] if limit else ()

    def _set_status(self, fx: Effects, status: SessionStatus, wall: float) -> None:
        if self.status is status:
            return
        if status is not SessionStatus.FAILED:
            self.failure = None
        fx.status_moved(self.status, status)
        self.status = status
        self.status_since = wall
        fx.changed(self.sid)
