"""`ServerSettings`: where the event server listens, how it guards the door, what each client may hold.

One class for the config file's ``[server]`` table, the command line and the
library: validated on construction, each problem named by its field.
"""

from __future__ import annotations

import math
from typing import Any, final

import attrs

from ..rules._addresses import is_loopback
from ..rules._errors import ConfigError


def _at_least(low: float) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if (isinstance(value, float) and math.isnan(value)) or value < low:
            raise ConfigError(attribute.name, f"must be >= {low}, got {value!r}")

    return check


def _port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError("port", f"must be between 0 and 65535, got {value}")


@final
@attrs.frozen(kw_only=True)
class ServerSettings:
    """How the event server listens and how much it lets each client hold."""

    enabled: bool = True
    """False: `tether run` serves no /events and no /control."""
    host: str = "127.0.0.1"
    port: int = attrs.field(default=8765, validator=_port)
    """0 picks a free port; clients find it in the state directory's daemon.json."""
    allow_remote: bool = False
    """Listening on a non-loopback address needs this, on purpose."""
    auth: bool = True
    """False (no token) is only accepted on loopback."""
    max_message_size: int = attrs.field(default=64 * 1024, validator=_at_least(1024))
    """Largest frame a client may send; larger frames are closed with 1009."""
    subscriber_buffer: int = attrs.field(default=1_000, validator=_at_least(1))
    """Events buffered per /events connection before it lags."""
    max_lags: int = attrs.field(default=3, validator=_at_least(0))
    """Lags in a row (without catching up in between) before a subscriber is dropped."""
    send_timeout: float = attrs.field(default=10.0, validator=_at_least(0.001))
    """A client that takes longer than this to take one frame is dropped."""
    max_inflight: int = attrs.field(default=16, validator=_at_least(1))
    """/control commands one connection may have running at once."""
    max_bad_requests: int = attrs.field(default=16, validator=_at_least(1))
    """Error replies one /control connection may cause before it is closed (1008)."""
    drain_timeout: float = attrs.field(default=15.0, validator=_at_least(0.0))
    """A /control connection that must close (a bad frame, the client left) gives the requests
    still in flight this long to finish and send their replies first."""

    def __attrs_post_init__(self) -> None:
        if not is_loopback(self.host) and not self.allow_remote:
            raise ConfigError(
                "host", f"{self.host!r} is not a loopback address; set allow_remote = true to listen on it"
            )
        if not self.auth and not is_loopback(self.host):
            raise ConfigError("auth", "can only be turned off on a loopback address")
