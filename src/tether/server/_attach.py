"""``/attach``: one session's console as a stream, for `tether attach` (docs/control.md, "/attach").

Output goes out as binary frames holding the log's exact bytes, in position
order from the cursor the client asked for; every range the log cannot give
goes out in its place as a ``loss`` text frame, so a client that counts
positions (``since`` plus each frame's bytes, plus each loss's width) always
knows its cursor, and reconnects with ``since=`` it: nothing twice, nothing
silently missing. Input comes in as binary frames (bytes for the console)
and small JSON text frames (``resize``, ``interrupt``); the session's status
changes go out as ``event`` frames. Reading a client frame is pure
(`read_frame`); `serve_attach` is the I/O.

Output is read from the session's bounded log, never queued per client: a
client that reads slowly costs no memory, it only falls behind, and what
left the log meanwhile reaches it as a ``trimmed`` loss.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed

from ..engine._bus import Subscription
from ..engine._supervisor import Supervisor
from ..rules._errors import CursorError, LinkError, SessionNotFoundError
from ..rules._events import Event, Lagged
from ..rules._output import Loss
from ..rules._wire import event_to_dict, loss_to_dict
from . import _control as control
from ._connection import CLOSE_INVALID_PAYLOAD, CLOSE_NORMAL, CLOSE_POLICY, BadFrame, GuardedConnection
from ._settings import ServerSettings

logger = logging.getLogger("tether.server")

OUTPUT_FRAME = 64 * 1024
"""Most output bytes one binary frame carries."""
STATUS_TYPES = (
    "session.connected", "session.disconnected", "reconnect.scheduled", "reconnect.started",
    "reconnect.succeeded", "reconnect.failed", "reconnect.exhausted", "session.failed", "session.survivor",
    "session.unregistered",
)
"""The events an attached client is told about (its session's only)."""
MAX_TAIL = 1 << 20


@attrs.frozen
class AttachQuery:
    """What an /attach handshake asks for."""

    session_id: str
    since: int | None = None
    tail: int | None = None
    """Start this many bytes before the end (at a line start when there is one), instead of `since`."""
    log_id: str | None = None


@attrs.frozen
class Input:
    data: bytes


@attrs.frozen
class Resize:
    rows: int
    cols: int


@attrs.frozen
class Interrupt:
    pass


ClientMessage = Input | Resize | Interrupt


def read_frame(frame: str | bytes | BadFrame) -> ClientMessage | control.ControlError | control.Close:
    """What one client frame asks for, the error to answer it with, or the close it calls for."""
    if isinstance(frame, BadFrame):
        return control.Close(frame.code, frame.reason)
    if isinstance(frame, bytes):
        return Input(frame)
    try:
        data = control.decode_frame(frame)
    except control.NotJsonError as exc:
        return control.Close(CLOSE_INVALID_PAYLOAD, str(exc)[:120])
    except control.HostileJsonError as exc:
        return control.ControlError("invalid-request", str(exc))
    if not isinstance(data, Mapping):
        return control.ControlError("invalid-request", "a text frame must be a JSON object with a type")
    kind = data.get("type")
    allowed = {"resize": {"type", "rows", "cols"}, "interrupt": {"type"}}
    if kind not in allowed:
        return control.ControlError(
            "invalid-request", f"type: must be resize or interrupt (input goes in binary frames), got {kind!r}"[:200])
    extra = sorted(set(data) - allowed[kind])
    if extra:
        return control.ControlError("invalid-request", f"unknown fields for {kind}: {', '.join(extra)}"[:200])
    if kind == "interrupt":
        return Interrupt()
    rows, cols = data.get("rows"), data.get("cols")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10_000 for v in (rows, cols)):
        return control.ControlError("invalid-request", "resize: rows and cols must be whole numbers from 1 to 10000")
    assert isinstance(rows, int) and isinstance(cols, int)
    return Resize(rows, cols)


def start_of(supervisor: Supervisor, query: AttachQuery) -> int:
    """The position the stream starts at; `SessionNotFoundError` or `CursorError` when it cannot."""
    log_end = supervisor.read(query.session_id, None, 1, log_id=query.log_id).end
    if query.since is not None:
        supervisor.read(query.session_id, query.since, 1, log_id=query.log_id)  # a bad cursor fails here
        return query.since
    if not query.tail:
        return log_end
    window = supervisor.read(query.session_id, max(0, log_end - query.tail), query.tail)
    first: int | None = None
    for piece in window.pieces():  # the first line start inside the window, else its first byte
        if isinstance(piece, Loss):
            continue
        position, data = piece
        first = position if first is None else first
        newline = data.find(b"\n")
        if newline >= 0:
            return position + newline + 1
    return log_end if first is None else first


def hello(supervisor: Supervisor, session_id: str, since: int) -> dict[str, Any]:
    state = supervisor.state(session_id)
    read = supervisor.read(session_id, since, 1)
    return {"type": "hello", "session": session_id, "log": read.log_id, "since": since, "end": read.end,
            "status": state.status.value}


async def serve_attach(
    ws: GuardedConnection, supervisor: Supervisor, settings: ServerSettings, query: AttachQuery, since: int,
    peer: str,
) -> None:
    """Stream one session to one client until either side ends it (see the module)."""
    sid = query.session_id
    events = supervisor.subscribe(session_ids=[sid], types=STATUS_TYPES, buffer=64)  # before hello: no gap
    try:
        first = hello(supervisor, sid, since)
        log_id = str(first["log"])
        await ws.send_message(control.encode(first))
        ending: list[tuple[int, str]] = []
        async with trio.open_nursery() as nursery:

            async def output() -> None:
                reason = await _send_output(ws, supervisor, sid, since, log_id)
                ending.append((CLOSE_NORMAL, reason))
                nursery.cancel_scope.cancel()

            async def statuses() -> None:
                await _send_events(ws, supervisor, sid, events)

            nursery.start_soon(output)
            nursery.start_soon(statuses)
            close = await _take_input(ws, supervisor, settings, sid)
            if close is not None:
                ending.append((close.code, close.reason))
            nursery.cancel_scope.cancel()
        if ending:
            code, reason = ending[0]
            logger.info("closing /attach of %s from %s: %d %s", sid, peer, code, reason)
            with trio.move_on_after(settings.send_timeout):
                if code in (CLOSE_NORMAL, CLOSE_POLICY):
                    await ws.aclose(code, reason)
                else:
                    await ws.fail(code, reason)
    except ConnectionClosed:
        pass
    finally:
        events.close()


async def _send_output(ws: GuardedConnection, supervisor: Supervisor, sid: str, cursor: int, log_id: str) -> str:
    """Send the log from `cursor` on, forever; returns why it had to stop (the session went away)."""
    while True:
        try:
            read = await supervisor.read_next(sid, cursor, OUTPUT_FRAME, log_id=log_id, budget=math.inf)
        except SessionNotFoundError:
            await _send_text(ws, {"type": "ended", "reason": "unregistered"})
            return "the session was unregistered"
        except CursorError:  # registered again under the same id: another log
            await _send_text(ws, {"type": "ended", "reason": "replaced"})
            return "the session was registered again (a new log)"
        for piece in read.pieces():
            if isinstance(piece, Loss):
                await ws.send_message(control.encode({"type": "loss", **loss_to_dict(piece)}))
            else:
                await ws.send_message(piece[1])
        cursor = read.next


async def _send_events(ws: GuardedConnection, supervisor: Supervisor, sid: str, events: Subscription) -> None:
    while True:
        item: Event | Lagged = await events.get()
        try:
            status = supervisor.state(sid).status.value
        except SessionNotFoundError:
            status = "stopped"
        message: dict[str, Any] = {"type": "event", "status": status}
        if not isinstance(item, Lagged):  # a lag only says the status may have moved: the status says where
            message["event"] = event_to_dict(item)
        await _send_text(ws, message)


async def _take_input(
    ws: GuardedConnection, supervisor: Supervisor, settings: ServerSettings, sid: str
) -> control.Close | None:
    """Hand the client's input to the session, in order; the close a bad frame calls for, or None
    when the client left."""
    bad = 0
    while True:
        try:
            frame = await ws.receive()
        except ConnectionClosed:
            return None
        message = read_frame(frame)
        if isinstance(message, control.Close):
            return message
        if isinstance(message, control.ControlError):
            bad += 1
            await _send_text(ws, {"type": "refused", "bytes": 0, "error": message.to_dict()})
            if bad >= settings.max_bad_requests:
                return control.Close(CLOSE_POLICY, "too many bad frames")
            continue
        try:
            if isinstance(message, Input):
                await supervisor.send(sid, message.data)
            elif isinstance(message, Resize):
                await supervisor.resize(sid, message.rows, message.cols)
            else:
                await supervisor.interrupt(sid)
        except (LinkError, SessionNotFoundError) as exc:  # not connected now: said, never queued for a later shell
            size = len(message.data) if isinstance(message, Input) else 0
            await _send_text(ws, {"type": "refused", "bytes": size, "error": control.error_for(exc).to_dict()})


async def _send_text(ws: GuardedConnection, message: Mapping[str, Any]) -> None:
    await ws.send_message(control.encode(message))
