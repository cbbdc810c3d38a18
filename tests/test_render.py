"""What `tether watch`, the demo and `tether status` print: terminal control never leaks into a line,
and statistics claim nothing they have no data for. Pure: dicts and values in, text out."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tether import SupervisorStats
from tether.cli._render import describe, printable, render
from tether.cli._status_view import stats_rows

SHELL_NOISE = (
    "\x1b[?2004h"                      # bash: bracketed paste on
    "\x1b]0;user@host: ~\x07"          # window title
    "\x1b]7;file://host/tmp\x1b\\"     # OSC 7: the cwd
    "\x1b[?1049h\x1b[22;0;0t"          # tmux: alternate screen
    "\x1b(B\x1b[m\x1b[1;32muser@host\x1b[0m:~$ ls\r\n"
    "file\x07\x08\r\n\x1bP1000p%session-changed $1 main\x1b\\"
    "\x9b31mc1\x1b"                    # an 8-bit CSI and a lone ESC cut off at the end of a read
)


def test_shell_and_tmux_sequences_leave_only_the_text() -> None:
    assert printable(SHELL_NOISE) == "user@host:~$ ls\nfile\nc1"
    assert describe({"type": "session.output", "data": SHELL_NOISE}) == "output: user@host:~$ ls | file | c1"


@given(st.text())
def test_no_control_character_survives(text: str) -> None:
    """Whatever a program prints, a rendered line holds no ESC, no C0 or C1 control but tab and newline."""
    cleaned = printable(text)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", cleaned)
    line = render({"type": "session.output", "seq": 1, "at": 0, "session_id": "s", "data": text}, markup=False)
    assert "\x1b" not in line and "\n" not in line


def test_user_text_in_any_event_is_rendered_safely() -> None:
    """An error text from a program or a peer is shown, its control sequences are not."""
    line = render({"type": "reconnect.failed", "seq": 3, "at": 0, "session_id": "web", "attempt": 2,
                   "reason": "network", "error": "peer said \x1b[31mno\x1b[0m"}, markup=False)
    assert line.endswith("attempt 2 failed: network - peer said no")


def _stats(**fields: object) -> SupervisorStats:
    base: dict[str, object] = dict(
        registered_sessions=3, active_reconnections=0, total_attempts=0, failed_attempts=0,
        successful_reconnections=0, failed_reconnections=0, success_rate=None, average_reconnection_time=None,
        p50_reconnection_time=None, p99_reconnection_time=None, last_reconnection=None, disconnections=0,
        network_disconnections=0, process_restarts=0, disconnections_by_reason={}, sessions_by_status={},
    )
    names = {a.name for a in SupervisorStats.__attrs_attrs__}  # type: ignore[attr-defined]
    return SupervisorStats(**{k: v for k, v in {**base, **fields}.items() if k in names})  # type: ignore[arg-type]


def test_statistics_with_nothing_yet_say_so() -> None:
    """0 attempts: no success rate of 100, no last reconnection of None."""
    rows = dict(stats_rows(_stats()))
    assert rows["reconnections, all runs"] == "none yet"
    assert rows["attempts, all runs"] == "none yet"
    assert rows["last reconnection"] == "never"
    assert not any("100" in value or "None" in value for value in rows.values())


def test_counts_from_before_a_restart_claim_no_time_of_this_run() -> None:
    """Episodes counted over whole lives, none recovered in this run: no mean of None."""
    rows = dict(stats_rows(_stats(successful_reconnections=2, success_rate=100.0, total_attempts=2)))
    assert rows["reconnections, all runs"] == "2 recovered, 0 failed (100% recovered)"
    assert "time to recover, this run" not in rows and rows["last reconnection"] == "none in this run"


def test_plugin_problems_are_named_by_distribution() -> None:
    rows = dict(stats_rows(_stats(plugin_problems={"tether-hangs": 3})))
    assert rows["plugin problems, this run"] == "tether-hangs 3"


def test_statistics_with_data_give_rate_times_and_reasons() -> None:
    rows = dict(stats_rows(_stats(
        total_attempts=12, failed_attempts=4, successful_reconnections=3, failed_reconnections=1, success_rate=75.0,
        average_reconnection_time=0.5, p50_reconnection_time=0.4, p99_reconnection_time=1.2,
        last_reconnection=1_000.0, disconnections=4, disconnections_by_reason={"network": 3, "process-exit": 1},
    ), now=1_030.0))
    assert rows["reconnections, all runs"] == "3 recovered, 1 failed (75% recovered)"
    assert rows["attempts, all runs"] == "12 (4 failed)"
    assert rows["time to recover, this run"] == "mean 0.50s, p50 0.40s, p99 1.20s"
    assert rows["last reconnection"].endswith("(30s ago)")
    assert rows["disconnections, this run"] == "4: network 3, process-exit 1"
