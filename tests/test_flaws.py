"""One test per flaw of the reference design (docs/reference-design.md), by lesson number.

Flaw 11 (persistence) is pinned in test_store_integration.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

import tether
from tether import DisconnectReason, SessionStatus
from tether.testing import ScriptedBackend, wait_for_status, wait_reconnected, wait_until

from .conftest import core_registry, drain

SpecFactory = Callable[..., tether.SessionSpec]


async def test_flaw_1_success_needs_a_live_probed_link(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """A link whose probe fails is not a success: the attempt fails and is retried."""
    await sup.register(spec(max_retries=2))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    backend.script("s1").probe = "fail"
    backend.drop("s1")
    await wait_for_status(sup, "s1", SessionStatus.FAILED)
    episode = sup.state("s1").episode
    assert episode is not None
    assert [a.success for a in episode.attempts] == [False, False]
    assert all(a.reason is DisconnectReason.HEALTH_CHECK for a in episode.attempts)
    assert backend.ledger("s1").open_links == 0


async def test_flaw_1_a_strategy_cannot_fake_success(
    backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """A strategy that returns something tether did not open and probe fails its attempt."""

    class Liar:
        name = "liar"

        async def __call__(self, ctx: tether.RecoveryContext) -> tether.Link:
            await trio.lowlevel.checkpoint()
            return object()  # type: ignore[return-value]

    registry = core_registry(backend)
    registry.add_strategy(Liar())
    async with tether.open_supervisor(registry=registry) as sup:
        await sup.register(spec(max_retries=1, strategies={"network": "liar"}))
        await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
        backend.drop("s1")
        await wait_for_status(sup, "s1", SessionStatus.FAILED)
        attempt = sup.state("s1").episode.attempts[0]  # type: ignore[union-attr]
        assert not attempt.success
        assert "did not open and probe" in (attempt.error or "")


async def test_flaw_2_attempts_are_counted_per_episode(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """Three episodes of 2 failures each never exhaust a budget of 3: each episode starts at 0."""
    await sup.register(spec(max_retries=3, stable_after=0))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    for _ in range(3):
        backend.fail_next("s1", 2)
        before = sup.state("s1")
        backend.drop("s1")
        await wait_reconnected(sup, "s1", before)
    state = sup.state("s1")
    assert state.episode is not None and state.episode.attempts_made == 3
    assert [e.attempts_made for e in state.history] == [3, 3]
    assert state.episodes_recovered == 3


async def test_flaw_2_history_is_bounded(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(history_limit=4, stable_after=0))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    for _ in range(10):
        before = sup.state("s1")
        backend.drop("s1")
        await wait_reconnected(sup, "s1", before)
    state = sup.state("s1")
    assert len(state.history) == 4
    assert state.episodes_total == 10
    assert [e.number for e in state.history] == [6, 7, 8, 9]


async def test_flaw_3_one_retry_loop_ever(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """Drops reported during backoff, health checks and forced reconnects never add a chain."""
    await sup.register(spec(max_retries=None, base_delay=5, max_delay=5, health_check_interval=1))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    link = backend.links["s1"]
    backend.fail_next("s1", 3)
    link.close(tether.Disconnect(DisconnectReason.NETWORK))
    link.close(tether.Disconnect(DisconnectReason.NETWORK))  # a second report of the same drop
    await wait_for_status(sup, "s1", SessionStatus.BACKING_OFF)
    link.close(tether.Disconnect(DisconnectReason.NETWORK))  # late report during backoff
    await sup.force_reconnect("s1", wait=False)
    await sup.force_reconnect("s1", wait=False)
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    state = sup.state("s1")
    assert state.episodes_total == 1
    assert state.episode is not None
    numbers = [a.number for a in state.episode.attempts]
    assert numbers == list(range(1, len(numbers) + 1))  # one sequence, no duplicates
    assert backend.ledger("s1").connects == 1 + len(numbers)


async def test_flaw_4_a_raising_strategy_fails_the_attempt_and_the_loop_goes_on(
    backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    calls = 0

    class Flaky:
        name = "flaky"

        async def __call__(self, ctx: tether.RecoveryContext) -> tether.Link:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise ZeroDivisionError("strategy bug")
            return await ctx.connect(tether.ConnectMode.FRESH)

    registry = core_registry(backend)
    registry.add_strategy(Flaky())
    async with tether.open_supervisor(registry=registry) as sup:
        await sup.register(spec(strategies={"network": "flaky"}))
        await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
        before = sup.state("s1")
        backend.drop("s1")
        await wait_reconnected(sup, "s1", before)
        attempts = sup.state("s1").episode.attempts  # type: ignore[union-attr]
        assert [a.success for a in attempts] == [False, False, True]
        assert attempts[0].error == "ZeroDivisionError: strategy bug"
        assert attempts[0].reason is DisconnectReason.BACKEND_ERROR


async def test_flaw_5_leaving_the_context_cancels_pending_retries(
    backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """No attempt runs after the supervisor closes, even with retries scheduled far ahead."""
    async with tether.open_supervisor(registry=core_registry(backend)) as sup:
        await sup.register(spec(base_delay=100, max_delay=100, max_retries=None))
        await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
        backend.fail_next("s1", 10**6)
        backend.drop("s1")
        await wait_for_status(sup, "s1", SessionStatus.BACKING_OFF)
        connects = backend.ledger("s1").connects
    await trio.sleep(1000)
    assert backend.ledger("s1").connects == connects


async def test_flaw_5_unregister_cancels_the_pending_retry(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(base_delay=100, max_delay=100))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    backend.fail_next("s1", 10)
    backend.drop("s1")
    await wait_for_status(sup, "s1", SessionStatus.BACKING_OFF)
    connects = backend.ledger("s1").connects
    with trio.fail_after(0.001):  # unregister does not wait for the backoff
        await sup.unregister("s1")
    await trio.sleep(1000)
    assert backend.ledger("s1").connects == connects
    assert "s1" not in sup.states()


async def test_flaw_6_zero_retries_means_no_retry(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(max_retries=0, base_delay=0))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    backend.drop("s1")
    await wait_for_status(sup, "s1", SessionStatus.FAILED)
    assert backend.ledger("s1").connects == 1


async def test_flaw_7_jitter_spreads_retries_of_a_mass_drop(backend: ScriptedBackend, autojump_clock: object) -> None:
    """200 sessions dropped at once do not retry at the same instants."""
    async with tether.open_supervisor(registry=core_registry(backend), seed=3, connect_limit=None) as sup:
        policy = tether.ReconnectPolicy(base_delay=1, max_delay=10, jitter="full")
        specs = [tether.SessionSpec(id=f"j{i}", backend="scripted", policy=policy) for i in range(200)]
        await sup.register_many(specs)
        await wait_until(lambda: all(s.status is SessionStatus.CONNECTED for s in sup.states().values()))
        with sup.subscribe(types=["reconnect.scheduled"], buffer=10_000) as sub:
            for s in specs:
                backend.fail_next(s.id, 1)
                backend.drop(s.id)
            await wait_until(lambda: sub.pending >= 200)
            delays = [e.delay for e in drain(sub)]  # type: ignore[union-attr]
        assert len(set(delays)) == 200
        assert min(delays) >= 0 and max(delays) <= 1.0


async def test_flaw_8_a_hanging_connect_is_cut_at_connect_timeout(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """A backend that ignores its deadline is cancelled by the supervisor's backstop."""
    await sup.register(spec(connect_timeout=5, max_retries=1, options={"hang_connects": 2}))
    start = trio.current_time()
    await wait_for_status(sup, "s1", SessionStatus.FAILED)
    state = sup.state("s1")
    assert state.episode is not None
    assert state.episode.disconnect.reason is DisconnectReason.TIMEOUT
    assert state.episode.attempts[0].reason is DisconnectReason.TIMEOUT
    # two connects of <= 5 s + 10% backstop, plus one 1 s backoff
    assert trio.current_time() - start <= 2 * 5.5 + 1 + 0.01
    assert backend.ledger("s1").open_links == 0


async def test_flaw_8_a_hanging_probe_is_a_failed_health_check(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(connect_timeout=3, health_check_interval=10))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    with sup.subscribe(session_ids=["s1"]) as sub:
        backend.script("s1").probe = "hang"
        await wait_until(lambda: sup.state("s1").status is not SessionStatus.CONNECTED)
        backend.script("s1").probe = "ok"
        await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
        items = drain(sub)
    failed = [e for e in items if isinstance(e, tether.HealthCheckFailed)]
    assert failed and "timed out after 3.0s" in failed[0].error
    dropped = [e for e in items if isinstance(e, tether.SessionDisconnected)]
    assert dropped[0].reason is DisconnectReason.HEALTH_CHECK


async def test_flaw_8_keepalive_is_used(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """The interval reaches the backend, and links with keepalive() are called on it."""
    await sup.register(spec(keepalive_interval=10, health_check_interval=0))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    await trio.sleep(55)
    ledger = backend.ledger("s1")
    assert ledger.keepalive_intervals == [10.0]
    assert ledger.keepalives == 5


async def test_flaw_9_typed_reasons_choose_the_strategy(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """process-exit restarts with state; a network drop reconnects; a policy override wins."""
    await sup.register(spec(stable_after=0))
    await sup.register(spec("s2", stable_after=0, strategies={"network": "state-recovery"}))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    await wait_for_status(sup, "s2", SessionStatus.CONNECTED)
    with sup.subscribe(types=["reconnect.started"]) as sub:
        before = sup.state("s1")
        backend.drop("s1", DisconnectReason.PROCESS_EXIT, detail="ssh connection lost")
        await wait_reconnected(sup, "s1", before)
        before, before2 = sup.state("s1"), sup.state("s2")
        backend.drop("s1", DisconnectReason.NETWORK)
        backend.drop("s2", DisconnectReason.NETWORK)
        await wait_reconnected(sup, "s1", before)
        await wait_reconnected(sup, "s2", before2)
        started = [(e.session_id, e.strategy) for e in drain(sub)]  # type: ignore[union-attr]
    assert started[0] == ("s1", "process-restart")
    assert sorted(started[1:]) == [("s1", "simple-reconnect"), ("s2", "state-recovery")]
    assert backend.ledger("s1").modes[1] is tether.ConnectMode.RESTART


async def test_flaw_10_force_reconnect_tries_the_others_and_says_which_worked(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """The program died, so re-attach fails; force-reconnect moves on and reports the winner."""
    await sup.register(spec(auto_reconnect=False))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    assert sup.state("s1").preserved.handle == "s1#1"  # type: ignore[union-attr]
    backend.drop("s1", DisconnectReason.NETWORK, kill_program=True)
    await wait_for_status(sup, "s1", SessionStatus.DISCONNECTED)
    with sup.subscribe(types=["reconnect.strategy"]) as sub:
        attempt = await sup.force_reconnect("s1", "force-reconnect")
        tried = [e.strategy for e in drain(sub)]  # type: ignore[union-attr]
    assert attempt is not None and attempt.success
    assert tried == ["session-restore", "ssh-reconnect"]
    assert attempt.used_strategy == "ssh-reconnect"
    modes = backend.ledger("s1").modes
    assert modes == [
        tether.ConnectMode.FRESH,
        tether.ConnectMode.REATTACH,
        tether.ConnectMode.REATTACH,
        tether.ConnectMode.RESTART,
    ]


async def test_flaw_12_preserved_state_is_refreshed_while_connected(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """A `cd` after registration is what a process restart restores."""
    await sup.register(spec(health_check_interval=5, options={"cwd": "/home"}))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    assert sup.state("s1").preserved == tether.PreservedState(cwd="/home", handle="s1#1")
    backend.links["s1"].set_state(tether.PreservedState(cwd="/tmp/x", last_command="make"))
    await trio.sleep(6)  # the next probe picks it up
    assert sup.state("s1").preserved == tether.PreservedState(cwd="/tmp/x", last_command="make")
    backend.links["s1"].report_state(tether.PreservedState(cwd="/srv"))  # pushed at once
    assert sup.state("s1").preserved == tether.PreservedState(cwd="/srv")
    before = sup.state("s1")
    backend.drop("s1", DisconnectReason.PROCESS_EXIT)
    await wait_reconnected(sup, "s1", before)
    assert backend.ledger("s1").states[-1] == tether.PreservedState(cwd="/srv")


async def test_flaw_13_no_events_at_rest(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """100 healthy sessions probed for an hour emit nothing; the probes do happen."""
    for i in range(100):
        await sup.register(spec(f"r{i}", health_check_interval=30))
    await wait_until(lambda: all(s.status is SessionStatus.CONNECTED for s in sup.states().values()))
    seq = sup.bus.last_seq
    await trio.sleep(3600)
    assert sup.bus.last_seq == seq
    assert all(110 <= backend.ledger(f"r{i}").probes <= 135 for i in range(100))


async def test_flaw_14_success_rate_is_per_episode(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """One episode that needed 3 tries is one success out of one: 100 %, not 33 %."""
    await sup.register(spec())
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    backend.fail_next("s1", 2)
    before = sup.state("s1")
    backend.drop("s1")
    await wait_reconnected(sup, "s1", before)
    stats = sup.stats()
    assert stats.total_attempts == 3
    assert stats.successful_reconnections == 1
    assert stats.success_rate == pytest.approx(100.0)
