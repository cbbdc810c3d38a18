"""The supervisor's lifecycle, limits and cancellation, driven by MockClock."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

import tether
from tether import DisconnectReason, EpisodeOutcome, SessionStatus
from tether.testing import ScriptedBackend, wait_for_status, wait_reconnected, wait_until

from .conftest import core_registry, drain

SpecFactory = Callable[..., tether.SessionSpec]


async def test_lifecycle_events_in_order(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    with sup.subscribe() as sub:
        await sup.register(spec())
        await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
        backend.fail_next("s1", 1)
        before = sup.state("s1")
        backend.drop("s1")
        await wait_reconnected(sup, "s1", before)
        types = [e.type for e in drain(sub)]
    assert types == [
        "session.registered",
        "session.connected",
        "session.disconnected",
        "reconnect.started",
        "reconnect.failed",
        "reconnect.scheduled",
        "reconnect.started",
        "reconnect.succeeded",
    ]


async def test_statuses_pass_through_backing_off_and_reconnecting(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(options={"connect_delay": 2.0}))
    assert sup.state("s1").status is SessionStatus.CONNECTING
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    backend.fail_next("s1", 1)
    backend.drop("s1")
    await wait_for_status(sup, "s1", SessionStatus.RECONNECTING)
    await wait_for_status(sup, "s1", SessionStatus.BACKING_OFF)
    assert sup.stats().active_reconnections == 1
    assert sup.state("s1").next_attempt_at is not None
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    assert sup.stats().active_reconnections == 0


async def test_backoff_follows_the_policy(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """First retry at once, then 1, 2, 4 s waits (x2), then failed after max_retries."""
    await sup.register(spec(max_retries=4, base_delay=1, multiplier=2, max_delay=100))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    backend.fail_next("s1", 100)
    with sup.subscribe(types=["reconnect.started", "reconnect.scheduled"]) as sub:
        start = trio.current_time()
        backend.drop("s1")
        await wait_for_status(sup, "s1", SessionStatus.FAILED)
        events = drain(sub)
    assert [e.type for e in events] == ["reconnect.started"] + ["reconnect.scheduled", "reconnect.started"] * 3
    assert [e.delay for e in events if isinstance(e, tether.ReconnectScheduled)] == [1.0, 2.0, 4.0]
    assert trio.current_time() - start == pytest.approx(1 + 2 + 4, abs=0.01)


@pytest.mark.parametrize("reason", [DisconnectReason.AUTH, DisconnectReason.HOST_KEY])
async def test_auth_and_host_key_go_straight_to_failed(
    sup: tether.Supervisor,
    backend: ScriptedBackend,
    spec: SpecFactory,
    reason: DisconnectReason,
    autojump_clock: object,
) -> None:
    await sup.register(spec(max_retries=None))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    backend.fail_next("s1", 100, reason)
    backend.drop("s1")
    await wait_for_status(sup, "s1", SessionStatus.FAILED)
    await trio.sleep(1000)
    assert backend.ledger("s1").connects == 2  # the first reconnect said auth: no more tries
    assert sup.state("s1").status is SessionStatus.FAILED


async def test_auth_failure_on_first_connect_never_retries(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    with sup.subscribe(types=["session.failed"]) as sub:
        await sup.register(spec(options={"fail_connects": 5, "fail_reason": "auth"}))
        await wait_for_status(sup, "s1", SessionStatus.FAILED)
        failed = drain(sub)
    assert backend.ledger("s1").connects == 1
    assert [e.reason for e in failed] == [DisconnectReason.AUTH]  # type: ignore[union-attr]


async def test_a_failed_session_stays_registered_and_force_revives_it(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(max_retries=1))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    backend.fail_next("s1", 1)
    backend.drop("s1")
    await wait_for_status(sup, "s1", SessionStatus.FAILED)
    await trio.sleep(100)
    assert sup.state("s1").status is SessionStatus.FAILED
    attempt = await sup.force_reconnect("s1")
    assert attempt is not None and attempt.success and attempt.number == 1
    state = sup.state("s1")
    assert state.status is SessionStatus.CONNECTED
    assert [e.outcome for e in state.history] == [EpisodeOutcome.FAILED]
    assert state.episode is not None and state.episode.outcome is EpisodeOutcome.RECOVERED


async def test_force_on_a_connected_session_reconnects_with_the_named_strategy(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec())
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    attempt = await sup.force_reconnect("s1", "process-restart")
    assert attempt is not None and attempt.strategy == "process-restart" and attempt.success
    assert backend.ledger("s1").modes == [tether.ConnectMode.FRESH, tether.ConnectMode.RESTART]
    assert sup.state("s1").episode.disconnect.reason is DisconnectReason.FORCED  # type: ignore[union-attr]
    assert sup.stats().process_restarts == 1


async def test_force_during_backoff_skips_the_wait(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(base_delay=1000, max_delay=1000))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    backend.fail_next("s1", 1)
    backend.drop("s1")
    await wait_for_status(sup, "s1", SessionStatus.BACKING_OFF)
    start = trio.current_time()
    attempt = await sup.force_reconnect("s1")
    assert attempt is not None and attempt.success and attempt.number == 2
    assert trio.current_time() - start < 1


async def test_force_with_an_unknown_strategy_lists_the_known(sup: tether.Supervisor, spec: SpecFactory) -> None:
    await sup.register(spec())
    with pytest.raises(tether.UnknownStrategyError, match="known strategies: force-reconnect, "):
        await sup.force_reconnect("s1", "teleport")


async def test_flapping_link_continues_the_episode(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """Drops sooner than stable_after keep counting against one budget, then fail."""
    await sup.register(spec(stable_after=30, max_retries=3, base_delay=1))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    for _ in range(4):  # connected again after 0, 1 and 2 s of backoff, then the budget is spent
        backend.drop("s1")
        await trio.sleep(3)
    await wait_for_status(sup, "s1", SessionStatus.FAILED)
    state = sup.state("s1")
    assert state.episodes_total == 1
    assert state.episode is not None and state.episode.attempts_made == 3
    assert sup.stats().successful_reconnections == 0
    assert sup.stats().failed_reconnections == 1


async def test_stable_link_starts_a_fresh_episode(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(stable_after=30, max_retries=3))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    for _ in range(5):
        backend.drop("s1")
        await trio.sleep(31)
    assert sup.state("s1").status is SessionStatus.CONNECTED
    assert sup.state("s1").episodes_total == 5


async def test_auto_reconnect_off_waits_for_a_force(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(auto_reconnect=False))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    backend.drop("s1")
    await wait_for_status(sup, "s1", SessionStatus.DISCONNECTED)
    await trio.sleep(1000)
    assert backend.ledger("s1").connects == 1
    attempt = await sup.force_reconnect("s1")
    assert attempt is not None and attempt.success


async def test_disabled_policy_neither_probes_nor_retries(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(enabled=False, health_check_interval=1))
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    await trio.sleep(100)
    ledger = backend.ledger("s1")
    assert ledger.probes == 1  # only the probe that proves a new link is live
    backend.drop("s1")
    await wait_for_status(sup, "s1", SessionStatus.DISCONNECTED)
    await trio.sleep(100)
    assert ledger.connects == 1


async def test_connect_limit_per_target(backend: ScriptedBackend, autojump_clock: object) -> None:
    """A storm of 100 reconnects to one target never has more than 3 connects in flight."""
    in_flight = peak = 0
    original = backend.open_link

    def counting_open_link(request: tether.LinkRequest):  # type: ignore[no-untyped-def]
        cm = original(request)

        class Counting:
            async def __aenter__(self):  # type: ignore[no-untyped-def]
                nonlocal in_flight, peak
                in_flight += 1
                peak = max(peak, in_flight)
                try:
                    await trio.sleep(0.5)
                    return await cm.__aenter__()
                finally:
                    in_flight -= 1

            async def __aexit__(self, *exc):  # type: ignore[no-untyped-def]
                return await cm.__aexit__(*exc)

        return Counting()

    backend.open_link = counting_open_link  # type: ignore[method-assign]
    policy = tether.ReconnectPolicy(jitter="none", base_delay=0)
    async with tether.open_supervisor(registry=core_registry(backend), connect_limit=3) as sup:
        specs = [tether.SessionSpec(id=f"c{i}", backend="scripted", policy=policy) for i in range(100)]
        other = tether.SessionSpec(id="elsewhere", backend="scripted", options={"target": "b:22"}, policy=policy)
        await sup.register_many([*specs, other])
        await wait_until(lambda: all(s.status is SessionStatus.CONNECTED for s in sup.states().values()))
        assert peak == 3 + 1  # three to the shared target, one to the other
        assert sup.state("elsewhere").target == "b:22"


async def test_unregister_mid_connect_closes_everything(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(options={"hang_connects": 1}, connect_timeout=100))
    await trio.sleep(1)
    assert sup.state("s1").status is SessionStatus.CONNECTING
    with trio.fail_after(0.001):
        await sup.unregister("s1")
    assert backend.ledger("s1").open_links == 0
    with pytest.raises(tether.SessionNotFoundError):
        sup.state("s1")


async def test_unregister_a_connected_session_closes_its_link(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory
) -> None:
    await sup.register(spec())
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
    assert backend.ledger("s1").open_links == 1
    with sup.subscribe(types=["session.unregistered"]) as sub:
        await sup.unregister("s1")
        assert [e.session_id for e in drain(sub)] == ["s1"]  # type: ignore[union-attr]
    assert backend.ledger("s1").open_links == 0


async def test_a_strategy_that_ignores_its_timeout_is_cut(
    backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    class Stubborn:
        name = "stubborn"

        async def __call__(self, ctx: tether.RecoveryContext) -> tether.Link:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

    registry = core_registry(backend)
    registry.add_strategy(Stubborn())
    async with tether.open_supervisor(registry=registry) as sup:
        await sup.register(spec(connect_timeout=10, max_retries=2, strategies={"network": "stubborn"}))
        await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
        start = trio.current_time()
        backend.drop("s1")
        await wait_for_status(sup, "s1", SessionStatus.FAILED)
        assert trio.current_time() - start <= 2 * 11 + 1 + 0.01
        attempts = sup.state("s1").episode.attempts  # type: ignore[union-attr]
        assert [a.reason for a in attempts] == [DisconnectReason.TIMEOUT] * 2


async def test_leaving_the_context_with_1000_sessions(backend: ScriptedBackend, autojump_clock: object) -> None:
    """Connected, backing-off and mid-connect sessions all stop at once, links closed."""
    policy = tether.ReconnectPolicy(base_delay=50, max_delay=50, jitter="none")
    async with tether.open_supervisor(registry=core_registry(backend), connect_limit=None) as sup:
        specs = [
            tether.SessionSpec(
                id=f"m{i}", backend="scripted", policy=policy, options={"hang_connects": 1} if i % 3 == 0 else {}
            )
            for i in range(1000)
        ]
        await sup.register_many(specs)
        await trio.sleep(1)
        for i in range(1, 1000, 3):
            backend.fail_next(f"m{i}", 5)
            backend.drop(f"m{i}")
        await trio.sleep(1)
        by_status = sup.stats().sessions_by_status
        assert by_status == {"connecting": 334, "backing-off": 333, "connected": 333}
        start = trio.current_time()
    assert trio.current_time() == start  # no waiting on any timer
    assert sum(backend.ledger(s.id).open_links for s in specs) == 0
    assert not backend.links


async def test_exception_from_the_block_is_not_wrapped(backend: ScriptedBackend) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with tether.open_supervisor(registry=core_registry(backend)):
            raise KeyError("mine")


async def test_register_errors_name_the_problem(sup: tether.Supervisor, spec: SpecFactory) -> None:
    with pytest.raises(tether.UnknownBackendError, match="unknown backend 'telnet'; known backends: scripted"):
        await sup.register(tether.SessionSpec(id="x", backend="telnet"))
    with pytest.raises(tether.ConfigError, match=r"options.fail_connect: unknown option; known: .*fail_connects"):
        await sup.register(spec(options={"fail_connect": 1}))
    with pytest.raises(tether.ConfigError, match=r"policy\.strategies\.network: unknown strategy 'nope'"):
        await sup.register(spec(strategies={"network": "nope"}))
    await sup.register(spec())
    with pytest.raises(tether.DuplicateSessionError):
        await sup.register(spec())
    with pytest.raises(tether.ConfigError, match=r"^id: must be 1-128 characters"):
        tether.SessionSpec(id="has space", backend="scripted")


async def test_stats_percentiles_and_average(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """Recovery times of 0, 1, 3, 7 s (0..3 failures with 1, 2, 4 s waits)."""
    for i in range(4):
        await sup.register(spec(f"p{i}", max_delay=100))
    await wait_until(lambda: all(s.status is SessionStatus.CONNECTED for s in sup.states().values()))
    before = sup.states()
    for i in range(4):
        backend.fail_next(f"p{i}", i)
        backend.drop(f"p{i}")
    for i in range(4):
        await wait_reconnected(sup, f"p{i}", before[f"p{i}"])
    stats = sup.stats()
    assert stats.successful_reconnections == 4
    assert stats.average_reconnection_time == pytest.approx((0 + 1 + 3 + 7) / 4, abs=0.01)
    assert stats.p50_reconnection_time == pytest.approx(1, abs=0.01)
    assert stats.p99_reconnection_time == pytest.approx(7, abs=0.01)
    assert stats.network_disconnections == 4
    assert stats.total_attempts == 4 + 6
    assert stats.last_reconnection is not None


async def test_output_history_is_bounded_and_kept_across_reconnects(
    backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    async with tether.open_supervisor(registry=core_registry(backend), output_history_bytes=10) as sup:
        await sup.register(spec(stable_after=0))
        await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
        with sup.subscribe(types=["session.output"]) as sub:
            await sup.send("s1", b"hello ")
            await sup.send("s1", "w\u00f6rld!".encode())
            assert [e.data for e in drain(sub)] == ["hello ", "w\u00f6rld!"]  # type: ignore[union-attr]
        assert sup.output_history("s1") == (b"hello " + "w\u00f6rld!".encode())[-10:]
        with sup.subscribe(types=["session.output"]) as sub:
            await sup.force_reconnect("s1", "state-recovery")
            replayed = drain(sub)
        assert [e.replay for e in replayed] == [True]  # type: ignore[union-attr]
        assert sup.output_history("s1") == (b"hello " + "w\u00f6rld!".encode())[-10:]


async def test_public_async_functions_are_checkpoints(sup: tether.Supervisor, spec: SpecFactory) -> None:
    with trio.testing.assert_checkpoints():
        await sup.register(spec())
    with trio.testing.assert_checkpoints():
        await sup.register_many([spec("s2")])
    with trio.testing.assert_checkpoints():
        await sup.force_reconnect("s1", wait=False)
    with trio.testing.assert_checkpoints():
        await sup.unregister("s2")


async def test_send_to_a_session_that_is_not_connected_says_so(
    sup: tether.Supervisor, spec: SpecFactory, autojump_clock: object
) -> None:
    await sup.register(spec(options={"hang_connects": 1}))
    with pytest.raises(tether.LinkError, match="is connecting, not connected"):
        await sup.send("s1", b"x")


async def test_a_typed_error_raised_inside_a_backend_nursery_keeps_its_type(
    backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    """Trio wraps it in an exception group; strategies still see ReattachUnavailableError."""
    original = backend.open_link

    def grouped_open_link(request: tether.LinkRequest):  # type: ignore[no-untyped-def]
        if request.mode is not tether.ConnectMode.REATTACH:
            return original(request)

        class Grouped:
            async def __aenter__(self):  # type: ignore[no-untyped-def]
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(trio.sleep_forever)
                    raise tether.ReattachUnavailableError("gone, from inside a nursery")

            async def __aexit__(self, *exc):  # type: ignore[no-untyped-def]
                return False

        return Grouped()

    backend.open_link = grouped_open_link  # type: ignore[method-assign]
    async with tether.open_supervisor(registry=core_registry(backend)) as sup:
        await sup.register(spec())
        await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
        attempt = await sup.force_reconnect("s1", "ssh-reconnect")
        assert attempt is not None and attempt.success
        assert backend.ledger("s1").modes[-1] is tether.ConnectMode.RESTART


async def test_freeze_gc_takes_start_up_objects_out_of_collections(sup: tether.Supervisor, spec: SpecFactory) -> None:
    import gc

    await sup.register_many([spec(f"g{i}") for i in range(50)])
    try:
        sup.freeze_gc()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


async def test_register_many_is_all_or_nothing(sup: tether.Supervisor, spec: SpecFactory) -> None:
    with pytest.raises(tether.ConfigError, match=r"options\.probe"):
        await sup.register_many([spec("a1"), spec("a2", options={"probe": "maybe"})])
    assert sup.states() == {}
    with pytest.raises(tether.DuplicateSessionError):
        await sup.register_many([spec("a1"), spec("a1")])
    assert await sup.register_many([spec("a1"), spec("a2")]) == ["a1", "a2"]


async def test_unregister_many_waits_once_for_all(
    sup: tether.Supervisor, backend: ScriptedBackend, spec: SpecFactory, autojump_clock: object
) -> None:
    ids = await sup.register_many([spec(f"u{i}") for i in range(100)])
    await wait_until(lambda: all(s.status is SessionStatus.CONNECTED for s in sup.states().values()))
    with trio.fail_after(0.001):
        await sup.unregister_many(ids)
    assert sup.states() == {}
    assert sum(backend.ledger(i).open_links for i in ids) == 0


async def test_managed_gc_policy_restores_the_collector_on_exit(backend: ScriptedBackend) -> None:
    import gc

    assert gc.isenabled()
    async with tether.open_supervisor(registry=core_registry(backend), gc_policy="managed"):
        assert not gc.isenabled()
    assert gc.isenabled()


async def test_shutdown_does_not_report_sessions_as_unregistered(backend: ScriptedBackend, spec: SpecFactory) -> None:
    """They are stopped, not unregistered: a store brings them back on the next start."""
    async with tether.open_supervisor(registry=core_registry(backend)) as sup:
        await sup.register(spec())
        await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
        sub = sup.subscribe(types=["session.unregistered"])
    assert sub.get_nowait() is None
