"""Running one attempt, and holding the link it opened until it drops.

An attempt gets one cancel scope: its connect_timeout (armed by the
`AttemptContext` as the strategy connects), the bound on closing the link,
and what stopping the session cancels. A link's context is entered and left
in the session task, inside that scope, as the plugin contract promises.
While the link is up the task stays parked here, woken by the link's drop
report, a forced reconnect, a stop, or the next probe or keepalive.
Everything that happens is told to the session's rules, whose effects go out
through the outbox.

Plugin code can refuse to be cancelled (a blocking call in a worker thread
that cannot be abandoned). Each call into a plugin is watched
(`tether.engine._watch`); one that does not come back after its cancel is
*abandoned* (the session's epoch moves on): the attempt is recorded as timed
out, the plugin is reported by distribution, and a fresh task carries the
session on. The abandoned task touches nothing of the session when it
finally returns; it only closes what it opened.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, final

import trio

from ..contract._plugin import Link, Strategy
from ..rules._classify import classify, describe_error
from ..rules._errors import LinkError, SessionNotFoundError
from ..rules._events import PluginMisbehaved
from ..rules._reasons import Disconnect, DisconnectReason
from ..rules._session import FIRST_CONNECT, Step
from ..rules._state import Attempt, SessionStatus
from ._console import SHELL_ENDED, SHELL_REPLACED, runs_lost
from ._outbox import Outbox
from ._recovery import AttemptContext, backstop_grace
from ._session import ForceRequest, Session
from ._watch import PluginCalls

logger = logging.getLogger("tether.supervisor")

NO_REASON = Disconnect(DisconnectReason.BACKEND_ERROR, "link closed without a reason")


@final
class AttemptRunner:
    """Runs attempts and holds links for every session of one supervisor."""

    def __init__(
        self,
        outbox: Outbox,
        strategies: Mapping[str, Strategy],
        limiter_for: Callable[[str], trio.CapacityLimiter | None],
        rng: random.Random,
        closing: Callable[[], bool],
        *,
        distribution_of: Callable[[str], str] = lambda backend: "(unknown)",
        respawn: Callable[[Session], None] = lambda session: None,
    ) -> None:
        self.calls = PluginCalls(self.abandon)
        self.now: Callable[[], float] = trio.lowlevel.current_clock().current_time
        """`trio.current_time`, asked of the run's clock itself: two calls fewer on every read, and
        an attempt reads the clock several times."""
        self._outbox = outbox
        self._strategies = strategies
        self._limiter_for = limiter_for
        self._rng = rng
        self._closing = closing
        self._distribution_of = distribution_of
        self._respawn = respawn
        self._backstops: dict[float, float] = {}
        """connect_timeout -> it plus its `backstop_grace` (policies share a handful of timeouts)."""
        self.abandoned = 0
        """Session tasks left behind in plugin code that would not return."""
        self.stuck: dict[str, str] = {}
        """Session id -> what its abandoned task was doing (the latest, for a stop report)."""

    async def run(self, session: Session, step: Step, force: ForceRequest | None, started: float,
                  started_wall: float) -> None:
        """The attempt `step` asks for, starting at `started` (trio's clock; `started_wall`, the
        wall clock). If it connects, hold the link here until it drops.

        The session's rules hear how it went (``connected`` then ``dropped``, or
        ``missed``); nothing is recorded when the session is stopping, or when
        this task was abandoned meanwhile.
        """
        fx = self._outbox
        epoch = session.epoch
        session.attempt_started(fx, step, started_wall, forced=force is not None)
        number = step.number
        label = step.strategy or FIRST_CONNECT
        timeout = session.spec.policy.connect_timeout
        ctx: AttemptContext | None = None
        held: Attempt | None = None
        drop: Disconnect | None = None
        failure: Disconnect | None = None  # kept as a value: holding the exception would make a GC cycle
        calls = self.calls
        try:
            # Armed with the connect backstop from the start: `connect` then finds it set (one write
            # to trio's deadline heap fewer per attempt).
            backstop = self._backstops.get(timeout)
            if backstop is None:
                backstop = self._backstops[timeout] = timeout + backstop_grace(timeout)
            with trio.CancelScope(deadline=started + backstop) as attempt_scope:
                session.scope = attempt_scope
                session.current = _Current(number, label, started_wall, started, force)
                if session.stopping:
                    attempt_scope.cancel()
                ctx = AttemptContext(session, fx, number, attempt_scope, self._strategies,
                                     self._limiter_for(session.target), backstop, self.now)
                try:
                    try:
                        calls.enter(session, "connect", attempt_scope)
                        link = await ctx.run_first(step.strategy)
                        calls.leave(session)
                        if link is None or link is not ctx._live:
                            raise LinkError(
                                "the strategy returned a link that tether did not open and probe",
                                reason=DisconnectReason.BACKEND_ERROR,
                            )
                        if session.epoch != epoch:
                            raise _Abandoned
                        attempt_scope.deadline = math.inf
                        now = self.now()
                        held = Attempt(
                            number=number,
                            strategy=label,
                            started_at=started_wall,
                            duration=now - started,
                            success=True,
                            used_strategy=ctx.used_strategy or label,
                            same_program=ctx.reattached,
                        )
                        ctx._settle()
                        self._connected(session, link, held, force, now)
                        # While the link is held an abandonment records a drop, which needs nothing of
                        # the attempt: every held session shares one record (one object fewer each).
                        session.current = _HELD
                        if session.size is not None:
                            await self._resize(session, link, *session.size)
                            now = self.now()
                        drop = await self._hold(session, link, now)
                        if session.epoch != epoch:
                            raise _Abandoned
                        session.current = _Current(number, label, started_wall, started, None, drop)
                        if not self._closing():  # bound the close; on shutdown the exit's grace period does
                            attempt_scope.deadline = self.now() + timeout
                        calls.enter(session, "close", attempt_scope)
                    except BaseException as exc:
                        if ctx._live is None or not await ctx.close_link(exc):  # most failures opened nothing
                            raise
                    else:
                        await ctx.close_link(None)
                except _Abandoned:
                    pass
                except Exception as exc:
                    failure = classify(exc)
        finally:
            if session.epoch == epoch:
                calls.leave(session)
                session.scope = None
                session.current = None
                session.link = None  # the link's reporter points back at the session: no cycle for the GC
                # No attempt will answer the force if the session is stopping, or if a cancel from
                # outside (the nursery, at exit) is unwinding through here.
                abandoned = session.stopping or not attempt_scope.cancelled_caught
                if force is not None and not force.done.is_set() and held is None and failure is None and abandoned:
                    force.resolve(None, SessionNotFoundError(session.sid))
        if session.epoch != epoch:
            return  # abandoned: a fresh task carries the session on
        if held is not None:
            session.generation += 1  # late reports from the dead link are ignored from here on
            session.pending_drop = None
            if drop is None or drop.reason is not DisconnectReason.PROCESS_EXIT:
                session.console.log.mark_interrupted()  # the next link's first bytes say if any were lost
            else:
                runs_lost(session, SHELL_ENDED)
            session.console.link_ended()
            if failure is not None and drop is None:
                drop = failure
            if not session.stopping:
                session.dropped(drop or NO_REASON)
            return
        if session.stopping:  # stopped while connecting: nothing to record
            return
        if attempt_scope.cancelled_caught:
            why = Disconnect(DisconnectReason.TIMEOUT, f"attempt ran past connect_timeout ({timeout}s)")
        else:
            why = failure or Disconnect(DisconnectReason.BACKEND_ERROR, "the attempt ended without a link")
        self._missed(session, number, label, started_wall, started, why, ctx.used_strategy if ctx else None, force)

    def _missed(
        self,
        session: Session,
        number: int,
        label: str,
        started_wall: float,
        started: float,
        why: Disconnect,
        used_strategy: str | None,
        force: ForceRequest | None,
    ) -> None:
        attempt = Attempt(
            number=number,
            strategy=label,
            started_at=started_wall,
            duration=self.now() - started,
            success=False,
            error=why.detail or why.reason.value,
            reason=why.reason,
            used_strategy=used_strategy,
        )
        session.missed(self._outbox, attempt, why)
        if force is not None:
            force.resolve(attempt)

    def _connected(
        self, session: Session, link: Link, attempt: Attempt, force: ForceRequest | None, now: float
    ) -> None:
        if not attempt.same_program:  # a run typed into the program before this one can never finish
            runs_lost(session, SHELL_REPLACED)
            session.console.program_replaced()
        else:
            session.console.reattached()
        session.link = link
        self._refresh_state(session, link)
        if attempt.same_program and session.console.shell is None:
            # a program re-attached after a restart: its backend may say which shell it runs
            shell = session.preserved.extra.get("shell") if session.preserved is not None else None
            session.console.shell = shell if shell in ("bash", "zsh") else None
        session.connected(self._outbox, attempt, now, time.time())
        if force is not None:
            force.resolve(attempt)
        if session.waiters is not None:
            session.waiters.wake()

    async def _resize(self, session: Session, link: Link, rows: int, cols: int) -> None:
        """Give a new link the size asked for earlier (plugins that can: `resize(rows, cols)`)."""
        resize = getattr(link, "resize", None)
        if resize is None:
            return
        with trio.move_on_after(session.spec.policy.connect_timeout) as scope:
            self.calls.enter(session, "resize", scope)
            try:
                await resize(rows, cols)
            except Exception:
                logger.warning("session %s: resize to %dx%d failed", session.sid, rows, cols, exc_info=True)
            finally:
                self.calls.leave(session)

    async def _hold(self, session: Session, link: Link, now: float) -> Disconnect | None:
        """Stay parked while the link is up (since `now`); probe on the health interval. None = stopping."""
        policy = session.spec.policy
        supervise = policy.enabled
        probe_every = policy.health_check_interval if supervise else 0.0
        # only fetched when used: the bound method would live in this frame as long as the link
        keepalive = getattr(link, "keepalive", None) if supervise and policy.keepalive_interval else None
        keep_every = policy.keepalive_interval if keepalive is not None else 0.0
        next_probe = now + probe_every * self._rng.uniform(0.5, 1.0) if probe_every else math.inf
        next_keep = now + keep_every if keep_every else math.inf
        epoch = session.epoch
        first = True
        while session.epoch == epoch:
            if session.stopping:  # no refresh: shutdown has flushed already, unregister deletes the snapshot
                return None
            if session.pending_drop is not None:
                self._refresh_state(session, link)
                return session.pending_drop
            if session.force is not None:
                self._refresh_state(session, link)
                return Disconnect(DisconnectReason.FORCED, "reconnect requested")
            if not first:
                now = self.now()
            first = False
            if now >= next_probe:
                failure = await self._probe(session, link)
                if failure is not None:
                    return failure
                next_probe = self.now() + probe_every * self._rng.uniform(0.9, 1.1)
                continue
            if now >= next_keep and keepalive is not None:
                await self._bounded(session, keepalive(), policy.connect_timeout)
                next_keep = self.now() + keep_every
                continue
            await session.park(min(next_probe, next_keep))
        return None

    async def _probe(self, session: Session, link: Link) -> Disconnect | None:
        timeout = session.spec.policy.connect_timeout
        failure: Disconnect | None = None
        with trio.move_on_after(timeout) as scope:
            self.calls.enter(session, "probe", scope)
            try:
                await link.probe()
            except Exception as exc:
                found = classify(exc)
                failure = (
                    found
                    if isinstance(exc, LinkError)
                    else Disconnect(DisconnectReason.HEALTH_CHECK, f"probe failed: {describe_error(exc)}")
                )
            finally:
                self.calls.leave(session)
        if scope.cancelled_caught:
            failure = Disconnect(DisconnectReason.HEALTH_CHECK, f"probe timed out after {timeout}s")
        if failure is None:
            self._refresh_state(session, link)
            return None
        session.probe_failed(self._outbox, failure.detail)
        return session.pending_drop or failure

    async def _bounded(self, session: Session, awaitable: Awaitable[Any], limit: float) -> None:
        with trio.move_on_after(limit) as scope:
            self.calls.enter(session, "keepalive", scope)
            try:
                await awaitable
            except Exception:
                logger.debug("keepalive failed", exc_info=True)
            finally:
                self.calls.leave(session)

    def _refresh_state(self, session: Session, link: Link) -> None:
        """Keep preserved state current while connected."""
        if not session.spec.policy.preserve_state:
            return
        try:
            state = link.current_state()
        except Exception:
            logger.warning("session %s: current_state() raised", session.sid, exc_info=True)
            return
        if state is not None:
            session.preserved_changed(self._outbox, state)

    # -- plugin code that will not come back ---------------------------------------------------

    def abandon(self, session: Session, phase: str, seconds: float) -> None:
        """Leave the session's task behind in plugin code; record what it was doing; carry on afresh."""
        if session.finished:
            return
        session.epoch += 1
        self.abandoned += 1
        backend = session.backend.name
        distribution = self._distribution_of(backend)
        detail = (
            f"backend {backend!r} ({distribution}) did not return from {phase} {seconds:.1f}s after it was "
            "cancelled; tether abandoned that task and carries the session on"
        )
        logger.error("session %s: %s", session.sid, detail)
        self.stuck[session.sid] = f"{backend} ({distribution}) in {phase}"
        self._outbox.publish(
            PluginMisbehaved, session_id=session.sid, group="tether.backends", name=backend,
            distribution=distribution, problem="stuck", phase=phase, seconds=round(seconds, 3), detail=detail,
        )
        current = session.current
        session.scope = None
        session.current = None
        session.link = None
        session.generation += 1
        session.pending_drop = None
        if current is not None and not session.stopping:
            why = Disconnect(DisconnectReason.TIMEOUT, detail)
            if current.dropped is not None or session.status is SessionStatus.CONNECTED:
                session.dropped(current.dropped or why)
            else:
                self._missed(session, current.number, current.label, current.started_wall, current.started,
                             why, None, current.force)
        elif current is not None and current.force is not None and not current.force.done.is_set():
            current.force.resolve(None, SessionNotFoundError(session.sid))
        self._respawn(session)


class _Abandoned(Exception):
    """This task was abandoned while it was in plugin code: leave without touching the session."""


@final
class _Current:
    """The attempt a session task is running, as much as an abandonment needs to record it."""

    __slots__ = ("dropped", "force", "label", "number", "started", "started_wall")

    def __init__(
        self, number: int, label: str, started_wall: float, started: float, force: ForceRequest | None,
        dropped: Disconnect | None = None,
    ):
        self.number = number
        self.label = label
        self.started_wall = started_wall
        self.started = started
        self.force = force
        self.dropped = dropped


_HELD = _Current(0, FIRST_CONNECT, 0.0, 0.0, None)
"""The record of every session holding a link (never changed: a drop gets a record of its own)."""
