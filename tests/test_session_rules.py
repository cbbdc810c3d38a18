"""The session rules as a pure state machine: exhaustive checks without a clock, a task or a backend.

A hypothesis state machine plays the engine: it asks for the next step, runs
the attempt it is told to (succeeding or failing for any reason), drops held
links, forces reconnects and moves time on, and checks the invariants after
every input. Time is just a number here.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tether import Attempt, Disconnect, DisconnectReason, EpisodeOutcome, ReconnectPolicy, SessionSpec, SessionStatus
from tether.rules._events import (
    Event,
    ReconnectFailed,
    ReconnectScheduled,
    ReconnectStarted,
    ReconnectSucceeded,
    RetriesExhausted,
    SessionConnected,
    SessionDisconnected,
    SessionFailed,
)
from tether.rules._session import SessionRecord, Step, StepKind


class Recorder:
    """An Effects sink that keeps everything, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[type[Event], dict[str, Any]]] = []
        self.changed_count = 0
        self.moves: list[tuple[SessionStatus | None, SessionStatus | None]] = []
        self.reopens: list[float] = []

    def publish(self, cls: type[Event], /, **fields: Any) -> None:
        self.events.append((cls, fields))

    def changed(self, session_id: str) -> None:
        self.changed_count += 1

    def status_moved(self, old: SessionStatus | None, new: SessionStatus | None) -> None:
        self.moves.append((old, new))

    def reopened(self, recovery_time: float) -> None:
        self.reopens.append(recovery_time)

    def types(self) -> list[str]:
        return [cls.type for cls, _ in self.events]


def record(**policy: Any) -> SessionRecord:
    spec = SessionSpec(id="s", backend="scripted", policy=ReconnectPolicy(**policy))
    return SessionRecord(spec, "t", {}, wall=0.0)


def attempt(step: Step, *, success: bool, reason: DisconnectReason | None = None) -> Attempt:
    return Attempt(number=step.number, strategy=step.strategy or "connect", started_at=0.0, duration=0.0,
                   success=success, reason=reason, error=None if success else "no")


REASONS = st.sampled_from(list(DisconnectReason))
RETRYABLE = st.sampled_from([r for r in DisconnectReason if r.retryable])


class SessionRulesMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fx = Recorder()
        self.rng = random.Random(0)
        self.now = 0.0
        self.in_flight: Step | None = None
        self.holding = False
        self.deadline: float | None = None
        self.forced = False
        self.rec: SessionRecord | None = None

    @rule(max_retries=st.one_of(st.none(), st.integers(0, 4)), stable_after=st.sampled_from([0.0, 5.0]),
          auto=st.booleans(), enabled=st.booleans())
    @precondition(lambda self: self.rec is None)
    def start(self, max_retries: int | None, stable_after: float, auto: bool, enabled: bool) -> None:
        self.policy_retries = max_retries
        self.rec = record(max_retries=max_retries, base_delay=1.0, max_delay=4.0, stable_after=stable_after,
                          auto_reconnect=auto, enabled=enabled)

    def _idle(self) -> bool:
        return self.rec is not None and self.in_flight is None and not self.holding

    @rule()
    @precondition(lambda self: self._idle())
    def next_step(self) -> None:
        assert self.rec is not None
        before = len(self.fx.events)
        step = self.rec.next_step(self.fx, self.now, self.now, self.rng, forced=self.forced, force_strategy=None)
        if step.kind is StepKind.ATTEMPT:
            self.forced_attempt = self.forced
            self.forced = False
            self.deadline = None
            self.rec.attempt_started(self.fx, step, self.now, forced=self.forced_attempt)
            self.in_flight = step
            if step.number > 0:
                assert self.fx.events[-1][0] is ReconnectStarted
                episode = self.rec.episode
                assert episode is not None
                if self.policy_retries is not None and self.rec.spec.policy.enabled and not self.forced_attempt:
                    assert step.number <= self.policy_retries, "an attempt past the retry budget"
        elif step.kind is StepKind.WAIT:
            assert step.deadline > self.now
            assert step.deadline - self.now <= 4.0 + 1e-9, "a backoff longer than max_delay"
            self.deadline = step.deadline
            assert self.rec.status is SessionStatus.BACKING_OFF
        elif step.kind is StepKind.WAIT_FOR_FORCE:
            assert not self.forced
            assert self.rec.status in (SessionStatus.FAILED, SessionStatus.DISCONNECTED)
            assert len(self.fx.events) >= before

    @rule()
    @precondition(lambda self: self.in_flight is not None)
    def succeed(self) -> None:
        assert self.rec is not None and self.in_flight is not None
        self.rec.connected(self.fx, attempt(self.in_flight, success=True), self.now, self.now)
        assert self.rec.status is SessionStatus.CONNECTED
        expected = SessionConnected if self.in_flight.number == 0 else ReconnectSucceeded
        assert self.fx.events[-1][0] is expected
        self.in_flight = None
        self.holding = True

    @rule(reason=REASONS)
    @precondition(lambda self: self.in_flight is not None)
    def fail(self, reason: DisconnectReason) -> None:
        assert self.rec is not None and self.in_flight is not None
        step = self.in_flight
        self.rec.missed(self.fx, attempt(step, success=False, reason=reason), Disconnect(reason, "x"))
        if step.number > 0:
            assert self.fx.events[-1][0] is ReconnectFailed
        self.in_flight = None

    @rule(reason=RETRYABLE)
    @precondition(lambda self: self.holding)
    def drop(self, reason: DisconnectReason) -> None:
        assert self.rec is not None
        self.rec.dropped(Disconnect(reason, "gone"))
        self.holding = False

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0, 10.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    @precondition(lambda self: self.rec is not None)
    def force(self) -> None:
        self.forced = True

    @invariant()
    def counters_agree(self) -> None:
        rec = self.rec
        if rec is None:
            return
        assert rec.episodes_recovered + rec.episodes_failed <= rec.episodes_total
        assert rec.attempts_failed <= rec.attempts_total
        failed_events = sum(1 for cls, _ in self.fx.events if cls is ReconnectFailed)
        succeeded = sum(1 for cls, _ in self.fx.events if cls is ReconnectSucceeded)
        assert rec.attempts_total == failed_events + succeeded
        assert rec.attempts_failed == failed_events
        assert rec.episodes_total == sum(1 for cls, _ in self.fx.events if cls is SessionDisconnected) - sum(
            1 for cls, f in self.fx.events if cls is SessionDisconnected and f["flapping"]
        ) - self._continued()
        rec.view()  # always a valid public state

    def _continued(self) -> int:
        """Drops recorded into an episode already in progress (a restored or manual episode continuing)."""
        numbers = [f["episode"] for cls, f in self.fx.events if cls is SessionDisconnected and not f["flapping"]]
        return len(numbers) - len(set(numbers))

    @invariant()
    def events_keep_their_order(self) -> None:
        open_attempt = False
        exhausted_pending = False
        for cls, _ in self.fx.events:
            if cls is ReconnectStarted:
                assert not open_attempt, "two attempts at once"
                open_attempt = True
            elif cls in (ReconnectSucceeded, ReconnectFailed):
                assert open_attempt
                open_attempt = False
            elif cls is RetriesExhausted:
                exhausted_pending = True
            elif cls is SessionFailed:
                exhausted_pending = False
            elif cls is ReconnectScheduled:
                assert not open_attempt
        assert not exhausted_pending or self.fx.events[-1][0] is RetriesExhausted, "exhausted without failed"

    @invariant()
    def status_moves_are_consistent(self) -> None:
        if self.rec is None or not self.fx.moves:
            return
        assert self.fx.moves[-1][1] is self.rec.status
        for (_, new), (old, _) in zip(self.fx.moves, self.fx.moves[1:], strict=False):
            assert new is old


SessionRulesMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestSessionRules = SessionRulesMachine.TestCase


# -- the documented sequences, exactly -------------------------------------------------------------------


def drive(rec: SessionRecord, fx: Recorder, *outcomes: str, now: float = 0.0) -> list[str]:
    """Run steps, answering attempts with `outcomes` in order ("ok" or a reason value)."""
    rng = random.Random(1)
    queue = list(outcomes)
    while True:
        step = rec.next_step(fx, now, now, rng, forced=False, force_strategy=None)
        if step.kind is StepKind.WAIT and queue:
            now = step.deadline
            continue
        if step.kind is not StepKind.ATTEMPT or not queue:
            break
        rec.attempt_started(fx, step, now, forced=False)
        answer = queue.pop(0)
        if answer == "ok":
            rec.connected(fx, attempt(step, success=True), now, now)
            if queue and queue[0].startswith("drop:"):
                rec.dropped(Disconnect(DisconnectReason(queue.pop(0)[5:]), "gone"))
                now += 100
        else:
            reason = DisconnectReason(answer)
            rec.missed(fx, attempt(step, success=False, reason=reason), Disconnect(reason, "no"))
    return fx.types()


def test_give_up_ends_with_exhausted_then_failed() -> None:
    """docs/events.md: the budget spent is reconnect.exhausted, then session.failed."""
    fx = Recorder()
    types = drive(record(max_retries=2, base_delay=1.0), fx, "ok", "drop:network", "network", "network")
    assert types == [
        "session.connected",
        "session.disconnected",
        "reconnect.started", "reconnect.failed",
        "reconnect.scheduled", "reconnect.started", "reconnect.failed",
        "reconnect.exhausted",
        "session.failed",
    ]
    assert fx.events[-1][1]["detail"].startswith("gave up after 2 attempts")


def test_auth_on_reconnect_fails_at_once() -> None:
    fx = Recorder()
    types = drive(record(max_retries=None), fx, "ok", "drop:network", "auth")
    assert types == ["session.connected", "session.disconnected", "reconnect.started", "reconnect.failed",
                     "session.failed"]


@pytest.mark.parametrize("jitter", ["none", "full"])
def test_backoff_waits_follow_the_schedule(jitter: str) -> None:
    """The waits between attempts are the policy's: 1, 2, 4 (capped at max_delay 4) without jitter."""
    fx = Recorder()
    rec = record(max_retries=5, base_delay=1.0, multiplier=2.0, max_delay=4.0, jitter=jitter)
    drive(rec, fx, "ok", "drop:network", "network", "network", "network", "network", "network")
    delays = [f["delay"] for cls, f in fx.events if cls is ReconnectScheduled]
    if jitter == "none":
        assert delays == [1.0, 2.0, 4.0, 4.0]
    else:
        assert all(0 <= d <= ideal for d, ideal in zip(delays, [1.0, 2.0, 4.0, 4.0], strict=True))


def test_flapping_continues_the_episode_and_takes_back_the_recovery() -> None:
    fx = Recorder()
    rec = record(max_retries=5, stable_after=10.0)
    rng = random.Random(0)
    step = rec.next_step(fx, 0, 0, rng, forced=False, force_strategy=None)
    rec.attempt_started(fx, step, 0, forced=False)
    rec.connected(fx, attempt(step, success=True), 0, 0)
    rec.dropped(Disconnect(DisconnectReason.NETWORK))
    step = rec.next_step(fx, 100, 100, rng, forced=False, force_strategy=None)  # a stable link: new episode
    rec.attempt_started(fx, step, 100, forced=False)
    rec.connected(fx, attempt(step, success=True), 101, 101)
    rec.dropped(Disconnect(DisconnectReason.NETWORK))
    rec.next_step(fx, 102, 102, rng, forced=False, force_strategy=None)  # 1 s after connecting: flapping
    assert rec.episodes_total == 1 and rec.episodes_recovered == 0
    assert fx.reopens == [1.0]
    assert rec.episode is not None and rec.episode.outcome is EpisodeOutcome.ONGOING


def test_force_revives_a_failed_session_with_a_fresh_episode() -> None:
    fx = Recorder()
    rec = record(max_retries=0)
    drive(rec, fx, "network")
    assert rec.status is SessionStatus.FAILED
    step = rec.next_step(fx, 1, 1, random.Random(0), forced=True, force_strategy="process-restart")
    assert (step.kind, step.number, step.strategy) == (StepKind.ATTEMPT, 1, "process-restart")
    assert rec.episodes_total == 2
    assert fx.events[-1][1]["reason"] is DisconnectReason.FORCED


def test_restored_mid_backoff_keeps_its_schedule() -> None:
    """A session restored while backing off waits what was left of its backoff, then re-attaches first."""
    fx = Recorder()
    first = record(max_retries=None, base_delay=10.0, max_delay=10.0, jitter="none")
    drive(first, fx, "ok", "drop:network", "network", now=100.0)  # connected at 100, dropped and missed at 200
    saved = first.view()
    assert saved.status is SessionStatus.BACKING_OFF and saved.next_attempt_at == 210
    again = record(max_retries=None, base_delay=10.0, max_delay=10.0, jitter="none")
    again.restore(saved, now=0.0, wall=204.0)  # 4 s of the 10 s wait passed while tether was down
    fx2 = Recorder()
    step = again.next_step(fx2, 0.0, 204.0, random.Random(0), forced=False, force_strategy=None)
    assert step.kind is StepKind.WAIT and step.deadline == pytest.approx(6.0)
    step = again.next_step(fx2, 6.0, 210.0, random.Random(0), forced=False, force_strategy=None)
    assert step.kind is StepKind.ATTEMPT and step.strategy == "force-reconnect"
    assert step.number == 2 and again.episodes_total == saved.episodes_total
