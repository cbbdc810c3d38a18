"""What the backend types into a new terminal's shell. Pure.

A new shell gets one line (`setup_lines`): `restore_line` (exports and
``cd``) and `tether.typed_integration` with no shell named, so the shell
itself installs bash's or zsh's integration and any other shell ignores it.
A re-attached one gets nothing: the integration is still installed.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping


def restore_line(*, cwd: str | None, env: Mapping[str, str]) -> str | None:
    """One shell line that exports `env` and changes to `cwd`; None when there is nothing to do.

    It starts with a space so shells with HISTCONTROL=ignorespace keep it out
    of the user's history.
    """
    steps: list[str] = []
    if env:
        steps.append("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()))
    if cwd:
        steps.append(f"cd {shlex.quote(cwd)}")
    if not steps:
        return None
    return " " + "; ".join(steps) + "\r"


LINE_LIMIT = 4095
"""Bytes of one input line a terminal in canonical mode keeps (a shell without line editing, such
as dash, reads through it); a longer line is cut."""


def setup_lines(restore: str | None, integration: str | None) -> list[str]:
    """What to type into a new shell: one line if it fits, so the shell is not busy running the
    first while the second arrives (a terminal echoes such typeahead once more); else each alone."""
    lines = [line for line in (restore, integration) if line is not None]
    if len(lines) == 2 and len(joined := f"{lines[0][:-1]};{lines[1]}".encode()) < LINE_LIMIT:
        return [joined.decode()]
    return lines
