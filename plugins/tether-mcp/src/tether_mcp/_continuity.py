"""What happened to a session since a caller's cursor: nothing, re-attached, or replaced. Pure.

An agent that comes back to a shell needs to know one thing before it trusts
what it left there: is it the same program? A link that dropped and was
re-attached (tmux kept the shell; a named Jupyter terminal) kept its jobs,
variables and the command it was running. A program that was started again
(process-restart after the shell died, a restore after tether restarted
without tmux) kept only what tether restores (cwd, env) and lost the rest.

tether records this per reconnect attempt (`tether.Attempt.same_program`),
inside the episodes a session keeps (`tether.SessionState.episode` and
`history`), and counts every attempt of the session's life
(`attempts_total`, kept across restarts). A cursor remembers that count and
when it was taken (`tether_mcp._cursor.Cursor`), so the attempts made since
are those numbered above it, or that ended after it was taken. The second
test covers a daemon killed before it wrote its last count down: its
attempts after the restart reuse numbers the cursor already counted, but
they end later than the cursor was taken.

When the history kept no longer reaches back to the cursor (more episodes
since than `history_limit` keeps) and nothing shows a replacement, the
answer is `unknown`, never a guess.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import final

import attrs

from tether import Attempt, Episode, SessionState, SessionStatus

from ._cursor import Cursor


class Link(str, enum.Enum):
    """The session's program since the cursor."""

    UNBROKEN = "unbroken"
    """No reconnect since the cursor, and connected now."""
    REATTACHED = "reattached"
    """The link dropped and came back to the same program: its jobs and state are intact."""
    REPLACED = "replaced"
    """A new program runs: what ran in the old one (jobs, variables, a running command) is gone."""
    DOWN = "down"
    """Not connected now; tether is reconnecting (or waiting, or gave up: see `status`)."""
    UNKNOWN = "unknown"
    """More happened since the cursor than the session's history keeps."""


@final
@attrs.frozen(kw_only=True)
class Continuity:
    """What the session went through since a cursor, for a result."""

    link: Link
    reconnects: int = 0
    """Links opened again since the cursor (re-attached or replaced)."""
    failed_attempts: int = 0
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"link": self.link.value, "reconnects": self.reconnects, "failed_attempts": self.failed_attempts,
                "detail": self.detail}


@attrs.frozen
class _Indexed:
    number: int
    """1-based among the session's reconnect attempts over its life."""
    attempt: Attempt
    episode: Episode


def indexed_attempts(state: SessionState) -> tuple[list[_Indexed], list[tuple[int, int]]]:
    """Every kept attempt with its life-long number (newest first), and the number ranges
    ``(low, high]`` that tether made but no longer keeps."""
    episodes: list[Episode] = ([state.episode] if state.episode is not None else []) + list(reversed(state.history))
    top = state.attempts_total
    kept: list[_Indexed] = []
    hidden: list[tuple[int, int]] = []
    for episode in episodes:
        for offset, attempt in enumerate(reversed(episode.attempts)):
            kept.append(_Indexed(top - offset, attempt, episode))
        if episode.attempts_made > len(episode.attempts):
            hidden.append((top - episode.attempts_made, top - len(episode.attempts)))
        top -= episode.attempts_made
    if top > 0:
        hidden.append((0, top))
    return kept, hidden


def _ended_ms(attempt: Attempt) -> float:
    return (attempt.started_at + attempt.duration) * 1000.0


def since(state: SessionState, cursor: Cursor, log_id: str) -> Continuity:
    """What happened to the session between `cursor` and `state` (its log is `log_id` now)."""
    if cursor.log != log_id:
        return Continuity(
            link=Link.REPLACED,
            detail="the session's output log is not the one this cursor came from: the session was closed and "
                   "opened again under the same id (or its log was lost), so a new program runs; read on from "
                   "the `cursor` of this result",
        )
    kept, hidden = indexed_attempts(state)
    new = [i for i in kept if i.number > cursor.attempts or _ended_ms(i.attempt) > cursor.seen_at_ms]
    unseen = any(high > cursor.attempts for _, high in hidden)
    successes = [i for i in new if i.attempt.success]
    failed = len(new) - len(successes)
    replaced = [i for i in successes if not i.attempt.same_program]
    connected = state.status is SessionStatus.CONNECTED
    count = len(successes)
    if replaced:
        return Continuity(link=Link.REPLACED, reconnects=count, failed_attempts=failed,
                          detail=_replaced_detail(replaced[0], state, connected))
    if not connected:
        return Continuity(link=Link.DOWN, reconnects=count, failed_attempts=failed, detail=_down_detail(state))
    if unseen:
        return Continuity(
            link=Link.UNKNOWN, reconnects=count, failed_attempts=failed,
            detail="more reconnects happened since this cursor than the session's history keeps "
                   "(policy.history_limit): tether cannot say whether its program is the same one",
        )
    if successes:
        return Continuity(
            link=Link.REATTACHED, reconnects=count, failed_attempts=failed,
            detail=f"the link dropped and came back {_times(count)} since this cursor, each time to the same "
                   "program (re-attached): its jobs, variables and running commands are intact"
                   + _why(successes[-1].episode),
        )
    return Continuity(link=Link.UNBROKEN, failed_attempts=failed, detail="no drop since this cursor")


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _why(episode: Episode) -> str:
    drop = episode.disconnect
    how = drop.reason.value
    if drop.exit_code is not None:
        how += f", exit status {drop.exit_code}"
    if drop.signal is not None:
        how += f", signal {drop.signal}"
    return f" (last drop: {how}" + (f": {drop.detail}" if drop.detail else "") + ")"


def _replaced_detail(first: _Indexed, state: SessionState, connected: bool) -> str:
    attempt = first.attempt
    strategy = attempt.used_strategy or attempt.strategy
    cwd = state.preserved.cwd if state.preserved is not None else None
    text = (f"the session's program was replaced at {_clock(attempt.started_at + attempt.duration)} "
            f"({strategy}){_why(first.episode)}: jobs, shell variables and any command that was running are "
            "gone")
    if cwd:
        text += f"; the new program started in {cwd}"
    if not connected:
        text += f"; it is {state.status.value} now"
    return text


def _down_detail(state: SessionState) -> str:
    text = f"the session is {state.status.value} since {_clock(state.status_since)}"
    if state.last_disconnect is not None:
        text += f" (last drop: {state.last_disconnect.reason.value}"
        text += f": {state.last_disconnect.detail})" if state.last_disconnect.detail else ")"
    if state.failure is not None:
        text += f"; it failed: {state.failure.detail or state.failure.reason.value} (reconnect revives it)"
    return text


def recent(state: SessionState, limit: int = 3) -> Sequence[dict[str, object]]:
    """The newest reconnects, for list_sessions: when, how, same program or not."""
    out: list[dict[str, object]] = []
    for item in _successes(state):
        attempt = item.attempt
        out.append({
            "at": _clock(attempt.started_at + attempt.duration),
            "drop": item.episode.disconnect.reason.value,
            "strategy": attempt.used_strategy or attempt.strategy,
            "same_program": attempt.same_program,
        })
        if len(out) >= limit:
            break
    return out


def _successes(state: SessionState) -> Iterator[_Indexed]:
    kept, _ = indexed_attempts(state)
    return (i for i in kept if i.attempt.success)
