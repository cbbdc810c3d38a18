"""The client side of ``/attach``: one session's console as typed items, and input back.

::

    async with open_attach(session_id="sh", tail=4096) as console:
        await console.send(b"ls\\r")
        while True:
            item = await console.receive()      # Output, Loss, StatusChange, Refused, Ended
            if isinstance(item, Output):
                sys.stdout.buffer.write(item.data)

`AttachStream.cursor` is the next log position: everything before it has
arrived, as bytes or inside a `Loss`. To continue after the connection
dropped (the daemon restarted), open again with ``since=console.cursor`` and
``log_id=console.log_id``: nothing arrives twice. A log that is not the one
the cursor came from (the session was registered again) refuses the
handshake with ``bad-cursor`` (`HandshakeRejectedError`).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, final

import attrs
from trio_websocket import ConnectionClosed, WebSocketConnection

from ..rules._events import Event
from ..rules._output import Loss, LossKind
from ..rules._state import SessionStatus
from ..rules._wire import event_from_dict
from ._client import ConnectionLostError, DaemonEndpoint, UnknownMessage, connect, find_daemon

INPUT_FRAME = 16 * 1024
"""Most input bytes one frame carries (the daemon refuses frames over its max_message_size, 64 KiB)."""


@attrs.frozen
class Output:
    """Bytes of the console's output, starting at log position `position`."""

    position: int
    data: bytes


@attrs.frozen
class StatusChange:
    """The session's status moved: its `status` now, and the event that said so (None after a lag)."""

    status: SessionStatus
    event: Event | None


@attrs.frozen
class Refused:
    """Input (`size` bytes; 0 for a resize or an interrupt) the daemon did not hand to the console,
    and why: the session was not connected (``link-error``), or the frame was bad."""

    size: int
    type: str
    message: str


@attrs.frozen
class Ended:
    """The session is gone from the daemon (``unregistered``, or ``replaced`` by a new one): the
    stream ends here, and attaching again from this cursor cannot continue it."""

    reason: str


AttachItem = Output | Loss | StatusChange | Refused | Ended | UnknownMessage


def _connection_lost(exc: ConnectionClosed) -> ConnectionLostError:
    reason = exc.reason
    return ConnectionLostError(reason.code if reason is not None else None, reason.reason if reason else None)


@final
class AttachStream:
    """One /attach connection; use `open_attach`."""

    def __init__(self, ws: WebSocketConnection, hello: Mapping[str, Any]) -> None:
        self._ws = ws
        self.session_id = str(hello["session"])
        self.log_id = str(hello["log"])
        self.since = int(hello["since"])
        """Where this stream started."""
        self.end = int(hello["end"])
        """How far the log could be read when the stream started."""
        self.status = SessionStatus(hello["status"])
        self.cursor = self.since
        """The next log position: everything before it has arrived (as bytes or inside a loss)."""

    async def receive(self) -> AttachItem:
        """The next item; `ConnectionLostError` when the connection ends."""
        try:
            frame = await self._ws.get_message()
        except ConnectionClosed as exc:
            raise _connection_lost(exc) from None
        if isinstance(frame, bytes):
            item = Output(self.cursor, frame)
            self.cursor += len(frame)
            return item
        data = json.loads(frame)
        return self._item(data if isinstance(data, dict) else {"message": data})

    def _item(self, data: dict[str, Any]) -> AttachItem:
        kind = data.get("type")
        try:
            if kind == "loss":
                size = data.get("size")
                loss = Loss(int(data["start"]), int(data["stop"]), LossKind(data["kind"]),
                            None if size is None else int(size))
                self.cursor = max(self.cursor, loss.stop)
                return loss
            if kind == "event":
                self.status = SessionStatus(data["status"])
                event = data.get("event")
                return StatusChange(self.status, event_from_dict(dict(event)) if isinstance(event, dict) else None)
            if kind == "refused":
                error = data.get("error") or {}
                return Refused(int(data.get("bytes", 0)), str(error.get("type", "")), str(error.get("message", "")))
            if kind == "ended":
                return Ended(str(data.get("reason", "")))
        except Exception:  # a shape this client does not know (a newer daemon): handed over as it came
            pass
        return UnknownMessage(data)

    async def send(self, data: bytes) -> None:
        """Type `data` into the console (in frames of at most `INPUT_FRAME` bytes)."""
        for start in range(0, len(data), INPUT_FRAME):
            await self._send(data[start : start + INPUT_FRAME])

    async def resize(self, rows: int, cols: int) -> None:
        await self._send(json.dumps({"type": "resize", "rows": rows, "cols": cols}))

    async def interrupt(self) -> None:
        """Ctrl-C, ahead of input still being written."""
        await self._send(json.dumps({"type": "interrupt"}))

    async def _send(self, message: str | bytes) -> None:
        try:
            await self._ws.send_message(message)
        except ConnectionClosed as exc:
            raise _connection_lost(exc) from None

    async def aclose(self) -> None:
        await self._ws.aclose()


@asynccontextmanager
async def open_attach(
    endpoint: DaemonEndpoint | None = None,
    *,
    session_id: str,
    since: int | None = None,
    tail: int | None = None,
    log_id: str | None = None,
    url: str | None = None,
    token: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> AsyncIterator[AttachStream]:
    """An `AttachStream` on one session: from log position `since`, or `tail` bytes before the
    end (at a line start), or from the end; `log_id` makes a cursor from another log an error."""
    endpoint = endpoint if endpoint is not None else find_daemon(url=url, token=token, state_dir=state_dir)
    query: dict[str, str] = {"session": session_id}
    if since is not None:
        query["since"] = str(since)
    if tail is not None:
        query["tail"] = str(tail)
    if log_id is not None:
        query["log"] = log_id
    async with connect(endpoint, "/attach", query) as ws:
        try:
            first = await ws.get_message()
        except ConnectionClosed as exc:
            raise _connection_lost(exc) from None
        yield AttachStream(ws, json.loads(first))
