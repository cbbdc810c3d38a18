"""Per-session bookkeeping: the mutable record behind each `SessionState`.

Kept apart from the supervisor's control flow so the data and its frozen
views are readable alone. Nothing here awaits except `park`.
"""

from __future__ import annotations

import codecs
import math
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import attrs
import trio

from ..contract._plugin import Backend
from ..rules._reasons import Disconnect
from ..rules._spec import SessionSpec
from ..rules._state import Attempt, Episode, EpisodeOutcome, PreservedState, SessionState, SessionStatus
from ._timers import TimerEntry, TimerQueue

if TYPE_CHECKING:
    from ..contract._plugin import Link

ATTEMPTS_KEPT = 50
"""Attempts kept per episode; `attempts_made` still counts every one (flaw 2)."""


class EpisodeRecord:
    """The episode in progress (mutable); `freeze` gives the public `Episode`."""

    __slots__ = (
        "attempts",
        "attempts_made",
        "disconnect",
        "ended_at",
        "last_delay",
        "number",
        "outcome",
        "recovery_time",
        "started_at",
        "started_mono",
    )

    def __init__(self, number: int, disconnect: Disconnect, started_mono: float) -> None:
        self.number = number
        self.disconnect = disconnect
        self.started_at = time.time()
        self.started_mono = started_mono
        self.outcome = EpisodeOutcome.ONGOING
        self.attempts: deque[Attempt] = deque(maxlen=ATTEMPTS_KEPT)
        self.attempts_made = 0
        self.ended_at: float | None = None
        self.recovery_time: float | None = None
        self.last_delay: float | None = None

    def freeze(self) -> Episode:
        return Episode(
            number=self.number,
            disconnect=self.disconnect,
            started_at=self.started_at,
            outcome=self.outcome,
            attempts_made=self.attempts_made,
            attempts=tuple(self.attempts),
            ended_at=self.ended_at,
            recovery_time=self.recovery_time,
        )

    @classmethod
    def thaw(cls, episode: Episode, started_mono: float) -> EpisodeRecord:
        """An episode restored from a snapshot, continuing where it stopped."""
        record = cls(episode.number, episode.disconnect, started_mono)
        record.started_at = episode.started_at
        record.outcome = episode.outcome
        record.attempts.extend(episode.attempts)
        record.attempts_made = episode.attempts_made
        record.ended_at = episode.ended_at
        record.recovery_time = episode.recovery_time
        return record


@attrs.define(eq=False)
class ForceRequest:
    """A pending `force_reconnect`; every caller waiting on it gets the same attempt."""

    strategy: str | None
    done: trio.Event = attrs.field(factory=trio.Event)
    result: Attempt | None = None
    error: BaseException | None = None

    def resolve(self, attempt: Attempt | None, error: BaseException | None = None) -> None:
        self.result = attempt
        self.error = error
        self.done.set()


class Session:
    """One supervised session: its record, its parking spot and its signals."""

    __slots__ = (
        "_decoder",
        "_entry",
        "_task",
        "backend",
        "connected_at",
        "connected_mono",
        "done",
        "episode",
        "episodes_failed",
        "episodes_recovered",
        "episodes_total",
        "finished",
        "force",
        "generation",
        "history",
        "last_disconnect",
        "link",
        "next_attempt_at",
        "output",
        "output_limit",
        "pending_drop",
        "preserved",
        "restored",
        "resume_at",
        "scope",
        "spec",
        "status",
        "status_since",
        "stopping",
        "target",
        "timers",
        "unregistering",
    )

    def __init__(self, spec: SessionSpec, backend: Backend, target: str, timers: TimerQueue, output_limit: int) -> None:
        self.spec = spec
        self.backend = backend
        self.target = target
        self.timers = timers
        self.status = SessionStatus.CONNECTING
        self.status_since = time.time()
        self.scope: trio.CancelScope | None = None
        """The cancel scope of the attempt in progress (it also holds the link); None between attempts."""
        self.episode: EpisodeRecord | None = None
        self.history: tuple[Episode, ...] = ()
        """Past episodes, newest last; a tuple, since it changes once per episode (a deque costs 600 B)."""
        self.episodes_total = 0
        self.episodes_recovered = 0
        self.episodes_failed = 0
        self.preserved: PreservedState | None = None
        self.last_disconnect: Disconnect | None = None
        self.connected_at: float | None = None
        self.connected_mono: float | None = None
        self.next_attempt_at: float | None = None
        self.link: Link | None = None
        self.generation = 0
        self.pending_drop: Disconnect | None = None
        self.force: ForceRequest | None = None
        self.stopping = False
        self.unregistering = False
        self.finished = False
        self.restored: SessionStatus | None = None
        """The status a snapshot recorded, when this session was restored after a restart."""
        self.resume_at: float | None = None
        """Trio time a restored mid-backoff session had its next attempt scheduled for."""
        self.done: trio.Event | None = None
        self.output = bytearray()
        self.output_limit = output_limit
        self._decoder: codecs.IncrementalDecoder | None = None
        self._task: trio.lowlevel.Task | None = None
        self._entry: TimerEntry | None = None

    # -- parking: the one place a session waits -------------------------------------------

    @property
    def parked(self) -> bool:
        return self._task is not None

    def has_signal(self) -> bool:
        """A drop, a forced reconnect or a stop is waiting to be handled."""
        return self.stopping or self.force is not None or self.pending_drop is not None

    def park(self, deadline: float) -> Awaitable[None]:
        """Wait until `deadline` (trio time) or a signal; may return early, callers re-check.

        Not a coroutine itself: it arms the wake-up and hands back trio's own
        awaitable, so a parked session holds one frame fewer and no closure.
        """
        if self.has_signal():
            return trio.lowlevel.checkpoint()  # noqa: ASYNC105 -- the caller awaits it
        if deadline != math.inf:
            self._entry = self.timers.schedule(deadline, self.wake)
        self._task = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(self._abort)  # noqa: ASYNC105 -- the caller awaits it

    def _abort(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        self._task = None
        self._drop_timer()
        return trio.lowlevel.Abort.SUCCEEDED

    def wake(self) -> None:
        """Reschedule the parked session task, if it is parked."""
        task = self._task
        if task is not None:
            self._task = None
            self._drop_timer()
            trio.lowlevel.reschedule(task)

    def _drop_timer(self) -> None:
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None

    def remember(self, episode: Episode) -> None:
        """Move an ended episode into the bounded history."""
        limit = self.spec.policy.history_limit
        self.history = (*self.history, episode)[-limit:] if limit else ()

    # -- output history ------------------------------------------------------------------

    def add_output(self, data: bytes) -> str:
        """Keep `data` in the bounded history; return it decoded for subscribers."""
        self.output += data
        excess = len(self.output) - self.output_limit
        if excess > 0:
            del self.output[:excess]
        if self._decoder is None:
            self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return self._decoder.decode(data)

    # -- views ---------------------------------------------------------------------------

    def view(self) -> SessionState:
        return SessionState(
            id=self.spec.id,
            backend=self.spec.backend,
            target=self.target,
            status=self.status,
            status_since=self.status_since,
            episode=self.episode.freeze() if self.episode is not None else None,
            history=self.history,
            preserved=self.preserved,
            last_disconnect=self.last_disconnect,
            connected_at=self.connected_at,
            next_attempt_at=self.next_attempt_at,
            episodes_total=self.episodes_total,
            episodes_recovered=self.episodes_recovered,
            episodes_failed=self.episodes_failed,
        )
