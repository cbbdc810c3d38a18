"""100 shared SSH sessions on one host through a real outage: sshd is down, then back.

What is measured comes from the peer where it can: logins are counted in
sshd's own log (``Accepted publickey``), refusals by MaxStartups as its
``drop connection`` lines; logins in flight are counted where they start
(`SshBackend.logins`). The outage is real time (sshd must really be gone);
the 5-minute one runs on a MockClock going 20 times faster than the wall, so
tether's own timers (backoff, deadlines, health checks) see five minutes
while sshd is down for 15 real seconds.

Assertions that need the engine's readiness gate (sessions parked on the
target spend no retry budget; one probe stream per target; ``target.down`` /
``target.up`` with the number waiting) run once that gate exists (the
``target.down`` event type is known); until then the test ends as an
expected failure naming them, after every other assertion passed.
"""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

import tether
from tether.testing import wait_until
from tether_ssh import SshBackend
from tether_ssh._shared import FAILURE_MEMORY

from .conftest import Sshd, ssh_spec, ssh_supervisor

S = tether.SessionStatus
SESSIONS = 100
MAX_SESSIONS = 10
"""sshd's default MaxSessions: channels per shared connection."""
CONNECT_LIMIT = 10
GATE = "target.down" in {event.type for event in tether.EVENT_TYPES}
"""The engine's readiness gate has landed (it announces target.down / target.up)."""


def _policy(**changes: object) -> tether.ReconnectPolicy:
    values: dict[str, object] = {
        "base_delay": 0.2, "max_delay": 1.0, "jitter": "full", "connect_timeout": 10.0,
        "keepalive_interval": 1.0, "health_check_interval": 5.0, "stable_after": 1.0, "max_retries": None,
    }
    values.update(changes)
    return tether.ReconnectPolicy(**values)  # type: ignore[arg-type]


async def _all(sup: tether.Supervisor, status: tether.SessionStatus, within: float) -> float:
    """Wait until every session has `status`; the (trio) seconds it took."""
    start = trio.current_time()
    await wait_until(lambda: all(s.status is status for s in sup.states().values()), timeout=within,
                     step=within / 2000)
    return trio.current_time() - start


async def _usable(sup: tether.Supervisor, within: float = 30.0) -> None:
    """Every session's shell answers a command of its own."""

    async def one(sid: str) -> None:
        start = len(sup.output_history(sid))
        await sup.send(sid, f"printf 'U%sP\\n' '{sid}'\n".encode())
        await wait_until(lambda: f"U{sid}P".encode() in sup.output_history(sid)[start:], timeout=within,
                         step=within / 600)

    async with trio.open_nursery() as nursery:
        for sid in sup.session_ids:
            nursery.start_soon(one, sid)


async def _outage(sshd: Sshd, sup: tether.Supervisor, backend: SshBackend, down_for: float,
                  rate: float = 1.0) -> dict[str, float]:
    """Bring 100 sessions up, take sshd down for `down_for` (trio) seconds, bring it back; check what the
    peer saw. `rate` is trio seconds per real second. Returns the figures (real seconds) for the report."""
    policy = _policy(connect_timeout=10.0 * rate, max_delay=1.0 * rate, base_delay=0.2 * rate,
                     health_check_interval=5.0 * rate, stable_after=1.0 * rate)
    await sup.register_many(
        ssh_spec(sshd, session_id=f"s{i:03d}", policy=policy, shell_integration=False) for i in range(SESSIONS)
    )
    bring_up = await _all(sup, S.CONNECTED, within=120 * rate) / rate
    expected_logins = math.ceil(SESSIONS / MAX_SESSIONS)
    assert sshd.logins() == expected_logins == backend.logins.started

    sshd.stop()
    await wait_until(lambda: all(s.status is not S.CONNECTED for s in sup.states().values()),
                     timeout=30 * rate, step=0.05 * rate)
    started_before = backend.logins.started
    await trio.sleep(down_for)
    logins_while_down = backend.logins.started - started_before
    # Sessions retrying on their own share the pool's bring-ups, and a failed one answers for
    # FAILURE_MEMORY: the port is knocked on a few times a second, not once per session attempt.
    assert logins_while_down <= down_for / FAILURE_MEMORY + CONNECT_LIMIT
    since = sshd.log_size()
    sshd.start()
    back = await _all(sup, S.CONNECTED, within=120 * rate) / rate
    await _usable(sup, within=30 * rate)
    log = sshd.log.read_text()
    assert sshd.logins(since=since) <= expected_logins, "with sharing, a returning host sees a handful of logins"
    assert "drop connection" not in log and "MaxStartups" not in log
    assert backend.logins.peak <= CONNECT_LIMIT, "never more logins in flight than the connect limit"
    assert all(s.episodes_recovered == 1 for s in sup.states().values())
    return {"bring_up": bring_up, "back": back, "logins_after": sshd.logins(since=since),
            "logins_while_down": logins_while_down, "peak_in_flight": backend.logins.peak}


def _gate_assertions(sup: tether.Supervisor, events: list[tether.Event], figures: dict[str, float]) -> None:
    """What the engine's readiness gate promises; an expected failure until it exists."""
    if not GATE:
        pytest.xfail(
            "every assertion passed except those waiting for the engine's readiness gate: no retry budget "
            f"spent while down, one probe stream per target, target.down/target.up events (figures: {figures})"
        )
    downs = [e for e in events if e.type == "target.down"]
    ups = [e for e in events if e.type == "target.up"]
    assert len(downs) == 1 and len(ups) == 1, "one outage, not 100 failure streams"
    assert getattr(ups[0], "waiting", None) == SESSIONS
    for state in sup.states().values():
        assert state.episode is not None and state.episode.attempts_made <= 2, "budget spent while down"


async def _collect(sup: tether.Supervisor, into: list[tether.Event]) -> None:
    with sup.subscribe(types=["target.down", "target.up"] if GATE else ["session.failed"]) as sub:
        async for event in sub:
            if isinstance(event, tether.Event):
                into.append(event)


async def test_hundred_shared_sessions_through_a_20s_outage(sshd: Sshd) -> None:
    """sshd down 20 s and back: all 100 return, on at most ceil(100 / MaxSessions) logins, none refused."""
    backend = SshBackend()
    events: list[tether.Event] = []
    async with ssh_supervisor(backend, connect_limit=CONNECT_LIMIT) as sup, trio.open_nursery() as nursery:
        nursery.start_soon(_collect, sup, events)
        figures = await _outage(sshd, sup, backend, down_for=20.0)
        print(f"20 s outage, {SESSIONS} shared sessions: {figures}")
        nursery.cancel_scope.cancel()
        assert not [e for e in events if e.type == "session.failed"]
        _gate_assertions(sup, events, figures)


@pytest.fixture
def fast_clock() -> trio.testing.MockClock:
    """Trio time at 20x the wall: tether's timers see 5 minutes while sshd is down 15 real seconds."""
    return trio.testing.MockClock(rate=20)


@pytest.mark.slow
async def test_hundred_shared_sessions_through_a_5min_outage(sshd: Sshd, fast_clock: trio.testing.MockClock) -> None:
    """Five minutes of tether time with sshd down (15 s of it real), then back: the same promises hold."""
    backend = SshBackend()
    events: list[tether.Event] = []
    async with ssh_supervisor(backend, connect_limit=CONNECT_LIMIT) as sup, trio.open_nursery() as nursery:
        nursery.start_soon(_collect, sup, events)
        figures = await _outage(sshd, sup, backend, down_for=300.0, rate=20.0)
        print(f"5 min outage (MockClock x20), {SESSIONS} shared sessions: {figures}")
        nursery.cancel_scope.cancel()
        assert not [e for e in events if e.type == "session.failed"]
        _gate_assertions(sup, events, figures)
