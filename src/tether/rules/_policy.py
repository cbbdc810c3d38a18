"""`ReconnectPolicy`: every knob of the reference, validated, in seconds.

Zero means zero (docs/reference-design.md, lesson 6): a field is only ever defaulted when it is absent,
never because its value is falsy.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any, final

import attrs

from ._errors import ConfigError
from ._reasons import DisconnectReason


class Jitter(str, enum.Enum):
    """How a backoff delay is randomised, so 10,000 drops do not retry in lockstep
    (docs/reference-design.md, lesson 7)."""

    FULL = "full"
    """Uniform in [0, ideal]: flattest herd, the default."""
    EQUAL = "equal"
    """Uniform in [ideal/2, ideal]: never much sooner than planned."""
    DECORRELATED = "decorrelated"
    """Uniform in [base, 3 x previous], capped: spreads and still grows."""
    NONE = "none"
    """Exactly the exponential schedule: for tests and benchmarks."""


DEFAULT_STRATEGIES: Mapping[DisconnectReason, str] = {
    DisconnectReason.NETWORK: "simple-reconnect",
    DisconnectReason.REMOTE_CLOSED: "simple-reconnect",
    DisconnectReason.TIMEOUT: "simple-reconnect",
    DisconnectReason.HEALTH_CHECK: "simple-reconnect",
    DisconnectReason.BACKEND_ERROR: "simple-reconnect",
    DisconnectReason.FORCED: "simple-reconnect",
    DisconnectReason.PROCESS_EXIT: "process-restart",
    DisconnectReason.SPAWN_FAILED: "process-restart",
    DisconnectReason.SUPERVISOR_RESTART: "force-reconnect",
}
"""Reason -> strategy when neither the policy nor the backend says otherwise.

Auth and host-key have no entry on purpose: they are never retried.
"""


def _non_negative_number(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(attribute.name, f"must be a number of seconds, got {value!r}")
    if math.isnan(value) or value < 0:
        raise ConfigError(attribute.name, f"must be >= 0, got {value!r}")
    if math.isinf(value):
        raise ConfigError(attribute.name, f"must be finite, got {value!r}")


def _positive_number(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _non_negative_number(instance, attribute, value)
    if value == 0:
        raise ConfigError(attribute.name, "must be > 0, got 0")


def _to_seconds(value: Any) -> Any:
    """Ints become floats (seconds); anything else is left for the validator to reject."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _is_bool(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(attribute.name, f"must be true or false, got {value!r}")


FOREVER = "forever"
"""How a config file (TOML has no null) says `max_retries = None`."""


def _to_retries(value: object) -> object:
    return None if value == FOREVER else value


def _to_forever(value: object) -> object:
    return None if value == FOREVER else _to_seconds(value)


def _unreachable_valid(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _positive_number(instance, attribute, value)


def _max_retries_valid(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            attribute.name, f'must be a whole number >= 0 or "forever" (retry without end), got {value!r}'
        )
    if value < 0:
        raise ConfigError(attribute.name, f'must be >= 0 (0 = never retry) or "forever", got {value}')


def _multiplier_valid(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _positive_number(instance, attribute, value)
    assert isinstance(value, (int, float))
    if value < 1:
        raise ConfigError(attribute.name, f"must be >= 1 (delays never shrink), got {value!r}")


def _history_limit_valid(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(attribute.name, f"must be a whole number >= 0, got {value!r}")


def _to_jitter(value: object) -> object:
    if isinstance(value, Jitter):
        return value
    try:
        return Jitter(value)
    except ValueError:
        choices = ", ".join(j.value for j in Jitter)
        raise ConfigError("jitter", f"must be one of {choices}, got {value!r}") from None


def _to_strategy_map(value: object) -> object:
    if not isinstance(value, Mapping):
        raise ConfigError("strategies", f"must be a table of reason = strategy, got {value!r}")
    result: dict[DisconnectReason, str] = {}
    for key, name in value.items():
        try:
            reason = DisconnectReason(key)
        except ValueError:
            choices = ", ".join(r.value for r in DisconnectReason)
            raise ConfigError(f"strategies.{key}", f"unknown reason; known reasons: {choices}") from None
        if not isinstance(name, str) or not name:
            raise ConfigError(f"strategies.{reason.value}", f"must be a strategy name, got {name!r}")
        result[reason] = name
    return result


@final
@attrs.frozen(kw_only=True)
class ReconnectPolicy:
    """How a session is watched and brought back. Times are seconds as floats.

    Defaults equal the reference's: 2 s base, 30 s cap, x1.5, 5 retries,
    30 s health check, 15 s connect timeout, 60 s keepalive.
    """

    enabled: bool = attrs.field(default=True, validator=_is_bool)
    """False: connect once and never supervise (no probes, no reconnects)."""
    max_retries: int | None = attrs.field(default=5, converter=_to_retries, validator=_max_retries_valid)
    """Reconnect attempts per disconnection episode. 0 = never retry, None (``"forever"`` in a
    config file) = retry without end."""
    base_delay: float = attrs.field(default=2.0, converter=_to_seconds, validator=_non_negative_number)
    max_delay: float = attrs.field(default=30.0, converter=_to_seconds, validator=_non_negative_number)
    multiplier: float = attrs.field(default=1.5, converter=_to_seconds, validator=_multiplier_valid)
    jitter: Jitter = attrs.field(default=Jitter.FULL, converter=_to_jitter)
    connect_timeout: float = attrs.field(default=15.0, converter=_to_seconds, validator=_positive_number)
    """Bound on every connect attempt and every probe (docs/reference-design.md, lesson 8)."""
    health_check_interval: float = attrs.field(default=30.0, converter=_to_seconds, validator=_non_negative_number)
    """Seconds between probes of a connected link, jittered +-10%. 0 = no probes."""
    keepalive_interval: float = attrs.field(default=60.0, converter=_to_seconds, validator=_non_negative_number)
    """Passed to the backend (ssh ServerAliveInterval, WebSocket ping); links with a
    ``keepalive()`` method are also called on this interval. 0 = off."""
    auto_reconnect: bool = attrs.field(default=True, validator=_is_bool)
    """False: a drop leaves the session disconnected until `force_reconnect`."""
    preserve_state: bool = attrs.field(default=True, validator=_is_bool)
    """Track cwd, env and last command while connected and hand them to recovery."""
    stable_after: float = attrs.field(default=10.0, converter=_to_seconds, validator=_non_negative_number)
    """A link that drops sooner than this after connecting continues the same
    episode (same attempt count, same backoff) instead of starting a fresh one."""
    unreachable_timeout: float | None = attrs.field(
        default=86_400.0, converter=_to_forever, validator=_unreachable_valid
    )
    """Seconds a session waits for an unreachable target (parked on its readiness gate, spending
    no retry budget) before it is failed. None (``"forever"`` in a config file) = wait without end."""
    history_limit: int = attrs.field(default=20, validator=_history_limit_valid)
    """Past episodes kept per session (docs/reference-design.md, lesson 2: bounded)."""
    strategies: Mapping[DisconnectReason, str] = attrs.field(
        factory=dict, converter=_to_strategy_map, eq=True, hash=False
    )
    """Reason -> strategy overrides; consulted before the backend's and tether's defaults."""

    def __attrs_post_init__(self) -> None:
        if self.max_delay < self.base_delay:
            raise ConfigError("max_delay", f"must be >= base_delay ({self.base_delay!r}), got {self.max_delay!r}")

    def allows_retry(self, attempts_made: int) -> bool:  # attempts that count against the budget
        """True while the episode's budget has room for another attempt."""
        return self.max_retries is None or attempts_made < self.max_retries
