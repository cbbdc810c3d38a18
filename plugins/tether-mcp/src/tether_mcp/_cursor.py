"""Cursors and resume tokens: everything a caller must keep, in a string it can keep. Pure.

The MCP server keeps no state of its own, so an agent that reconnects to a
restarted server (or a server that talks to a restarted daemon) continues
with what it holds. A `Cursor` names a position in one session's output log
(`tether.LogRead`: positions only grow, across reconnects and restarts) and
the log it belongs to, plus what the session had been through when the
cursor was handed out: how many reconnect attempts it had made in its life
(`tether.SessionState.attempts_total`) and when that state was read. From
those two, `tether_mcp._continuity` tells what happened to the session
since: nothing, re-attached to the same program, or replaced.

A `RunToken` is a run that outlived its call: the session, the run's nonce
(tether's own token for it) and the cursor taken just before the command was
typed, so its outcome can still be found after a restart forgot the run (the
marks are in the log).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import final

import attrs

_LOG_ID = re.compile(r"[0-9a-f]{1,64}")
_NONCE = re.compile(r"[0-9a-f]{8,64}")
_NUMBER = re.compile(r"0|[1-9][0-9]{0,18}")
CURSOR_SHAPE = "LOG.POSITION.ATTEMPTS.TIME"


class TokenError(ValueError):
    """A cursor or token this server did not hand out (or one cut short in copying)."""


@final
@attrs.frozen
class Cursor:
    """A position in a session's output log, and what the session had been through by then."""

    log: str
    """The log's identity (`tether.LogRead.log_id`): a new log means a new session under the same id."""
    position: int
    attempts: int
    """The session's reconnect attempts over its life when the cursor was handed out."""
    seen_at_ms: int
    """Wall-clock milliseconds at which the session's state behind this cursor was read."""

    def encode(self) -> str:
        return f"{self.log}.{self.position}.{self.attempts}.{self.seen_at_ms}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        parts = text.split(".")
        if len(parts) != 4 or not _LOG_ID.fullmatch(parts[0]) or not all(_NUMBER.fullmatch(p) for p in parts[1:]):
            raise TokenError(f"{_shown(text)} is not a cursor this server handed out (they look like "
                             f"{CURSOR_SHAPE}: pass the `cursor` of an earlier result as it came)")
        return cls(parts[0], int(parts[1]), int(parts[2]), int(parts[3]))

    def at(self, position: int) -> Cursor:
        """The same knowledge of the session, at another position of the same log."""
        return attrs.evolve(self, position=position)


@final
@attrs.frozen
class RunToken:
    """A command still running when its call's time ran out: wait on it with `wait_command`."""

    session_id: str
    nonce: str
    """tether's token for the run (the nonce its completion marks carry)."""
    before: Cursor
    """Taken just before the command was typed: its marks come after this position."""

    def encode(self) -> str:
        sid = base64.urlsafe_b64encode(self.session_id.encode()).decode().rstrip("=")
        return f"run.{sid}.{self.nonce}.{self.before.encode()}"

    @classmethod
    def decode(cls, text: str) -> RunToken:
        parts = text.split(".", 3)
        problem = f"{_shown(text)} is not a run token this server handed out (pass the `token` of a " \
                  "run_command or wait_command result as it came)"
        if len(parts) != 4 or parts[0] != "run" or not _NONCE.fullmatch(parts[2]):
            raise TokenError(problem)
        try:
            padded = parts[1] + "=" * (-len(parts[1]) % 4)
            session_id = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
            before = Cursor.decode(parts[3])
        except (binascii.Error, UnicodeError, TokenError, ValueError):
            raise TokenError(problem) from None
        if not session_id:
            raise TokenError(problem)
        return cls(session_id, parts[2], before)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")
