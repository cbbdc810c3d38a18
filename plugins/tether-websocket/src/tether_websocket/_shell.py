"""What the backend types into a terminal's shell, and what it reads off the shell's output. Pure.

A new shell gets one line (`setup_lines`): `restore_line` (exports and
``cd``) and `tether.typed_integration` with no shell named, so the shell
itself installs bash's or zsh's integration and any other shell ignores it. A re-attached one
gets nothing retyped: the integration is still installed. It only needs to
show a prompt again, since `run` waits for a prompt mark on the current link,
and `prompt_state` says from the server's replay whether the shell is
sitting at tether's prompt (then ctrl-c gives a new one without running
anything) or busy.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Literal

from tether import OscScanner, ShellMark

PromptState = Literal["none", "idle", "busy"]


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


def prompt_state(output: bytes) -> PromptState:
    """Where the shell that printed `output` is, as tether's integration showed it.

    ``none``: no prompt mark of tether's integration in it. ``idle``: the last
    one is followed by no line break and no command mark, so the shell is
    reading a command line (maybe a half-typed one): the prompt's own text
    follows the mark on one line. ``busy``: a command was entered after it
    (or the prompt spans lines: treated the same, since nothing is typed then).
    """
    _, found = OscScanner().feed(output)
    prompts = [item for item in found if isinstance(item.event, ShellMark) and item.event.kind == "A"
               and item.event.shell]
    if not prompts:
        return "none"
    last = prompts[-1]
    after = [item for item in found if item.start >= last.stop and isinstance(item.event, ShellMark)]
    return "busy" if after or b"\n" in output[last.stop:] else "idle"
