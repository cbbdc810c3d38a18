"""What happened since a cursor, from the attempts a session's state keeps (pure: no server, no clock)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tether import (
    Attempt,
    Disconnect,
    DisconnectReason,
    Episode,
    EpisodeOutcome,
    PreservedState,
    SessionState,
    SessionStatus,
)
from tether_mcp._continuity import Link, indexed_attempts, since
from tether_mcp._cursor import Cursor, RunToken, TokenError

LOG = "ab12"
T0 = 1_700_000_000.0


def attempt(at: float, *, success: bool = True, same: bool = False, strategy: str = "process-restart") -> Attempt:
    return Attempt(number=1, strategy=strategy, started_at=at, duration=0.5, success=success, same_program=same)


def episode(number: int, *attempts: Attempt, reason: DisconnectReason = DisconnectReason.PROCESS_EXIT,
            made: int | None = None) -> Episode:
    return Episode(number=number, disconnect=Disconnect(reason, "", exit_code=None, signal=9),
                   started_at=attempts[0].started_at if attempts else T0, outcome=EpisodeOutcome.RECOVERED,
                   attempts_made=len(attempts) if made is None else made, attempts=tuple(attempts))


def state(episodes: Sequence[Episode], *, status: SessionStatus = SessionStatus.CONNECTED,
          total: int | None = None) -> SessionState:
    *past, current = episodes if episodes else [None]
    return SessionState(
        id="sh", backend="process", target="localhost", status=status, status_since=T0, episode=current,
        history=tuple(e for e in past if e is not None), preserved=PreservedState(cwd="/srv"),
        last_disconnect=None, connected_at=T0, next_attempt_at=None, episodes_total=len(episodes),
        episodes_recovered=len(episodes), episodes_failed=0,
        attempts_total=sum(e.attempts_made for e in episodes) if total is None else total,
    )


def cursor(attempts: int, at: float) -> Cursor:
    return Cursor(LOG, 100, attempts, int(at * 1000))


def test_no_drop_is_unbroken() -> None:
    quiet = state([episode(1, attempt(T0))])
    assert since(quiet, cursor(1, T0 + 10), LOG).link is Link.UNBROKEN


def test_a_reattach_keeps_the_program() -> None:
    later = state([episode(1, attempt(T0)), episode(2, attempt(T0 + 20, same=True, strategy="session-restore"))])
    report = since(later, cursor(1, T0 + 10), LOG)
    assert (report.link, report.reconnects) == (Link.REATTACHED, 1)
    assert "same program" in report.detail


def test_any_new_program_since_the_cursor_is_replaced() -> None:
    later = state([episode(1, attempt(T0)), episode(2, attempt(T0 + 20, same=False)),
                   episode(3, attempt(T0 + 30, same=True))])
    report = since(later, cursor(1, T0 + 10), LOG)
    assert (report.link, report.reconnects) == (Link.REPLACED, 2)
    assert "process-exit" in report.detail and "signal 9" in report.detail and "/srv" in report.detail


def test_failed_attempts_and_a_link_down_now() -> None:
    down = state([episode(1, attempt(T0 + 20, success=False), attempt(T0 + 21, success=False))],
                 status=SessionStatus.BACKING_OFF)
    report = since(down, cursor(0, T0 + 10), LOG)
    assert (report.link, report.failed_attempts) == (Link.DOWN, 2)


def test_a_daemon_killed_before_it_wrote_its_count_down() -> None:
    """The cursor counted 3 attempts the restored state never wrote; the restart's attempt reuses number 3,
    but it ended after the cursor was taken: it is seen."""
    restored = state([episode(1, attempt(T0)), episode(2, attempt(T0 + 1)),
                      episode(3, attempt(T0 + 50, same=False, strategy="session-restore"))], total=3)
    assert since(restored, cursor(3, T0 + 10), LOG).link is Link.REPLACED


def test_history_that_no_longer_reaches_the_cursor_is_unknown() -> None:
    """History kept only the newest episode, a re-attach; the ones before it are gone."""
    trimmed = state([episode(9, attempt(T0 + 90, same=True))], total=9)
    assert since(trimmed, cursor(2, T0 + 10), LOG).link is Link.UNKNOWN
    assert since(trimmed, cursor(8, T0 + 80), LOG).link is Link.REATTACHED


def test_attempts_past_the_kept_ones_count_as_unseen() -> None:
    many = state([episode(1, attempt(T0 + 100, same=True), made=60)])
    kept, hidden = indexed_attempts(many)
    assert [i.number for i in kept] == [60] and hidden == [(0, 59)]
    assert since(many, cursor(50, T0 + 10), LOG).link is Link.UNKNOWN


def test_another_log_is_another_session() -> None:
    report = since(state([]), cursor(0, T0), "cd34")
    assert report.link is Link.REPLACED and "closed and opened again" in report.detail


def test_cursors_and_tokens_round_trip_and_refuse_what_they_are_not() -> None:
    c = Cursor("0123abcd", 42, 7, 1_700_000_000_123)
    assert Cursor.decode(c.encode()) == c
    token = RunToken("web/1:a@b", "00ff00ff00ff00ff", c)
    assert RunToken.decode(token.encode()) == token
    for bad in ("", "1.2.3", "xyz.1.2.3", "0123.-1.2.3", "0123.01.2.3", "0123.1.2.3.4"):
        with pytest.raises(TokenError, match="not a cursor this server handed out"):
            Cursor.decode(bad)
    for bad in ("run", "run.x.y.z", token.encode()[:-3] + "..", "jump" + token.encode()[4:]):
        with pytest.raises(TokenError, match="not a run token"):
            RunToken.decode(bad)
