"""Values describing a session: status, preserved state, attempts and episodes.

All frozen: the supervisor hands these out as snapshots of the moment, so a
caller can keep one without seeing it change under them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import final

import attrs

from ._reasons import Disconnect, DisconnectReason


class SessionStatus(str, enum.Enum):
    """Where a session is in its lifecycle."""

    CONNECTING = "connecting"
    """First connect in progress."""
    CONNECTED = "connected"
    BACKING_OFF = "backing-off"
    """Waiting before the next reconnect attempt."""
    RECONNECTING = "reconnecting"
    """A reconnect attempt is running."""
    WAITING = "waiting"
    """Its target is unreachable: parked on the target's readiness gate (one probe per target),
    spending no retry budget, until the target answers again."""
    DISCONNECTED = "disconnected"
    """Down, and policy says not to reconnect by itself (auto_reconnect or enabled off)."""
    FAILED = "failed"
    """Retry budget spent, or a failure retrying cannot fix. `force_reconnect` revives it."""
    STOPPED = "stopped"
    """Unregistered or the supervisor closed."""

    @property
    def recovering(self) -> bool:
        """True while a retry loop is active (counted as an active reconnection)."""
        return self in (SessionStatus.BACKING_OFF, SessionStatus.RECONNECTING, SessionStatus.WAITING)


class EpisodeOutcome(str, enum.Enum):
    """How a disconnection episode ended."""

    ONGOING = "ongoing"
    RECOVERED = "recovered"
    FAILED = "failed"
    ABANDONED = "abandoned"
    """The session was unregistered or the supervisor closed mid-episode."""


@final
@attrs.frozen(kw_only=True)
class PreservedState:
    """What a restart restores: refreshed while connected (docs/reference-design.md, lesson 12)."""

    cwd: str | None = None
    env: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    """Variables set on top of the backend's base environment (never the whole environ)."""
    last_command: str | None = None
    handle: str | None = None
    """Backend-specific name of what can be re-attached (tmux session, terminal name)."""
    extra: Mapping[str, str] = attrs.field(factory=dict, hash=False)


@final
@attrs.frozen(kw_only=True)
class Attempt:
    """One reconnect attempt, whatever its outcome."""

    number: int
    """1-based within its episode (docs/reference-design.md, lesson 2: never across the session's lifetime)."""
    strategy: str
    started_at: float
    """Wall-clock time (epoch seconds)."""
    duration: float
    success: bool
    error: str | None = None
    reason: DisconnectReason | None = None
    """Typed reason of a failed attempt."""
    used_strategy: str | None = None
    """For force-reconnect: the strategy that actually worked."""
    same_program: bool = False
    """A successful attempt that re-attached to the program that kept running."""


@final
@attrs.frozen(kw_only=True)
class Episode:
    """One disconnection and everything done about it."""

    number: int
    disconnect: Disconnect
    started_at: float
    outcome: EpisodeOutcome = EpisodeOutcome.ONGOING
    attempts_made: int = 0
    attempts: tuple[Attempt, ...] = ()
    """The most recent attempts (bounded); `attempts_made` counts them all."""
    attempts_unreachable: int = 0
    """Attempts that found the target unreachable (its readiness probe confirmed it): they
    spend no retry budget."""
    ended_at: float | None = None
    recovery_time: float | None = None
    """Seconds from the drop to the recovered link, when recovered."""


@final
@attrs.frozen(kw_only=True)
class SessionState:
    """Everything known about one session at one moment."""

    id: str
    backend: str
    target: str
    status: SessionStatus
    status_since: float
    episode: Episode | None
    """The episode in progress, or the last one while the link is not yet stable."""
    history: tuple[Episode, ...]
    """Past episodes, newest last, bounded by the policy's history_limit."""
    preserved: PreservedState | None
    last_disconnect: Disconnect | None
    connected_at: float | None
    next_attempt_at: float | None
    """Wall-clock time of the next scheduled attempt while backing off."""
    episodes_total: int
    episodes_recovered: int
    episodes_failed: int
    attempts_total: int = 0
    """Reconnect attempts over the session's whole life, kept across restarts."""
    attempts_failed: int = 0
    failure: Disconnect | None = None
    """Why the session is failed (budget spent, auth, a missing secret, unreachable too long);
    None unless its status is failed."""
