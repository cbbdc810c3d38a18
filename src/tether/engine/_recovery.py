"""`AttemptContext`: the engine's `RecoveryContext`, what a strategy sees and the one way it can open a link.

``connect`` enters the backend's link context in the session task and keeps
it open until the supervisor closes it (as the contract promises), takes the
per-target connect slot, and probes the new link before handing it back: a
strategy cannot report success without a live, probed link (docs/reference-design.md, lesson 1).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, final

import trio

from ..contract._plugin import ConnectMode, Feature, Link
from ..rules._classify import single_error
from ..rules._errors import LinkError, UnknownStrategyError
from ..rules._reasons import Disconnect, DisconnectReason
from ..rules._spec import SessionSpec
from ..rules._state import Attempt, PreservedState
from ._hooks import SPENT, AttemptHooks, SpentHooks

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from ..contract._plugin import Backend, Strategy


def backstop_grace(connect_timeout: float) -> float:
    """How long past a connect's deadline the supervisor waits before cancelling the attempt.

    The backend is asked to honour the deadline itself, so a well-behaved
    timeout is an error a strategy can handle (force-reconnect moves on); the
    backstop only catches backends that ignore it.
    """
    return max(0.05, connect_timeout * 0.1)


_DEADLINE_SLACK = 0.001
"""Re-arming a backstop that is already this close to the new deadline is skipped: in the
common case `run_strategy` and `connect` arm it back to back, and each write to a cancel
scope's deadline costs trio a trip through its deadline heap."""


def _arm(scope: trio.CancelScope, deadline: float) -> None:
    if abs(scope.deadline - deadline) > _DEADLINE_SLACK:
        scope.deadline = deadline


@final
class AttemptContext:
    """Given to a strategy for one attempt: the session's facts and `connect` (a `RecoveryContext`)."""

    __slots__ = (
        "_backend",
        "_hooks",
        "_limiter",
        "_live",
        "_live_mode",
        "_opened",
        "_scope",
        "_strategies",
        "attempt",
        "backend_name",
        "disconnect",
        "features",
        "preserved",
        "spec",
        "target",
        "used_strategy",
    )

    def __init__(
        self,
        *,
        spec: SessionSpec,
        backend: Backend,
        target: str,
        disconnect: Disconnect | None,
        attempt: int,
        preserved: PreservedState | None,
        strategies: Mapping[str, Strategy],
        attempt_scope: trio.CancelScope,
        limiter: trio.CapacityLimiter | None,
        hooks: AttemptHooks | SpentHooks,
    ) -> None:
        self.spec = spec
        self.backend_name = backend.name
        self.target = target
        """The peer this session connects to (``backend.target(spec)``): what per-target
        strategies (circuit-breaker) key their state by."""
        features = backend.features
        self.features: frozenset[Feature] = features if type(features) is frozenset else frozenset(features)
        self.disconnect = disconnect
        """Why this episode began; None for the very first connect."""
        self.attempt = attempt
        """1-based attempt number within the episode (0 for the first connect)."""
        self.preserved = preserved
        self.used_strategy: str | None = None
        self._backend = backend
        self._strategies = strategies
        self._scope = attempt_scope
        self._limiter = limiter
        self._hooks = hooks
        self._live: Link | None = None
        self._live_mode: ConnectMode | None = None
        self._opened: AbstractAsyncContextManager[Link] | None = None

    @property
    def history(self) -> bytes:
        """Output seen so far (bounded), copied once per attempt and only if asked for."""
        return self._hooks.history()

    @property
    def previous_attempts(self) -> tuple[Attempt, ...]:
        """This episode's earlier attempts, oldest first."""
        return self._hooks.previous_attempts()

    @property
    def live_link(self) -> Link | None:
        """The link `connect` opened and probed in this attempt, if any."""
        return self._live

    @property
    def reattached(self) -> bool:
        """The live link continues the program that kept running (a REATTACH connect)."""
        return self._live_mode is ConnectMode.REATTACH

    async def connect(self, mode: ConnectMode, *, state: PreservedState | None = None) -> Link:
        """Open, probe and return a link; raise `LinkError` (typed) if that fails.

        `state` defaults to the preserved state for RESTART and REATTACH.
        """
        if state is None and mode is not ConnectMode.FRESH:
            state = self.preserved
        if self._opened is not None:  # one live link per attempt: a second connect replaces the first
            await self.close_link(None)
        timeout = self.spec.policy.connect_timeout
        if self._limiter is not None:
            try:  # the common, uncontended case costs no trip through the scheduler
                self._limiter.acquire_on_behalf_of_nowait(self)
            except trio.WouldBlock:
                self._scope.deadline = math.inf  # queueing for a slot is not connecting
                await self._limiter.acquire_on_behalf_of(self)
        try:
            deadline = trio.current_time() + timeout
            _arm(self._scope, deadline + backstop_grace(timeout))
            request = self._hooks.make_request(mode, state, deadline)
            opened = self._backend.open_link(request)
            try:
                link = await opened.__aenter__()
            except BaseExceptionGroup as group:  # a backend's nursery wrapped its typed error
                single = single_error(group)
                if isinstance(single, Exception):
                    raise single from group
                raise
            try:
                await self._probe_new_link(link, deadline)
            except BaseException as exc:
                await opened.__aexit__(type(exc), exc, exc.__traceback__)
                raise
        finally:
            if self._limiter is not None:
                self._limiter.release_on_behalf_of(self)
        self._opened = opened
        self._live = link
        self._live_mode = mode
        return link

    def _settle(self) -> None:
        """The attempt succeeded: forget what only the attempt needed (its hooks, which hold the
        history copy, and the strategy table), so a held link keeps little but its own context."""
        self._strategies = {}
        self._hooks = SPENT

    async def close_link(self, exc: BaseException | None) -> bool:
        """Leave the live link's context, handing it `exc` as ``async with`` would.

        Returns True if the context swallowed `exc`. Called by the supervisor
        when the attempt ends or the held link drops; strategies need not.
        """
        opened, self._opened, self._live = self._opened, None, None
        if opened is None:
            return False
        if exc is None:
            return bool(await opened.__aexit__(None, None, None))
        return bool(await opened.__aexit__(type(exc), exc, exc.__traceback__))

    async def run_strategy(self, name: str, *, announce: bool = True) -> Link:
        """Run another strategy in this attempt (force-reconnect's building block).

        Each one is announced as a ``reconnect.strategy`` event and gets a fresh
        connect_timeout backstop.
        """
        try:
            strategy = self._strategies[name]
        except KeyError:
            raise UnknownStrategyError(name, self._strategies) from None
        if announce:
            self._hooks.strategy_started(name)
        timeout = self.spec.policy.connect_timeout
        _arm(self._scope, trio.current_time() + timeout + backstop_grace(timeout))
        link = await strategy(self)
        if self.used_strategy is None:
            self.used_strategy = name
        return link

    def replay_history(self) -> None:
        """Send the output history to subscribers again (state-recovery)."""
        history = self.history
        if history:
            self._hooks.replay(history)

    async def _probe_new_link(self, link: Link, deadline: float) -> None:
        timeout = self.spec.policy.connect_timeout
        if trio.current_time() >= deadline:
            raise LinkError(
                f"opening the link took all of connect_timeout ({timeout}s): no time was left to probe it",
                reason=DisconnectReason.TIMEOUT,
            )
        with trio.move_on_at(deadline) as probe_scope:
            try:
                await link.probe()
            except LinkError:
                raise
            except Exception as exc:
                raise LinkError(f"probe after connect failed: {exc!r}", reason=DisconnectReason.HEALTH_CHECK) from exc
        if probe_scope.cancelled_caught:
            raise LinkError(
                f"probe after connect timed out after {self.spec.policy.connect_timeout}s",
                reason=DisconnectReason.TIMEOUT,
            )
