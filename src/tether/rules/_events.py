"""Typed events: one class per step the supervisor takes.

Every event has a global sequence number, a wall-clock time and a session id
(empty for supervisor-wide events). Nothing is emitted for a session at rest:
a passing health check is silent (docs/reference-design.md, lesson 13). The ``type`` tag of each class is
its wire name and never changes when a class is renamed.
"""

from __future__ import annotations

from typing import ClassVar, final

import attrs

from ._reasons import DisconnectReason


@attrs.frozen(kw_only=True)
class Event:
    """Fields every event carries."""

    type: ClassVar[str] = "event"
    seq: int
    """Sequence number within one run of the supervisor: starts again at 1 with each run."""
    at: float
    """Wall-clock time, epoch seconds."""
    session_id: str
    boot: str = ""
    """Which run of the supervisor (daemon) published it: a resume point (`seq`) means something
    only together with its boot."""


@final
@attrs.frozen(kw_only=True)
class SessionRegistered(Event):
    type: ClassVar[str] = "session.registered"
    backend: str
    target: str
    restored: bool = False
    """True when the session came back from a snapshot after a restart."""


@final
@attrs.frozen(kw_only=True)
class SessionUnregistered(Event):
    """The session is no longer supervised and its snapshot is deleted."""

    type: ClassVar[str] = "session.unregistered"
    detail: str = ""
    """Why, when tether did it by itself (``removed from the config``)."""


@final
@attrs.frozen(kw_only=True)
class SessionConnected(Event):
    """The first connect of a session succeeded (reconnects send reconnect.succeeded)."""

    type: ClassVar[str] = "session.connected"
    duration: float


@final
@attrs.frozen(kw_only=True)
class SessionDisconnected(Event):
    type: ClassVar[str] = "session.disconnected"
    reason: DisconnectReason
    detail: str
    episode: int
    exit_code: int | None = None
    signal: int | None = None
    flapping: bool = False
    """The link dropped sooner than stable_after: the previous episode continues."""


@final
@attrs.frozen(kw_only=True)
class ReconnectScheduled(Event):
    type: ClassVar[str] = "reconnect.scheduled"
    episode: int
    attempt: int
    """The number the next attempt will have."""
    delay: float


@final
@attrs.frozen(kw_only=True)
class ReconnectStarted(Event):
    type: ClassVar[str] = "reconnect.started"
    episode: int
    attempt: int
    strategy: str
    forced: bool = False


@final
@attrs.frozen(kw_only=True)
class StrategyAttempted(Event):
    """A strategy ran inside an attempt (force-reconnect runs several)."""

    type: ClassVar[str] = "reconnect.strategy"
    episode: int
    attempt: int
    strategy: str


@final
@attrs.frozen(kw_only=True)
class ReconnectSucceeded(Event):
    type: ClassVar[str] = "reconnect.succeeded"
    episode: int
    attempt: int
    strategy: str
    used_strategy: str
    duration: float
    """Seconds the successful attempt took."""
    recovery_time: float
    """Seconds from the drop to the live link."""
    same_program: bool = False
    """True: re-attached to the program that kept running (its jobs and scrollback live on).
    False: a new program was started (in the preserved cwd and env; running jobs were lost)."""


@final
@attrs.frozen(kw_only=True)
class SessionSurvivor(Event):
    """A program from before tether restarted (or crashed) was found alive."""

    type: ClassVar[str] = "session.survivor"
    pid: int
    action: str
    """``adopted`` (the session continues it) or ``ended`` (its whole process group was ended
    before a new program started, so it never runs twice)."""
    detail: str = ""


@final
@attrs.frozen(kw_only=True)
class ReconnectFailed(Event):
    type: ClassVar[str] = "reconnect.failed"
    episode: int
    attempt: int
    strategy: str
    reason: DisconnectReason
    error: str


@final
@attrs.frozen(kw_only=True)
class RetriesExhausted(Event):
    type: ClassVar[str] = "reconnect.exhausted"
    episode: int
    attempts: int


@final
@attrs.frozen(kw_only=True)
class SessionFailed(Event):
    """The session is failed for a reason retrying cannot fix (auth, host key) or policy."""

    type: ClassVar[str] = "session.failed"
    reason: DisconnectReason
    detail: str


@final
@attrs.frozen(kw_only=True)
class HealthCheckFailed(Event):
    type: ClassVar[str] = "health.failed"
    error: str


@final
@attrs.frozen(kw_only=True)
class SessionOutput(Event):
    """Console output (decoded as UTF-8, undecodable bytes replaced)."""

    type: ClassVar[str] = "session.output"
    data: str
    replay: bool = False
    """True when state-recovery replays the history after a restart."""
    offset: int = -1
    """The log position of the first byte (`Supervisor.read` from here gives the exact bytes);
    -1 for a replay."""


@final
@attrs.frozen(kw_only=True)
class PluginFailed(Event):
    """A plugin failed to load; its sessions fail with a clear reason, the rest run."""

    type: ClassVar[str] = "plugin.failed"
    group: str
    name: str
    distribution: str
    error: str


@final
@attrs.frozen(kw_only=True)
class TargetDown(Event):
    """A target stopped answering: its sessions park on its readiness gate (one outage, not N failures)."""

    type: ClassVar[str] = "target.down"
    target: str
    waiting: int
    """Sessions parked on it when it was declared down (more join as their links notice)."""
    detail: str = ""


@final
@attrs.frozen(kw_only=True)
class TargetUp(Event):
    """The target answers again: its parked sessions are released through the admission ramp."""

    type: ClassVar[str] = "target.up"
    target: str
    waiting: int
    """Sessions released."""
    down_for: float
    """Seconds since it was declared down."""
    probes: int
    """Readiness probes it took."""


@final
@attrs.frozen(kw_only=True)
class SessionMoved(Event):
    """This process claimed a session another tether process held before (a cluster sharing PostgreSQL)."""

    type: ClassVar[str] = "session.moved"
    from_node: int
    """The process (node id) that held it: it died, stopped cleanly, or handed it back to balance."""
    to_node: int
    fence: int
    """The new fencing token: writes carrying an older one are refused."""


@final
@attrs.frozen(kw_only=True)
class PluginMisbehaved(Event):
    """A plugin held things up: it blocked the event loop, or did not return after its call was cancelled.

    Named by its distribution, so the one to fix is clear. Other sessions were not
    harmed: a call that does not return is abandoned and the session goes on.
    """

    type: ClassVar[str] = "plugin.misbehaved"
    group: str
    name: str
    distribution: str
    problem: str
    """``blocked-loop`` (ran without yielding for `seconds`) or ``stuck`` (a call still had not
    returned `seconds` after it was cancelled; tether abandoned it and went on without it)."""
    phase: str
    """What tether had asked of it: ``connect``, ``probe``, ``keepalive``, ``close`` (or ``unknown``)."""
    seconds: float
    detail: str = ""


@final
@attrs.frozen(kw_only=True)
class Lagged:
    """Not an event: a marker telling one subscriber it missed events.

    Events from `missed_from` on, `missed` of them, were dropped because this
    subscriber fell behind (or asked to resume from a sequence the ring no
    longer holds). Resubscribe with ``since=missed_from - 1`` to try to refill.
    """

    type: ClassVar[str] = "lagged"
    missed_from: int
    missed: int


EVENT_TYPES: tuple[type[Event], ...] = (
    SessionRegistered,
    SessionUnregistered,
    SessionConnected,
    SessionDisconnected,
    ReconnectScheduled,
    ReconnectStarted,
    StrategyAttempted,
    ReconnectSucceeded,
    ReconnectFailed,
    RetriesExhausted,
    SessionFailed,
    HealthCheckFailed,
    SessionOutput,
    SessionSurvivor,
    PluginFailed,
    SessionMoved,
    PluginMisbehaved,
    TargetDown,
    TargetUp,
)
"""Every concrete event class; documentation and the wire converter are checked against it."""
