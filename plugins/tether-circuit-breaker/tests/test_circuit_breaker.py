"""circuit-breaker through a real supervisor, tether's ScriptedBackend and MockClock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from tether import (
    DisconnectReason,
    Jitter,
    ReconnectFailed,
    ReconnectPolicy,
    SessionSpec,
    SessionStatus,
    Supervisor,
    discover_plugins,
    open_supervisor,
)
from tether.testing import ScriptedBackend, StrategyContract, wait_for_status, wait_until
from tether_circuit_breaker import CircuitBreaker, CircuitOpenError, CircuitState

POLICY = ReconnectPolicy(
    max_retries=None, base_delay=1.0, max_delay=1.0, jitter=Jitter.NONE, connect_timeout=5.0,
    health_check_interval=0.0, keepalive_interval=0.0,
    strategies={"network": "circuit-breaker"},
)


class TestCircuitBreakerContract(StrategyContract):
    @pytest.fixture
    def tether_strategy_factory(self) -> type[CircuitBreaker]:
        return CircuitBreaker


def spec(sid: str, target: str) -> SessionSpec:
    return SessionSpec(id=sid, backend="scripted", options={"target": target}, policy=POLICY)


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def breaker() -> CircuitBreaker:
    return CircuitBreaker(threshold=3, cooldown=100.0)


@pytest.fixture
async def supervisor(backend: ScriptedBackend, breaker: CircuitBreaker) -> AsyncIterator[Supervisor]:
    """A supervisor with the breaker; tests request autojump_clock themselves (pytest-trio
    only applies a clock the test function asks for)."""
    async with open_supervisor(backends=[backend], strategies=[breaker]) as sup:
        yield sup


def failures(sup: Supervisor, sid: str) -> list[Any]:
    return [e for e in sup.bus.recent() if isinstance(e, ReconnectFailed) and e.session_id == sid]


async def connect_all(sup: Supervisor, *specs: SessionSpec) -> None:
    for s in specs:
        await sup.register(s)
    for s in specs:
        await wait_for_status(sup, s.id, SessionStatus.CONNECTED)


def test_registered_through_its_entry_point() -> None:
    """Installed, the distribution's entry point yields a CircuitBreaker named circuit-breaker."""
    registry = discover_plugins(allow=["circuit-breaker"])
    assert isinstance(registry.strategies["circuit-breaker"], CircuitBreaker)
    (info,) = registry.loaded
    assert (info.distribution, info.value) == ("tether-circuit-breaker", "tether_circuit_breaker:CircuitBreaker")


def test_rejects_bad_settings() -> None:
    """Nonsense settings fail at construction, not at the first outage."""
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(threshold=0)
    with pytest.raises(ValueError, match="cooldown"):
        CircuitBreaker(cooldown=-1)
    with pytest.raises(ValueError, match="wrap itself"):
        CircuitBreaker(inner="circuit-breaker")


async def test_opens_across_sessions_and_stops_touching_the_target(
    supervisor: Supervisor, backend: ScriptedBackend, breaker: CircuitBreaker,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Failures of two sessions to one target add up; once open, nobody connects there; others go on."""
    a, b, other = spec("a", "db:22"), spec("b", "db:22"), spec("c", "web:443")
    await connect_all(supervisor, a, b, other)
    for s in (a, b):
        backend.fail_next(s.id, 1_000)
        backend.drop(s.id)
    await wait_until(lambda: CircuitState.OPEN in breaker.states().values())
    ((key, state),) = breaker.states().items()
    assert state is CircuitState.OPEN
    assert "db:22" in key  # ctx.target, or the options standing in for it on older tether
    real = backend.ledger("a").connects + backend.ledger("b").connects
    # first connects, `threshold` failures, plus b's attempt already in flight when it opened
    assert 2 + 3 <= real <= 2 + 3 + 1
    await trio.sleep(50)  # half the cool-down: many retries, none reach the target
    assert backend.ledger("a").connects + backend.ledger("b").connects == real
    fast = [e for e in failures(supervisor, "a") + failures(supervisor, "b") if "circuit open" in e.error]
    assert len(fast) > 50
    assert all(e.reason is DisconnectReason.NETWORK for e in fast)
    backend.drop(other.id)  # another target is not affected
    await wait_until(lambda: backend.ledger("c").connects == 2)
    await wait_for_status(supervisor, "c", SessionStatus.CONNECTED)


async def test_half_open_trial_reopens_then_closes_on_success(
    supervisor: Supervisor, backend: ScriptedBackend, breaker: CircuitBreaker,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After the cool-down exactly one trial touches the target; failing re-opens, success closes."""
    a, b = spec("a", "db:22"), spec("b", "db:22")
    await connect_all(supervisor, a, b)
    for s in (a, b):
        backend.fail_next(s.id, 1_000)
        backend.drop(s.id)
    await wait_until(lambda: CircuitState.OPEN in breaker.states().values())
    real = backend.total_connects
    await trio.sleep(101)  # past the cool-down: one trial, which fails, re-opens
    assert backend.total_connects == real + 1
    assert set(breaker.states().values()) == {CircuitState.OPEN}
    for s in (a, b):  # the target heals
        backend.script(s.id).fail_connects = 0
    await trio.sleep(101)
    await wait_for_status(supervisor, "a", SessionStatus.CONNECTED)
    await wait_for_status(supervisor, "b", SessionStatus.CONNECTED)
    assert breaker.states() == {}


async def test_cancelled_trial_does_not_wedge_the_circuit(
    supervisor: Supervisor, backend: ScriptedBackend, breaker: CircuitBreaker,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A trial cut by the connect_timeout backstop frees the trial slot: the next attempt tries again."""
    a = spec("a", "db:22")
    await connect_all(supervisor, a)
    backend.fail_next("a", 3)
    backend.drop("a")
    await wait_until(lambda: CircuitState.OPEN in breaker.states().values())
    backend.script("a").hang_connects = 1  # the trial hangs, ignoring its deadline
    await wait_for_status(supervisor, "a", SessionStatus.CONNECTED, timeout=300)
    timeouts = [e for e in failures(supervisor, "a") if e.reason is DisconnectReason.TIMEOUT]
    assert len(timeouts) == 1
    assert breaker.states() == {}


async def test_open_error_is_a_typed_link_error() -> None:
    """CircuitOpenError is a LinkError with a retryable reason, so tether keeps backing off."""
    err = CircuitOpenError("circuit open", reason=DisconnectReason.TIMEOUT)
    assert err.reason is DisconnectReason.TIMEOUT
    assert err.reason.retryable
    await trio.lowlevel.checkpoint()
