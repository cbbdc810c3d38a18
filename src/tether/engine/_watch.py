"""Watching calls into plugin code: the ones that do not come back after their cancel are abandoned.

Plugin code can refuse to be cancelled (a blocking call in a worker thread
that cannot be abandoned). Every call tether makes into a plugin (connect,
probe, keepalive, close) is entered here with the cancel scope that bounds
it, and left when it returns: a set insertion and removal, nothing on the
timer heap. One sweeper task, running only while calls are in flight, looks
at them every `SWEEP` seconds: a call whose scope has been cancelled is
noted, and one still there `ABANDON_GRACE` later (of a running loop: after a
blocked loop every cancelled task is late, and none of them is stuck) is
handed to `on_stuck`, which abandons its task.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import final

import trio

from ._session import Session

ABANDON_GRACE = 1.0
"""Seconds a cancelled plugin call gets to come back before its task is abandoned."""
SWEEP = 0.25


@final
class PluginCalls:
    """The calls into plugin code in flight, and the task that finds the stuck ones."""

    def __init__(self, on_stuck: Callable[[Session, str, float], None]) -> None:
        self._on_stuck = on_stuck
        self._calls: set[Session] = set()
        self._wanted = trio.Event()
        self._wanted_set = False
        """Mirrors ``_wanted.is_set()`` (a method call saved on every plugin call)."""

    def enter(self, session: Session, phase: str, scope: trio.CancelScope) -> None:
        session.watch_phase = phase
        session.watch_scope = scope
        session.watch_since = math.inf
        session.watch_epoch = session.epoch
        self._calls.add(session)
        if not self._wanted_set:
            self._wanted_set = True
            self._wanted.set()

    def leave(self, session: Session) -> None:
        self._calls.discard(session)
        session.watch_scope = None

    def hurry(self, session: Session) -> None:
        """The call was cancelled on purpose (a stop): it has `ABANDON_GRACE` from now."""
        if session in self._calls:
            session.watch_since = trio.current_time()

    def phase_of(self, session: Session) -> str:
        return session.watch_phase if session in self._calls else "unknown"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            if not self._calls:
                self._wanted = trio.Event()
                self._wanted_set = False
                await self._wanted.wait()
            await trio.sleep(SWEEP)
            self._sweep(trio.current_time())

    def _sweep(self, now: float) -> None:
        stuck: list[tuple[Session, float]] = []
        for session in list(self._calls):
            scope = session.watch_scope
            if session.epoch != session.watch_epoch or scope is None or session.finished:
                self._calls.discard(session)
                continue
            if not scope.cancel_called:
                continue
            if session.watch_since == math.inf:
                session.watch_since = now
            elif now - session.watch_since >= ABANDON_GRACE:
                deadline = scope.deadline
                stuck.append((session, now - min(deadline, session.watch_since)))
        for session, seconds in stuck:
            self._calls.discard(session)
            session.watch_scope = None
            self._on_stuck(session, session.watch_phase, seconds)
