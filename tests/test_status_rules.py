"""The status rules without a server: the summary's order and bound, keyset pages, the byte budget."""

from __future__ import annotations

import math

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether import (
    Attempt,
    Disconnect,
    DisconnectReason,
    Episode,
    EpisodeOutcome,
    SessionNotFoundError,
    SessionState,
    SessionStatus,
)
from tether.rules._events import ReconnectSucceeded
from tether.rules._stats import StatsRecorder
from tether.rules._status import URGENCY, StatusQuery, encoded_size, page, summarize, to_dict


def _state(sid: str, status: SessionStatus = SessionStatus.CONNECTED, history: int = 0) -> SessionState:
    attempt = Attempt(number=1, strategy="simple-reconnect", started_at=0.0, duration=0.1, success=False,
                      error="x" * 1000, reason=DisconnectReason.NETWORK)
    past = Episode(number=1, disconnect=Disconnect(DisconnectReason.NETWORK, "gone"), started_at=0.0,
                   outcome=EpisodeOutcome.RECOVERED, attempts_made=50, attempts=(attempt,) * 50)
    return SessionState(id=sid, backend="scripted", target="t", status=status, status_since=0.0, episode=None,
                        history=(past,) * history, preserved=None, last_disconnect=None, connected_at=None,
                        next_attempt_at=None, episodes_total=history, episodes_recovered=history, episodes_failed=0)


def _fleet(*states: SessionState) -> dict[str, SessionState]:
    return {s.id: s for s in states}


def test_every_status_has_a_place_in_the_summary() -> None:
    assert set(URGENCY) == set(SessionStatus)


def test_the_summary_lists_the_most_urgent_first_and_counts_them_all() -> None:
    states = _fleet(_state("b", SessionStatus.BACKING_OFF), _state("a", SessionStatus.CONNECTING),
                    _state("z", SessionStatus.FAILED), _state("c"), _state("y", SessionStatus.FAILED),
                    _state("w", SessionStatus.WAITING))
    summary = summarize({sid: s.status for sid, s in states.items()}, states.__getitem__,
                        StatsRecorder().snapshot(len(states)), last_seq=9, limit=4)
    assert [b.id for b in summary.not_connected] == ["y", "z", "w", "b"]
    assert summary.not_connected_total == 5
    assert summary.by_status == {"failed": 2, "waiting": 1, "backing-off": 1, "connecting": 1, "connected": 1}
    assert list(summary.by_status) == ["failed", "waiting", "backing-off", "connecting", "connected"]


def test_pages_are_keyset_pages_in_id_order() -> None:
    """A session added before the cursor between two pages shifts nothing; each id comes once."""
    states = _fleet(*(_state(f"s{i}") for i in range(10)))
    first = page(states, states.__getitem__, StatusQuery(detail=True, limit=4))
    assert [s.id for s in first.sessions] == ["s0", "s1", "s2", "s3"] and first.next_cursor == "s3"
    states["s00"] = _state("s00")  # sorts before the cursor: belongs to a page already read
    second = page(states, states.__getitem__, StatusQuery(detail=True, limit=4, cursor=first.next_cursor))
    assert [s.id for s in second.sessions] == ["s4", "s5", "s6", "s7"] and second.matched == 11
    last = page(states, states.__getitem__, StatusQuery(detail=True, limit=4, cursor=second.next_cursor))
    assert [s.id for s in last.sessions] == ["s8", "s9"] and last.next_cursor is None


def test_filters_by_status_and_id() -> None:
    states = _fleet(_state("a", SessionStatus.FAILED), _state("b"), _state("c", SessionStatus.FAILED))
    result = page(states, states.__getitem__, StatusQuery(detail=True, statuses=(SessionStatus.FAILED,)))
    assert [s.id for s in result.sessions] == ["a", "c"]
    result = page(states, states.__getitem__, StatusQuery(detail=True, session_ids=("c", "b")))
    assert [s.id for s in result.sessions] == ["b", "c"]
    with pytest.raises(SessionNotFoundError):
        page(states, states.__getitem__, StatusQuery(detail=True, session_ids=("nope",)))


def test_the_byte_budget_bounds_a_page_and_always_moves_on() -> None:
    """Sessions of ~50 KiB each and a 120 KiB budget: two per page; one alone over the budget comes
    without its history, named in history_omitted."""
    states = _fleet(*(_state(f"s{i}", history=1) for i in range(5)), _state("z", history=20))
    one = encoded_size(to_dict(states["s0"]))
    assert 40_000 < one < 60_000
    result = page(states, states.__getitem__, StatusQuery(detail=True), budget=120_000)
    assert [s.id for s in result.sessions] == ["s0", "s1"]
    result = page(states, states.__getitem__, StatusQuery(detail=True, cursor="s4"), budget=120_000)
    assert [s.id for s in result.sessions] == ["z"] and result.history_omitted == ("z",)
    assert result.sessions[0].history == () and result.next_cursor is None


def test_history_keeps_the_newest_episodes() -> None:
    numbered = attrs.evolve(_state("a"), history=tuple(
        attrs.evolve(_state("x", history=1).history[0], number=n) for n in range(1, 6)))
    states = {"a": numbered}
    result = page(states, states.__getitem__, StatusQuery(detail=True, history=2))
    assert [e.number for e in result.sessions[0].history] == [4, 5]
    result = page(states, states.__getitem__, StatusQuery(detail=True, history=0))
    assert result.sessions[0].history == ()


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=60), st.integers(1, 8))
def test_recovery_percentiles_are_over_the_recent_sample_window(times: list[float], window: int) -> None:
    """The percentiles come from a sorted copy kept as samples arrive and leave (no sort per
    snapshot): they are exactly those of the last `window` recovery times."""
    stats = StatsRecorder(sample_size=window)
    for recovery_time in times:
        stats.observe(ReconnectSucceeded, {"recovery_time": recovery_time, "used_strategy": "simple-reconnect"}, 0.0)
    recent = sorted(times[-window:])
    snap = stats.snapshot(1)
    if not recent:
        assert snap.p50_reconnection_time is None and snap.p99_reconnection_time is None
        return
    rank = lambda fraction: recent[min(len(recent) - 1, max(0, math.ceil(fraction * len(recent)) - 1))]  # noqa: E731
    assert (snap.p50_reconnection_time, snap.p99_reconnection_time) == (rank(0.50), rank(0.99))
