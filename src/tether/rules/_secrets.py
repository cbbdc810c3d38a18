"""Which values are secret, and how every report hides them: one rule for store, events, logs and replies.

A name is secret when it contains one of `DEFAULT_SECRET_PATTERNS`
(case-insensitive). Its value is replaced by `REDACTED` wherever tether
writes something down or shows it: snapshots, events, logs, status and
control replies. Free text (an error message, a URL, a log line) is scrubbed
of ``token=...`` query values, ``Authorization`` header values and any value
the process was told is secret (`redact_text`).

A redacted value is never handed to a program: `drop_redacted` removes them
from an env before a restore uses it (see `tether.rules._secret_refs` for
secrets named by reference, which do survive a restart).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_SECRET_PATTERNS: tuple[str, ...] = (
    "TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH",
)
"""Case-insensitive substrings of a name whose value must never reach a store.

Deliberately broad (``KEY`` also hits ``SSH_KEY_PATH``, ``AUTH`` hits
``SSH_AUTH_SOCK``): losing a harmless value on restore beats writing a secret.
"""

REDACTED = "[redacted]"
"""What a secret value is replaced with."""


@functools.lru_cache(maxsize=32)
def _secret_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(re.escape(p) for p in patterns), re.IGNORECASE)


def secret_name_matcher(patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS) -> re.Pattern[str] | None:
    """The compiled rule for secret names (None when `patterns` is empty: redaction off)."""
    return _secret_regex(tuple(patterns))


def is_secret_name(name: str, patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS) -> bool:
    regex = secret_name_matcher(patterns)
    return regex is not None and regex.search(name) is not None


def redact_env(env: Mapping[str, str], patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS) -> dict[str, str]:
    """A copy of `env` with the value of every secret-looking name replaced by ``[redacted]``."""
    regex = secret_name_matcher(patterns)
    if regex is None:
        return dict(env)
    return redact_mapping(env, regex)


def redact_mapping(values: Mapping[str, Any], regex: re.Pattern[str]) -> dict[str, Any]:
    """One level: the value of every secret-looking key replaced (what env and extra need)."""
    return {name: (REDACTED if regex.search(name) else value) for name, value in values.items()}


def redact_options(
    options: Mapping[str, Any], patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS
) -> dict[str, Any]:
    """A copy of `options` where any key, at any depth, that looks secret has its value redacted.

    Walks nested tables and lists of tables (``headers``, ``env``, per-host
    tables); a secret key's whole value goes, whatever its type. A secret
    named by reference (``{ secret = { env = "NAME" } }``) is kept: it is a
    name, not the value.
    """
    regex = secret_name_matcher(patterns)
    if regex is None:
        return dict(options)
    return redact_tree(options, regex)


def redact_tree(table: Mapping[str, Any], regex: re.Pattern[str]) -> dict[str, Any]:
    return {
        key: (
            _redact_secret_value(value)
            if isinstance(key, str) and regex.search(key)
            else _redact_value(value, regex)
        )
        for key, value in table.items()
    }


def _redact_secret_value(value: Any) -> Any:
    from ._secret_refs import is_secret_ref

    return value if is_secret_ref(value) else REDACTED


def _redact_value(value: Any, regex: re.Pattern[str]) -> Any:
    if isinstance(value, Mapping):
        return redact_tree(value, regex)
    if isinstance(value, (list, tuple)):
        return [_redact_value(item, regex) for item in value]
    return value


_ASSIGNMENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|[^\s;&|]*)")


def redact_command(command: str, patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS) -> str:
    """`command` with ``NAME=value`` assignments of secret-looking names redacted.

    Best effort: catches ``export API_TOKEN=...`` and ``PASSWORD=x cmd``, not a
    secret passed as a bare argument.
    """
    regex = secret_name_matcher(patterns)
    return command if regex is None else redact_assignments(command, regex)


def redact_assignments(command: str, regex: re.Pattern[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}={REDACTED}" if regex.search(name) else match.group(0)

    return _ASSIGNMENT.sub(replace, command)


def drop_redacted(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without redacted entries: an unset variable is better than one set to ``[redacted]``."""
    return {name: value for name, value in env.items() if value != REDACTED}


_QUERY_SECRET = re.compile(r"(?i)\b((?:token|access_token|auth|password|passwd|key|secret)=)[^&#\s'\"]+")
_AUTH_HEADER = re.compile(r"(?i)\b((?:authorization:\s*)?(?:token|bearer|basic)\s+)[A-Za-z0-9_\-.~%+/=]{8,}")


def secret_values(options: Mapping[str, Any], patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS) -> tuple[str, ...]:
    """The literal value of every secret-looking key in `options`, at any depth (longest first):
    what free text about the session (an error, a log line, a reply) must never show.

    A reference names where a value lives, not the value, so it gives none here;
    the engine adds a reference's value when it resolves one (``tether.engine._secrets``).
    """
    if not options:  # most sessions have no options at all: each registration asks
        return ()
    regex = secret_name_matcher(patterns)
    found: set[str] = set()
    if regex is not None:
        _collect(options, regex, found, secret=False)
    return longest_first(found)


def longest_first(values: Iterable[str]) -> tuple[str, ...]:
    """`values` in the order redaction replaces them: a longer secret may contain a shorter one."""
    return tuple(sorted(set(values), key=lambda value: (-len(value), value)))


def _collect(value: Any, regex: re.Pattern[str], found: set[str], *, secret: bool) -> None:
    if isinstance(value, str):
        if secret and value and value != REDACTED:
            found.add(value)
    elif isinstance(value, Mapping):
        from ._secret_refs import is_secret_ref

        if is_secret_ref(value):
            return
        for key, inner in value.items():
            _collect(inner, regex, found, secret=secret or (isinstance(key, str) and regex.search(key) is not None))
    elif isinstance(value, (list, tuple)):
        for inner in value:
            _collect(inner, regex, found, secret=secret)


def redact_data(value: Any, secrets: Iterable[str] = ()) -> Any:
    """`value` (JSON-ready data: a reply, an error's details) with every string passed through `redact_text`."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {key: redact_data(inner, secrets) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(inner, secrets) for inner in value]
    return value


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text (an error, a URL, a log line) with every known secret, every ``token=...``
    query value and every ``Bearer ...`` / ``Authorization:`` credential replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    # each pattern only where it could match: every failed attempt's reason passes through here
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)
    lowered = text.lower()
    if "token" in lowered or "bearer" in lowered or "basic" in lowered:
        text = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    return text
