"""One readiness gate per target: a down host is probed once, its sessions wait without spending budget."""

from __future__ import annotations

from collections.abc import Mapping

import trio

import tether
from tether import DisconnectReason, LinkError, SessionStatus
from tether.testing import ScriptedBackend, wait_for_status, wait_until

from .conftest import core_registry, drain


class ProbedBackend:
    """The scripted backend, plus `probe_target` answering from a switch the test flips."""

    name = "probed"
    features = frozenset({tether.Feature.REMOTE})
    default_strategies: Mapping[DisconnectReason, str] = {}

    def __init__(self) -> None:
        self.inner = ScriptedBackend()
        self.down = False
        self.probes = 0

    def validate(self, spec: tether.SessionSpec) -> None:
        pass

    def target(self, spec: tether.SessionSpec) -> str:
        return "db1:22"

    def open_link(self, request: tether.LinkRequest):  # type: ignore[no-untyped-def]
        if self.down:
            raise LinkError("connection refused", reason=DisconnectReason.NETWORK)
        return self.inner.open_link(request)

    async def probe_target(self, spec: tether.SessionSpec, deadline: float) -> None:
        self.probes += 1
        await trio.lowlevel.checkpoint()
        if self.down:
            raise LinkError("connection refused", reason=DisconnectReason.NETWORK)


def spec(i: int, **policy: object) -> tether.SessionSpec:
    policy.setdefault("max_retries", 3)
    policy.setdefault("stable_after", 0)
    return tether.SessionSpec(id=f"s{i:03d}", backend="probed", policy=tether.ReconnectPolicy(**policy))  # type: ignore[arg-type]


async def test_a_down_target_is_one_outage_and_costs_no_budget(autojump_clock: object) -> None:
    """100 sessions of one host, down 20 minutes: one target.down, one target.up with 100 waiting,
    a handful of probes, no session failed despite a budget of 3, and all back."""
    backend = ProbedBackend()
    registry = core_registry(ScriptedBackend())
    registry.add_backend(backend)
    async with tether.open_supervisor(registry=registry, connect_limit=10, seed=3) as sup:
        for i in range(100):
            await sup.register(spec(i))
        await wait_until(lambda: all(s.status is SessionStatus.CONNECTED for s in sup.states().values()))
        with sup.subscribe(types=["target.*", "session.failed"]) as sub:
            backend.down = True
            for i in range(100):
                backend.inner.drop(f"s{i:03d}")
            await wait_until(lambda: all(s.status is SessionStatus.WAITING for s in sup.states().values()))
            probes_before = backend.probes
            await trio.sleep(20 * 60)
            assert backend.probes - probes_before <= 20 * 60 / 0.45 + 5, "one probe stream, about 2 a second"
            assert all(s.status is SessionStatus.WAITING for s in sup.states().values())
            (target,) = sup.targets()
            assert (target.target, target.up, target.waiting) == ("db1:22", False, 100)
            backend.down = False
            await wait_until(lambda: all(s.status is SessionStatus.CONNECTED for s in sup.states().values()))
            events = drain(sub)
            for state in sup.states().values():  # parked, they spent nothing: one attempt found it down
                assert state.episode is not None and state.episode.attempts_made <= 2
                assert state.episode.attempts_unreachable == 1
    assert [e.type for e in events] == ["target.down", "target.up"]
    up = events[1]
    assert isinstance(up, tether.TargetUp) and up.waiting == 100 and up.down_for >= 20 * 60


async def test_a_target_that_answers_keeps_the_budget_rules(autojump_clock: object) -> None:
    """When the probe answers, the failure was the session's own: it backs off and spends budget."""
    backend = ProbedBackend()
    registry = core_registry(ScriptedBackend())
    registry.add_backend(backend)
    async with tether.open_supervisor(registry=registry, seed=3) as sup:
        await sup.register(spec(0, max_retries=2, base_delay=1.0))
        await wait_for_status(sup, "s000", SessionStatus.CONNECTED)
        backend.inner.fail_next("s000", 10)
        backend.inner.drop("s000")
        await wait_for_status(sup, "s000", SessionStatus.FAILED)
        assert sup.state("s000").episode.attempts_made == 2  # type: ignore[union-attr]
        assert sup.targets()[0].up


async def test_the_unreachable_bound_fails_a_session_waiting_too_long(autojump_clock: object) -> None:
    backend = ProbedBackend()
    registry = core_registry(ScriptedBackend())
    registry.add_backend(backend)
    async with tether.open_supervisor(registry=registry, seed=3) as sup:
        await sup.register(spec(0, unreachable_timeout=600))
        await wait_for_status(sup, "s000", SessionStatus.CONNECTED)
        backend.down = True
        backend.inner.drop("s000")
        await wait_for_status(sup, "s000", SessionStatus.WAITING)
        await wait_for_status(sup, "s000", SessionStatus.FAILED)
        state = sup.state("s000")
        assert state.episode is not None and state.episode.attempts_unreachable == 1
        assert state.failure is not None and state.failure.reason is DisconnectReason.NETWORK
        assert "stayed unreachable for 600s" in state.failure.detail
