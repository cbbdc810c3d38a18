"""A typed client for a running daemon: its /control commands and its /events stream.

::

    async with open_client() as client:          # finds the daemon as `tether status` does
        summary = await client.status()
        async for state in client.sessions(statuses=["failed"]):
            await client.force_reconnect(state.id)
    async with open_events(types=["reconnect.*"]) as events:
        async for event in events:
            print(event)

Where the daemon is (`find_daemon`): ``url``, else the running daemon's
``daemon.json`` in the state directory, else the configured (or default)
host and port; the token: ``token``, else the state directory's token file.

Requests share one /control connection, each with its own id, so many may
be in flight at once (a long wait beside a quick one); each method sends one
request and returns its typed result. A new command is one more method over
`DaemonClient.request`. An error reply raises the exception the library
itself raises for it (`SessionNotFoundError`, `DuplicateSessionError`,
`UnknownBackendError`, `UnknownStrategyError`, `InvalidConfigError`,
`SupervisorClosedError`, `LinkError`), so code reads the same against a
`Supervisor` and against a daemon. What only a client can meet::

    TetherError
    └── DaemonError              no answer from the daemon
        ├── CannotConnectError    nothing answered at the address (`tether` exits 3)
        ├── HandshakeRejectedError  the daemon refused the connection (HTTP status, error type)
        │   └── AuthRejectedError  401/403: no token or the wrong one (`tether` exits 4)
        ├── ConnectionLostError   the connection closed before the reply came (close code, reason)
        └── RequestError          an error reply tether has no class for (type, message, details)
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import sys
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, final
from urllib.parse import urlencode

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from ..rules._classify import single_error
from ..rules._console import RunOutcome, WaitResult
from ..rules._errors import (
    ConfigError,
    CursorError,
    DuplicateSessionError,
    InvalidConfigError,
    LinkError,
    RunNotFoundError,
    SessionNotFoundError,
    SupervisorClosedError,
    TetherError,
    UnknownBackendError,
    UnknownStrategyError,
)
from ..rules._events import Event
from ..rules._output import LogRead
from ..rules._paths import StatePaths, resolve_state_dir
from ..rules._reasons import DisconnectReason
from ..rules._spec import SessionSpec
from ..rules._state import Attempt, SessionState, SessionStatus
from ..rules._status import StatusPage, StatusSummary, from_dict
from ..rules._structure import session_table
from ..rules._wire import event_from_dict, input_to_dict, read_from_dict
from ._resume import BOOT_HEADER, LAST_SEQ_HEADER, SINCE_HEADER, Restarted
from ._settings import ServerSettings

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

DAEMON_FILE = "daemon.json"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_REPLY_BYTES = 1 << 22
"""Largest frame the client takes (a status page is at most 1 MiB of detail)."""
RECEIVE_BYTES = 1 << 16
"""Read size: trio-websocket's default 4 KiB makes a 1 MiB page 256 reads (and as many events)."""


# -- errors -------------------------------------------------------------------------------------


class DaemonError(TetherError):
    """The client could not get an answer from the daemon."""


class CannotConnectError(DaemonError):
    """Nothing answered at the daemon's address (`tether` exits 3)."""


class HandshakeRejectedError(DaemonError):
    """The daemon refused the connection: `status` (HTTP) and `type` (``bad-since``, ...)."""

    def __init__(self, status: int, type: str | None, message: str) -> None:
        super().__init__(f"{status}: {message}" if message else f"HTTP {status}")
        self.status = status
        self.type = type
        self.message = message


class AuthRejectedError(HandshakeRejectedError):
    """The daemon refused our token, or we sent none (401/403; `tether` exits 4)."""


class ConnectionLostError(DaemonError):
    """The connection closed before the reply came; `code` and `reason` say how."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        shown = f"closed {code}" + (f" ({reason})" if reason else "") if code is not None else "closed"
        super().__init__(f"the connection to the daemon was {shown}")
        self.code = code
        self.reason = reason


class RequestError(DaemonError):
    """An error reply with no library exception of its own (``invalid-request``, ``internal``, ...)."""

    def __init__(self, type: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message
        self.details = dict(details or {})


def error_from_reply(error: Mapping[str, Any]) -> Exception:
    """The exception an ``{"error": {...}}`` reply stands for (the library's where it has one)."""
    kind = str(error.get("type", "internal"))
    message = str(error.get("message", ""))
    try:
        if kind == "not-found" and "session_id" in error:
            return SessionNotFoundError(str(error["session_id"]))
        if kind == "duplicate" and "session_id" in error:
            return DuplicateSessionError(str(error["session_id"]))
        if kind == "unknown-backend" and "name" in error:
            return UnknownBackendError(str(error["name"]), [str(k) for k in error.get("known", [])])
        if kind == "unknown-strategy" and "name" in error:
            return UnknownStrategyError(str(error["name"]), [str(k) for k in error.get("known", [])])
        if kind == "invalid-config" and isinstance(error.get("errors"), list):
            problems = [ConfigError(str(e["path"]), str(e["problem"])) for e in error["errors"]]
            return InvalidConfigError("request", problems)
        if kind == "closed":
            return SupervisorClosedError(message)
        if kind == "link-error" and "reason" in error:
            return LinkError(str(error.get("detail", message)), reason=DisconnectReason(error["reason"]))
        if kind == "bad-cursor":
            return CursorError(message)
        if kind == "run-not-found":
            return RunNotFoundError(message)
    except (KeyError, TypeError, ValueError):
        pass  # a shape this client does not know: say it as it came
    details = {k: v for k, v in error.items() if k not in ("type", "message")}
    return RequestError(kind, message, details)


# -- where the daemon is ------------------------------------------------------------------------


@final
@attrs.frozen
class DaemonEndpoint:
    """A daemon's address and the token to show it."""

    url: str
    token: str | None
    source: str = "--url"
    """Where the address came from (said when nothing answers there)."""

    @property
    def from_daemon_file(self) -> bool:
        """Found through a running daemon's daemon.json (not an address given, configured or default)."""
        return self.source.endswith(DAEMON_FILE)

    def address(self, path: str, query: Mapping[str, Sequence[str] | str] | None = None) -> str:
        q = urlencode(dict(query or {}), doseq=True)
        return f"{self.url}{path}" + (f"?{q}" if q else "")


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"ws://{shown}:{port}"


def write_daemon_file(state: Path, *, host: str, port: int) -> Path:
    """Tell clients where this daemon listens (0600; removed when the daemon stops)."""
    path = state / DAEMON_FILE
    data = {"pid": os.getpid(), "host": host, "port": port, "url": _url(host, port)}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(data, file)
    tmp.replace(path)
    return path


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _running_daemon(state: Path) -> str | None:
    """The url in ``daemon.json`` when the daemon that wrote it still runs."""
    try:
        data = json.loads((state / DAEMON_FILE).read_text(encoding="utf-8"))
        url, pid = data["url"], data.get("pid")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(url) if isinstance(url, str) and (pid is None or _pid_alive(pid)) else None


def _read_token(state: Path) -> str | None:
    try:
        return StatePaths(state).token.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def find_daemon(
    *,
    url: str | None = None,
    token: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    server: ServerSettings | None = None,
    configured_state_dir: str | None = None,
) -> DaemonEndpoint:
    """Where the daemon listens and the token to send (see the module's docstring for the order).

    `server` and `configured_state_dir` are the config file's ``[server]`` table and
    ``state_dir`` (`tether.load_config`), so a client finds the daemon that config runs.
    """
    state = resolve_state_dir(state_dir, configured_state_dir)
    sent = token if token is not None else _read_token(state)
    if url:
        return DaemonEndpoint(url.rstrip("/"), sent, "--url")
    running = _running_daemon(state)
    if running is not None:
        return DaemonEndpoint(running.rstrip("/"), sent, f"{state / DAEMON_FILE}")
    if server is not None:
        return DaemonEndpoint(_url(server.host, server.port), sent, "the config's [server] table")
    return DaemonEndpoint(_url(DEFAULT_HOST, DEFAULT_PORT), sent, f"the default address (no daemon.json in {state})")


# -- the WebSocket ------------------------------------------------------------------------------


def _rejection(exc: ConnectionRejected) -> HandshakeRejectedError:
    kind: str | None = None
    message = ""
    try:
        body = json.loads(exc.body or b"{}")["error"]
        kind = body["type"] if isinstance(body.get("type"), str) else None
        message = str(body.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    cls = AuthRejectedError if exc.status_code in (401, 403) else HandshakeRejectedError
    return cls(exc.status_code, kind, message)


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it, through ``__cause__``/``__context__`` and exception groups."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack:
        current = stack.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        stack.extend(getattr(current, "exceptions", ()))
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


def _connect_failure(endpoint: DaemonEndpoint, exc: BaseException) -> CannotConnectError:
    """Why nothing answered, in words (trio-websocket's HandshakeError carries none itself)."""
    causes = _causes(exc)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        why = "connection refused: nothing listens there"
    elif any(isinstance(c, ConnectionTimeout) for c in causes):
        why = "no answer to the WebSocket handshake within 5 s"
    else:
        why = next((str(c) for c in causes if str(c)), type(exc).__name__)
    return CannotConnectError(f"cannot connect to the daemon at {endpoint.url} (from {endpoint.source}): {why}")


@asynccontextmanager
async def connect(
    endpoint: DaemonEndpoint,
    path: str,
    query: Mapping[str, Any] | None = None,
    *,
    max_message_size: int = MAX_REPLY_BYTES,
) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket to the daemon; a failed connect comes out as a `DaemonError`."""
    headers = [(b"Authorization", f"Bearer {endpoint.token}".encode())] if endpoint.token else []
    opened = False
    try:
        async with open_websocket_url(
            endpoint.address(path, query), extra_headers=headers, connect_timeout=5, disconnect_timeout=1,
            max_message_size=max_message_size, receive_buffer_size=RECEIVE_BYTES,
        ) as ws:
            opened = True
            yield ws
    except ConnectionRejected as exc:
        raise _rejection(exc) from None
    except (OSError, HandshakeError) as exc:
        if opened:
            raise  # not about connecting: the caller's own
        raise _connect_failure(endpoint, exc) from None


# -- /control -----------------------------------------------------------------------------------


@final
class DaemonClient:
    """One /control connection; use `open_client`. Methods may be called from many tasks at once."""

    def __init__(self, ws: WebSocketConnection, endpoint: DaemonEndpoint) -> None:
        self.endpoint = endpoint
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[Mapping[str, Any]]] = {}
        self._lost: ConnectionLostError | None = None

    async def _read_replies(self) -> None:
        try:
            while True:
                message = await self._ws.get_message()
                try:
                    reply = json.loads(message)
                    channel = self._waiting.pop(reply["id"])
                except (ValueError, KeyError, TypeError):
                    continue  # not an answer to anything we asked
                channel.send_nowait(reply)
        except ConnectionClosed as exc:
            code = exc.reason.code if exc.reason is not None else None
            self._lost = ConnectionLostError(code, exc.reason.reason if exc.reason is not None else None)
        finally:
            for channel in self._waiting.values():
                channel.close()
            self._waiting.clear()

    async def request(self, op: str, **fields: Any) -> Any:
        """Send one request and return its ``result``; an error reply raises (see the module)."""
        if self._lost is not None:
            raise self._lost
        rid = next(self._ids)
        send, receive = trio.open_memory_channel[Mapping[str, Any]](1)
        self._waiting[rid] = send
        try:
            try:
                await self._ws.send_message(json.dumps({"id": rid, "op": op, **fields}))
            except ConnectionClosed as exc:
                raise ConnectionLostError(exc.reason.code if exc.reason else None,
                                          exc.reason.reason if exc.reason else None) from None
            async with receive:
                try:
                    reply = await receive.receive()
                except trio.EndOfChannel:
                    raise self._lost or ConnectionLostError(None, None) from None
        finally:
            self._waiting.pop(rid, None)
        if "error" in reply:
            raise error_from_reply(reply["error"])
        return reply.get("result")

    # -- the commands ----------------------------------------------------------------------------

    async def status(self, *, limit: int | None = None) -> StatusSummary:
        """Counts by status and (up to `limit`, default 50) the sessions that are not connected."""
        fields = {} if limit is None else {"limit": limit}
        summary: StatusSummary = from_dict(await self.request("status", **fields), StatusSummary)
        return summary

    async def status_page(
        self,
        *,
        sessions: Iterable[str] = (),
        statuses: Iterable[SessionStatus | str] = (),
        cursor: str | None = None,
        limit: int | None = None,
        history: int | None = None,
    ) -> StatusPage:
        """One page of per-session detail (docs/control.md); pass `next_cursor` back for the next."""
        fields: dict[str, Any] = {"detail": True}
        if sessions:
            fields["sessions"] = list(sessions)
        if statuses:
            fields["status"] = [SessionStatus(s).value for s in statuses]
        for key, value in (("cursor", cursor), ("limit", limit), ("history", history)):
            if value is not None:
                fields[key] = value
        result: StatusPage = from_dict(await self.request("status", **fields), StatusPage)
        return result

    async def sessions(
        self,
        *,
        sessions: Iterable[str] = (),
        statuses: Iterable[SessionStatus | str] = (),
        history: int | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[SessionState]:
        """Every matching session's detail, page after page, in id order."""
        ids, wanted = list(sessions), list(statuses)
        cursor: str | None = None
        while True:
            result = await self.status_page(sessions=ids, statuses=wanted, cursor=cursor, limit=page_size,
                                            history=history)
            for state in result.sessions:
                yield state
            if result.next_cursor is None:
                return
            cursor = result.next_cursor

    async def register(self, spec: SessionSpec | Mapping[str, Any]) -> SessionState:
        """Supervise a new session (a `SessionSpec`, or a table like a ``[[sessions]]`` entry)."""
        table = spec if isinstance(spec, Mapping) else session_table(spec)
        state: SessionState = from_dict(await self.request("register", session=table), SessionState)
        return state

    async def unregister(self, session_id: str) -> None:
        """Stop supervising a session and forget it (its snapshot is deleted)."""
        await self.request("unregister", session_id=session_id)

    async def force_reconnect(
        self, session_id: str, strategy: str | None = None, *, wait: bool = True
    ) -> Attempt | None:
        """Reconnect now; with `wait`, the attempt that answered."""
        fields: dict[str, Any] = {"session_id": session_id, "wait": wait}
        if strategy is not None:
            fields["strategy"] = strategy
        result = await self.request("force-reconnect", **fields)
        attempt = result.get("attempt") if isinstance(result, Mapping) else None
        return None if attempt is None else from_dict(attempt, Attempt)

    # -- the console ---------------------------------------------------------------------------

    async def read(
        self, session_id: str, since: int | None = None, max_bytes: int = 65536, *, log_id: str | None = None,
        wait: float = 0.0,
    ) -> LogRead:
        """The session's exact output from log position `since` (`Supervisor.read`); with `wait`,
        the daemon waits up to that many seconds for something at `since` (`Supervisor.read_next`)."""
        fields: dict[str, Any] = {"session_id": session_id, "max_bytes": max_bytes}
        if since is not None:
            fields["since"] = since
        if log_id is not None:
            fields["log"] = log_id
        if wait:
            fields["wait"] = wait
        return read_from_dict(await self.request("read", **fields))

    async def send(
        self, session_id: str, data: bytes | None = None, *, text: str | None = None,
        keys: Sequence[str] | None = None,
    ) -> int:
        """Type into the console: exactly one of `data` (bytes), `text` or `keys` (``ctrl-c``, ``enter``)."""
        result = await self.request("send", session_id=session_id, **input_to_dict(data=data, text=text, keys=keys))
        return int(result["sent"])

    async def interrupt(self, session_id: str) -> None:
        """Ctrl-C, ahead of any input still being written."""
        await self.request("interrupt", session_id=session_id)

    async def resize(self, session_id: str, rows: int, cols: int) -> None:
        await self.request("resize", session_id=session_id, rows=rows, cols=cols)

    async def wait(
        self, session_id: str, *, pattern: str | None = None, since: int | None = None,
        quiet: float | None = None, connected: bool = False, budget: float = 30.0,
    ) -> WaitResult:
        """Wait on the daemon (no polling) for a pattern after `since`, quiet output, or a connect."""
        fields: dict[str, Any] = {"session_id": session_id, "budget": budget}
        for key, value in (("pattern", pattern), ("since", since), ("quiet", quiet)):
            if value is not None:
                fields[key] = value
        if connected:
            fields["connected"] = True
        result: WaitResult = from_dict(await self.request("wait", **fields), WaitResult)
        return result

    async def run(self, session_id: str, command: str, *, budget: float = 30.0) -> RunOutcome:
        """Run a command in the session's shell: exit status and output range, or a token to wait on."""
        result: RunOutcome = from_dict(
            await self.request("run", session_id=session_id, command=command, budget=budget), RunOutcome
        )
        return result

    async def wait_run(self, session_id: str, token: str, *, budget: float = 30.0) -> RunOutcome:
        result: RunOutcome = from_dict(
            await self.request("wait-run", session_id=session_id, token=token, budget=budget), RunOutcome
        )
        return result

    def events(
        self, *, session_ids: Iterable[str] = (), types: Iterable[str] = (), since: int | None = None,
        boot: str | None = None, batch: int = 100,
    ) -> AbstractAsyncContextManager[EventStream]:
        """The daemon's event stream (`open_events` at this client's address)."""
        return open_events(self.endpoint, session_ids=session_ids, types=types, since=since, boot=boot, batch=batch)


@asynccontextmanager
async def open_client(
    endpoint: DaemonEndpoint | None = None,
    *,
    url: str | None = None,
    token: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> AsyncIterator[DaemonClient]:
    """A `DaemonClient` connected to the daemon (`endpoint`, else `find_daemon` with these)."""
    endpoint = endpoint if endpoint is not None else find_daemon(url=url, token=token, state_dir=state_dir)
    async with connect(endpoint, "/control") as ws:
        try:
            async with trio.open_nursery() as nursery:
                client = DaemonClient(ws, endpoint)
                nursery.start_soon(client._read_replies)
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the caller's own error comes out as itself
            single = single_error(group)
            if single is None:
                raise
            raise single from None


# -- /events ------------------------------------------------------------------------------------


@final
@attrs.frozen
class LagNotice:
    """Not an event: this stream fell behind and missed `missed` events from `missed_from`
    (`resync`: they follow, replayed from the daemon's ring; else they are gone)."""

    missed_from: int
    missed: int
    resync: bool


@final
@attrs.frozen
class RestartNotice:
    """Not an event: the run this stream was resumed from (`since` in `previous_boot`) has ended;
    the events of run `boot` follow from `replay_from` (its first `missed` are no longer kept).
    `message` says it for people."""

    boot: str
    previous_boot: str
    since: int
    replay_from: int
    missed: int
    message: str


@final
@attrs.frozen
class UnknownMessage:
    """A message this client has no class for (a newer daemon): its JSON as it came."""

    data: Mapping[str, Any]


StreamItem = Event | LagNotice | RestartNotice | UnknownMessage


def stream_item(data: Mapping[str, Any]) -> StreamItem:
    """One /events message as a typed value."""
    if data.get("type") == "lagged":
        return LagNotice(int(data["missed_from"]), int(data["missed"]), bool(data.get("resync")))
    if data.get("type") == Restarted.type:
        return RestartNotice(str(data["boot"]), str(data["previous_boot"]), int(data["since"]),
                             int(data["replay_from"]), int(data["missed"]), str(data.get("message", "")))
    try:
        return event_from_dict(dict(data))
    except Exception:  # cattrs raises its own groups for an unknown type or shape
        return UnknownMessage(data)


@final
class EventStream:
    """The messages of one /events connection, typed; iterate it with ``async for``.

    `boot` is the daemon run it is connected to and `since` the sequence number after which
    it delivers every matching event of that run (None from a daemon too old to say): resume
    with ``since=`` the last event's seq (or `since` when none came) and ``boot=``.
    """

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._pending: list[Mapping[str, Any]] = []
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in ws.handshake_headers}
        self.boot: str | None = headers.get(BOOT_HEADER.lower())
        self.last_seq: int | None = _header_number(headers.get(LAST_SEQ_HEADER.lower()))
        """The run's last sequence number when this stream began."""
        self.since: int | None = _header_number(headers.get(SINCE_HEADER.lower()))

    async def receive_raw(self) -> Mapping[str, Any]:
        """The next message as its JSON object; `ConnectionLostError` when the stream ends."""
        while not self._pending:
            try:
                frame = await self._ws.get_message()
            except ConnectionClosed as exc:
                code = exc.reason.code if exc.reason is not None else None
                raise ConnectionLostError(code, exc.reason.reason if exc.reason is not None else None) from None
            data = json.loads(frame)
            self._pending = list(data) if isinstance(data, list) else [data]
        return self._pending.pop(0)

    async def receive(self) -> StreamItem:
        return stream_item(await self.receive_raw())

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamItem:
        return await self.receive()


def _header_number(value: str | None) -> int | None:
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


@asynccontextmanager
async def open_events(
    endpoint: DaemonEndpoint | None = None,
    *,
    session_ids: Iterable[str] = (),
    types: Iterable[str] = (),
    since: int | None = None,
    boot: str | None = None,
    batch: int = 100,
    url: str | None = None,
    token: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> AsyncIterator[EventStream]:
    """The daemon's /events stream, filtered by session and type patterns, from `since`.

    With `boot` (the run `since` counts in), a daemon that has restarted since says so: the
    stream begins with a `RestartNotice` and replays the new run from its start.
    """
    endpoint = endpoint if endpoint is not None else find_daemon(url=url, token=token, state_dir=state_dir)
    query: dict[str, Any] = {"session": list(session_ids), "type": list(types), "batch": str(batch)}
    if since is not None:
        query["since"] = str(since)
        if boot is not None:
            query["boot"] = boot
    async with connect(endpoint, "/events", query) as ws:
        yield EventStream(ws)
