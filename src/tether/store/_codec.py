"""Snapshots: a session's spec and state as a versioned, secret-free dict.

A snapshot is what survives a crash: the spec, the status, the current
episode with its attempts, the bounded history, the preserved state and the
per-session counters (all inside `SessionState`). It is unstructured by our
own cattrs converter into a JSON-ready dict that carries ``"schema"``, so a
store can keep it as text and a later tether can migrate it forward. A dict
from a newer tether is refused, never guessed at.

Secrets are redacted on the way out (env variables and option keys that look
like tokens or passwords), because a snapshot sits on disk for as long as the
session lives. A restore therefore sees ``"[redacted]"`` where a secret was:
use `drop_redacted` before handing a restored env to a program, and prefer the
configured spec over the snapshot's when both exist.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.v import format_exception

from ..rules._errors import ConfigError, TetherError
from ..rules._policy import Jitter
from ..rules._reasons import DisconnectReason
from ..rules._spec import SessionSpec
from ..rules._state import EpisodeOutcome, PreservedState, SessionState, SessionStatus

SNAPSHOT_SCHEMA_VERSION = 1
"""Version of the dict layout written by this tether. Bump it with a `MIGRATIONS` entry."""

MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""``MIGRATIONS[n]`` turns a schema-n dict into a schema-(n+1) dict; applied in order on load.

Each function gets its own copy to change and returns the upgraded dict; the
``"schema"`` key is set by `migrate`, not by the function.
"""

DEFAULT_SECRET_PATTERNS: tuple[str, ...] = (
    "TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH",
)
"""Case-insensitive substrings of a name whose value must never reach a store.

Deliberately broad (``KEY`` also hits ``SSH_KEY_PATH``, ``AUTH`` hits
``SSH_AUTH_SOCK``): losing a harmless value on restore beats writing a secret.
"""

REDACTED = "[redacted]"
"""What a secret value is replaced with."""


class SnapshotError(TetherError):
    """A stored snapshot cannot be read (bad JSON, bad shape, newer schema); names the session."""

    def __init__(self, session_id: str, problem: str) -> None:
        self.session_id = session_id
        self.problem = problem
        super().__init__(f"snapshot of session {session_id!r}: {problem}")


def _same_session(instance: SessionSnapshot, attribute: attrs.Attribute[Any], value: SessionState) -> None:
    if value.id != instance.spec.id:
        raise ConfigError("state.id", f"is {value.id!r} but the spec is of session {instance.spec.id!r}")


@attrs.frozen(kw_only=True)
class SessionSnapshot:
    """One session as it is persisted: what to run, where it was, and when we wrote it down."""

    spec: SessionSpec
    state: SessionState = attrs.field(validator=_same_session)
    saved_at: float
    """Wall-clock time (epoch seconds) the snapshot was taken."""

    @property
    def session_id(self) -> str:
        return self.spec.id


# -- converter ----------------------------------------------------------------------------------

_ENUMS: tuple[type[Any], ...] = (SessionStatus, EpisodeOutcome, DisconnectReason, Jitter)


def _enum_value(member: Any) -> Any:
    return member.value


def make_snapshot_converter() -> cattrs.Converter:
    """A converter for snapshots: enums as their values, unknown keys an error.

    Its own instance (never cattrs' global converter), so registering hooks
    here cannot change how anything else in the process is converted.
    """
    converter = cattrs.Converter(forbid_extra_keys=True)
    for enum_type in _ENUMS:
        converter.register_unstructure_hook(enum_type, _enum_value)
    return converter


_CONVERTER = make_snapshot_converter()


# -- redaction ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _secret_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(re.escape(p) for p in patterns), re.IGNORECASE)


def _matcher(patterns: Iterable[str]) -> re.Pattern[str] | None:
    return _secret_regex(tuple(patterns))


def redact_env(env: Mapping[str, str], patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS) -> dict[str, str]:
    """A copy of `env` with the value of every secret-looking name replaced by ``[redacted]``."""
    regex = _matcher(patterns)
    if regex is None:
        return dict(env)
    return {name: (REDACTED if regex.search(name) else value) for name, value in env.items()}


def redact_options(
    options: Mapping[str, Any], patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS
) -> dict[str, Any]:
    """A copy of `options` where any key, at any depth, that looks secret has its value redacted.

    Walks nested tables and lists of tables (``headers``, ``env``, per-host
    tables); a secret key's whole value goes, whatever its type.
    """
    regex = _matcher(patterns)
    if regex is None:
        return dict(options)
    return _redact_tree(options, regex)


def _redact_tree(table: Mapping[str, Any], regex: re.Pattern[str]) -> dict[str, Any]:
    return {
        key: (REDACTED if isinstance(key, str) and regex.search(key) else _redact_value(value, regex))
        for key, value in table.items()
    }


def _redact_value(value: Any, regex: re.Pattern[str]) -> Any:
    if isinstance(value, Mapping):
        return _redact_tree(value, regex)
    if isinstance(value, (list, tuple)):
        return [_redact_value(item, regex) for item in value]
    return value


def redact_command(command: str, patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS) -> str:
    """`command` with ``NAME=value`` assignments of secret-looking names redacted.

    Best effort: catches ``export API_TOKEN=...`` and ``PASSWORD=x cmd``, not a
    secret passed as a bare argument.
    """
    regex = _matcher(patterns)
    return command if regex is None else _redact_assignments(command, regex)


def _redact_assignments(command: str, regex: re.Pattern[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}={REDACTED}" if regex.search(name) else match.group(0)

    return _ASSIGNMENT.sub(replace, command)


_ASSIGNMENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|[^\s;&|]*)")


def drop_redacted(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without redacted entries: an unset variable is better than one set to ``[redacted]``."""
    return {name: value for name, value in env.items() if value != REDACTED}


def _redact_preserved(preserved: PreservedState, patterns: tuple[str, ...]) -> PreservedState:
    return attrs.evolve(
        preserved,
        env=redact_env(preserved.env, patterns),
        extra=redact_env(preserved.extra, patterns),
        last_command=(
            redact_command(preserved.last_command, patterns) if preserved.last_command is not None else None
        ),
    )


def redact_snapshot(
    snapshot: SessionSnapshot, patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS
) -> SessionSnapshot:
    """The snapshot with secrets removed from the spec's options and the preserved state."""
    pats = tuple(patterns)
    if not pats:
        return snapshot
    spec = attrs.evolve(snapshot.spec, options=redact_options(snapshot.spec.options, pats))
    state = snapshot.state
    if state.preserved is not None:
        state = attrs.evolve(state, preserved=_redact_preserved(state.preserved, pats))
    return attrs.evolve(snapshot, spec=spec, state=state)


# -- to and from dicts ---------------------------------------------------------------------------


def snapshot_to_dict(
    snapshot: SessionSnapshot, *, secret_patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS
) -> dict[str, Any]:
    """A JSON-ready dict of the redacted snapshot, with ``"schema"``.

    Pass ``secret_patterns=()`` to skip redaction (tests, in-memory use only).
    """
    body: dict[str, Any] = _CONVERTER.unstructure(snapshot, SessionSnapshot)
    regex = _matcher(secret_patterns)
    if regex is not None:
        _redact_body(body, regex)
    return {"schema": SNAPSHOT_SCHEMA_VERSION, **body}


def _redact_body(body: dict[str, Any], regex: re.Pattern[str]) -> None:
    """`redact_snapshot`, applied to the fresh dicts the converter just built.

    Same result as unstructuring a redacted snapshot, without building (and
    validating) four new attrs objects per write: only new values are assigned
    into dicts the converter created, nothing the caller holds is touched.
    """
    spec = body["spec"]
    spec["options"] = _redact_tree(spec["options"], regex)
    preserved = body["state"].get("preserved")
    if preserved is not None:
        for field in ("env", "extra"):
            preserved[field] = {
                name: (REDACTED if regex.search(name) else value) for name, value in preserved[field].items()
            }
        if preserved.get("last_command") is not None:
            preserved["last_command"] = _redact_assignments(preserved["last_command"], regex)


def _guess_id(data: Mapping[str, Any]) -> str:
    for part in ("spec", "state"):
        inner = data.get(part)
        if isinstance(inner, Mapping) and isinstance(inner.get("id"), str):
            return str(inner["id"])
    return "?"


def migrate(data: Mapping[str, Any], *, session_id: str | None = None) -> dict[str, Any]:
    """`data` upgraded to `SNAPSHOT_SCHEMA_VERSION` through `MIGRATIONS`; never downgraded.

    Raises `SnapshotError` for a missing or newer schema, or a missing step.
    """
    sid = session_id if session_id is not None else _guess_id(data)
    version = data.get("schema")
    if isinstance(version, bool) or not isinstance(version, int):
        raise SnapshotError(sid, f"has no valid schema version (got {version!r})")
    if version > SNAPSHOT_SCHEMA_VERSION:
        raise SnapshotError(
            sid,
            f"written by a newer tether (schema {version} > {SNAPSHOT_SCHEMA_VERSION}); "
            "upgrade tether to read it",
        )
    upgraded = dict(data)
    while version < SNAPSHOT_SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise SnapshotError(
                sid, f"schema {version} is too old: no migration from {version} to {version + 1}"
            )
        try:
            upgraded = dict(step(dict(upgraded)))
        except Exception as exc:
            raise SnapshotError(sid, f"migration from schema {version} failed: {exc!r}") from exc
        version += 1
        upgraded["schema"] = version
    return upgraded


def _format_exception(exc: BaseException, type_: Any) -> str:
    """cattrs' wording, plus the message of a validator's own error (``max_delay: must be >= ...``)."""
    if isinstance(exc, TetherError):
        return f"invalid value ({exc})"
    return format_exception(exc, type_)


def snapshot_from_dict(data: Mapping[str, Any], *, session_id: str | None = None) -> SessionSnapshot:
    """The snapshot `data` describes, migrated forward if it is older.

    `session_id` names the session in errors (a store passes its row's key);
    otherwise the id is read from the dict. Any failure is a `SnapshotError`
    whose problem carries cattrs' ``field @ $.path`` lines.
    """
    sid = session_id if session_id is not None else _guess_id(data)
    if not isinstance(data, Mapping):
        raise SnapshotError(sid, f"is not a table (got {type(data).__name__})")
    body = migrate(data, session_id=sid)
    del body["schema"]
    try:
        snapshot: SessionSnapshot = _CONVERTER.structure(body, SessionSnapshot)
    except cattrs.BaseValidationError as exc:
        lines = "; ".join(cattrs.transform_error(exc, path="$", format_exception=_format_exception))
        raise SnapshotError(sid, f"does not match schema {SNAPSHOT_SCHEMA_VERSION}: {lines}") from exc
    except (TetherError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SnapshotError(sid, f"does not match schema {SNAPSHOT_SCHEMA_VERSION}: {exc}") from exc
    if session_id is not None and snapshot.spec.id != session_id:
        raise SnapshotError(sid, f"is stored under {session_id!r} but describes session {snapshot.spec.id!r}")
    return snapshot
