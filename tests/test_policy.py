"""ReconnectPolicy: reference defaults, validation that names the field, zero means zero (flaw 6)."""

from __future__ import annotations

import pytest

from tether import ConfigError, DisconnectReason, Jitter, ReconnectPolicy


def test_defaults_equal_the_reference() -> None:
    """2 s base, 30 s cap, x1.5, 5 retries, 30 s health, 15 s connect, 60 s keepalive."""
    p = ReconnectPolicy()
    assert (p.base_delay, p.max_delay, p.multiplier, p.max_retries) == (2.0, 30.0, 1.5, 5)
    assert (p.health_check_interval, p.connect_timeout, p.keepalive_interval) == (30.0, 15.0, 60.0)
    assert p.enabled and p.auto_reconnect and p.preserve_state
    assert p.jitter is Jitter.FULL


def test_flaw_6_zero_means_zero() -> None:
    """max_retries=0 and base_delay=0 stay zero instead of becoming 5 and 2000."""
    p = ReconnectPolicy(max_retries=0, base_delay=0, health_check_interval=0, keepalive_interval=0)
    assert p.max_retries == 0
    assert p.base_delay == 0.0
    assert p.health_check_interval == 0.0
    assert not p.allows_retry(0)


def test_none_retries_forever() -> None:
    assert ReconnectPolicy(max_retries=None).allows_retry(10**9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_delay": -1}, "base_delay: must be >= 0, got -1"),
        ({"max_delay": 1.0}, "max_delay: must be >= base_delay (2.0), got 1.0"),
        ({"multiplier": 0.5}, "multiplier: must be >= 1 (delays never shrink), got 0.5"),
        ({"max_retries": -2}, "max_retries: must be >= 0 (0 = never retry) or \"forever\", got -2"),
        ({"max_retries": 1.5}, "max_retries: must be a whole number >= 0 or \"forever\" (retry without end), got 1.5"),
        ({"connect_timeout": 0}, "connect_timeout: must be > 0, got 0"),
        ({"jitter": "sometimes"}, "jitter: must be one of full, equal, decorrelated, none, got 'sometimes'"),
        ({"base_delay": "2s"}, "base_delay: must be a number of seconds, got '2s'"),
        ({"enabled": "yes"}, "enabled: must be true or false, got 'yes'"),
        ({"base_delay": float("nan")}, "base_delay: must be >= 0, got nan"),
        ({"max_delay": float("inf")}, "max_delay: must be finite, got inf"),
        ({"strategies": {"weather": "simple-reconnect"}}, "strategies.weather: unknown reason"),
    ],
)
def test_flaw_6_invalid_values_are_rejected_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ReconnectPolicy(**kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)


def test_strategy_map_accepts_reason_names() -> None:
    p = ReconnectPolicy(strategies={"network": "force-reconnect"})
    assert p.strategies == {DisconnectReason.NETWORK: "force-reconnect"}


def test_ints_become_float_seconds() -> None:
    p = ReconnectPolicy(base_delay=1, max_delay=3)
    assert isinstance(p.base_delay, float)
    assert isinstance(p.max_delay, float)
