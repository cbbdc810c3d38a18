"""`SessionSpec`: what to keep alive, validated at the edge."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, final

import attrs

from ._errors import ConfigError
from ._policy import ReconnectPolicy

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")


def _valid_id(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _SESSION_ID.fullmatch(value):
        raise ConfigError(
            "id",
            f"must be 1-128 characters of letters, digits and ._:@/+- starting with a letter or digit, got {value!r}",
        )


def _valid_backend(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError("backend", f"must be a backend name, got {value!r}")


def _valid_options(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError("options", f"must be a table with string keys, got {value!r}")


def _valid_policy(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, ReconnectPolicy):
        raise ConfigError("policy", f"must be a ReconnectPolicy, got {type(value).__name__}")


@final
@attrs.frozen(kw_only=True)
class SessionSpec:
    """One session: a backend name, that backend's options, and the policy that keeps it up."""

    id: str = attrs.field(validator=_valid_id)
    backend: str = attrs.field(validator=_valid_backend)
    options: Mapping[str, Any] = attrs.field(factory=dict, validator=_valid_options, hash=False)
    """Backend-specific settings (argv, host, url, ...), checked by the backend's ``validate``."""
    policy: ReconnectPolicy = attrs.field(factory=ReconnectPolicy, validator=_valid_policy)
