"""`ProcessOptions`: the ``options`` table of a ``process`` session, validated at register time.

The table is structured by tether's strict converter (`tether.structure_options`):
every bad option is named at once, an unknown one with the option it most
likely meant. Each field's converter or validator below says what it takes.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from tether import ConfigError, structure_options

from ._panelog import DEFAULT_PANE_LOG_BYTES

Persist = Literal["none", "tmux"]

_PLAIN_WORDS = re.compile(r"[A-Za-z0-9_./:,+@%-]+(?:[ \t]+[A-Za-z0-9_./:,+@%=-]+)*")
"""A command line /bin/sh would only split into words: no quotes, expansions, operators or
leading assignments."""

_SH_ONLY = frozenset({
    ".", ":", "alias", "bg", "break", "cd", "command", "continue", "eval", "exec", "exit", "export", "fg",
    "getopts", "hash", "jobs", "read", "readonly", "return", "set", "shift", "source", "times", "trap",
    "type", "ulimit", "umask", "unalias", "unset", "wait",
})
"""Words that are /bin/sh built-ins, not programs: a line starting with one stays a shell line."""


def _argv(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ConfigError("argv", f"must be a list of strings (did you mean command = {shlex.quote(value)}?)")
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(a, str) for a in value):
        raise ConfigError("argv", "must be a non-empty list of strings")
    if not value[0]:
        raise ConfigError("argv[0]", "must name a program")
    return tuple(value)


def _text(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    """A non-empty string without NUL (a program could not take it), when given."""
    if value is None:
        return
    if not value:
        raise ConfigError(attribute.name, f"must be a non-empty string, got {value!r}")
    if "\0" in value:
        raise ConfigError(attribute.name, "must not contain NUL")


def _command(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    _text(instance, attribute, value)
    if value is not None and not value.strip():
        raise ConfigError("command", "must not be empty")


def _between(low: int, high: int) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
        if not low <= value <= high:
            raise ConfigError(attribute.name, f"must be a whole number from {low} to {high}, got {value!r}")

    return check


def _persist(value: object) -> Persist:
    if value not in ("none", "tmux"):
        raise ConfigError("persist", f'must be "none" or "tmux", got {value!r}')
    return "tmux" if value == "tmux" else "none"


def _env(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError("env", "must be a table of NAME = value")
    env: dict[str, str] = {}
    for name, val in value.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ConfigError(f"env.{name}", "is not a valid variable name")
        if not isinstance(val, str) or "\0" in val:
            raise ConfigError(f"env.{name}", "must be a string without NUL")  # the value is never echoed
        env[name] = val
    return env


@attrs.frozen(kw_only=True)
class _Table:
    """The options as written: exactly one of ``argv`` and ``command``."""

    argv: tuple[str, ...] | None = attrs.field(default=None, converter=_argv)
    command: str | None = attrs.field(default=None, validator=_command)
    cwd: str | None = attrs.field(default=None, validator=_text)
    env: Mapping[str, str] = attrs.field(factory=dict, converter=_env, hash=False)
    rows: int = attrs.field(default=24, validator=_between(1, 10_000))
    cols: int = attrs.field(default=80, validator=_between(1, 10_000))
    shell_integration: bool = True
    persist: Persist = attrs.field(default="none", converter=_persist)
    history_lines: int = attrs.field(default=2000, validator=_between(0, 10_000_000))
    pane_log_bytes: int = attrs.field(default=DEFAULT_PANE_LOG_BYTES, validator=_between(4096, 1 << 30))
    rerun_last_command: bool = False
    term: str = attrs.field(default="xterm-256color", validator=_text)

    def __attrs_post_init__(self) -> None:
        if (self.argv is None) == (self.command is None):
            raise ConfigError("argv", "give exactly one of argv (a list) or command (a shell command line)")


@attrs.frozen(kw_only=True)
class ProcessOptions:
    """What to run and how. Exactly one of ``argv`` or ``command`` is required."""

    argv: tuple[str, ...]
    """The program and its arguments. A ``command`` line of plain words (``bash -l``) runs
    directly, as its words; any other becomes ``/bin/sh -c COMMAND`` (see `under_sh`)."""
    cwd: str | None = None
    """Start directory (the daemon's own when absent)."""
    env: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    """Set on top of the daemon's environment."""
    rows: int = 24
    cols: int = 80
    shell_integration: bool = True
    """For bash and zsh: report cwd (OSC 7) and finished commands, so a restart
    lands where the user was. Other programs are left alone."""
    persist: Persist = "none"
    """``tmux``: run the program inside tmux on a private socket, so it survives
    a dropped link and a tether restart, and session-restore re-attaches to it."""
    history_lines: int = 2000
    """Scrollback tmux keeps for the program (persist = tmux)."""
    pane_log_bytes: int = DEFAULT_PANE_LOG_BYTES
    """persist = tmux: the program's own output kept beside it, so a re-attach delivers exactly
    the bytes tether missed. Bounded: at most this much on disk (the runtime dir, usually tmpfs)."""
    rerun_last_command: bool = False
    """On a process-restart, type the last finished command again."""
    term: str = "xterm-256color"
    """TERM for the program (or for the tmux client)."""

    @property
    def under_sh(self) -> bool:
        """True when the program is ``/bin/sh -c COMMAND``: whatever shell COMMAND starts, tether's
        integration cannot reach it (no cwd from OSC 7, no re-run, no `run`; cwd from /proc only)."""
        return self.argv[:2] == ("/bin/sh", "-c")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ProcessOptions:
        """Validate a spec's options: a `ConfigError` naming the bad key, or an
        `InvalidConfigError` naming each of several."""
        table = structure_options(_Table, options)
        argv = table.argv if table.argv is not None else _command_argv(table.command or "")
        fields = attrs.asdict(table, recurse=False)
        del fields["command"]
        return cls(**{**fields, "argv": argv})


def _command_argv(command: str) -> tuple[str, ...]:
    if _PLAIN_WORDS.fullmatch(command.strip()) and command.split()[0] not in _SH_ONLY:
        # nothing for a shell to do: run the words themselves, so a bash or zsh started this way
        # gets tether's integration (cwd, re-run, run) exactly like argv = [...]
        return tuple(command.split())
    return ("/bin/sh", "-c", command)
