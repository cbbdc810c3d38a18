"""How many connects may be in flight to one target at once: a default, and per-target overrides.

A target is the peer a session connects to, as its backend names it
(``devbox.example.org:22``, a WebSocket URL; ``tether status --detail`` shows
it). OpenSSH's default ``MaxStartups 10:30:100`` refuses at random past 10
unauthenticated connections, hence the default of 10. Pure: the engine asks
`limit_for` when it makes a target's limiter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from ._errors import ConfigError

UNLIMITED = "unlimited"
"""How a config file lifts a limit (TOML has no null)."""


def limit_value(value: object, path: str) -> int | None:
    """A limit as written (a whole number >= 1, or ``"unlimited"``) as the engine takes it."""
    if value is None or value == UNLIMITED:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(path, f'must be a whole number >= 1 or "{UNLIMITED}", got {value!r}')
    return value


def toml_key(key: str) -> str:
    """`key` as TOML writes it in a path: bare when it can be, else quoted (``"devbox:22"``)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _default(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    limit_value(value, attribute.name)


def _per_target(value: object) -> Mapping[str, int | None]:
    if not isinstance(value, Mapping):
        raise ConfigError("connect_limits", f"must be a table of target = limit, got {value!r}")
    result: dict[str, int | None] = {}
    for target, limit in value.items():
        if not isinstance(target, str) or not target:
            raise ConfigError("connect_limits", f"a target must be a non-empty string, got {target!r}")
        result[target] = limit_value(limit, f"connect_limits.{toml_key(target)}")
    return result


@attrs.frozen(kw_only=True)
class ConnectLimits:
    """The connect limit of every target: `default`, unless `per_target` names the target."""

    default: int | None = attrs.field(default=10, validator=_default)
    """None: no limit."""
    per_target: Mapping[str, int | None] = attrs.field(factory=dict, converter=_per_target, hash=False)

    def limit_for(self, target: str) -> int | None:
        """Connects in flight to `target` at most (None: no limit)."""
        return self.per_target.get(target, self.default)
