"""`AttemptContext`: the engine's `RecoveryContext`, what a strategy sees and the one way it can open a link.

``connect`` enters the backend's link context in the session task and keeps
it open until the supervisor closes it (as the contract promises), takes the
per-target connect slot, and probes the new link before handing it back: a
strategy cannot report success without a live, probed link (docs/reference-design.md, lesson 1).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, final

import trio

from ..contract._plugin import ConnectMode, Feature, Link, LinkRequest
from ..rules._classify import single_error
from ..rules._errors import LinkError, UnknownStrategyError
from ..rules._events import SessionOutput, StrategyAttempted
from ..rules._reasons import DisconnectReason
from ..rules._spec import SessionSpec
from ..rules._state import Attempt, PreservedState
from ._hooks import HISTORY_BYTES, LinkReporter
from ._secrets import resolve_spec

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from ..contract._plugin import Strategy
    from ._outbox import Outbox
    from ._session import Session


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
    """Given to a strategy for one attempt: the session's facts and `connect` (a `RecoveryContext`).

    It reads the session's fixed facts (spec, backend, target) from the session itself and is
    built with positional arguments: one is made for every attempt of every session.
    """

    __slots__ = (
        "_backstop",
        "_episode",
        "_history",
        "_limiter",
        "_live",
        "_live_mode",
        "_now",
        "_opened",
        "_outbox",
        "_scope",
        "_session",
        "_strategies",
        "attempt",
        "disconnect",
        "preserved",
        "used_strategy",
    )

    def __init__(
        self,
        session: Session,
        outbox: Outbox,
        attempt: int,
        attempt_scope: trio.CancelScope,
        strategies: Mapping[str, Strategy],
        limiter: trio.CapacityLimiter | None,
        backstop: float,
        now: Callable[[], float],
    ) -> None:
        self._session = session
        self._outbox = outbox
        episode = self._episode = session.episode
        self.disconnect = episode.disconnect if episode is not None else None
        """Why this episode began; None for the very first connect."""
        self.attempt = attempt
        """1-based attempt number within the episode (0 for the first connect)."""
        self.preserved = session.preserved
        self.used_strategy: str | None = None
        self._strategies: Mapping[str, Strategy] | None = strategies
        """None once the attempt is over (`_settle`)."""
        self._scope = attempt_scope
        self._limiter = limiter
        self._backstop = backstop
        self._now = now
        """The run's clock (`trio.current_time`, one call)."""
        """Seconds from the start of a connect to its backstop: connect_timeout plus `backstop_grace`."""
        self._history: bytes | None = None
        self._live: Link | None = None
        self._live_mode: ConnectMode | None = None
        self._opened: AbstractAsyncContextManager[Link] | None = None

    @property
    def spec(self) -> SessionSpec:
        return self._session.spec

    @property
    def backend_name(self) -> str:
        return self._session.backend.name

    @property
    def target(self) -> str:
        """The peer this session connects to (``backend.target(spec)``): what per-target
        strategies (circuit-breaker) key their state by."""
        return self._session.target

    @property
    def features(self) -> frozenset[Feature]:
        features = self._session.backend.features
        return features if type(features) is frozenset else frozenset(features)

    @property
    def history(self) -> bytes:
        """Output seen so far (bounded), copied on first use and shared by the context and its
        requests (a full 64 KiB history copied on every attempt would cost more than the attempt)."""
        if self._history is None:
            self._history = self._session.console.log.tail(HISTORY_BYTES) if self._strategies is not None else b""
        return self._history

    @property
    def previous_attempts(self) -> tuple[Attempt, ...]:
        """This episode's earlier attempts, oldest first."""
        episode = self._episode
        return tuple(episode.attempts) if episode is not None and self._strategies is not None else ()

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
        timeout = self._session.spec.policy.connect_timeout
        if self._limiter is not None:
            try:  # the common, uncontended case costs no trip through the scheduler
                self._limiter.acquire_on_behalf_of_nowait(self)
            except trio.WouldBlock:
                self._scope.deadline = math.inf  # queueing for a slot is not connecting
                await self._limiter.acquire_on_behalf_of(self)
        try:
            now = self._now()
            deadline = now + timeout
            _arm(self._scope, now + self._backstop)
            request = self._request(mode, state, deadline)
            opened = self._session.backend.open_link(request)
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

    def _request(self, mode: ConnectMode, state: PreservedState | None, deadline: float) -> LinkRequest:
        """A request for a new link; from here on, reports from the previous link are ignored."""
        if self._strategies is None:
            raise RuntimeError("this recovery context's attempt is over")
        session = self._session
        session.generation += 1
        session.pending_drop = None
        reporter = LinkReporter(self._outbox, session, session.generation)
        spec = session.spec
        policy = spec.policy
        if session.secrets:
            spec, values = resolve_spec(spec)
            session.learn_secrets(values)
        history = self._history
        if history is None:  # `history`, read here without the property (this runs on every attempt)
            history = self._history = session.console.log.tail(HISTORY_BYTES)
        return LinkRequest(
            spec=spec,
            mode=mode,
            state=state,
            history=history,
            deadline=deadline,
            connect_timeout=policy.connect_timeout,
            keepalive_interval=policy.keepalive_interval,
            report_closed=reporter.closed,
            report_output=reporter.output,
            report_state=reporter.state,
            session_ending=reporter.session_ending,
            last_state=session.preserved,
            report_survivor=reporter.survivor,
            resume=session.console.log.resume,
            report_output_at=reporter.output_at,
        )

    def _settle(self) -> None:
        """The attempt succeeded: forget what only the attempt needed (the history copy, the
        episode, the strategy table), so a held link keeps little but its own context."""
        self._strategies = None
        self._history = b""
        self._episode = None

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
        strategy = self._strategy(name)
        episode = self._episode
        if announce and episode is not None and self.attempt > 0:
            self._outbox.publish(
                StrategyAttempted,
                session_id=self._session.sid,
                episode=episode.number,
                attempt=self.attempt,
                strategy=name,
            )
        _arm(self._scope, self._now() + self._backstop)
        link = await strategy(self)
        if self.used_strategy is None:
            self.used_strategy = name
        return link

    async def run_first(self, name: str | None) -> Link:
        """The attempt's own strategy (None: a fresh connect, the session's very first). Its
        backstop was armed as the attempt began, with nothing awaited since: no re-arm."""
        if name is None:
            return await self.connect(ConnectMode.FRESH, state=self.preserved)
        link = await self._strategy(name)(self)
        if self.used_strategy is None:
            self.used_strategy = name
        return link

    def _strategy(self, name: str) -> Strategy:
        strategies = self._strategies if self._strategies is not None else {}
        try:
            return strategies[name]
        except KeyError:
            raise UnknownStrategyError(name, strategies) from None

    def replay_history(self) -> None:
        """Send the output history to subscribers again (state-recovery)."""
        history = self.history
        if history:
            text = history.decode("utf-8", errors="replace")
            self._outbox.bus.publish_live(SessionOutput, time.time(), {
                "session_id": self._session.sid, "data": text, "replay": True, "offset": -1,
            })

    async def _probe_new_link(self, link: Link, deadline: float) -> None:
        timeout = self._session.spec.policy.connect_timeout
        if self._now() >= deadline:
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
                f"probe after connect timed out after {timeout}s",
                reason=DisconnectReason.TIMEOUT,
            )
