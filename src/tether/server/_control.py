"""The /control protocol: JSON commands in, JSON replies out (docs/control.md).

Reading a frame is pure (`read_frame`): every frame becomes a `Request` to
run, a `Rejected` to answer with a typed error at once, or a `Close` when
it cannot be answered at all (not JSON, not UTF-8, too big, binary). So each
bad frame is tested without a socket, and nothing a client sends can raise
out of here. `execute` is the only part that touches the supervisor. Each
reply carries the request's id::

    {"id": 7, "op": "force-reconnect", "session_id": "web", "strategy": "simple-reconnect"}
    {"id": 7, "result": {...}}
    {"id": 7, "error": {"type": "not-found", "message": "no session 'web' is registered", "session_id": "web"}}

JSON that is valid but hostile is answered, not choked on: nesting deeper
than `MAX_DEPTH`, integers longer than `MAX_INT_DIGITS`, non-finite numbers
and text with a lone surrogate are typed errors (``invalid-request``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from ..engine._supervisor import Supervisor
from ..rules._errors import (
    ConfigError,
    CursorError,
    DuplicateSessionError,
    InvalidConfigError,
    LinkError,
    RunNotFoundError,
    SessionNotFoundError,
    SupervisorClosedError,
    UnknownBackendError,
    UnknownStrategyError,
)
from ..rules._spec import SessionSpec
from ..rules._state import SessionStatus
from ..rules._status import (
    MAX_LIMIT,
    SUMMARY_LIMIT,
    StatusQuery,
    page,
    summarize,
    to_dict,
)
from ..rules._structure import structure_session
from ..rules._wire import input_from_dict, read_to_dict
from ._connection import CLOSE_INVALID_PAYLOAD, CLOSE_UNSUPPORTED, BadFrame

RequestId = str | int | None

OPS = (
    "status", "register", "unregister", "force-reconnect",
    "read", "send", "interrupt", "resize", "wait", "run", "wait-run",
)
MAX_READ = 1 << 20
"""Most bytes one read may ask for (the reply carries them in base64)."""
MAX_BUDGET = 3600.0
"""Longest a wait or run may hold its request open: past it, wait again (runs leave a token)."""

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a request may have (a register's options need a few)."""
MAX_INT_DIGITS = 100
"""Longest integer a request may hold (ids included); Python itself refuses past 4,300 digits."""
MAX_ID_LENGTH = 256
"""Longest string id a request may carry."""


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
    query: StatusQuery = attrs.field(factory=StatusQuery)


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


@attrs.frozen
class Read:
    session_id: str
    since: int | None
    max_bytes: int
    log_id: str | None
    wait: float = 0.0
    """Seconds to wait for something at `since` when nothing is there yet (a long poll)."""


@attrs.frozen
class Send:
    session_id: str
    data: bytes


@attrs.frozen
class Interrupt:
    session_id: str


@attrs.frozen
class Resize:
    session_id: str
    rows: int
    cols: int


@attrs.frozen
class Wait:
    session_id: str
    pattern: str | None
    since: int | None
    quiet: float | None
    connected: bool
    budget: float


@attrs.frozen
class Run:
    session_id: str
    command: str
    budget: float


@attrs.frozen
class WaitRun:
    session_id: str
    token: str
    budget: float


Command = Status | Register | Unregister | ForceReconnect | Read | Send | Interrupt | Resize | Wait | Run | WaitRun


@attrs.frozen
class Request:
    """A command to run; its reply carries `id`."""

    id: RequestId
    command: Command


@attrs.frozen
class Rejected:
    """A frame that is answered at once with a typed error (it counts as a bad request)."""

    id: RequestId
    error: ControlError


@attrs.frozen
class Close:
    """A frame that cannot be answered: fail the connection with `code`, after the replies in flight."""

    code: int
    reason: str


# -- decoding (pure) ----------------------------------------------------------------------------


class NotJsonError(ValueError):
    """The frame is not a JSON document: the connection is closed with 1007."""


class HostileJsonError(ValueError):
    """Valid JSON this server will not take (too deep, too long a number, a lone surrogate)."""

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path


_SURROGATE = re.compile("[\ud800-\udfff]")


def _parse_int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise HostileJsonError(f"an integer has {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise HostileJsonError(f"the number {text[:40]}{'...' if len(text) > 40 else ''} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise NotJsonError(f"{name} is not valid JSON")


def _check_tree(data: Any) -> None:
    """Depth and lone surrogates, walked without recursion (the data may be hostile)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                raise HostileJsonError("text with a lone surrogate (not valid Unicode)", path)
        elif isinstance(value, (list, dict)):
            if depth >= MAX_DEPTH:
                raise HostileJsonError(f"nested deeper than {MAX_DEPTH} levels", path)
            if isinstance(value, dict):
                for key, item in value.items():
                    where = f"{path}.{key}" if path else str(key)
                    if not key.isascii() and _SURROGATE.search(key):
                        raise HostileJsonError("a key with a lone surrogate (not valid Unicode)", path)
                    stack.append((item, where, depth + 1))
            else:
                stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


def decode_frame(text: str) -> Any:
    """The JSON document in `text`: `NotJsonError` when it is not JSON, `HostileJsonError`
    when it is but cannot be taken safely."""
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float)
    except (NotJsonError, HostileJsonError):
        raise
    except json.JSONDecodeError as exc:
        raise NotJsonError(f"not JSON: {exc}") from None
    except RecursionError:
        raise HostileJsonError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # a number Python will not convert
        raise HostileJsonError(str(exc)[:120]) from None
    _check_tree(data)
    return data


def _id_problem(rid: object) -> str | None:
    if rid is None or (isinstance(rid, int) and not isinstance(rid, bool)):
        return None
    if isinstance(rid, str):
        return f"id: at most {MAX_ID_LENGTH} characters, got {len(rid)}" if len(rid) > MAX_ID_LENGTH else None
    return f"id: must be a string, an integer or null, got {_short(rid)}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def request_id(data: object) -> RequestId:
    """The id to answer to; only strings, integers and null are ids."""
    if isinstance(data, Mapping):
        rid = data.get("id")
        if _id_problem(rid) is None:
            return rid
    return None


def read_frame(frame: str | bytes | BadFrame) -> Request | Rejected | Close:
    """What to do with one frame; never raises."""
    if isinstance(frame, BadFrame):
        return Close(frame.code, frame.reason)
    if isinstance(frame, bytes):
        return Close(CLOSE_UNSUPPORTED, "binary frames are not accepted; send JSON text")
    try:
        data = decode_frame(frame)
    except NotJsonError as exc:
        return Close(CLOSE_INVALID_PAYLOAD, str(exc)[:120])
    except HostileJsonError as exc:
        rid = None if exc.path == "id" or exc.path.startswith(("id.", "id[")) else _raw_id(frame)
        return Rejected(rid, _invalid(str(exc)))
    parsed = parse_request(data)
    if isinstance(parsed, ControlError):
        return Rejected(request_id(data), parsed)
    return parsed


def _raw_id(frame: str) -> RequestId:
    """The id of a frame rejected before it was decoded: only when it is cheap and safe to find."""
    match = re.match(r'\s*\{\s*"id"\s*:\s*(-?\d{1,18}|"[A-Za-z0-9_.:-]{1,64}")\s*[,}]', frame)
    if match is None:
        return None
    raw = match.group(1)
    return raw[1:-1] if raw.startswith('"') else int(raw)


# -- parsing (pure) -----------------------------------------------------------------------------


def _invalid(message: str) -> ControlError:
    return ControlError("invalid-request", message)


def _string(data: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(f"{key}: must be a non-empty string, got {_short(value)}" if key in data else f"{key}: required")
    return value


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(data) - {"id", "op", *allowed})
    if extra:
        raise _invalid(f"unknown field{'s' if len(extra) > 1 else ''} for {data['op']!r}: {', '.join(extra)}")


def _bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise _invalid(f"{key}: must be true or false, got {_short(value)}")
    return value


def _count(data: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(f"{key}: must be a whole number from {low} to {high}, got {_short(value)}")
    return value


def _names(data: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(i, str) and i for i in value):
        raise _invalid(f"{key}: must be a list of {what}, got {_short(value)}")
    return tuple(value)


def _parse_status(data: Mapping[str, Any]) -> Status:
    _check_keys(data, ("detail", "sessions", "status", "cursor", "limit", "history"))
    ids = _names(data, "sessions", "session ids")
    statuses = []
    for name in _names(data, "status", "statuses"):
        try:
            statuses.append(SessionStatus(name))
        except ValueError:
            known = ", ".join(s.value for s in SessionStatus)
            raise _invalid(f"status: unknown status {name!r}; known: {known}") from None
    detail = _bool(data, "detail", bool(ids or statuses or "cursor" in data or "history" in data))
    cursor = _string(data, "cursor", required=False)
    if not detail and (ids or statuses or cursor is not None):
        raise _invalid("sessions, status and cursor select detail: leave out detail or set it to true")
    query = StatusQuery(
        detail=detail, session_ids=ids, statuses=tuple(statuses), cursor=cursor,
        limit=_count(data, "limit", 1 if detail else 0, MAX_LIMIT), history=_count(data, "history", 0, 1000),
    )
    return Status(query)


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
    return ForceReconnect(session_id, _string(data, "strategy", required=False), _bool(data, "wait", True))


def _sid(data: Mapping[str, Any]) -> str:
    session_id = _string(data, "session_id")
    assert session_id is not None
    return session_id


def _seconds(data: Mapping[str, Any], key: str, default: float | None, high: float) -> float | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
        raise _invalid(f"{key}: must be a number of seconds from 0 to {high:g}, got {_short(value)}")
    return float(value)


def _parse_read(data: Mapping[str, Any]) -> Read:
    _check_keys(data, ("session_id", "since", "max_bytes", "log", "wait"))
    since = _count(data, "since", 0, 1 << 62)
    max_bytes = _count(data, "max_bytes", 1, MAX_READ)
    wait = _seconds(data, "wait", 0.0, MAX_BUDGET)
    assert wait is not None
    return Read(_sid(data), since, 65536 if max_bytes is None else max_bytes, _string(data, "log", required=False),
                wait)


def _parse_send(data: Mapping[str, Any]) -> Send:
    _check_keys(data, ("session_id", "data", "text", "keys"))
    payload = {key: data[key] for key in ("data", "text", "keys") if key in data}
    try:
        return Send(_sid(data), input_from_dict(payload, path="send"))
    except InvalidConfigError as exc:
        raise ControlError(
            "invalid-request", "; ".join(str(e) for e in exc.errors),
            {"errors": [{"path": e.path, "problem": e.problem} for e in exc.errors]},
        ) from None


def _parse_interrupt(data: Mapping[str, Any]) -> Interrupt:
    _check_keys(data, ("session_id",))
    return Interrupt(_sid(data))


def _parse_resize(data: Mapping[str, Any]) -> Resize:
    _check_keys(data, ("session_id", "rows", "cols"))
    rows, cols = _count(data, "rows", 1, 10_000), _count(data, "cols", 1, 10_000)
    if rows is None or cols is None:
        raise _invalid("rows and cols: both required (whole numbers from 1 to 10000)")
    return Resize(_sid(data), rows, cols)


def _parse_wait(data: Mapping[str, Any]) -> Wait:
    _check_keys(data, ("session_id", "pattern", "since", "quiet", "connected", "budget"))
    pattern = _string(data, "pattern", required=False)
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _invalid(f"pattern: not a regular expression ({exc})") from None
    quiet = _seconds(data, "quiet", None, MAX_BUDGET)
    connected = _bool(data, "connected", False)
    if sum((pattern is not None, quiet is not None, connected)) != 1:
        raise _invalid("give exactly one of pattern, quiet or connected")
    budget = _seconds(data, "budget", 30.0, MAX_BUDGET)
    assert budget is not None
    return Wait(_sid(data), pattern, _count(data, "since", 0, 1 << 62), quiet, connected, budget)


def _parse_run(data: Mapping[str, Any]) -> Run:
    _check_keys(data, ("session_id", "command", "budget"))
    command = _string(data, "command")
    assert command is not None
    if "\0" in command:
        raise _invalid("command: must not contain NUL")
    budget = _seconds(data, "budget", 30.0, MAX_BUDGET)
    assert budget is not None
    return Run(_sid(data), command, budget)


def _parse_wait_run(data: Mapping[str, Any]) -> WaitRun:
    _check_keys(data, ("session_id", "token", "budget"))
    token = _string(data, "token")
    assert token is not None
    budget = _seconds(data, "budget", 30.0, MAX_BUDGET)
    assert budget is not None
    return WaitRun(_sid(data), token, budget)


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Command]] = {
    "status": _parse_status,
    "register": _parse_register,
    "unregister": _parse_unregister,
    "force-reconnect": _parse_force,
    "read": _parse_read,
    "send": _parse_send,
    "interrupt": _parse_interrupt,
    "resize": _parse_resize,
    "wait": _parse_wait,
    "run": _parse_run,
    "wait-run": _parse_wait_run,
}


def parse_request(data: object) -> Request | ControlError:
    """A decoded JSON document as a command, or the error to reply with."""
    if not isinstance(data, Mapping):
        return _invalid(f"a request must be a JSON object, got {type(data).__name__}")
    problem = _id_problem(data.get("id"))
    if problem is not None:
        return _invalid(problem)
    rid = data.get("id")
    op = data.get("op")
    if not isinstance(op, str):
        return _invalid(f"op: must be one of {', '.join(OPS)}, got {_short(op)}")
    parser = _PARSERS.get(op)
    if parser is None:
        return ControlError("unknown-op", f"unknown op {_short(op)}; known: {', '.join(OPS)}")
    try:
        return Request(rid, parser(data))
    except ControlError as exc:
        return exc


# -- replies ------------------------------------------------------------------------------------


def reply(rid: RequestId, result: Any) -> dict[str, Any]:
    return {"id": rid, "result": result}


def error_reply(rid: RequestId, error: ControlError) -> dict[str, Any]:
    return {"id": rid, "error": error.to_dict()}


def encode(message: Mapping[str, Any]) -> str:
    """Compact JSON that is always valid UTF-8: text that cannot be encoded (a path with
    undecodable bytes, as ``os`` hands them over) is escaped instead."""
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(message, separators=(",", ":"), ensure_ascii=True)
    return text


def error_for(exc: Exception) -> ControlError:
    """The typed reply for an error the supervisor raised (with what a client needs to rebuild it)."""
    if isinstance(exc, SessionNotFoundError):
        return ControlError("not-found", str(exc), {"session_id": exc.session_id})
    if isinstance(exc, DuplicateSessionError):
        return ControlError("duplicate", str(exc), {"session_id": exc.session_id})
    if isinstance(exc, UnknownBackendError):
        return ControlError("unknown-backend", str(exc), {"name": exc.name, "known": list(exc.known)})
    if isinstance(exc, UnknownStrategyError):
        return ControlError("unknown-strategy", str(exc), {"name": exc.name, "known": list(exc.known)})
    if isinstance(exc, InvalidConfigError):
        return ControlError("invalid-config", "; ".join(str(e) for e in exc.errors),
                            {"errors": [{"path": e.path, "problem": e.problem} for e in exc.errors]})
    if isinstance(exc, ConfigError):
        return ControlError("invalid-config", str(exc), {"errors": [{"path": exc.path, "problem": exc.problem}]})
    if isinstance(exc, SupervisorClosedError):
        return ControlError("closed", str(exc))
    if isinstance(exc, CursorError):
        return ControlError("bad-cursor", str(exc))
    if isinstance(exc, RunNotFoundError):
        return ControlError("run-not-found", str(exc))
    if isinstance(exc, LinkError):
        return ControlError("link-error", str(exc), {"reason": exc.reason.value, "detail": exc.detail})
    return ControlError("internal", f"{type(exc).__name__}: {exc}")


# -- execution ----------------------------------------------------------------------------------


async def execute(supervisor: Supervisor, command: Command) -> Any:
    """Run one command; errors come out as the supervisor raised them (see `error_for`)."""
    if isinstance(command, Status):
        await trio.lowlevel.checkpoint()
        query = command.query
        if query.detail:
            if query.statuses:  # chosen by status: the cheap statuses, then the views of a page
                statuses = supervisor.statuses()
                return to_dict(page(statuses, supervisor.state, query, status_of=statuses.__getitem__))
            return to_dict(page(supervisor.session_ids, supervisor.state, query))
        limit = query.limit if query.limit is not None else SUMMARY_LIMIT
        return to_dict(summarize(supervisor.statuses(), supervisor.state, supervisor.stats(), supervisor.bus.last_seq,
                                 limit))
    if isinstance(command, Register):
        return to_dict(await supervisor.register(command.spec))
    if isinstance(command, Unregister):
        await supervisor.unregister(command.session_id)
        return {"session_id": command.session_id}
    if isinstance(command, ForceReconnect):
        attempt = await supervisor.force_reconnect(command.session_id, command.strategy, wait=command.wait)
        return {"attempt": None if attempt is None else to_dict(attempt)}
    return await _console(supervisor, command)


async def _console(supervisor: Supervisor, command: Command) -> Any:
    """The console commands: read, send, interrupt, resize, wait, run, wait-run."""
    if isinstance(command, Read):
        if command.wait > 0:
            return read_to_dict(await supervisor.read_next(
                command.session_id, command.since, command.max_bytes, log_id=command.log_id, budget=command.wait))
        await trio.lowlevel.checkpoint()
        return read_to_dict(supervisor.read(command.session_id, command.since, command.max_bytes,
                                            log_id=command.log_id))
    if isinstance(command, Send):
        await supervisor.send(command.session_id, command.data)
        return {"sent": len(command.data)}
    if isinstance(command, Interrupt):
        await supervisor.interrupt(command.session_id)
        return {}
    if isinstance(command, Resize):
        await supervisor.resize(command.session_id, command.rows, command.cols)
        return {"rows": command.rows, "cols": command.cols}
    if isinstance(command, Wait):
        result = await supervisor.wait(
            command.session_id, pattern=command.pattern, since=command.since, quiet=command.quiet,
            connected=command.connected, budget=command.budget,
        )
        return to_dict(result)
    if isinstance(command, Run):
        return to_dict(await supervisor.run(command.session_id, command.command, budget=command.budget))
    assert isinstance(command, WaitRun)
    return to_dict(await supervisor.wait_run(command.session_id, command.token, budget=command.budget))


async def handle(supervisor: Supervisor, frame: str) -> dict[str, Any] | Close:
    """One text frame in, its reply out (or the close it calls for); never raises for a bad request."""
    parsed = read_frame(frame)
    if isinstance(parsed, Close):
        return parsed
    if isinstance(parsed, Rejected):
        return error_reply(parsed.id, parsed.error)
    try:
        return reply(parsed.id, await execute(supervisor, parsed.command))
    except Exception as exc:
        return error_reply(parsed.id, error_for(exc))
