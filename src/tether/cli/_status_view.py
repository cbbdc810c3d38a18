"""How `tether status` shows a summary, pages of detail and the statistics (tables, or JSON)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..rules._reasons import Disconnect
from ..rules._state import SessionState
from ..rules._stats import SupervisorStats
from ..rules._status import SessionBrief, StatusPage, StatusSummary, to_dict


def _clock(at: float | None) -> str:
    return "-" if at is None else time.strftime("%H:%M:%S", time.localtime(at))


def _ago(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    seconds = max(0.0, now - at)
    span = f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"
    return f"{_clock(at)} ({span} ago)"


def _disconnect(last: Disconnect | None) -> str:
    return "" if last is None else last.describe()


def _why(brief: SessionBrief) -> str:
    parts = []
    if brief.last_error:
        parts.append(brief.last_error)
    elif brief.last_disconnect is not None:
        parts.append(_disconnect(brief.last_disconnect))
    if brief.next_attempt_at is not None:
        parts.append(f"next attempt {_clock(brief.next_attempt_at)}")
    return "; ".join(parts)


def _counts(summary: StatusSummary) -> str:
    counts = ", ".join(f"{n:,} {status}" for status, n in summary.by_status.items())
    noun = "session" if summary.total == 1 else "sessions"
    return f"{summary.total:,} {noun}" + (f": {counts}" if counts else "")


def print_summary(console: Console, summary: StatusSummary, *, as_json: bool) -> None:
    """The counts, the sessions that are not connected (the most urgent first), the statistics."""
    if as_json:
        print(json.dumps(to_dict(summary), indent=2))
        return
    console.print(escape(_counts(summary)))
    if summary.not_connected:
        shown = len(summary.not_connected)
        title = f"not connected ({shown:,} of {summary.not_connected_total:,})" \
            if shown < summary.not_connected_total else "not connected"
        table = Table(title=title, title_justify="left")
        for column in ("id", "status", "since", "attempts", "backend", "target", "why"):
            table.add_column(column)
        for brief in summary.not_connected:
            table.add_row(*(escape(cell) for cell in (
                brief.id, brief.status.value, _clock(brief.status_since), str(brief.attempts), brief.backend,
                brief.target, _why(brief))))
        console.print(table)
        if shown < summary.not_connected_total:
            console.print(f"... and {summary.not_connected_total - shown:,} more: "
                          "tether status --status STATUS (or --detail) lists them all")
    print_stats(console, summary.stats)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def stats_rows(stats: SupervisorStats, now: float | None = None) -> list[tuple[str, str]]:
    """The statistics in words: nothing claims a rate or a time it has no data for, and each row
    says what it counts over: the sessions' whole lives (kept across restarts) or this run."""
    now = time.time() if now is None else now
    ended = stats.successful_reconnections + stats.failed_reconnections
    rate = f" ({stats.success_rate:.0f}% recovered)" if ended and stats.success_rate is not None else ""
    rows = [
        ("sessions", f"{stats.registered_sessions:,}"),
        ("reconnecting now", f"{stats.active_reconnections:,}"),
        ("reconnections, all runs", f"{stats.successful_reconnections:,} recovered, "
         f"{stats.failed_reconnections:,} failed{rate}" if ended else "none yet"),
        ("attempts, all runs", f"{stats.total_attempts:,} ({stats.failed_attempts:,} failed)" if stats.total_attempts
         else "none yet"),
    ]
    if stats.average_reconnection_time is not None:
        rows.append(("time to recover, this run", f"mean {_secs(stats.average_reconnection_time)}, "
                     f"p50 {_secs(stats.p50_reconnection_time)}, p99 {_secs(stats.p99_reconnection_time)}"))
    earlier = stats.last_reconnection is None and stats.successful_reconnections  # counted before a restart
    rows.append(("last reconnection", "none in this run" if earlier else _ago(stats.last_reconnection, now)))
    by_reason = ", ".join(f"{reason} {n:,}" for reason, n in sorted(stats.disconnections_by_reason.items()))
    rows.append(("disconnections, this run", f"{stats.disconnections:,}" + (f": {by_reason}" if by_reason else "")))
    if stats.process_restarts:
        rows.append(("process restarts, this run", f"{stats.process_restarts:,}"))
    if stats.plugin_problems:
        problems = sorted(stats.plugin_problems.items())
        rows.append(("plugin problems, this run", ", ".join(f"{dist} {n:,}" for dist, n in problems)))
    return rows


def print_stats(console: Console, stats: SupervisorStats) -> None:
    table = Table(title="statistics", title_justify="left", show_header=False)
    table.add_column("name")
    table.add_column("value")
    for name, value in stats_rows(stats):
        table.add_row(name, escape(value))
    console.print(table)


def _row(state: SessionState) -> tuple[str, ...]:
    return (state.id, state.backend, state.target, state.status.value, _clock(state.status_since),
            f"{state.episodes_total:,}", f"{state.episodes_recovered:,}", f"{state.episodes_failed:,}",
            _disconnect(state.last_disconnect))


def print_page(console: Console, page: StatusPage, *, header: bool, with_cursor: bool) -> None:
    """One page of detail as table rows (the header only on the first page)."""
    table = Table(show_header=header, box=None, pad_edge=False)
    for column in ("id", "backend", "target", "status", "since", "episodes", "recovered", "failed",
                   "last disconnect"):
        table.add_column(column)
    for state in page.sessions:
        table.add_row(*(escape(cell) for cell in _row(state)))
    console.print(table)
    if with_cursor:
        more = f"next page: --cursor {page.next_cursor}" if page.next_cursor is not None else "last page"
        console.print(escape(f"{len(page.sessions):,} of {page.matched:,} sessions; {more}"))


class JsonPages:
    """Detail as one JSON document ``{"sessions": [...], "matched": N}``, written page by page
    (so ten thousand sessions never sit in memory at once)."""

    def __init__(self, *, with_cursor: bool) -> None:
        self._with_cursor = with_cursor
        self._opened = False
        self._written = 0
        self._omitted: list[str] = []

    def add(self, page: StatusPage) -> None:
        out = sys.stdout
        if not self._opened:
            out.write('{"sessions": [')
            self._opened = True
        for state in page.sessions:
            out.write(("," if self._written else "") + "\n  " + json.dumps(to_dict(state)))
            self._written += 1
        self._omitted += page.history_omitted
        out.flush()

    def finish(self, page: StatusPage) -> None:
        tail: dict[str, Any] = {"matched": page.matched}
        if self._with_cursor:
            tail["next_cursor"] = page.next_cursor
        if self._omitted:
            tail["history_omitted"] = self._omitted
        sys.stdout.write("\n], " + json.dumps(tail)[1:] + "\n")
        sys.stdout.flush()
