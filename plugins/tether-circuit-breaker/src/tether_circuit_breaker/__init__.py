"""``circuit-breaker``: a tether strategy that stops hammering a target that keeps failing.

It wraps another strategy (``simple-reconnect`` unless told otherwise) and
counts that strategy's failures per target, across every session that
connects there. After `threshold` failures in a row the circuit *opens*:
attempts fail fast with `CircuitOpenError` and never touch the target. After
`cooldown` seconds it *half-opens*: one attempt goes through as a trial
while the others keep failing fast. A success closes the circuit; a failed
trial opens it again for another cool-down.

Built only on tether's public API, as any third-party plugin would be.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import final

import attrs
import trio

from tether import DisconnectReason, Link, LinkError, RecoveryContext, StrategyNotApplicableError

__all__ = ["CircuitBreaker", "CircuitOpenError", "CircuitState", "target_key"]


class CircuitState(str, enum.Enum):
    """Where one target's circuit is."""

    CLOSED = "closed"
    """Attempts go through (the normal state)."""
    OPEN = "open"
    """Attempts fail fast until the cool-down ends."""
    HALF_OPEN = "half-open"
    """The cool-down ended: the next attempt is a trial."""


class CircuitOpenError(LinkError):
    """The circuit for this target is open: the attempt failed without touching the target.

    Its reason is the one that opened the circuit, so the supervisor keeps
    classifying (and backing off) as it would for the real failure.
    """

    default_reason = DisconnectReason.NETWORK


def target_key(ctx: RecoveryContext) -> str:
    """The peer an attempt connects to: ``ctx.target`` when tether provides it.

    Older tether has no ``target`` on the context; then the backend name plus
    the spec's options stand in, so sessions with the same options share a circuit.
    """
    target = getattr(ctx, "target", None)
    if isinstance(target, str) and target:
        return target
    options = sorted((str(k), repr(v)) for k, v in ctx.spec.options.items())
    return f"{ctx.backend_name}:{options!r}"


@attrs.define
class _Circuit:
    failures: int = 0
    reason: DisconnectReason = DisconnectReason.NETWORK
    opened_at: float | None = None
    """Trio time the circuit opened; None while closed."""
    trial: bool = False
    """A half-open trial is in flight; everyone else still fails fast."""


def _counts(exc: LinkError) -> bool:
    """Failures that say something about the target. A strategy that does not apply
    says nothing about it, and auth/host-key failures end the session anyway."""
    return exc.reason.retryable and not isinstance(exc, StrategyNotApplicableError)


@final
class CircuitBreaker:
    """Wrap `inner`; open per target after `threshold` failures in a row, half-open after `cooldown`.

    The entry point builds one with the defaults. To configure it, pass an
    instance to ``open_supervisor(strategies=[CircuitBreaker(...)])``; a
    different `name` lets several breakers (around different inner strategies) coexist.
    """

    plugin_api = 1

    def __init__(
        self,
        *,
        name: str = "circuit-breaker",
        inner: str = "simple-reconnect",
        threshold: int = 3,
        cooldown: float = 30.0,
        key: Callable[[RecoveryContext], str] = target_key,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be >= 1, got {threshold}")
        if cooldown < 0:
            raise ValueError(f"cooldown must be >= 0 seconds, got {cooldown}")
        if inner == name:
            raise ValueError(f"{name!r} cannot wrap itself")
        self.name = name
        self.inner = inner
        self.threshold = threshold
        self.cooldown = cooldown
        self._key = key
        self._circuits: dict[str, _Circuit] = {}

    def state(self, target: str) -> CircuitState:
        """The circuit's state for `target` (as `key` names it) at this Trio time."""
        circuit = self._circuits.get(target)
        if circuit is None or circuit.opened_at is None:
            return CircuitState.CLOSED
        if trio.current_time() < circuit.opened_at + self.cooldown or circuit.trial:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def states(self) -> dict[str, CircuitState]:
        """Every target this breaker has seen fail since its last success, and its state."""
        return {key: self.state(key) for key in self._circuits}

    async def __call__(self, ctx: RecoveryContext) -> Link:
        key = self._key(ctx)
        circuit = self._circuits.get(key)
        trial = False
        if circuit is not None and circuit.opened_at is not None:
            if self.state(key) is CircuitState.OPEN:
                await trio.lowlevel.checkpoint()
                raise CircuitOpenError(self._why_open(key, circuit), reason=circuit.reason)
            circuit.trial = trial = True
        try:
            link = await ctx.run_strategy(self.inner)
        except LinkError as exc:
            if _counts(exc):
                self._failed(key, exc.reason, trial)
            raise
        finally:
            if trial and circuit is not None:
                circuit.trial = False  # also on cancellation: the next attempt may try again
        self._circuits.pop(key, None)  # a success closes the circuit and forgets the target
        return link

    def _failed(self, key: str, reason: DisconnectReason, trial: bool) -> None:
        circuit = self._circuits.setdefault(key, _Circuit())
        circuit.failures += 1
        circuit.reason = reason
        if trial or circuit.failures >= self.threshold:
            circuit.opened_at = trio.current_time()

    def _why_open(self, key: str, circuit: _Circuit) -> str:
        assert circuit.opened_at is not None
        if circuit.trial:
            when = "a trial attempt is in flight"
        else:
            left = circuit.opened_at + self.cooldown - trio.current_time()
            when = f"half-opens in {left:.1f}s"
        return (
            f"circuit open for {key}: {circuit.failures} failures in a row "
            f"(last: {circuit.reason.value}); {when}"
        )
