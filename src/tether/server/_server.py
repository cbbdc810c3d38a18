"""The event server: ``/events`` streams events as JSON, ``/control`` takes commands,
``/attach`` streams one console both ways (`tether.server._attach`).

One task per connection, each with its own bounded `Subscription`: a client
that reads slowly only ever fills its own buffer, then is told it lagged and
resynced from the ring (or dropped after `max_lags` lags in a row, or when
one frame takes longer than `send_timeout` to go out: closed with 1013 and a
reason that says so). Publishing never waits for a socket, so no client can
slow the supervisor or another client. Every handshake is checked (path,
token, query) and rejected with an HTTP status before any data flows.

On /control every frame is answered (a reply or a typed error) or, when it
cannot be, the connection is closed with the frame's code only after the
replies in flight have gone out (`tether.server._control`). A server that
stops closes every connection with 1001.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest

from ..engine._bus import Subscription
from ..engine._secrets import known_secrets, remember
from ..engine._supervisor import Supervisor
from ..rules._addresses import is_loopback
from ..rules._errors import ConfigError, CursorError, SessionNotFoundError
from ..rules._events import Event, Lagged
from ..rules._secrets import redact_data, redact_text, secret_values
from ..rules._wire import event_to_dict
from . import _control as control
from ._attach import MAX_TAIL, AttachQuery, serve_attach, start_of
from ._auth import token_from_request, token_matches
from ._connection import (
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    CLOSE_UNSUPPORTED,
    BadFrame,
    ConnectionLimits,
    GuardedConnection,
    serve_guarded,
)
from ._resume import BOOT_PATTERN, handshake_headers, resume_point
from ._settings import ServerSettings

logger = logging.getLogger("tether.server")

_EVENTS_QUERY = frozenset({"session", "type", "since", "boot", "token", "batch"})
MAX_BATCH = 1000
"""Most events one /events frame may carry (``?batch=N``)."""
_CONTROL_QUERY = frozenset({"token"})
_ATTACH_QUERY = frozenset({"session", "since", "tail", "log", "token"})


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
    boot: str | None = None
    """The run `since` counts in (``boot=``); None: this run."""


def _number(raw: str) -> int | None:
    """A plain decimal number (ASCII digits only: ``'²'.isdigit()`` is true, ``int('²')`` fails)."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else None


def parse_events_query(query: Mapping[str, list[str]], last_seq: int, boot: str | None = None) -> EventsQuery:
    """Filters and resume point of an /events URL; `HandshakeRejected` (400) when malformed.

    `boot` is this run's identity: a ``since`` from another run (``boot=`` names it) may be any
    number, since it counts in a run that has ended (`tether.server._resume`)."""
    unknown = sorted(set(query) - _EVENTS_QUERY)
    if unknown:
        shown = ", ".join(repr(name)[1:-1][:40] for name in unknown[:5])
        raise HandshakeRejected(400, "bad-query", f"unknown query parameter(s): {shown}")
    client_boot: str | None = None
    if "boot" in query:
        client_boot = query["boot"][-1]
        if not BOOT_PATTERN.fullmatch(client_boot):
            raise HandshakeRejected(400, "bad-boot",
                                    f"boot must be a run's id (an event's boot), got {client_boot[:40]!r}")
        if "since" not in query:
            raise HandshakeRejected(400, "bad-boot", "boot= names the run that since= counts in: pass both")
    since: int | None = None
    if "since" in query:
        raw = query["since"][-1]
        since = _number(raw)
        if since is None:
            raise HandshakeRejected(400, "bad-since", f"since must be a sequence number >= 0, got {raw[:40]!r}")
        if since > last_seq and (client_boot is None or client_boot == boot):
            raise HandshakeRejected(400, "bad-since", f"since={since} is ahead of the last event ({last_seq})")
    for name in ("session", "type"):
        if any(not v for v in query.get(name, [])):
            raise HandshakeRejected(400, "bad-query", f"{name} must not be empty")
    batch = 0
    if "batch" in query:
        raw = query["batch"][-1]
        number = _number(raw)
        if number is None or not 1 <= number <= MAX_BATCH:
            raise HandshakeRejected(400, "bad-batch", f"batch must be a number from 1 to {MAX_BATCH}, got {raw[:40]!r}")
        batch = number
    return EventsQuery(tuple(query.get("session", [])), tuple(query.get("type", [])), since, batch, client_boot)


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


def parse_attach_query(query: Mapping[str, list[str]]) -> AttachQuery:
    """The session and start of an /attach URL; `HandshakeRejected` (400) when malformed."""
    unknown = sorted(set(query) - _ATTACH_QUERY)
    if unknown:
        shown = ", ".join(repr(name)[1:-1][:40] for name in unknown[:5])
        raise HandshakeRejected(400, "bad-query", f"unknown query parameter(s): {shown}")
    session = query.get("session", [""])[-1]
    if not session:
        raise HandshakeRejected(400, "bad-query", "session is required (/attach?session=ID)")
    numbers: dict[str, int | None] = {}
    for name, high in (("since", 1 << 62), ("tail", MAX_TAIL)):
        raw = query[name][-1] if name in query else None
        number = None if raw is None else _number(raw)
        if raw is not None and (number is None or number > high):
            raise HandshakeRejected(400, "bad-query", f"{name} must be a number from 0 to {high}, got {raw[:40]!r}")
        numbers[name] = number
    if numbers["since"] is not None and numbers["tail"] is not None:
        raise HandshakeRejected(400, "bad-query", "give since or tail, not both")
    log = query["log"][-1] if "log" in query else None
    return AttachQuery(session, numbers["since"], numbers["tail"], log or None)


@attrs.frozen
class ControlQuery:
    """A /control handshake takes nothing but the token."""


def check_handshake(
    target: str, headers: list[tuple[bytes, bytes]], token: str | None, last_seq: int, boot: str | None = None
) -> EventsQuery | ControlQuery | AttachQuery:
    """What a handshake asks for, or `HandshakeRejected` with the status to refuse it with (pure)."""
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    if url.path not in ("/events", "/control", "/attach"):
        raise HandshakeRejected(404, "not-found", f"no endpoint {url.path[:80]!r}; use /events, /control or /attach")
    check_token(headers, query, token)
    if url.path == "/events":
        return parse_events_query(query, last_seq, boot)
    if url.path == "/attach":
        return parse_attach_query(query)
    unknown = sorted(set(query) - _CONTROL_QUERY)
    if unknown:
        shown = ", ".join(repr(name)[1:-1][:40] for name in unknown[:5])
        raise HandshakeRejected(400, "bad-query", f"unknown query parameter(s): {shown}")
    return ControlQuery()


class _Feed:
    """One subscriber's events, resubscribing from the ring when it lags."""

    def __init__(self, supervisor: Supervisor, query: EventsQuery, settings: ServerSettings) -> None:
        self._supervisor = supervisor
        self._query = query
        self._settings = settings
        bus = supervisor.bus
        since, self.restarted = resume_point(query.since, query.boot, boot=bus.boot, oldest_seq=bus.oldest_seq)
        self.sub = self._subscribe(since)
        self.lags = 0
        self.batch = query.batch
        self.boot = bus.boot
        self.started_at = bus.last_seq
        self.last_sent = since if since is not None else bus.last_seq
        """The seq up to which this subscriber has everything: where it resumes when dropped."""
        self.sending_since: float | None = None
        """trio time the frame being sent started, None between frames (the send watchdog reads it)."""
        self.too_slow: str | None = None
        """Why this subscriber is being dropped, once it is."""
        self.cut_off = False
        """It took no data at all for twice `send_timeout`: the stream is cut, no close frame."""

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

    def resume_hint(self) -> str:
        return f"reconnect with since={self.last_sent}"

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
        """The connection handler: never lets an error escape into the server's nursery."""
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
        try:
            bus = self.supervisor.bus
            wants = check_handshake(request.path, request.headers, self._token, bus.last_seq, bus.boot)
        except HandshakeRejected as rejected:
            logger.info("rejected %s %s: %s %s", peer, urlsplit(request.path).path[:80], rejected.status, rejected)
            await request.reject(rejected.status, body=rejected.body,
                                 extra_headers=[(b"Content-Type", b"application/json")])
            return
        if isinstance(wants, EventsQuery):
            await self._events(request, wants, peer)
        elif isinstance(wants, AttachQuery):
            await self._attach(request, wants, peer)
        else:
            ws = await request.accept()
            assert isinstance(ws, GuardedConnection)
            await self._control(ws, peer)

    # -- /events --------------------------------------------------------------------------------

    async def _events(self, request: WebSocketRequest, query: EventsQuery, peer: str) -> None:
        feed = _Feed(self.supervisor, query, self.settings)  # subscribe before accepting: no gap
        try:
            ws = await request.accept(extra_headers=handshake_headers(feed.boot, feed.started_at, feed.last_sent))
            assert isinstance(ws, GuardedConnection)
            if feed.restarted is not None:  # before any event: the resume point was in another run
                notice = feed.restarted.to_dict()
                logger.info("subscriber %s resumed from run %s: %s", peer, feed.restarted.previous_boot,
                            notice["message"])
                await ws.send_message(control.encode(notice) if not feed.batch else f"[{control.encode(notice)}]")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._refuse_input, ws, nursery.cancel_scope)
                nursery.start_soon(self._watch_sends, ws, feed, peer, nursery.cancel_scope)
                await self._write_events(ws, feed)
                nursery.cancel_scope.cancel()
            if feed.cut_off:
                await ws.abort()
        finally:
            feed.close()

    async def _write_events(self, ws: GuardedConnection, feed: _Feed) -> None:
        batch = feed.batch
        while True:
            try:
                item: Event | Lagged | None = await feed.sub.get()
            except trio.EndOfChannel:
                return
            messages: list[Mapping[str, Any]] = []
            last_seq: int = feed.last_sent
            while item is not None:
                message = self._message(feed, item)
                if message is None:
                    await self._drop(ws, feed)
                    return
                messages.append(message)
                if isinstance(item, Event):
                    last_seq = item.seq
                item = feed.sub.get_nowait() if len(messages) < batch else None
            text = "[" + ",".join(map(control.encode, messages)) + "]" if batch else control.encode(messages[0])
            feed.sending_since = trio.current_time()
            try:
                await ws.send_message(text)
            except ConnectionClosed:
                return
            feed.sending_since = None
            feed.last_sent = last_seq
            if feed.too_slow is not None:
                await self._drop(ws, feed)
                return
            if feed.sub.pending == 0:
                feed.lags = 0  # caught up

    def _message(self, feed: _Feed, item: Event | Lagged) -> Mapping[str, Any] | None:
        """The JSON object for `item`; None when the subscriber has lagged too often and must go."""
        if not isinstance(item, Lagged):
            return event_to_dict(item)
        message = feed.on_lag(item)
        if message is None:
            feed.too_slow = f"lagged {feed.lags} time{'s' if feed.lags != 1 else ''} in a row"
        return message

    async def _drop(self, ws: GuardedConnection, feed: _Feed) -> None:
        """Close a subscriber that is too slow with 1013 and a reason that says why and where to resume."""
        assert feed.too_slow is not None
        logger.info("dropping a slow subscriber: %s", feed.too_slow)
        with trio.move_on_after(self.settings.send_timeout):
            await ws.aclose(CLOSE_TRY_AGAIN, f"subscriber too slow ({feed.too_slow}); {feed.resume_hint()}"[:120])

    async def _watch_sends(self, ws: GuardedConnection, feed: _Feed, peer: str, scope: trio.CancelScope) -> None:
        """Mark a subscriber too slow when one frame takes over `send_timeout` to go out.

        A send is never cancelled halfway (the client would read half a frame):
        the frame may finish within another `send_timeout`, then the writer
        closes with 1013; a client that takes none of it by then is cut off.
        """
        timeout = self.settings.send_timeout
        while True:
            await trio.sleep(timeout / 2)
            started = feed.sending_since
            if started is None or trio.current_time() - started < timeout:
                continue
            feed.too_slow = f"a frame took over {timeout:g}s to send"
            logger.info("subscriber %s: %s", peer, feed.too_slow)
            await trio.sleep(timeout)
            if feed.sending_since == started:  # still the same frame: the client takes nothing
                logger.info("cutting off subscriber %s: it took no data for %gs", peer, 2 * timeout)
                feed.cut_off = True
                scope.cancel()
                return

    async def _refuse_input(self, ws: GuardedConnection, scope: trio.CancelScope) -> None:
        """/events is one-way: any frame from the client closes the connection (1003, or the bad frame's code)."""
        try:
            message = await ws.receive()
        except ConnectionClosed:
            scope.cancel()
            return
        with trio.move_on_after(1):
            if isinstance(message, BadFrame):
                await ws.fail(message.code, message.reason)
            else:
                kind = "binary" if isinstance(message, bytes) else "text"
                await ws.aclose(CLOSE_UNSUPPORTED, f"/events takes no messages ({kind} frame received)")
        scope.cancel()

    # -- /attach --------------------------------------------------------------------------------

    async def _attach(self, request: WebSocketRequest, query: AttachQuery, peer: str) -> None:
        try:
            since = start_of(self.supervisor, query)
        except (SessionNotFoundError, CursorError) as exc:
            status, kind = (404, "not-found") if isinstance(exc, SessionNotFoundError) else (400, "bad-cursor")
            logger.info("rejected /attach from %s: %s %s", peer, status, exc)
            await request.reject(status, body=HandshakeRejected(status, kind, str(exc)).body,
                                 extra_headers=[(b"Content-Type", b"application/json")])
            return
        ws = await request.accept()
        assert isinstance(ws, GuardedConnection)
        await serve_attach(ws, self.supervisor, self.settings, query, since, peer)

    # -- /control -------------------------------------------------------------------------------

    async def _control(self, ws: GuardedConnection, peer: str) -> None:
        """Run requests as they come (up to `max_inflight` at once); when the connection must
        close, the requests in flight get `drain_timeout` to send their replies first."""
        slots = trio.Semaphore(self.settings.max_inflight)
        bad = 0
        close: control.Close | None = None
        async with trio.open_nursery() as nursery:
            while close is None:
                try:
                    frame = await ws.receive()
                except ConnectionClosed:
                    break
                outcome = control.read_frame(frame)
                if isinstance(outcome, control.Close):
                    close = outcome
                elif isinstance(outcome, control.Rejected):
                    bad += 1
                    await self._send_reply(ws, control.error_reply(outcome.id, outcome.error))
                    if bad >= self.settings.max_bad_requests:
                        close = control.Close(CLOSE_POLICY, "too many bad requests")
                else:
                    await slots.acquire()
                    nursery.start_soon(self._run, ws, outcome, slots)
            nursery.cancel_scope.deadline = trio.current_time() + self.settings.drain_timeout
        if close is not None:
            logger.info("closing /control connection from %s: %d %s", peer, close.code, close.reason)
            with trio.move_on_after(self.settings.send_timeout):
                if close.code in (CLOSE_POLICY, CLOSE_UNSUPPORTED):
                    await ws.aclose(close.code, close.reason)
                else:
                    await ws.fail(close.code, close.reason)

    async def _run(self, ws: GuardedConnection, request: control.Request, slots: trio.Semaphore) -> None:
        try:
            try:
                result = control.reply(request.id, await control.execute(self.supervisor, request.command))
            except trio.Cancelled:
                # The daemon is stopping or the connection is closing: say so before the close frame.
                with trio.CancelScope(shield=True), trio.move_on_after(0.2):
                    error = control.ControlError("closed", "the request was cut short: the connection is closing")
                    await self._send_reply(ws, control.error_reply(request.id, error))
                raise
            except Exception as exc:
                error = _scrubbed(control.error_for(exc), request.command)
                if error.type == "internal":  # named, never shown: a spec's secrets, typed input
                    logger.exception("control command %s failed", _named(request.command))
                result = control.error_reply(request.id, error)
            await self._send_reply(ws, result)
        finally:
            slots.release()

    @staticmethod
    async def _send_reply(ws: GuardedConnection, message: Mapping[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):  # the client left: nobody to answer
            await ws.send_message(control.encode(message))


def _scrubbed(error: control.ControlError, command: control.Command) -> control.ControlError:
    """`error` as a reply may carry it: a plugin's or tether's message can quote what it was given.
    The command's own secrets join the process's book first, so the log line about it is scrubbed too."""
    spec = getattr(command, "spec", None)
    if spec is not None:
        remember(secret_values(spec.options))
    secrets = known_secrets()
    return control.ControlError(error.type, redact_text(error.message, secrets), redact_data(error.details, secrets))


def _named(command: control.Command) -> str:
    """A /control command for a log line: its kind and session, not its fields (a register's
    options may hold a secret, a send what someone typed at a password prompt)."""
    spec = getattr(command, "spec", None)
    session = getattr(command, "session_id", None) or getattr(spec, "id", None)
    return type(command).__name__ + (f" (session {session!r})" if session else "")


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
    """Serve /events, /control and /attach until cancelled; ``task_status.started(port)``.

    `token` None turns auth off (loopback only). Start it with
    ``port = await nursery.start(serve_events, supervisor, settings, token=...)``.
    Cancelling it closes every connection with 1001 (going away).
    """
    settings = settings if settings is not None else ServerSettings()
    check_listen(settings.host, allow_remote=settings.allow_remote, token=token)
    server = EventServer(supervisor, settings, token)
    limits = ConnectionLimits(max_message_size=settings.max_message_size)
    async with trio.open_nursery() as nursery:
        port: int = await nursery.start(serve_guarded, server.handle, settings.host, settings.port, limits)
        logger.info("event server listening on %s:%d", settings.host, port)
        task_status.started(port)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover
