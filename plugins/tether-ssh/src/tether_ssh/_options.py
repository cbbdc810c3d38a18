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

from tether import ConfigError

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

_KNOWN = (
    "host", "port", "user", "identity_file", "extra_options", "known_hosts_file", "config_file",
    "persist", "tmux_session", "tmux_socket", "shell_integration", "accept_new_host_keys",
    "server_alive_count_max", "env", "cwd", "term", "ssh_path", "rows", "cols",
    "share_connection", "max_sessions_per_connection",
)


@attrs.frozen(kw_only=True)
class SshOptions:
    """One session's ssh settings (from ``SessionSpec.options``)."""

    host: str
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    extra_options: tuple[str, ...] = ()
    """More ``-o Key=Value`` options for ssh (not the managed ones)."""
    known_hosts_file: str | None = None
    config_file: str | None = None
    """``ssh -F``; None reads ~/.ssh/config as usual."""
    persist: Persist = "none"
    tmux_session: str | None = None
    tmux_socket: str | None = None
    """``tmux -L`` socket name on the remote side; None is tmux's default server."""
    shell_integration: bool = True
    """Export a PROMPT_COMMAND that reports the cwd as OSC 7 (bash; other shells ignore it)."""
    accept_new_host_keys: bool = False
    server_alive_count_max: int = 3
    env: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    cwd: str | None = None
    term: str = "xterm-256color"
    ssh_path: str = "ssh"
    rows: int = 24
    cols: int = 80
    share_connection: bool = True
    """Open this session as a channel on a shared, authenticated connection to the host
    (OpenSSH ControlMaster, managed by tether) instead of a login of its own."""
    max_sessions_per_connection: int = 10
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


def _str(options: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = options.get(key)
    if value is None:
        if required:
            raise ConfigError(key, "is required")
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty string, got {value!r}")
    return value


def _path(options: Mapping[str, Any], key: str) -> str | None:
    """A file name ssh will get inside a double-quoted option value."""
    value = _str(options, key)
    if value is not None and any(c in value for c in '"%\n'):
        raise ConfigError(key, f"must not contain '\"', '%' or a newline, got {value!r}")
    return value


def _bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {value!r}")
    return value


def _int(options: Mapping[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = options.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(key, f"must be a whole number from {low} to {high}, got {value!r}")
    return value


def _extra(options: Mapping[str, Any]) -> tuple[str, ...]:
    value = options.get("extra_options", [])
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


def _env(options: Mapping[str, Any]) -> dict[str, str]:
    value = options.get("env", {})
    if not isinstance(value, Mapping):
        raise ConfigError("env", f"must be a table of NAME = value, got {value!r}")
    for name, val in value.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"env.{name}", "is not a valid environment variable name")
        if not isinstance(val, str):
            raise ConfigError(f"env.{name}", f"must be a string, got {val!r}")
    return dict(value)


def parse_options(options: Mapping[str, Any]) -> SshOptions:
    """Check and structure a spec's options; `ConfigError` names the bad one."""
    for key in options:
        if key not in _KNOWN:
            raise ConfigError(key, f"unknown option; known: {', '.join(sorted(_KNOWN))}")
    host = _str(options, "host", required=True)
    assert host is not None
    if host.startswith("-") or any(c.isspace() for c in host):
        raise ConfigError("host", f"is not a host name, got {host!r}")
    persist = options.get("persist", "none")
    if persist not in ("none", "tmux"):
        raise ConfigError("persist", f"must be 'none' or 'tmux', got {persist!r}")
    tmux_session = _str(options, "tmux_session")
    tmux_socket = _str(options, "tmux_socket")
    for key, name in (("tmux_session", tmux_session), ("tmux_socket", tmux_socket)):
        if name is not None and not _TMUX_NAME.fullmatch(name):
            raise ConfigError(key, f"must be 1-64 letters, digits, '_' or '-', got {name!r}")
    user = _str(options, "user")
    if user is not None and (user.startswith("-") or any(c.isspace() for c in user)):
        raise ConfigError("user", f"is not a user name, got {user!r}")
    count = _int(options, "server_alive_count_max", 3, 1, 100)
    rows = _int(options, "rows", 24, 1, 1000)
    cols = _int(options, "cols", 80, 1, 1000)
    per_connection = _int(options, "max_sessions_per_connection", 10, 1, 1000)
    assert count is not None and rows is not None and cols is not None and per_connection is not None
    return SshOptions(
        host=host,
        port=_int(options, "port", None, 1, 65535),
        user=user,
        identity_file=_str(options, "identity_file"),
        extra_options=_extra(options),
        known_hosts_file=_path(options, "known_hosts_file"),
        config_file=_str(options, "config_file"),
        persist=persist,
        tmux_session=tmux_session,
        tmux_socket=tmux_socket,
        shell_integration=_bool(options, "shell_integration", True),
        accept_new_host_keys=_bool(options, "accept_new_host_keys", False),
        server_alive_count_max=count,
        env=_env(options),
        cwd=_str(options, "cwd"),
        term=_str(options, "term") or "xterm-256color",
        ssh_path=_str(options, "ssh_path") or "ssh",
        rows=rows,
        cols=cols,
        share_connection=_bool(options, "share_connection", True),
        max_sessions_per_connection=per_connection,
    )
