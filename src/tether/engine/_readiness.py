"""One readiness gate per target: a host that is down is probed once, not once per session.

When an attempt fails in a way that says the target may be unreachable
(``network``, ``timeout``) and the backend can probe targets
(`tether.TargetProbe`), the session asks its target's gate. The gate runs one
probe (shared by every session asking at the same time); if the target does
not answer, it is *down*: ``target.down`` is published once, every session of
that target parks on the gate (spending no retry budget), and one probe task
keeps knocking on a short, capped schedule. When the probe answers, the
target is *up*: ``target.up`` says how many sessions wait, and they are
released through an admission ramp, at most the target's connect limit at a
time, so a returning host is not stampeded (OpenSSH's MaxStartups refuses at
random past 10 unauthenticated connections).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import final

import attrs
import trio

from ..contract._plugin import TargetProbe
from ..rules._classify import classify
from ..rules._events import TargetDown, TargetUp
from ..rules._reasons import DisconnectReason
from ._outbox import Outbox
from ._session import Session

logger = logging.getLogger("tether.readiness")

UNREACHABLE = frozenset({DisconnectReason.NETWORK, DisconnectReason.TIMEOUT})
"""Failures that may mean the target is down (as opposed to refusing us, or a bug)."""
PROBE_FIRST = 0.25
PROBE_CAP = 0.5
"""Seconds between probes of a down target: from `PROBE_FIRST`, doubling, capped here (jittered +-10%).
A probe is one TCP connect and a greeting: knocking twice a second costs the down host nothing,
and a returning host is noticed within half a second (benchmarks/outage.py)."""
PROBE_TIMEOUT = 5.0
RAMP_STEP = 0.05
"""Seconds between the batches of sessions released when a target is back."""


@attrs.frozen(kw_only=True)
class TargetState:
    """A target as `Supervisor.targets` reports it."""

    target: str
    up: bool
    since: float
    """Wall-clock time of its last change (or first probe)."""
    waiting: int
    probes: int


@final
class _Gate:
    """One target's gate."""

    __slots__ = (
        "_answer", "_probe_running", "down", "down_since", "probe", "probes", "since", "spec_of", "target",
        "waiting",
    )

    def __init__(self, target: str, probe: TargetProbe) -> None:
        self.target = target
        self.probe = probe
        self.down = False
        self.down_since = 0.0
        self.since = time.time()
        self.probes = 0
        self.waiting: dict[str, Session] = {}
        self.spec_of: Session | None = None
        self._probe_running = False
        self._answer: trio.Event | None = None


@final
class Readiness:
    """The gates of one supervisor's targets."""

    def __init__(
        self,
        nursery: trio.Nursery,
        outbox: Outbox,
        rng: random.Random,
        connect_limit: Callable[[str], int],
    ) -> None:
        self._nursery = nursery
        self._outbox = outbox
        self._rng = rng
        self._limit = connect_limit
        self._gates: dict[str, _Gate] = {}
        self._probers: dict[int, TargetProbe | None] = {}
        """Backend (by id) -> itself if it can probe targets: a Protocol isinstance per failed attempt
        would cost a storm a second."""

    def _prober(self, session: Session) -> TargetProbe | None:
        backend = session.backend
        key = id(backend)
        if key not in self._probers:
            self._probers[key] = backend if isinstance(backend, TargetProbe) else None
        return self._probers[key]

    def target_down(self, session: Session) -> bool:
        gate = self._gates.get(session.target)
        return gate is not None and gate.down

    def gated(self, session: Session) -> bool:
        """The session's last attempt failed as if its target were down, and its backend can probe it."""
        failure = session.last_failure
        return failure is not None and failure.reason in UNREACHABLE and self._prober(session) is not None

    async def confirm_down(self, session: Session) -> bool:
        """Is the target down? One probe per target answers every session asking at once."""
        gate = self._gate(session)
        if gate is None:
            await trio.lowlevel.checkpoint()
            return False
        if gate.down:
            await trio.lowlevel.checkpoint()
            return True
        if gate._answer is None:
            gate._answer = trio.Event()
            gate.spec_of = session
            self._nursery.start_soon(self._first_probe, gate, name=f"tether probe {gate.target}")
        await gate._answer.wait()
        return gate.down

    def park(self, session: Session) -> None:
        """The session waits on its target's gate (woken by the ramp when the target is back)."""
        gate = self._gates.get(session.target)
        if gate is not None and gate.down:
            gate.waiting[session.sid] = session

    def leave(self, session: Session) -> None:
        gate = self._gates.get(session.target)
        if gate is not None:
            gate.waiting.pop(session.sid, None)

    def states(self) -> list[TargetState]:
        return [
            TargetState(target=g.target, up=not g.down, since=g.since, waiting=len(g.waiting), probes=g.probes)
            for g in self._gates.values()
        ]

    # -- probing ---------------------------------------------------------------------------------

    def _gate(self, session: Session) -> _Gate | None:
        backend = self._prober(session)
        if backend is None:
            return None
        gate = self._gates.get(session.target)
        if gate is None:
            gate = self._gates[session.target] = _Gate(session.target, backend)
        return gate

    async def _probe_once(self, gate: _Gate) -> str | None:
        """None when the target answered, else why not."""
        session = next(iter(gate.waiting.values()), None) or gate.spec_of
        assert session is not None
        gate.probes += 1
        timeout = min(PROBE_TIMEOUT, session.spec.policy.connect_timeout)
        deadline = trio.current_time() + timeout
        with trio.move_on_at(deadline + 0.5) as scope:
            try:
                await gate.probe.probe_target(session.spec, deadline)
                return None
            except Exception as exc:
                why = classify(exc)
                return why.detail or why.reason.value
        if scope.cancelled_caught:
            return f"no answer within {timeout}s"
        return None  # pragma: no cover

    async def _first_probe(self, gate: _Gate) -> None:
        answer = gate._answer
        why = await self._probe_once(gate)
        gate._answer = None
        if why is None:  # up: the failure was the session's own; it backs off as usual
            gate.since = time.time()
            if answer is not None:
                answer.set()
            return
        gate.down = True
        gate.down_since = trio.current_time()
        gate.since = time.time()
        logger.warning("target %s is down (%s): its sessions wait for it", gate.target, why)
        self._outbox.publish(TargetDown, session_id="", target=gate.target, waiting=len(gate.waiting) + 1,
                             detail=why)
        if answer is not None:
            answer.set()
        await self._until_up(gate)

    async def _until_up(self, gate: _Gate) -> None:
        delay = PROBE_FIRST
        while True:
            await trio.sleep(delay * self._rng.uniform(0.9, 1.1))
            if not gate.waiting:  # nobody waits any more (unregistered, forced): forget what we knew
                if self._gates.get(gate.target) is gate:
                    del self._gates[gate.target]
                return
            if await self._probe_once(gate) is None:
                break
            delay = min(PROBE_CAP, delay * 2)
        down_for = trio.current_time() - gate.down_since
        waiting = list(gate.waiting.values())
        gate.waiting.clear()
        gate.down = False
        gate.since = time.time()
        logger.info("target %s is back after %.1fs: releasing %d sessions", gate.target, down_for, len(waiting))
        self._outbox.publish(TargetUp, session_id="", target=gate.target, waiting=len(waiting),
                             down_for=round(down_for, 3), probes=gate.probes)
        await self._ramp(gate, waiting)

    async def _ramp(self, gate: _Gate, sessions: list[Session]) -> None:
        """Release `sessions` a connect limit's worth at a time."""
        batch = max(1, self._limit(gate.target))
        for start in range(0, len(sessions), batch):
            if start:
                await trio.sleep(RAMP_STEP)
            for session in sessions[start : start + batch]:
                session.wake()

