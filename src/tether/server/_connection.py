"""The server side of one WebSocket: trio-websocket's connection, with bad frames handed to us.

trio-websocket 0.12 ends a server connection on its own in two cases, and
both lose something a tether client is owed:

- a frame over ``max_message_size``: it sends 1009 at once, so the replies
  to requests still in flight on that connection can no longer be sent;
- a frame wsproto cannot parse (invalid UTF-8 in a text frame, a bad opcode):
  wsproto reports it as a close event the peer never sent, and trio-websocket
  closes the TCP stream without a close frame, so the client sees 1006.

`GuardedConnection` turns both into a `BadFrame` that the handler receives
in order with the other messages (`receive`), reads nothing more from the
peer, and closes with the frame's code only when the handler says so
(`fail`): after the replies in flight have gone out. Everything else is
trio-websocket's, reached through the same private hooks its own server
uses (`_reader_task`, `_get_request`); tests/test_server_frames.py pins the
behaviour, so an upgrade that moves them fails there first.

`serve_guarded` is trio-websocket's ``serve_websocket`` with this class, and
with each connection's reader kept alive (shielded) until its close
handshake is done, so a server that is stopping closes every client with a
proper close frame (1001) instead of cutting the TCP stream.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import attrs
import trio
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection, WebSocketRequest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, TextMessage

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
"""The server is stopping."""
CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013

RECEIVE_BYTES = 4096


@attrs.frozen
class BadFrame:
    """A frame the connection could not take: the close code it calls for, and why."""

    code: int
    reason: str


class GuardedConnection(WebSocketConnection):
    """A server connection that reports bad frames instead of ending itself (see the module)."""

    def __init__(self, stream: trio.SocketStream, **kwargs: Any) -> None:
        super().__init__(stream, WSConnection(ConnectionType.SERVER), **kwargs)
        self._bad: BadFrame | None = None
        self._failing = False
        self._reader_may_go_on = trio.Event()

    async def receive(self) -> str | bytes | BadFrame:
        """The next message, or the `BadFrame` that ends the stream of messages."""
        message: str | bytes | BadFrame = await self.get_message()
        return message

    # -- trio-websocket's reader calls these -----------------------------------------------------

    async def _handle_message_event(self, event: BytesMessage | TextMessage) -> None:
        if self._bad is not None:
            return  # nothing after a bad frame reaches the handler
        if self._message_size + len(event.data) > self._max_message_size:
            self._message_size = 0
            self._message_parts = []
            await self._report(BadFrame(CLOSE_TOO_BIG, f"frame larger than {self._max_message_size} bytes"))
            return
        await super()._handle_message_event(event)

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        if self._wsproto.state is ConnectionState.OPEN and self._bad is None:
            # The peer sent no close frame: wsproto could not parse what it sent and says why.
            reason = event.reason or "invalid frame"
            await self._report(BadFrame(event.code, reason[:120]))
            return
        await super()._handle_close_connection_event(event)

    async def _report(self, bad: BadFrame) -> None:
        """Hand `bad` to the handler, then read nothing more until it fails the connection."""
        self._bad = bad
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):  # the handler left already
            await self._send_channel.send(bad)  # type: ignore[arg-type]  # the channel carries our marker too
        await self._reader_may_go_on.wait()

    # -- closing ---------------------------------------------------------------------------------

    async def fail(self, code: int, reason: str) -> None:
        """Close after a bad frame: send the close frame, half-close, let the peer finish.

        RFC 6455 "fail the connection": no close handshake is owed, so the
        reader only discards what the peer still sends until it closes too
        (the caller bounds how long that may take).
        """
        if self._failing:
            return
        self._failing = True
        self._bad = self._bad or BadFrame(code, reason)
        try:
            if self._wsproto.state is ConnectionState.OPEN:
                self._close_reason = CloseReason(code, reason)
                await self._send(CloseConnection(code=code, reason=reason))
            async with self._stream_lock:
                await self._stream.send_eof()  # type: ignore[attr-defined]  # a SocketStream
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the peer is gone already
        finally:
            if self._close_reason is None:
                self._close_reason = CloseReason(code, reason)
            await self._send_channel.aclose()
            self._reader_may_go_on.set()
        try:
            await self._close_handshake.wait()  # the reader sets it when the peer closes its side
        finally:
            await self._close_stream()

    async def abort(self) -> None:
        """Cut the TCP stream without a close frame: for a peer that takes no data at all
        (a frame is half sent, so a close frame would only be read as garbage)."""
        if self._close_reason is None:
            self._close_reason = CloseReason(1006, "aborted")
        self._reader_may_go_on.set()
        await self._close_stream()

    async def aclose(self, code: int = CLOSE_NORMAL, reason: str | None = None) -> None:
        """trio-websocket's close; once a bad frame has been reported, `fail` (with the bad frame's
        code unless the caller names its own)."""
        if self._bad is not None:
            if code == CLOSE_NORMAL and reason is None:
                code, reason = self._bad.code, self._bad.reason
            await self.fail(code, reason or "")
            return
        await super().aclose(code, reason)


Handler = Callable[[WebSocketRequest], Awaitable[None]]


@attrs.frozen(kw_only=True)
class ConnectionLimits:
    """What each connection may hold and how long its handshakes may take."""

    max_message_size: int
    message_queue_size: int = 4
    connect_timeout: float = 10.0
    """Bound on the opening handshake."""
    disconnect_timeout: float = 2.0
    """Bound on the closing handshake of a connection the handler is done with."""
    going_away_timeout: float = 0.5
    """Bound on the closing handshake when the server stops (every client at once)."""


async def _serve_stream(stream: trio.SocketStream, handler: Handler, limits: ConnectionLimits) -> None:
    """One TCP connection: handshake, the handler, then a proper close (1001 when stopping)."""
    connection = GuardedConnection(
        stream, message_queue_size=limits.message_queue_size, max_message_size=limits.max_message_size,
        receive_buffer_size=RECEIVE_BYTES,
    )
    async with trio.open_nursery() as nursery:
        reader = trio.CancelScope(shield=True)  # lives until the close handshake is done, even when stopping

        async def read() -> None:
            with reader:
                await connection._reader_task()

        nursery.start_soon(read)
        request: WebSocketRequest | None = None
        try:
            with trio.move_on_after(limits.connect_timeout):
                request = await connection._get_request()
            if request is not None:
                await _handle(connection, request, handler, limits)
        finally:
            reader.cancel()
            with trio.CancelScope(shield=True):
                await stream.aclose()


async def _handle(
    connection: GuardedConnection, request: WebSocketRequest, handler: Handler, limits: ConnectionLimits
) -> None:
    try:
        await handler(request)
    finally:
        going_away = trio.current_effective_deadline() == -math.inf  # cancelled: the server is stopping
        timeout = limits.going_away_timeout if going_away else limits.disconnect_timeout
        with trio.CancelScope(shield=True), trio.move_on_after(timeout):
            if going_away:
                await connection.aclose(CLOSE_GOING_AWAY, "the server is stopping")
            else:
                await connection.aclose()


async def serve_guarded(
    handler: Handler,
    host: str,
    port: int,
    limits: ConnectionLimits,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve WebSockets on `host`:`port` until cancelled; ``task_status.started(port)``."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound: int = listeners[0].socket.getsockname()[1]

    async def serve(stream: trio.SocketStream) -> None:
        await _serve_stream(stream, handler, limits)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve, listeners)
        task_status.started(bound)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover
