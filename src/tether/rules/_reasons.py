"""Typed reasons a link ends, so recovery is chosen by type, never by substring (docs/reference-design.md, lesson 9)."""

from __future__ import annotations

import enum
from typing import final

import attrs


class DisconnectReason(str, enum.Enum):
    """Why a link closed or could not be opened."""

    NETWORK = "network"
    """Refused, reset, unreachable, timed out at the transport."""
    PROCESS_EXIT = "process-exit"
    """The program behind the link exited (code or signal)."""
    SPAWN_FAILED = "spawn-failed"
    """The program could not be started (no such file, not executable, bad cwd)."""
    TIMEOUT = "timeout"
    """A connect or probe ran past ``connect_timeout``."""
    AUTH = "auth"
    """Credentials refused. Never retried."""
    HOST_KEY = "host-key"
    """Host key unknown or changed. Never retried: it may be an attack."""
    REMOTE_CLOSED = "remote-closed"
    """The peer closed the link in an orderly way."""
    HEALTH_CHECK = "health-check"
    """A health probe failed or timed out while the link looked open."""
    BACKEND_ERROR = "backend-error"
    """A backend or strategy raised something it did not classify."""
    FORCED = "forced"
    """A user asked for a reconnect."""
    SUPERVISOR_RESTART = "supervisor-restart"
    """The session was restored from a snapshot after tether itself restarted."""
    SECRET_MISSING = "secret-missing"
    """A secret the program needs is not available (a literal not kept across a restart, an
    environment variable or file a reference names is missing). Never retried: a person must act."""

    @property
    def retryable(self) -> bool:
        """Auth and host-key failures go straight to failed: retrying is pointless or dangerous."""
        return self not in _NEVER_RETRY


_NEVER_RETRY = frozenset({DisconnectReason.AUTH, DisconnectReason.HOST_KEY, DisconnectReason.SECRET_MISSING})


@final
@attrs.frozen
class Disconnect:
    """What ended a link: a typed reason plus detail for humans."""

    reason: DisconnectReason
    detail: str = ""
    exit_code: int | None = None
    signal: int | None = None

    def describe(self) -> str:
        """One line for logs and events."""
        parts = [self.reason.value]
        if self.exit_code is not None:
            parts.append(f"exit code {self.exit_code}")
        if self.signal is not None:
            parts.append(f"signal {self.signal}")
        if self.detail:
            parts.append(self.detail)
        return ": ".join(parts[:1]) + (" (" + "; ".join(parts[1:]) + ")" if len(parts) > 1 else "")
