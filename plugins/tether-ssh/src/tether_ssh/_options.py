"""The ``ssh`` backend's options, checked at register time so a typo fails early.

Options tether manages itself (BatchMode, host key checking, timeouts,
keepalives, multiplexing, the escape character) are refused in
``extra_options``: they carry policy, and a stray ``StrictHostKeyChecking=no``
must never slip in unnoticed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from tether import ConfigError, structure_options

from ._panelog import DEFAULT_PANE_LOG_BYTES

Persist = Literal["none", "tmux"]

_MANAGED = {
    "batchmode": "BatchMode is always yes (no prompts a daemon could not answer)",
    "stricthostkeychecking": "use accept_new_host_keys = true; checking is never turned off",
    "connecttimeout": "set policy.connect_timeout",
    "serveraliveinterval": "set policy.keepalive_interval",
    "serveralivecountmax": "use the server_alive_count_max option",
    "controlmaster": "tether manages connection sharing: use the share_connection option",
    "controlpath": "tether manages connection sharing in a private directory of its own",
    "controlpersist": "tether manages connection sharing: use the share_connection option",
    "escapechar": "input is passed through untouched",
    "requesttty": "tether always asks for a pty",
    "userknownhostsfile": "use the known_hosts_file option",
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXTRA = re.compile(r"([A-Za-z][A-Za-z0-9]*)\s*[= ]\s*\S.*")
_TMUX_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _text(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value:
        raise ConfigError(attribute.name, f"must be a non-empty string, got {value!r}")


def _name(what: str) -> Any:
    """A host or user name ssh takes as an argument: never an option (``-oProxyCommand=...``)."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
        _text(instance, attribute, value)
        if value is not None and (value.startswith("-") or any(c.isspace() for c in value)):
            raise ConfigError(attribute.name, f"is not a {what} name, got {value!r}")

    return check


def _path(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    """A file name ssh will get inside a double-quoted option value."""
    _text(instance, attribute, value)
    if value is not None and any(c in value for c in '"%\n'):
        raise ConfigError(attribute.name, f"must not contain '\"', '%' or a newline, got {value!r}")


def _tmux(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not _TMUX_NAME.fullmatch(value):
        raise ConfigError(attribute.name, f"must be 1-64 letters, digits, '_' or '-', got {value!r}")


def _between(low: int, high: int) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and not low <= value <= high:
            raise ConfigError(attribute.name, f"must be a whole number from {low} to {high}, got {value!r}")

    return check


def _persist(value: object) -> Persist:
    if value not in ("none", "tmux"):
        raise ConfigError("persist", f"must be 'none' or 'tmux', got {value!r}")
    return "tmux" if value == "tmux" else "none"


def _extra(value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError("extra_options", f"must be a list of 'Key=Value' strings, got {value!r}")
    for i, item in enumerate(value):
        match = _EXTRA.fullmatch(item.strip())
        if match is None:
            raise ConfigError(f"extra_options[{i}]", f"must look like 'Key=Value', got {item!r}")
        why = _MANAGED.get(match.group(1).lower())
        if why is not None:
            raise ConfigError(f"extra_options[{i}]", f"{match.group(1)} is managed by tether: {why}")
    return tuple(v.strip() for v in value)


def _env(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError("env", f"must be a table of NAME = value, got {value!r}")
    for name, val in value.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"env.{name}", "is not a valid environment variable name")
        if not isinstance(val, str):
            raise ConfigError(f"env.{name}", f"must be a string, got {val!r}")
    return dict(value)


@attrs.frozen(kw_only=True)
class SshOptions:
    """One session's ssh settings (from ``SessionSpec.options``, through `parse_options`)."""

    host: str = attrs.field(validator=_name("host"))
    port: int | None = attrs.field(default=None, validator=_between(1, 65535))
    user: str | None = attrs.field(default=None, validator=_name("user"))
    identity_file: str | None = attrs.field(default=None, validator=_text)
    extra_options: tuple[str, ...] = attrs.field(default=(), converter=_extra)
    """More ``-o Key=Value`` options for ssh (not the managed ones)."""
    known_hosts_file: str | None = attrs.field(default=None, validator=_path)
    config_file: str | None = attrs.field(default=None, validator=_text)
    """``ssh -F``; None reads ~/.ssh/config as usual."""
    persist: Persist = attrs.field(default="none", converter=_persist)
    tmux_session: str | None = attrs.field(default=None, validator=_tmux)
    tmux_socket: str | None = attrs.field(default=None, validator=_tmux)
    """``tmux -L`` socket name on the remote side; None is tmux's default server."""
    pane_log_bytes: int = attrs.field(default=DEFAULT_PANE_LOG_BYTES, validator=_between(4096, 1 << 30))
    """persist = "tmux": the program's own output kept beside it on the remote host (4 numbered
    segments, at most this many bytes), so a re-attach delivers exactly the bytes tether missed."""
    shell_integration: bool = True
    """Start a bash or zsh login shell with tether's shell integration (cwd reports, `run`);
    other shells get an exported OSC 7 PROMPT_COMMAND only (see the README)."""
    accept_new_host_keys: bool = False
    server_alive_count_max: int = attrs.field(default=3, validator=_between(1, 100))
    env: Mapping[str, str] = attrs.field(factory=dict, converter=_env, hash=False)
    cwd: str | None = attrs.field(default=None, validator=_text)
    term: str = attrs.field(default="xterm-256color", validator=_text)
    ssh_path: str = attrs.field(default="ssh", validator=_text)
    rows: int = attrs.field(default=24, validator=_between(1, 1000))
    cols: int = attrs.field(default=80, validator=_between(1, 1000))
    share_connection: bool = True
    """Open this session as a channel on a shared, authenticated connection to the host
    (OpenSSH ControlMaster, managed by tether) instead of a login of its own."""
    max_sessions_per_connection: int = attrs.field(default=10, validator=_between(1, 1000))
    """Channels per shared connection: sshd's MaxSessions (10 unless the server says
    otherwise). A server that refuses a channel earlier lowers it for that connection."""

    @property
    def target(self) -> str:
        """``host:port`` for the per-target connect limit (the port ssh would use)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port or 22}"


def tmux_name(session_id: str) -> str:
    """A stable tmux session name for a tether session id (tmux forbids ``.`` and ``:``)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", session_id)[:40]
    digest = hashlib.sha1(session_id.encode(), usedforsecurity=False).hexdigest()[:6]
    return f"tether-{safe}-{digest}"


def parse_options(options: Mapping[str, Any]) -> SshOptions:
    """Check and structure a spec's options with tether's strict converter: a `ConfigError`
    names the bad one, an `InvalidConfigError` each of several; an unknown one says what it
    most likely meant."""
    given = {key: value for key, value in options.items() if not (value is None and key in _NULL_IS_ABSENT)}
    return structure_options(SshOptions, given)


_NULL_IS_ABSENT = frozenset({
    "port", "user", "identity_file", "known_hosts_file", "config_file", "tmux_session", "tmux_socket", "cwd",
    "term", "ssh_path",
})
"""Options that have always taken null (from JSON) as "not given"."""
