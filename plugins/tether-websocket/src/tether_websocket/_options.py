"""The backend's options, parsed once from ``spec.options`` into a frozen value.

A typo or a wrong type is a `ConfigError` naming the option, so a bad spec
fails at register time instead of on the first reconnect.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from tether import ConfigError

from ._redact import redact


@attrs.frozen(kw_only=True)
class WebSocketOptions:
    """What one websocket session connects to and how it talks."""

    url: str | None = None
    """A ``ws://`` / ``wss://`` URL to connect to as it is (no REST calls)."""
    base_url: str | None = None
    """A Jupyter Server's ``http(s)://host:port/base/``: terminals are created over REST."""
    terminal: str | None = None
    """Jupyter mode: attach to (or create) this terminal name instead of a new one."""
    token: str | None = attrs.field(default=None, repr=False)
    """Sent as ``Authorization: token ...``; never logged or reported."""
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    subprotocols: tuple[str, ...] = ()
    adapter: str = "terminado"
    ping_interval: float | None = None
    """Seconds between pings; None follows the policy's keepalive_interval, 0 turns pings off."""
    ping_timeout: float | None = None
    """Seconds to wait for a pong; None = min(connect_timeout, 10)."""
    close_timeout: float = 1.0
    """Bound on the close handshake: a dead peer never answers it."""
    track_cwd: bool | None = None
    """Inject a bash PROMPT_COMMAND reporting the cwd as OSC 7 into each new shell.
    None: on in Jupyter mode (we made the shell), off for a plain URL (the peer may be no shell)."""
    env: Mapping[str, str] = attrs.field(factory=dict)
    """Exported in every new shell (and kept in the preserved state)."""
    rows: int | None = None
    cols: int | None = None

    @property
    def jupyter(self) -> bool:
        """True when terminals are managed through the Jupyter REST API."""
        return self.base_url is not None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values to mask in anything we report."""
        values = [self.token or ""]
        values += [v for k, v in self.headers.items() if k.lower() in ("authorization", "cookie")]
        return tuple(v for v in values if v)

    @property
    def injects_cwd_hook(self) -> bool:
        """Whether new shells get the OSC 7 PROMPT_COMMAND."""
        return self.jupyter if self.track_cwd is None else self.track_cwd

    def redact(self, text: str) -> str:
        """`text` with this session's secrets masked."""
        return redact(text, self.secrets)


def _string(name: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(name, f"must be a non-empty string, got {type(value).__name__}")
        return value

    return check


def _seconds(name: str, *, allow_zero: bool) -> Callable[[object], float]:
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ConfigError(name, f"must be a number of seconds, got {value!r}")
        if math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
            raise ConfigError(name, f"must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
        return float(value)

    return check


def _str_map(name: str) -> Callable[[object], dict[str, str]]:
    def check(value: object) -> dict[str, str]:
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(name, "must be a table of string = string")
        return dict(value)

    return check


def _bool(name: str) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false, got {value!r}")
        return value

    return check


def _size(name: str) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
            raise ConfigError(name, f"must be a whole number from 1 to 10000, got {value!r}")
        return value

    return check


def _subprotocols(value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError("subprotocols", "must be a list of non-empty strings")
    return tuple(value)


_ENV_NAME = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789"

_PARSERS: Mapping[str, Callable[[object], object]] = {
    "url": _string("url"),
    "base_url": _string("base_url"),
    "terminal": _string("terminal"),
    "token": _string("token"),
    "headers": _str_map("headers"),
    "subprotocols": _subprotocols,
    "adapter": _string("adapter"),
    "ping_interval": _seconds("ping_interval", allow_zero=True),
    "ping_timeout": _seconds("ping_timeout", allow_zero=False),
    "close_timeout": _seconds("close_timeout", allow_zero=False),
    "track_cwd": _bool("track_cwd"),
    "env": _str_map("env"),
    "rows": _size("rows"),
    "cols": _size("cols"),
}


def parse_options(options: Mapping[str, Any]) -> WebSocketOptions:
    """Check and convert `options`; `ConfigError` names the first bad one."""
    values: dict[str, Any] = {}
    for key, value in options.items():
        parser = _PARSERS.get(key)
        if parser is None:
            raise ConfigError(key, f"unknown option; known: {', '.join(sorted(_PARSERS))}")
        values[key] = parser(value)
    parsed = WebSocketOptions(**values)
    if (parsed.url is None) == (parsed.base_url is None):
        raise ConfigError("url", "give exactly one of url (a ws:// URL) or base_url (a Jupyter http(s):// URL)")
    if parsed.url is not None and urlsplit(parsed.url).scheme not in ("ws", "wss"):
        raise ConfigError("url", f"must be a ws:// or wss:// URL, got {redact(parsed.url, parsed.secrets)!r}")
    if parsed.base_url is not None and urlsplit(parsed.base_url).scheme not in ("http", "https"):
        raise ConfigError("base_url", "must be an http:// or https:// URL")
    for source in (parsed.url, parsed.base_url):
        if source is not None and not urlsplit(source).hostname:
            raise ConfigError("url" if parsed.url else "base_url", "has no host")
    if parsed.terminal is not None and not parsed.jupyter:
        raise ConfigError("terminal", "only applies with base_url (Jupyter mode)")
    if parsed.terminal is not None and not re.fullmatch(r"\w+", parsed.terminal):
        raise ConfigError("terminal", "must be letters, digits and _ (Jupyter's terminal routes)")
    for name in parsed.env:
        if not name or name[0].isdigit() or any(c not in _ENV_NAME for c in name):
            raise ConfigError(f"env.{name}", "is not a valid shell variable name")
    return parsed
