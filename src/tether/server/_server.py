"""The event server: ``/events`` streams events as JSON, ``/control`` takes commands.

One task per connection, each with its own bounded `Subscription`: a client
that reads slowly only ever fills its own buffer, then is told it lagged and
resynced from the ring (or dropped after `max_lags` lags in a row). Publishing
never waits for a socket, so no client can slow the supervisor or another
client. Every handshake is checked (path, token, query) and rejected with an
HTTP status before any data flows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from ..engine._bus import Subscription
from ..engine._supervisor import Supervisor
from ..rules._addresses import is_loopback
from ..rules._errors import ConfigError
from ..rules._events import Event, Lagged
from ..rules._wire import event_to_dict
from . import _control as control
from ._auth import token_from_request, token_matches
from ._settings import ServerSettings

logger = logging.getLogger("tether.server")

CLOSE_UNSUPPORTED = 1003
"""A binary frame, or any frame on /events."""
CLOSE_INVALID_PAYLOAD = 1007
"""A /control frame that is not JSON."""
CLOSE_POLICY = 1008
"""Too many bad requests."""
CLOSE_TOO_BIG = 1009
"""A frame over max_message_size (sent by trio-websocket itself)."""
CLOSE_TRY_AGAIN = 1013
"""A subscriber that kept lagging: reconnect and resume with ``since=``."""

_EVENTS_QUERY = frozenset({"session", "type", "since", "token", "batch"})
MAX_BATCH = 1000
"""Most events one /events frame may carry (``?batch=N``)."""
_CONTROL_QUERY = frozenset({"token"})


class HandshakeRejected(Exception):
    """Why a handshake is refused: an HTTP status and a JSON body."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = json.dumps({"error": {"type": kind, "message": message}}).encode()


@attrs.frozen
class EventsQuery:
    session_ids: tuple[str, ...]
    types: tuple[str, ...]
    since: int | None
    batch: int = 0
    """0: one event per frame (a JSON object). N >= 1: every frame is a JSON array of up to N
    items, as many as are waiting: a subscriber that keeps up still gets each event at once."""


def parse_events_query(query: Mapping[str, list[str]], last_seq: int) -> EventsQuery:
    """Filters and resume point of an /events URL; `HandshakeRejected` (400) when malformed."""
    unknown = sorted(set(query) - _EVENTS_QUERY)
    if unknown:
        raise HandshakeRejected(400, "bad-query", f"unknown query parameter(s): {', '.join(unknown)}")
    since: int | None = None
    if "since" in query:
        raw = query["since"][-1]
        if not raw.isdigit() or len(raw) > 19:
            raise HandshakeRejected(400, "bad-since", f"since must be a sequence number >= 0, got {raw!r}")
        since = int(raw)
        if since > last_seq:
            raise HandshakeRejected(400, "bad-since", f"since={since} is ahead of the last event ({last_seq})")
    for name in ("session", "type"):
        if any(not v for v in query.get(name, [])):
            raise HandshakeRejected(400, "bad-query", f"{name} must not be empty")
    batch = 0
    if "batch" in query:
        raw = query["batch"][-1]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_BATCH:
            raise HandshakeRejected(400, "bad-batch", f"batch must be a number from 1 to {MAX_BATCH}, got {raw!r}")
        batch = int(raw)
    return EventsQuery(tuple(query.get("session", [])), tuple(query.get("type", [])), since, batch)


def check_token(
    headers: list[tuple[bytes, bytes]], query: Mapping[str, list[str]], expected: str | None
) -> None:
    """401 without a token, 403 with a wrong one; nothing when auth is off."""
    if expected is None:
        return
    sent = token_from_request(headers, query)
    if sent is None:
        raise HandshakeRejected(401, "unauthorized", "a token is required (Authorization: Bearer <token>)")
    if not token_matches(sent, expected):
        raise HandshakeRejected(403, "forbidden", "wrong token")


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


class _Feed:
    """One subscriber's events, resubscribing from the ring when it lags."""

    def __init__(self, supervisor: Supervisor, query: EventsQuery, settings: ServerSettings) -> None:
        self._supervisor = supervisor
        self._query = query
        self._settings = settings
        self.sub = self._subscribe(query.since)
        self.lags = 0
        self.batch = query.batch

    def _subscribe(self, since: int | None) -> Subscription:
        return self._supervisor.subscribe(
            session_ids=self._query.session_ids, types=self._query.types, since=since,
            buffer=self._settings.subscriber_buffer,
        )

    def on_lag(self, lagged: Lagged) -> dict[str, Any] | None:
        """The lagged message to send, or None to drop the subscriber."""
        self.lags += 1
        if self.lags > self._settings.max_lags:
            return None
        bus = self._supervisor.bus
        resync = bus.oldest_seq <= lagged.missed_from <= bus.last_seq  # the ring still holds what was missed
        if resync:
            self.sub.close()
            self.sub = self._subscribe(lagged.missed_from - 1)
        return {**event_to_dict(lagged), "resync": resync}

    def close(self) -> None:
        self.sub.close()


class EventServer:
    """Routes connections; one instance per listening server."""

    def __init__(self, supervisor: Supervisor, settings: ServerSettings, token: str | None) -> None:
        self.supervisor = supervisor
        self.settings = settings
        self._token = token
        self.connections = 0

    async def handle(self, request: WebSocketRequest) -> None:
        """trio-websocket's handler: never lets an error escape into the server's nursery."""
        self.connections += 1
        peer = _peer(request)
        try:
            await self._route(request, peer)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("connection from %s failed", peer)
        finally:
            self.connections -= 1

    async def _route(self, request: WebSocketRequest, peer: str) -> None:
        url = urlsplit(request.path)
        query = parse_qs(url.query, keep_blank_values=True)
        try:
            if url.path not in ("/events", "/control"):
                raise HandshakeRejected(404, "not-found", f"no endpoint {url.path!r}; use /events or /control")
            check_token(request.headers, query, self._token)
            if url.path == "/events":
                events_query = parse_events_query(query, self.supervisor.bus.last_seq)
            else:
                unknown = sorted(set(query) - _CONTROL_QUERY)
                if unknown:
                    raise HandshakeRejected(400, "bad-query", f"unknown query parameter(s): {', '.join(unknown)}")
        except HandshakeRejected as rejected:
            logger.info("rejected %s %s: %s %s", peer, url.path, rejected.status, rejected)
            await request.reject(rejected.status, body=rejected.body,
                                 extra_headers=[(b"Content-Type", b"application/json")])
            return
        if url.path == "/events":
            await self._events(request, events_query, peer)
        else:
            await self._control(await request.accept())

    # -- /events --------------------------------------------------------------------------------

    async def _events(self, request: WebSocketRequest, query: EventsQuery, peer: str) -> None:
        feed = _Feed(self.supervisor, query, self.settings)  # subscribe before accepting: no gap
        try:
            ws = await request.accept()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._refuse_input, ws, nursery.cancel_scope)
                await self._write_events(ws, feed, peer)
                nursery.cancel_scope.cancel()
        finally:
            feed.close()

    async def _write_events(self, ws: WebSocketConnection, feed: _Feed, peer: str) -> None:
        batch = feed.batch
        while True:
            try:
                item: Event | Lagged | None = await feed.sub.get()
            except trio.EndOfChannel:
                return
            messages: list[Mapping[str, Any]] = []
            while item is not None:
                message = self._message(feed, item, peer)
                if message is None:
                    with trio.move_on_after(1):
                        await ws.aclose(CLOSE_TRY_AGAIN, "subscriber too slow; reconnect with since=")
                    return
                messages.append(message)
                item = feed.sub.get_nowait() if len(messages) < batch else None
            text = "[" + ",".join(map(_dumps, messages)) + "]" if batch else _dumps(messages[0])
            if not await self._send(ws, text, peer):
                return
            if feed.sub.pending == 0:
                feed.lags = 0  # caught up

    @staticmethod
    def _message(feed: _Feed, item: Event | Lagged, peer: str) -> Mapping[str, Any] | None:
        """The JSON object for `item`; None when the subscriber has lagged too often and must go."""
        if not isinstance(item, Lagged):
            return event_to_dict(item)
        message = feed.on_lag(item)
        if message is None:
            logger.info("dropping subscriber %s: lagged %d times in a row", peer, feed.lags - 1)
        return message

    async def _send(self, ws: WebSocketConnection, text: str, peer: str) -> bool:
        """False when the client is gone or too slow to take one frame."""
        with trio.move_on_after(self.settings.send_timeout):
            try:
                await ws.send_message(text)
            except ConnectionClosed:
                return False
            return True
        logger.info("dropping subscriber %s: a frame took over %ss to send", peer, self.settings.send_timeout)
        return False

    async def _refuse_input(self, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        """/events is one-way: any frame from the client closes the connection (1003)."""
        try:
            message = await ws.get_message()
        except ConnectionClosed:
            scope.cancel()
            return
        kind = "binary" if isinstance(message, bytes) else "text"
        with trio.move_on_after(1):
            await ws.aclose(CLOSE_UNSUPPORTED, f"/events takes no messages ({kind} frame received)")
        scope.cancel()

    # -- /control -------------------------------------------------------------------------------

    async def _control(self, ws: WebSocketConnection) -> None:
        slots = trio.Semaphore(self.settings.max_inflight)
        bad = 0
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    message = await ws.get_message()
                except ConnectionClosed:
                    break
                close: tuple[int, str] | None = None
                if isinstance(message, bytes):
                    close = (CLOSE_UNSUPPORTED, "binary frames are not accepted; send JSON text")
                else:
                    try:
                        data = control.decode_frame(message)
                    except control.NotJsonError as exc:
                        close = (CLOSE_INVALID_PAYLOAD, str(exc)[:120])
                if close is not None:
                    with trio.move_on_after(1):
                        await ws.aclose(*close)
                    break
                parsed = control.parse_request(data)
                if isinstance(parsed, control.ControlError):
                    bad += 1
                    await ws.send_message(_dumps(control.error_reply(control.request_id(data), parsed)))
                    if bad >= self.settings.max_bad_requests:
                        with trio.move_on_after(1):
                            await ws.aclose(CLOSE_POLICY, "too many bad requests")
                        break
                    continue
                await slots.acquire()
                nursery.start_soon(self._run, ws, parsed, slots)
            nursery.cancel_scope.cancel()

    async def _run(self, ws: WebSocketConnection, request: control.Request, slots: trio.Semaphore) -> None:
        try:
            try:
                result = control.reply(request.id, await control.execute(self.supervisor, request.command))
            except Exception as exc:
                error = control.error_for(exc)
                if error.type == "internal":
                    logger.exception("control command %r failed", request.command)
                result = control.error_reply(request.id, error)
            await ws.send_message(_dumps(result))
        except ConnectionClosed:
            pass
        finally:
            slots.release()


def _peer(request: WebSocketRequest) -> str:
    try:
        remote = request.remote
    except OSError:
        return "(gone)"
    return str(remote)


def check_listen(host: str, *, allow_remote: bool, token: str | None) -> None:
    """Refuse to expose the server by accident: non-loopback needs allow_remote and a token."""
    if not is_loopback(host):
        if not allow_remote:
            raise ConfigError("host", f"{host!r} is not a loopback address; pass --allow-remote to listen on it")
        if token is None:
            raise ConfigError("auth", "auth can only be turned off on a loopback address")


async def serve_events(
    supervisor: Supervisor,
    settings: ServerSettings | None = None,
    *,
    token: str | None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve /events and /control until cancelled; ``task_status.started(port)``.

    `token` None turns auth off (loopback only). Start it with
    ``port = await nursery.start(serve_events, supervisor, settings, token=...)``.
    """
    settings = settings if settings is not None else ServerSettings()
    check_listen(settings.host, allow_remote=settings.allow_remote, token=token)
    server = EventServer(supervisor, settings, token)
    async with trio.open_nursery() as nursery:
        ws_server = await nursery.start(
            lambda task_status: serve_websocket(
                server.handle, settings.host, settings.port, None,
                max_message_size=settings.max_message_size, message_queue_size=4,
                connect_timeout=10, disconnect_timeout=2, task_status=task_status,
            )
        )
        port: int = ws_server.port
        logger.info("event server listening on %s:%d", settings.host, port)
        task_status.started(port)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover
