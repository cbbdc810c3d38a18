"""`ProcessOptions`: the ``options`` table of a ``process`` session, validated at register time."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from tether import ConfigError

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

_KNOWN = (
    "argv", "command", "cwd", "env", "rows", "cols", "shell_integration", "persist",
    "history_lines", "rerun_last_command", "term", "pane_log_bytes",
)


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
        """Validate a spec's options; `ConfigError` names the bad key."""
        for key in options:
            if key not in _KNOWN:
                raise ConfigError(key, f"unknown option; known: {', '.join(sorted(_KNOWN))}")
        argv = _argv(options)
        kwargs: dict[str, Any] = {"argv": argv}
        if "cwd" in options:
            kwargs["cwd"] = _string(options, "cwd")
        if "env" in options:
            kwargs["env"] = _env(options["env"])
        for key in ("rows", "cols"):
            if key in options:
                kwargs[key] = _int(options, key, low=1, high=10_000)
        if "history_lines" in options:
            kwargs["history_lines"] = _int(options, "history_lines", low=0, high=10_000_000)
        if "pane_log_bytes" in options:
            kwargs["pane_log_bytes"] = _int(options, "pane_log_bytes", low=4096, high=1 << 30)
        for key in ("shell_integration", "rerun_last_command"):
            if key in options:
                if not isinstance(options[key], bool):
                    raise ConfigError(key, f"must be true or false, got {options[key]!r}")
                kwargs[key] = options[key]
        if "persist" in options:
            if options["persist"] not in ("none", "tmux"):
                raise ConfigError("persist", f'must be "none" or "tmux", got {options["persist"]!r}')
            kwargs["persist"] = options["persist"]
        if "term" in options:
            kwargs["term"] = _string(options, "term")
        return cls(**kwargs)


def _argv(options: Mapping[str, Any]) -> tuple[str, ...]:
    has_argv, has_command = "argv" in options, "command" in options
    if has_argv == has_command:
        raise ConfigError("argv", "give exactly one of argv (a list) or command (a shell command line)")
    if has_command:
        command = _string(options, "command")
        if not command.strip():
            raise ConfigError("command", "must not be empty")
        if _PLAIN_WORDS.fullmatch(command.strip()) and command.split()[0] not in _SH_ONLY:
            # nothing for a shell to do: run the words themselves, so a bash or zsh started this way
            # gets tether's integration (cwd, re-run, run) exactly like argv = [...]
            return tuple(command.split())
        return ("/bin/sh", "-c", command)
    argv = options["argv"]
    if isinstance(argv, str):
        raise ConfigError("argv", f"must be a list of strings (did you mean command = {shlex.quote(argv)}?)")
    if not isinstance(argv, (list, tuple)) or not argv or not all(isinstance(a, str) for a in argv):
        raise ConfigError("argv", "must be a non-empty list of strings")
    if not argv[0]:
        raise ConfigError("argv[0]", "must name a program")
    return tuple(argv)


def _string(options: Mapping[str, Any], key: str) -> str:
    value = options[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty string, got {value!r}")
    if "\0" in value:
        raise ConfigError(key, "must not contain NUL")
    return value


def _int(options: Mapping[str, Any], key: str, *, low: int, high: int) -> int:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(key, f"must be a whole number from {low} to {high}, got {value!r}")
    return value


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
