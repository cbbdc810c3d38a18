"""The shell side of cwd tracking: the line that installs the OSC 7 hook and restores state. Pure.

A shell (or our injected bash PROMPT_COMMAND) prints
``ESC ] 7 ; file://HOST/PATH BEL`` before each prompt; tether's own scanner
(``tether.OscScanner``) finds it in the output, split across chunks or not.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

PROMPT_COMMAND = "PROMPT_COMMAND='printf \"\\033]7;file://%s%s\\007\" \"${HOSTNAME:-}\" \"$PWD\"'"
"""Bash: report the cwd as OSC 7 before every prompt. It replaces any PROMPT_COMMAND, so
installing it twice (re-attaching to a named terminal) changes nothing."""


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
