"""The backend's options, parsed once from ``spec.options`` into a frozen value.

A typo or a wrong type is a `ConfigError` naming the option, so a bad spec
fails at register time instead of on the first reconnect.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from tether import ConfigError, structure_options

from ._redact import redact


def _text(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value:
        raise ConfigError(attribute.name, "must be a non-empty string, got str")


def _secret(value: object) -> str | None:
    """The token: checked without ever echoing it."""
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError("token", f"must be a non-empty string, got {type(value).__name__}")
    return value


def _seconds(name: str, value: object, *, allow_zero: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(name, f"must be a number of seconds, got {value!r}")
    if math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, f"must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return float(value)


def _ping_interval(value: object) -> float | None:
    return _seconds("ping_interval", value, allow_zero=True)


def _ping_timeout(value: object) -> float | None:
    return _seconds("ping_timeout", value, allow_zero=False)


def _close_timeout(value: object) -> float:
    seconds = _seconds("close_timeout", value, allow_zero=False)
    if seconds is None:
        raise ConfigError("close_timeout", "must be a number of seconds, got None")
    return seconds


def _str_map(name: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(name, "must be a table of string = string")
    return dict(value)


def _headers(value: object) -> dict[str, str]:
    return _str_map("headers", value)


def _env(value: object) -> dict[str, str]:
    return _str_map("env", value)


def _size(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not 1 <= value <= 10_000:
        raise ConfigError(attribute.name, f"must be a whole number from 1 to 10000, got {value!r}")


def _subprotocols(value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError("subprotocols", "must be a list of non-empty strings")
    return tuple(value)


_ENV_NAME = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789"


@attrs.frozen(kw_only=True)
class WebSocketOptions:
    """What one websocket session connects to and how it talks."""

    url: str | None = attrs.field(default=None, validator=_text)
    """A ``ws://`` / ``wss://`` URL to connect to as it is (no REST calls)."""
    base_url: str | None = attrs.field(default=None, validator=_text)
    """A Jupyter Server's ``http(s)://host:port/base/``: terminals are created over REST."""
    terminal: str | None = attrs.field(default=None, validator=_text)
    """Jupyter mode: attach to (or create) this terminal name instead of a new one."""
    token: str | None = attrs.field(default=None, repr=False, converter=_secret)
    """Sent as ``Authorization: token ...``; never logged or reported."""
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False, converter=_headers)
    subprotocols: tuple[str, ...] = attrs.field(default=(), converter=_subprotocols)
    adapter: str = attrs.field(default="terminado", validator=_text)
    ping_interval: float | None = attrs.field(default=None, converter=_ping_interval)
    """Seconds between pings; None follows the policy's keepalive_interval, 0 turns pings off."""
    ping_timeout: float | None = attrs.field(default=None, converter=_ping_timeout)
    """Seconds to wait for a pong; None = min(connect_timeout, 10)."""
    close_timeout: float = attrs.field(default=1.0, converter=_close_timeout)
    """Bound on the close handshake: a dead peer never answers it."""
    shell_integration: bool | None = None
    """Install tether's shell integration in each new shell (cwd as OSC 7, finished commands, the
    marks `run` needs), by typing one line the shell itself reads as bash's or zsh's (other shells
    ignore it). None: on in Jupyter mode (we made the shell), off for a plain URL (the peer may be
    no shell)."""
    track_cwd: bool | None = None
    """The old name of `shell_integration` (it installed an OSC 7-only hook): still read, with a
    note from `tether check`."""
    env: Mapping[str, str] = attrs.field(factory=dict, converter=_env)
    """Exported in every new shell (and kept in the preserved state)."""
    rows: int | None = attrs.field(default=None, validator=_size)
    cols: int | None = attrs.field(default=None, validator=_size)

    def __attrs_post_init__(self) -> None:
        """What only the fields together can say (after each field was checked on its own)."""
        if (self.url is None) == (self.base_url is None):
            raise ConfigError("url", "give exactly one of url (a ws:// URL) or base_url (a Jupyter http(s):// URL)")
        if self.url is not None and urlsplit(self.url).scheme not in ("ws", "wss"):
            raise ConfigError("url", f"must be a ws:// or wss:// URL, got {redact(self.url, self.secrets)!r}")
        if self.base_url is not None and urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ConfigError("base_url", "must be an http:// or https:// URL")
        for source in (self.url, self.base_url):
            if source is not None and not urlsplit(source).hostname:
                raise ConfigError("url" if self.url else "base_url", "has no host")
        if self.terminal is not None and not self.jupyter:
            raise ConfigError("terminal", "only applies with base_url (Jupyter mode)")
        if self.terminal is not None and not re.fullmatch(r"\w+", self.terminal):
            raise ConfigError("terminal", "must be letters, digits and _ (Jupyter's terminal routes)")
        if self.shell_integration is not None and self.track_cwd is not None:
            raise ConfigError("track_cwd", "is the old name of shell_integration: give only shell_integration")
        for name in self.env:
            if not name or name[0].isdigit() or any(c not in _ENV_NAME for c in name):
                raise ConfigError(f"env.{name}", "is not a valid shell variable name")

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
    def installs_integration(self) -> bool:
        """Whether new shells get tether's integration typed into them."""
        chosen = self.shell_integration if self.shell_integration is not None else self.track_cwd
        return self.jupyter if chosen is None else chosen

    def redact(self, text: str) -> str:
        """`text` with this session's secrets masked."""
        return redact(text, self.secrets)


def parse_options(options: Mapping[str, Any]) -> WebSocketOptions:
    """Check and convert `options` with tether's strict converter: a `ConfigError` names the
    bad one, an `InvalidConfigError` each of several; an unknown one says what it most likely meant."""
    return structure_options(WebSocketOptions, options)
