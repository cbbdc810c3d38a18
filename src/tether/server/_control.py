"""The /control protocol: JSON commands in, JSON replies out.

Parsing is pure (`parse_request` returns a command or a `ControlError`), so
every bad frame is tested without a socket; `execute` is the only part that
touches the supervisor. Each reply carries the request's id::

    {"id": 7, "op": "force-reconnect", "session_id": "web", "strategy": "simple-reconnect"}
    {"id": 7, "result": {...}}
    {"id": 7, "error": {"type": "not-found", "message": "no session 'web' is registered"}}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
import trio

from ..engine._supervisor import Supervisor
from ..rules._errors import (
    ConfigError,
    DuplicateSessionError,
    InvalidConfigError,
    LinkError,
    SessionNotFoundError,
    SupervisorClosedError,
    UnknownBackendError,
    UnknownStrategyError,
)
from ..rules._spec import SessionSpec
from ..rules._state import Attempt, SessionState
from ..rules._stats import SupervisorStats
from ..rules._structure import structure_session

RequestId = str | int | None

OPS = ("status", "register", "unregister", "force-reconnect")


@attrs.frozen
class ControlError(Exception):
    """A typed error reply. `type` is stable and machine-readable; `message` is for people."""

    type: str
    message: str
    details: Mapping[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, **self.details}


@attrs.frozen
class Status:
    session_ids: tuple[str, ...] = ()


@attrs.frozen
class Register:
    spec: SessionSpec


@attrs.frozen
class Unregister:
    session_id: str


@attrs.frozen
class ForceReconnect:
    session_id: str
    strategy: str | None = None
    wait: bool = True


Command = Status | Register | Unregister | ForceReconnect


@attrs.frozen
class Request:
    id: RequestId
    command: Command


# -- parsing (pure) -----------------------------------------------------------------------------


def _invalid(message: str) -> ControlError:
    return ControlError("invalid-request", message)


def _string(data: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(f"{key}: must be a non-empty string, got {value!r}" if key in data else f"{key}: required")
    return value


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(data) - {"id", "op", *allowed})
    if extra:
        raise _invalid(f"unknown field{'s' if len(extra) > 1 else ''} for {data['op']!r}: {', '.join(extra)}")


def _parse_status(data: Mapping[str, Any]) -> Status:
    _check_keys(data, ("sessions",))
    ids = data.get("sessions", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise _invalid(f"sessions: must be a list of session ids, got {ids!r}")
    return Status(tuple(ids))


def _parse_register(data: Mapping[str, Any]) -> Register:
    _check_keys(data, ("session",))
    if "session" not in data:
        raise _invalid("session: required (a table like a [[sessions]] entry of the config)")
    try:
        return Register(structure_session(data["session"]))
    except InvalidConfigError as exc:
        raise ControlError(
            "invalid-config", "; ".join(str(e) for e in exc.errors),
            {"errors": [{"path": e.path, "problem": e.problem} for e in exc.errors]},
        ) from None


def _parse_unregister(data: Mapping[str, Any]) -> Unregister:
    _check_keys(data, ("session_id",))
    session_id = _string(data, "session_id")
    assert session_id is not None
    return Unregister(session_id)


def _parse_force(data: Mapping[str, Any]) -> ForceReconnect:
    _check_keys(data, ("session_id", "strategy", "wait"))
    session_id = _string(data, "session_id")
    assert session_id is not None
    wait = data.get("wait", True)
    if not isinstance(wait, bool):
        raise _invalid(f"wait: must be true or false, got {wait!r}")
    return ForceReconnect(session_id, _string(data, "strategy", required=False), wait)


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Command]] = {
    "status": _parse_status,
    "register": _parse_register,
    "unregister": _parse_unregister,
    "force-reconnect": _parse_force,
}


class NotJsonError(ValueError):
    """The frame is not a JSON document: the connection is closed with 1007."""


def decode_frame(text: str) -> Any:
    """JSON or `NotJsonError` (NaN and Infinity are not JSON either)."""

    def reject_constant(name: str) -> Any:
        raise NotJsonError(f"{name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise NotJsonError(f"not JSON: {exc}") from None


def request_id(data: object) -> RequestId:
    """The id to answer to; only strings, integers and null are ids."""
    if isinstance(data, Mapping):
        rid = data.get("id")
        if rid is None or isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)):
            return rid
    return None


def parse_request(data: object) -> Request | ControlError:
    """A decoded JSON document as a command, or the error to reply with."""
    if not isinstance(data, Mapping):
        return _invalid(f"a request must be a JSON object, got {type(data).__name__}")
    rid = data.get("id")
    if isinstance(rid, bool) or not (rid is None or isinstance(rid, (str, int))):
        return _invalid(f"id: must be a string, an integer or null, got {rid!r}")
    op = data.get("op")
    if not isinstance(op, str):
        return _invalid(f"op: must be one of {', '.join(OPS)}, got {op!r}")
    parser = _PARSERS.get(op)
    if parser is None:
        return ControlError("unknown-op", f"unknown op {op!r}; known: {', '.join(OPS)}")
    try:
        return Request(rid, parser(data))
    except ControlError as exc:
        return exc


# -- replies ------------------------------------------------------------------------------------


def make_state_converter() -> cattrs.Converter:
    """States, attempts and stats as JSON-ready dicts (enums as their values)."""
    return cattrs.Converter()


_STATES = make_state_converter()


def state_to_dict(state: SessionState) -> dict[str, Any]:
    data: dict[str, Any] = _STATES.unstructure(state)
    return data


def stats_to_dict(stats: SupervisorStats) -> dict[str, Any]:
    data: dict[str, Any] = _STATES.unstructure(stats)
    return data


def reply(rid: RequestId, result: Any) -> dict[str, Any]:
    return {"id": rid, "result": result}


def error_reply(rid: RequestId, error: ControlError) -> dict[str, Any]:
    return {"id": rid, "error": error.to_dict()}


def error_for(exc: Exception) -> ControlError:
    """The typed reply for an error the supervisor raised."""
    if isinstance(exc, SessionNotFoundError):
        return ControlError("not-found", str(exc))
    if isinstance(exc, DuplicateSessionError):
        return ControlError("duplicate", str(exc))
    if isinstance(exc, UnknownBackendError):
        return ControlError("unknown-backend", str(exc))
    if isinstance(exc, UnknownStrategyError):
        return ControlError("unknown-strategy", str(exc))
    if isinstance(exc, ConfigError):
        return ControlError("invalid-config", str(exc), {"errors": [{"path": exc.path, "problem": exc.problem}]})
    if isinstance(exc, SupervisorClosedError):
        return ControlError("closed", str(exc))
    if isinstance(exc, LinkError):
        return ControlError("link-error", str(exc), {"reason": exc.reason.value})
    return ControlError("internal", f"{type(exc).__name__}: {exc}")


# -- execution ----------------------------------------------------------------------------------


def _attempt(attempt: Attempt | None) -> dict[str, Any] | None:
    return None if attempt is None else dict(_STATES.unstructure(attempt))


async def execute(supervisor: Supervisor, command: Command) -> Any:
    """Run one command; errors come out as the supervisor raised them (see `error_for`)."""
    if isinstance(command, Status):
        await trio.lowlevel.checkpoint()
        states = supervisor.states()
        wanted = command.session_ids or tuple(states)
        missing = [sid for sid in wanted if sid not in states]
        if missing:
            raise SessionNotFoundError(missing[0])
        result = {
            "sessions": [state_to_dict(states[sid]) for sid in wanted],
            "stats": stats_to_dict(supervisor.stats()),
            "last_seq": supervisor.bus.last_seq,
        }
        return result
    if isinstance(command, Register):
        return state_to_dict(await supervisor.register(command.spec))
    if isinstance(command, Unregister):
        await supervisor.unregister(command.session_id)
        return {"session_id": command.session_id}
    attempt = await supervisor.force_reconnect(command.session_id, command.strategy, wait=command.wait)
    return {"attempt": _attempt(attempt)}


async def handle(supervisor: Supervisor, data: object) -> dict[str, Any]:
    """A decoded request in, its reply out; never raises for a bad request."""
    parsed = parse_request(data)
    if isinstance(parsed, ControlError):
        return error_reply(request_id(data), parsed)
    try:
        return reply(parsed.id, await execute(supervisor, parsed.command))
    except Exception as exc:
        return error_reply(parsed.id, error_for(exc))
