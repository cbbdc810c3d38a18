"""One readable line per event, for `tether demo` and `tether watch` (pure: dict in, text out)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from rich.markup import escape

_STYLES = {
    "session.registered": "cyan",
    "session.connected": "green",
    "reconnect.succeeded": "bold green",
    "session.disconnected": "yellow",
    "health.failed": "yellow",
    "reconnect.scheduled": "magenta",
    "reconnect.started": "blue",
    "reconnect.strategy": "blue",
    "reconnect.failed": "red",
    "reconnect.exhausted": "bold red",
    "session.failed": "bold red",
    "plugin.failed": "bold red",
    "lagged": "bold yellow",
    "restarted": "bold yellow",
    "session.unregistered": "dim",
    "session.output": "dim",
}


_TERMINAL_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"            # CSI: cursor, colour, modes (?2004h bracketed paste, ?1049h alt screen)
    r"|\x9b[0-?]*[ -/]*[@-~]"              # the same, as one 8-bit byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window title, cwd (OSC 7), shell integration (OSC 133)
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"       # DCS, SOS, PM, APC (tmux passthrough)
    r"|\x1b[ -/]*[0-~]?"                    # two-byte escapes: charset (ESC ( B), keypad (ESC =), a lone ESC
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"        # other control characters (bell, backspace, carriage return, C1)
)
"""What a terminal would act on rather than show; a log line shows the text only."""


def printable(text: str) -> str:
    """`text` without terminal control sequences, so a log line never carries a fragment of one
    (``[?2004h``) or acts on the reader's terminal. Tabs and newlines stay."""
    return _TERMINAL_CONTROL.sub("", text)


def _seconds(value: Any) -> str:
    return f"{float(value):.2f}s" if isinstance(value, (int, float)) else "?"


def describe(event: Mapping[str, Any]) -> str:
    """What happened, in words (no time or session: the caller lays those out)."""
    kind = event.get("type")
    e = event.get
    if kind == "session.registered":
        return f"registered ({e('backend')} -> {e('target')}){' restored from snapshot' if e('restored') else ''}"
    if kind == "session.unregistered":
        return "unregistered"
    if kind == "session.connected":
        return f"connected in {_seconds(e('duration'))}"
    if kind == "session.disconnected":
        extra = f", exit code {e('exit_code')}" if e("exit_code") is not None else ""
        flap = " (flapping: same episode)" if e("flapping") else ""
        return f"disconnected: {e('reason')}{extra} - {e('detail')}{flap} [episode {e('episode')}]"
    if kind == "reconnect.scheduled":
        return f"attempt {e('attempt')} in {_seconds(e('delay'))}"
    if kind == "reconnect.started":
        return f"attempt {e('attempt')} with {e('strategy')}{' (forced)' if e('forced') else ''}"
    if kind == "reconnect.strategy":
        return f"  trying {e('strategy')}"
    if kind == "reconnect.succeeded":
        used = e("used_strategy")
        via = f" via {used}" if used and used != e("strategy") else ""
        return (f"recovered by {e('strategy')}{via} on attempt {e('attempt')}, "
                f"{_seconds(e('recovery_time'))} after the drop")
    if kind == "reconnect.failed":
        return f"attempt {e('attempt')} failed: {e('reason')} - {e('error')}"
    if kind == "reconnect.exhausted":
        return f"gave up after {e('attempts')} attempts"
    if kind == "session.failed":
        return f"FAILED: {e('reason')} - {e('detail')}"
    if kind == "health.failed":
        return f"health check failed: {e('error')}"
    if kind == "session.output":
        data = printable(str(e("data", ""))).strip("\n").replace("\n", " | ")
        return f"{'replay' if e('replay') else 'output'}: {data[:120]}"
    if kind == "plugin.failed":
        return f"plugin {e('name')} ({e('group')}) from {e('distribution')} failed to load: {e('error')}"
    if kind == "lagged":
        what = "resyncing from the ring" if e("resync") else "those events are gone"
        return f"this client fell behind: missed {e('missed')} events from #{e('missed_from')}; {what}"
    if kind == "restarted":
        return str(e("message", "")) or f"the daemon restarted (run {e('previous_boot')} -> {e('boot')})"
    return printable(str(dict(event)))


def render(event: Mapping[str, Any], *, markup: bool = True) -> str:
    """``HH:MM:SS  #seq  session  type  what happened``; rich markup unless `markup` is False."""
    at = event.get("at")
    clock = time.strftime("%H:%M:%S", time.localtime(at)) if isinstance(at, (int, float)) else "--:--:--"
    seq = event.get("seq")
    kind = str(event.get("type", "?"))
    session = printable(str(event.get("session_id", ""))) or "-"
    line = f"{clock} {('#' + str(seq)) if seq is not None else '':>6}  {session:<16} {printable(kind):<21} " \
        f"{printable(describe(event))}"
    if not markup:
        return line
    style = _STYLES.get(kind, "")
    return f"[{style}]{escape(line)}[/]" if style else escape(line)
