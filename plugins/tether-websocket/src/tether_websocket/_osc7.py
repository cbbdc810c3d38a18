"""Follow a shell's working directory from its OSC 7 reports. Pure and incremental.

A shell (or our injected bash PROMPT_COMMAND) prints
``ESC ] 7 ; file://HOST/PATH BEL`` (or ``ESC \\`` as terminator) before each
prompt. Chunks can split a sequence anywhere, so an unterminated tail is kept
(bounded) until the next chunk completes it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

_OSC7 = re.compile(rb"\x1b\]7;([^\x07\x1b]*)(?:\x07|\x1b\\)")
_START = b"\x1b]7;"
_MAX_TAIL = 4096

PROMPT_COMMAND = "PROMPT_COMMAND='printf \"\\033]7;file://%s%s\\007\" \"${HOSTNAME:-}\" \"$PWD\"'"
"""Bash: report the cwd as OSC 7 before every prompt. It replaces any PROMPT_COMMAND, so
installing it twice (re-attaching to a named terminal) changes nothing."""


class CwdTracker:
    """Feed it output chunks; it returns the newest cwd reported in them, if any."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> str | None:
        data = self._tail + chunk
        cwd: str | None = None
        end = 0
        for match in _OSC7.finditer(data):
            path = _path_of(match.group(1))
            if path is not None:
                cwd = path
            end = match.end()
        start = data.find(_START, end)
        if start < 0:  # keep a possible partial ESC ] 7 ; at the very end
            partial = next((n for n in range(len(_START) - 1, 0, -1) if data.endswith(_START[:n])), 0)
            self._tail = data[len(data) - partial:] if partial else b""
        else:
            self._tail = data[start:] if len(data) - start <= _MAX_TAIL else b""
        return cwd


def _path_of(raw: bytes) -> str | None:
    text = raw.decode("utf-8", errors="replace")
    parts = urlsplit(text)
    if parts.scheme != "file" or not parts.path.startswith("/"):
        return None
    return unquote(parts.path)


def restore_line(*, cwd: str | None, env: Mapping[str, str], track_cwd: bool) -> str | None:
    """One shell line that exports `env`, changes to `cwd` and installs the OSC 7 hook.

    It starts with a space so shells with HISTCONTROL=ignorespace keep it out
    of the user's history. None when there is nothing to do.
    """
    steps: list[str] = []
    if env:
        steps.append("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()))
    if cwd:
        steps.append(f"cd {shlex.quote(cwd)}")
    if track_cwd:
        steps.append(PROMPT_COMMAND)
    if not steps:
        return None
    return " " + "; ".join(steps) + "\r"
