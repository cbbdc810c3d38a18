"""Secrets named by reference: what a snapshot may keep, resolved only when a program starts.

A secret given as a literal value (``env = { API_TOKEN = "abc" }``) is never
written down, so after a restart it is gone: the session comes back failed,
saying which secret is missing, and its program is not started with a fake
value. A secret named by *reference* survives, because the reference is only
a name::

    env = { API_TOKEN = { from_env = "API_TOKEN" } }        # the daemon's environment
    env = { DB_PASSWORD = { from_file = "/run/secrets/db" } }   # a file only we can read

A reference may stand wherever a backend option takes a string. Backends
never see references: `validation_view` hands them a placeholder string to
check, and the engine resolves the real value just before each connect
(``tether.engine._secrets``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._secrets import REDACTED

REF_KEYS = ("from_env", "from_file")


@attrs.frozen
class SecretRef:
    """Where a secret's value comes from: an environment variable of the daemon, or a private file."""

    kind: str
    """``from_env`` or ``from_file``."""
    name: str

    def describe(self) -> str:
        return f"${self.name}" if self.kind == "from_env" else self.name


def as_secret_ref(value: object) -> SecretRef | None:
    """The reference `value` is (a table with exactly one of `REF_KEYS`, a non-empty string), or None."""
    if not isinstance(value, Mapping) or len(value) != 1:
        return None
    ((key, name),) = value.items()
    if key not in REF_KEYS or not isinstance(name, str) or not name or "\0" in name:
        return None
    return SecretRef(key, name)


def is_secret_ref(value: object) -> bool:
    return as_secret_ref(value) is not None


def map_refs(tree: Mapping[str, Any], replace: Callable[[SecretRef, str], Any], path: str = "") -> dict[str, Any]:
    """A copy of `tree` with every reference replaced by ``replace(ref, its path)``."""
    return {key: _map_value(value, replace, f"{path}.{key}" if path else str(key)) for key, value in tree.items()}


def _map_value(value: Any, replace: Callable[[SecretRef, str], Any], path: str) -> Any:
    ref = as_secret_ref(value)
    if ref is not None:
        return replace(ref, path)
    if isinstance(value, Mapping):
        return map_refs(value, replace, path)
    if isinstance(value, (list, tuple)):
        return [_map_value(item, replace, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def has_refs(tree: Mapping[str, Any]) -> bool:
    if not tree:  # most sessions have no options at all: each registration asks
        return False
    found = False

    def note(ref: SecretRef, path: str) -> str:
        nonlocal found
        found = True
        return ""

    map_refs(tree, note)
    return found


def validation_view(options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` as a backend validates them: each reference stands in as a placeholder string."""
    return map_refs(options, lambda ref, path: f"<secret {ref.describe()}>")


def missing_literals(options: Mapping[str, Any], path: str = "options") -> list[str]:
    """Paths of values that were literal secrets and were redacted when the snapshot was written."""
    found: list[str] = []
    if not options:
        return found

    def walk(value: Any, where: str) -> None:
        if value == REDACTED:
            found.append(where)
        elif isinstance(value, Mapping) and not is_secret_ref(value):
            for key, inner in value.items():
                walk(inner, f"{where}.{key}")
        elif isinstance(value, (list, tuple)):
            for index, inner in enumerate(value):
                walk(inner, f"{where}[{index}]")

    walk(options, path)
    return found
