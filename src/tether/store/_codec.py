"""Snapshots: a session's spec and state as a versioned, secret-free dict.

A snapshot is what survives a crash: the spec, the status, the current
episode with its attempts, the bounded history, the preserved state and the
per-session counters (all inside `SessionState`). It is unstructured by our
own cattrs converter into a JSON-ready dict that carries ``"schema"``, so a
store can keep it as text and a later tether can migrate it forward. A dict
from a newer tether is refused, never guessed at.

Secrets are redacted on the way out (`tether.rules._secrets`), because a
snapshot sits on disk for as long as the session lives. A restore therefore
sees ``"[redacted]"`` where a literal secret was; the engine never hands such a
value to a program (a secret named by reference survives instead).

A field added later with a default, and left out of the dict while it holds
that default (``runs``: the session's pending `run`s), extends schema 1
without a new version: every older snapshot loads as it is, and a snapshot
without such a value is exactly what an older tether wrote.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import cattrs
from cattrs.gen import make_dict_unstructure_fn, override
from cattrs.v import format_exception

from ..rules._console import SavedRuns
from ..rules._errors import SnapshotError, TetherError
from ..rules._policy import Jitter
from ..rules._reasons import DisconnectReason
from ..rules._secrets import (
    DEFAULT_SECRET_PATTERNS,
    redact_assignments,
    redact_mapping,
    redact_tree,
    secret_name_matcher,
)
from ..rules._snapshots import SessionSnapshot
from ..rules._spec import SessionSpec
from ..rules._state import EpisodeOutcome, SessionStatus

T = TypeVar("T")

SNAPSHOT_SCHEMA_VERSION = 1
"""Version of the dict layout written by this tether. Bump it with a `MIGRATIONS` entry."""

Migration = Callable[[dict[str, Any]], dict[str, Any]]

MIGRATIONS: Mapping[int, Migration] = MappingProxyType({})
"""``MIGRATIONS[n]`` turns a schema-n dict into a schema-(n+1) dict; applied in order on load.
Read-only: a new schema ships its step here, in code.

Each function gets its own copy to change and returns the upgraded dict; the
``"schema"`` key is set by `migrate`, not by the function.
"""

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
    converter.register_unstructure_hook(
        SavedRuns, make_dict_unstructure_fn(SavedRuns, converter, _cattrs_omit_if_default=True)
    )  # before the snapshot's hook, which uses it
    converter.register_unstructure_hook(
        SessionSnapshot,
        make_dict_unstructure_fn(SessionSnapshot, converter, runs=override(omit_if_default=True)),
    )
    return converter


_CONVERTER = make_snapshot_converter()


# -- to and from dicts ---------------------------------------------------------------------------


def snapshot_to_dict(
    snapshot: SessionSnapshot, *, secret_patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS
) -> dict[str, Any]:
    """A JSON-ready dict of the redacted snapshot, with ``"schema"``.

    Pass ``secret_patterns=()`` to skip redaction (tests, in-memory use only).
    """
    body: dict[str, Any] = _CONVERTER.unstructure(snapshot, SessionSnapshot)
    regex = secret_name_matcher(secret_patterns)
    if regex is not None:
        _redact_body(body, regex)
    return {"schema": SNAPSHOT_SCHEMA_VERSION, **body}


def _redact_body(body: dict[str, Any], regex: re.Pattern[str]) -> None:
    """Redaction (`tether.rules._secrets`), applied to the fresh dicts the converter just built.

    Only new values are assigned into dicts the converter created, nothing the
    caller holds is touched, and no attrs object is rebuilt per write.
    """
    spec = body["spec"]
    spec["options"] = redact_tree(spec["options"], regex)
    preserved = body["state"].get("preserved")
    if preserved is not None:
        for field in ("env", "extra"):
            preserved[field] = redact_mapping(preserved[field], regex)
        if preserved.get("last_command") is not None:
            preserved["last_command"] = redact_assignments(preserved["last_command"], regex)


def _guess_id(data: Mapping[str, Any]) -> str:
    for part in ("spec", "state"):
        inner = data.get(part)
        if isinstance(inner, Mapping) and isinstance(inner.get("id"), str):
            return str(inner["id"])
    return "?"


def migrate(
    data: Mapping[str, Any], *, session_id: str | None = None, migrations: Mapping[int, Migration] | None = None
) -> dict[str, Any]:
    """`data` upgraded to `SNAPSHOT_SCHEMA_VERSION` through `MIGRATIONS`; never downgraded.

    Raises `SnapshotError` for a missing or newer schema, or a missing step.
    """
    sid = session_id if session_id is not None else _guess_id(data)
    steps = MIGRATIONS if migrations is None else migrations
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
        step = steps.get(version)
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


def _structure(body: Mapping[str, Any], cls: type[T], sid: str, what: str = "") -> T:
    """`body` as a `cls`, or a `SnapshotError` with cattrs' ``field @ $.path`` lines."""
    try:
        return _CONVERTER.structure(body, cls)
    except cattrs.BaseValidationError as exc:
        lines = "; ".join(cattrs.transform_error(exc, path="$", format_exception=_format_exception))
        raise SnapshotError(sid, f"{what}does not match schema {SNAPSHOT_SCHEMA_VERSION}: {lines}") from exc
    except (TetherError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SnapshotError(sid, f"{what}does not match schema {SNAPSHOT_SCHEMA_VERSION}: {exc}") from exc


def snapshot_from_dict(
    data: Mapping[str, Any], *, session_id: str | None = None, migrations: Mapping[int, Migration] | None = None
) -> SessionSnapshot:
    """The snapshot `data` describes, migrated forward if it is older.

    `session_id` names the session in errors (a store passes its row's key);
    otherwise the id is read from the dict. Any failure is a `SnapshotError`
    whose problem carries cattrs' ``field @ $.path`` lines.
    """
    sid = session_id if session_id is not None else _guess_id(data)
    if not isinstance(data, Mapping):
        raise SnapshotError(sid, f"is not a table (got {type(data).__name__})")
    body = migrate(data, session_id=sid, migrations=migrations)
    del body["schema"]
    snapshot = _structure(body, SessionSnapshot, sid)
    if session_id is not None and snapshot.spec.id != session_id:
        raise SnapshotError(sid, f"is stored under {session_id!r} but describes session {snapshot.spec.id!r}")
    return snapshot


# -- as JSON text ---------------------------------------------------------------------------------


def _json_default(value: object) -> str:
    """TOML gives dates and times; JSON has none, so they are kept as ISO text."""
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_snapshot(snapshot: SessionSnapshot, secret_patterns: Iterable[str]) -> str:
    """Compact JSON text of the redacted snapshot: what every text-keeping store writes.

    A value JSON cannot hold (in the spec's options) is a `SnapshotError` naming the session.
    """
    return _dumps(snapshot_to_dict(snapshot, secret_patterns=secret_patterns), snapshot.spec.id)


def parse_snapshot_text(session_id: str, text: str | bytes) -> dict[str, Any]:
    """The JSON object stored as `text`; anything else is a `SnapshotError`."""
    return _loads(text, session_id)


def decode_snapshot(session_id: str, text: str | bytes) -> SessionSnapshot:
    """The snapshot stored as `text` under `session_id`; any problem is a `SnapshotError`."""
    return snapshot_from_dict(_loads(text, session_id), session_id=session_id)


def _dumps(data: Mapping[str, Any], sid: str) -> str:
    try:
        return json.dumps(data, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise SnapshotError(sid, f"cannot be encoded as JSON: {exc}") from exc


def _loads(text: str | bytes, sid: str, what: str = "") -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(sid, f"{what}is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SnapshotError(sid, f"{what}is not a JSON object (got {type(data).__name__})")
    return data


# -- a spec alone (a shared store declares sessions before anyone has run them) ------------------


def encode_spec(spec: SessionSpec, secret_patterns: Iterable[str]) -> str:
    """Compact JSON text of the redacted spec with ``"schema"``: a session declared, not yet run.

    Redacted like a snapshot's spec: a literal secret becomes ``"[redacted]"``,
    a secret named by reference survives and resolves on whichever machine runs it.
    """
    body: dict[str, Any] = _CONVERTER.unstructure(spec, SessionSpec)
    regex = secret_name_matcher(secret_patterns)
    if regex is not None:
        body["options"] = redact_tree(body["options"], regex)
    return _dumps({"schema": SNAPSHOT_SCHEMA_VERSION, **body}, spec.id)


def decode_spec(session_id: str, text: str | bytes) -> SessionSpec:
    """The spec stored as `text` under `session_id`; any problem is a `SnapshotError`."""
    data = _loads(text, session_id, "spec ")
    version = data.pop("schema", None)
    if version != SNAPSHOT_SCHEMA_VERSION:
        raise SnapshotError(session_id, f"spec has schema {version!r}, this tether reads {SNAPSHOT_SCHEMA_VERSION}")
    spec = _structure(data, SessionSpec, session_id, "spec ")
    if spec.id != session_id:
        raise SnapshotError(session_id, f"spec is stored under {session_id!r} but describes session {spec.id!r}")
    return spec
