"""/control answers every frame, over real loopback sockets: hostile-but-valid JSON gets a typed
error, what cannot be answered closes with its code (1003, 1007, 1008, 1009) only after the
requests in flight were answered, and no client error puts a traceback in the log.

Rules: 127.0.0.1, port 0, real clock (real I/O), a fail_after around every exchange. The request
in flight is a forced reconnect of a scripted session whose connect takes 0.3 s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tether import SessionSpec, Supervisor, open_supervisor
from tether.server import _control as control
from tether.server._connection import BadFrame
from tether.server._server import serve_events
from tether.server._settings import ServerSettings
from tether.testing import ScriptedBackend

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

MAX_MESSAGE = 64 * 1024
INFLIGHT = json.dumps({"id": "in-flight", "op": "force-reconnect", "session_id": "slow"})


def text_frame(payload: bytes, *, opcode: int = 0x1) -> bytes:
    """One masked client frame carrying `payload` as it is (a text frame may hold invalid UTF-8)."""
    mask = os.urandom(4)
    size = len(payload)
    header = bytes([0x80 | opcode])
    if size < 126:
        header += bytes([0x80 | size])
    elif size < 1 << 16:
        header += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", size)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@attrs.frozen
class Hostile:
    """A frame a client might send, and what the server must answer (an error type or a close code)."""

    name: str
    payload: bytes
    binary: bool = False
    error: str | None = None
    reply_id: object = None
    close: int | None = None


HOSTILE = [
    Hostile("nesting deeper than the recursion limit", b"[" * 30_000 + b"]" * 30_000, error="invalid-request"),
    Hostile("nesting under an id", b'{"id": 3, "op": "status", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
            error="invalid-request", reply_id=3),
    Hostile("an integer of 5,000 digits", b'{"id": 4, "op": "status", "limit": ' + b"9" * 5000 + b"}",
            error="invalid-request", reply_id=4),
    Hostile("an id of 5,000 digits", b'{"id": ' + b"9" * 5000 + b', "op": "status"}', error="invalid-request"),
    Hostile("a lone surrogate in the id", b'{"id": "\\ud800", "op": "status"}', error="invalid-request"),
    Hostile("a lone surrogate in a field", b'{"id": 5, "op": "unregister", "session_id": "a\\udfff"}',
            error="invalid-request", reply_id=5),
    Hostile("a number out of range", b'{"id": 6, "op": "status", "limit": 1e999}', error="invalid-request",
            reply_id=6),
    Hostile("an unknown op", b'{"id": 7, "op": "explode"}', error="unknown-op", reply_id=7),
    Hostile("not an object", b"[1, 2, 3]", error="invalid-request"),
    Hostile("not JSON", b"this is not json", close=1007),
    Hostile("NaN", b'{"id": 8, "op": "status", "limit": NaN}', close=1007),
    Hostile("invalid UTF-8 in a text frame", b'{"id": 9, "op": "status", "x": "\xff\xfe"}', close=1007),
    Hostile("a frame over max_message_size", b'{"id": 10, "op": "status", "pad": "' + b"x" * MAX_MESSAGE + b'"}',
            close=1009),
    Hostile("a binary frame", b"\x00\x01binary", binary=True, close=1003),
]


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[tuple[Supervisor, ScriptedBackend, str]]:
    backend = ScriptedBackend()
    async with open_supervisor(backends=[backend]) as supervisor:
        await supervisor.register(SessionSpec(id="slow", backend="scripted"))
        port = await nursery.start(lambda task_status: serve_events(
            supervisor, ServerSettings(port=0, max_message_size=MAX_MESSAGE), token=None, task_status=task_status))
        yield supervisor, backend, f"ws://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


async def _send(ws: WebSocketConnection, hostile: Hostile) -> None:
    await _send_raw(ws, Frame(hostile.payload, hostile.binary))


async def _replies_until_close(ws: WebSocketConnection) -> tuple[list[dict[str, Any]], int | None]:
    replies: list[dict[str, Any]] = []
    try:
        while True:
            replies.append(json.loads(await ws.get_message()))
    except ConnectionClosed as exc:
        return replies, exc.reason.code if exc.reason is not None else None


def _client_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
async def test_each_hostile_frame_is_answered_and_the_request_in_flight_too(
    served: tuple[Supervisor, ScriptedBackend, str], hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    """The hostile frame gets its typed error or its close code; the request sent before it is
    still answered (before the close frame); the log holds no traceback."""
    supervisor, backend, url = served
    backend.script("slow").connect_delay = 0.3
    with trio.fail_after(15):
        async with open_websocket_url(url + "/control", max_message_size=1 << 20) as ws:
            await ws.send_message(INFLIGHT)
            await _send(ws, hostile)
            if hostile.close is None:
                first, second = json.loads(await ws.get_message()), json.loads(await ws.get_message())
                by_id = {json.dumps(first["id"]): first, json.dumps(second["id"]): second}
                answer = by_id[json.dumps(hostile.reply_id)]
                assert answer["error"]["type"] == hostile.error, answer
                assert by_id['"in-flight"']["result"]["attempt"]["success"] is True
                await ws.send_message(json.dumps({"id": "after", "op": "status"}))
                assert json.loads(await ws.get_message())["id"] == "after"  # the connection carries on
            else:
                replies, code = await _replies_until_close(ws)
                assert code == hostile.close
                assert [r["id"] for r in replies] == ["in-flight"]
                assert replies[0]["result"]["attempt"]["success"] is True
    assert _client_errors(caplog) == []
    assert supervisor.state("slow").status.value == "connected"


async def test_too_many_bad_requests_close_1008_after_the_request_in_flight(
    served: tuple[Supervisor, ScriptedBackend, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The 16th error reply closes the connection with 1008, after the reply still in flight."""
    _, backend, url = served
    backend.script("slow").connect_delay = 0.3
    with trio.fail_after(15):
        async with open_websocket_url(url + "/control") as ws:
            await ws.send_message(INFLIGHT)
            for i in range(16):
                await ws.send_message(json.dumps({"id": i, "op": "nope"}))
            replies, code = await _replies_until_close(ws)
    assert code == 1008
    assert sorted(r["id"] for r in replies if isinstance(r["id"], int)) == list(range(16))
    assert replies[-1]["id"] == "in-flight"
    assert _client_errors(caplog) == []


async def test_a_stopping_server_answers_what_is_in_flight_then_closes_1001(nursery: trio.Nursery) -> None:
    """Cancelling the server: the request in flight is answered ``closed``; /control and /events
    are closed with 1001 (going away), not cut (1006)."""
    backend = ScriptedBackend()
    async with open_supervisor(backends=[backend]) as supervisor:
        await supervisor.register(SessionSpec(id="slow", backend="scripted"))
        server = trio.CancelScope()

        async def serve(task_status: trio.TaskStatus[int]) -> None:
            with server:
                await serve_events(supervisor, ServerSettings(port=0), token=None, task_status=task_status)

        url = f"ws://127.0.0.1:{await nursery.start(serve)}"
        backend.script("slow").connect_delay = 30
        with trio.fail_after(10):
            async with open_websocket_url(url + "/events") as watcher, \
                    open_websocket_url(url + "/control") as ws:
                with supervisor.subscribe(types=["reconnect.started"]) as started:
                    await ws.send_message(INFLIGHT)
                    await started.get()  # the forced attempt is under way
                server.cancel()
                replies, code = await _replies_until_close(ws)
                assert code == 1001
                assert [(r["id"], r["error"]["type"]) for r in replies] == [("in-flight", "closed")]
                _, watcher_code = await _replies_until_close(watcher)
                assert watcher_code == 1001


# -- property: whatever the frames, every one is answered ---------------------------------------

_IDS = st.one_of(st.none(), st.integers(-(10**30), 10**30), st.text(max_size=20).filter(lambda t: t != "in-flight"))
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Frames that are JSON text: well-formed requests, wrong fields, hostile classes."""
    kind = draw(st.sampled_from(["request", "fields", "deep", "bigint", "surrogate", "any"]))
    rid = draw(_IDS)
    op = draw(st.sampled_from([*control.OPS, "nope", ""]))
    if kind == "request":
        fields = draw(st.fixed_dictionaries({}, optional={
            "session_id": st.sampled_from(["slow", "missing", ""]), "detail": st.booleans(),
            "limit": st.integers(-5, 2000), "cursor": st.text(max_size=5), "status": st.lists(
                st.sampled_from(["failed", "connected", "bogus"]), max_size=2), "wait": st.just(False)}))
        return json.dumps({"id": rid, "op": op, **fields}).encode()
    if kind == "fields":
        return json.dumps({"id": rid, "op": op, **draw(st.dictionaries(st.text(max_size=8), _VALUES, max_size=4))},
                          ensure_ascii=False).encode("utf-8", "surrogatepass")
    if kind == "deep":
        depth = draw(st.integers(33, 20_000))
        return b'{"id": 1, "x": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "bigint":
        return b'{"id": ' + b"7" * draw(st.integers(101, 6000)) + b', "op": "status"}'
    if kind == "surrogate":
        return f'{{"id": "\\u{draw(st.integers(0xD800, 0xDFFF)):04x}", "op": "{op}"}}'.encode()
    return json.dumps(draw(_VALUES), ensure_ascii=False).encode("utf-8", "surrogatepass")


def _short_bytes(data: bytes) -> str:
    return repr(data) if len(data) <= 120 else f"{data[:60]!r}...<{len(data):,} bytes>"


@attrs.frozen
class Frame:
    """One frame of the property tests (its repr stays short: a failing example is readable)."""

    payload: bytes = attrs.field(repr=_short_bytes)
    binary: bool = False


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    return Frame(*draw(_frames()))


@st.composite
def _frames(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Any frame: JSON requests most of the time, and every class that cannot be answered."""
    kind = draw(st.sampled_from(["json"] * 6 + ["not-json", "nan", "utf8", "big", "binary"]))
    if kind == "json":
        return draw(requests()), False
    if kind == "not-json":
        return draw(st.text(max_size=30)).encode("utf-8", "surrogatepass").replace(b"\xed", b"") + b"}{", False
    if kind == "nan":
        return b'{"id": 1, "op": "status", "x": ' + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"])) + b"}", \
            False
    if kind == "utf8":
        return b'{"id": 1, "x": "' + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88"])) \
            + b'"}', False
    if kind == "big":
        return b'"' + b"y" * draw(st.integers(MAX_MESSAGE + 1, MAX_MESSAGE + 5000)) + b'"', False
    return draw(st.binary(max_size=40)), True


def _expected_close(payload: bytes, binary: bool) -> int | None:
    """The close code a frame calls for (None: it is answered)."""
    if binary:
        return 1003
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return 1007
    if len(text) > MAX_MESSAGE:
        return 1009
    outcome = control.read_frame(text)
    return outcome.code if isinstance(outcome, control.Close) else None


@settings(max_examples=300, deadline=None)
@given(frames())
def test_read_frame_never_raises_and_every_reply_encodes(frame: Frame) -> None:
    """Pure: any frame becomes a request, a typed error whose reply is valid UTF-8 JSON, or a close."""
    payload, binary = frame.payload, frame.binary
    message: str | bytes | BadFrame
    if binary:
        message = payload
    else:
        try:
            message = payload.decode("utf-8")
        except UnicodeDecodeError:
            message = BadFrame(1007, "invalid UTF-8")
    outcome = control.read_frame(message)
    if isinstance(outcome, control.Rejected):
        text = control.encode(control.error_reply(outcome.id, outcome.error))
        text.encode("utf-8")  # never a lone surrogate on the wire
        assert json.loads(text)["error"]["type"] in ("invalid-request", "unknown-op", "invalid-config")
    elif isinstance(outcome, control.Close):
        assert outcome.code in (1003, 1007, 1009)
    else:
        assert isinstance(outcome, control.Request)


async def _send_raw(ws: WebSocketConnection, frame: Frame) -> None:
    """Straight to the socket (under the client's send lock): nothing on our side fixes the frame up."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):  # the server closed first
        async with ws._stream_lock:
            await ws._stream.send_all(text_frame(frame.payload, opcode=0x2 if frame.binary else 0x1))


async def _exchange(frames_: list[Frame], expected: int) -> tuple[list[dict[str, Any]], int | None]:
    """Send the request in flight and `frames_`; read `expected` replies, or until the close."""
    backend = ScriptedBackend()
    async with open_supervisor(backends=[backend]) as supervisor, trio.open_nursery() as nursery:
        await supervisor.register(SessionSpec(id="slow", backend="scripted"))
        backend.script("slow").connect_delay = 0.05
        settings_ = ServerSettings(port=0, max_message_size=MAX_MESSAGE, max_bad_requests=1000, max_inflight=64)
        port = await nursery.start(lambda task_status: serve_events(supervisor, settings_, token=None,
                                                                    task_status=task_status))
        with trio.fail_after(20):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/control", max_message_size=1 << 20) as ws:
                await ws.send_message(INFLIGHT)
                for frame in frames_:
                    await _send_raw(ws, frame)
                replies: list[dict[str, Any]] = []
                code: int | None = None
                try:
                    while len(replies) < expected:
                        replies.append(json.loads(await ws.get_message()))
                    if expected < len(frames_) + 1:  # a closing frame: nothing more, then the close
                        replies.append(json.loads(await ws.get_message()))
                except ConnectionClosed as exc:
                    code = exc.reason.code if exc.reason is not None else None
        nursery.cancel_scope.cancel()
    return replies, code


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), min_size=1, max_size=6))
def test_over_the_wire_every_frame_is_answered_until_one_closes(frames_: list[Frame]) -> None:
    """A real server: each frame before the first closing one gets exactly one reply, the request
    in flight is answered, none is an internal error, and the close carries the first closing
    frame's code."""
    closes = [_expected_close(f.payload, f.binary) for f in frames_]
    first_close = next((i for i, code in enumerate(closes) if code is not None), None)
    answered = len(frames_) if first_close is None else first_close
    replies, code = trio.run(_exchange, frames_, answered + 1)
    assert code == (None if first_close is None else closes[first_close])
    assert len(replies) == answered + 1, (frames_, replies)
    assert sum(r["id"] == "in-flight" for r in replies) == 1
    assert all("result" in r or r["error"]["type"] != "internal" for r in replies), replies
