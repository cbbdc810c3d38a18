"""/events: every handshake query is parsed or refused with 400 (never an error), and a subscriber
that is dropped for being slow is told so: close code 1013 and a reason naming why and where to resume.

Rules: 127.0.0.1, port 0, real clock (real I/O), a fail_after around every exchange.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, open_websocket_url

from tether import SessionOutput, Supervisor, open_supervisor
from tether.server._server import MAX_BATCH, EventsQuery, HandshakeRejected, check_handshake, serve_events
from tether.server._settings import ServerSettings
from tether.testing import ScriptedBackend

from .test_control_frames import text_frame

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

LAST_SEQ = 50
BOOT = "b00t"
_NAMES = st.sampled_from(["session", "type", "since", "boot", "batch", "token", "bogus", "", "since ", "SINCE"])
_VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 10**25).map(str),
    st.sampled_from(["", "0", "50", "51", "1000", "1001", "²", "٣", "1e3", " 7", "0x10", "9" * 400,
                     BOOT, "0ther-run", "not a boot", "b" * 65]),
)


@st.composite
def queries(draw: st.DrawFn) -> str:
    """An /events query string: known and unknown names, odd numbers, and raw percent escapes."""
    pairs = draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=6))
    text = urlencode(pairs)
    if draw(st.booleans()):
        text += draw(st.sampled_from(["&since=%ff%fe", "&%zz=1", "&batch=%00", "&type=%E2%82", "&&&", "&=", "&since"]))
    return text


@settings(max_examples=500, deadline=None)
@given(queries())
def test_any_query_is_parsed_or_refused_with_400(query: str) -> None:
    """Pure: a query becomes filters within bounds, or HandshakeRejected(400) with a JSON body."""
    try:
        parsed = check_handshake(f"/events?{query}", [], None, LAST_SEQ, BOOT)
    except HandshakeRejected as rejected:
        refused = rejected
    else:
        refused = None
    if refused is not None:
        body = json.loads(refused.body)
        assert refused.status == 400
        assert body["error"]["type"] in ("bad-query", "bad-since", "bad-boot", "bad-batch")
        assert len(body["error"]["message"]) < 400
        return
    assert isinstance(parsed, EventsQuery)
    assert parsed.since is None or 0 <= parsed.since <= LAST_SEQ or parsed.boot not in (None, BOOT), \
        "only a since from another run may be ahead of this one"
    assert parsed.boot is None or parsed.since is not None
    assert parsed.batch == 0 or 1 <= parsed.batch <= MAX_BATCH
    assert all(parsed.session_ids) and all(parsed.types)


async def _handshake_status(port: int, target: str) -> int:
    """A raw HTTP upgrade; the status line's code."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        request = (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        await stream.send_all(request.encode("ascii"))
        data = b""
        while b"\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


async def _statuses(targets: list[str]) -> list[int]:
    async with open_supervisor(backends=[ScriptedBackend()]) as supervisor, trio.open_nursery() as nursery:
        for _ in range(LAST_SEQ):
            supervisor.bus.publish(SessionOutput, session_id="a", data="x")
        port = await nursery.start(lambda task_status: serve_events(
            supervisor, ServerSettings(port=0), token=None, task_status=task_status))
        with trio.fail_after(20):
            statuses = [await _handshake_status(port, target) for target in targets]
        nursery.cancel_scope.cancel()
    return statuses


@settings(max_examples=25, deadline=None)
@given(st.lists(queries(), min_size=1, max_size=8))
def test_over_the_wire_every_query_gets_101_or_400(queries_: list[str]) -> None:
    """A real server answers each handshake with 101 or 400, as the pure check says, and carries on."""
    targets = [f"/events?{quote(q, safe='=&%')}" for q in queries_]
    expected = []
    for target in targets:
        try:
            check_handshake(target, [], None, LAST_SEQ)
            expected.append(101)
        except HandshakeRejected as rejected:
            expected.append(rejected.status)
    assert trio.run(_statuses, targets) == expected


# -- slow subscribers -----------------------------------------------------------------------------


@pytest.fixture
async def slow_server(nursery: trio.Nursery) -> AsyncIterator[tuple[Supervisor, int]]:
    async with open_supervisor(backends=[ScriptedBackend()]) as supervisor:
        settings_ = ServerSettings(port=0, send_timeout=1.0, subscriber_buffer=200, max_lags=0)
        port = await nursery.start(lambda task_status: serve_events(
            supervisor, settings_, token=None, task_status=task_status))
        yield supervisor, port
        nursery.cancel_scope.cancel()


async def _read_until_close(ws: Any) -> tuple[list[int], int | None, str | None]:
    seqs: list[int] = []
    try:
        while True:
            message = json.loads(await ws.get_message())
            if "seq" in message:
                seqs.append(message["seq"])
    except ConnectionClosed as exc:
        return seqs, exc.reason.code if exc.reason else None, exc.reason.reason if exc.reason else None


class _LogSeen(logging.Handler):
    """Sets a trio.Event when a log line containing `needle` is emitted (the server's own word)."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen.set()


@contextmanager
def _when_logged(needle: str) -> Iterator[trio.Event]:
    """An event set once the server logs `needle` (at INFO, for the block's duration)."""
    handler = _LogSeen(needle)
    server_log = logging.getLogger("tether.server")
    old_level = server_log.level
    server_log.addHandler(handler)
    server_log.setLevel(logging.INFO)
    try:
        yield handler.seen
    finally:
        server_log.removeHandler(handler)
        server_log.setLevel(old_level)


async def test_a_subscriber_that_stops_reading_is_closed_1013_with_where_to_resume(
    slow_server: tuple[Supervisor, int]
) -> None:
    """A frame that takes over send_timeout to go out marks the subscriber too slow; the frame is
    finished (never cut in half), then the close says why and the since= to resume from."""
    supervisor, port = slow_server
    with _when_logged("a frame took over 1s to send") as marked, trio.fail_after(30):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/events?session=big", max_message_size=1 << 22) as ws:
            for _ in range(150):  # 15 MB: more than loopback's socket buffers hold
                supervisor.bus.publish(SessionOutput, session_id="big", data="x" * 100_000)
            await marked.wait()  # only now does the client start reading
            seqs, code, reason = await _read_until_close(ws)
    assert code == 1013
    assert reason == f"subscriber too slow (a frame took over 1s to send); reconnect with since={seqs[-1]}"
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # in order, nothing half-sent or skipped


async def test_a_subscriber_that_lags_past_max_lags_is_closed_1013_saying_so(
    slow_server: tuple[Supervisor, int]
) -> None:
    """max_lags = 0: the first time its buffer overflows, the subscriber is closed 1013 with why."""
    supervisor, port = slow_server
    with trio.fail_after(30):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/events?session=a") as ws:
            for i in range(1000):  # no checkpoint: the 200-event buffer overflows at once
                supervisor.bus.publish(SessionOutput, session_id="a", data=str(i))
            seqs, code, reason = await _read_until_close(ws)
    assert code == 1013
    assert reason == f"subscriber too slow (lagged 1 time in a row); reconnect with since={seqs[-1] if seqs else 0}"


async def test_a_subscriber_that_takes_nothing_is_cut_off(slow_server: tuple[Supervisor, int]) -> None:
    """No data taken for twice send_timeout: the half-sent frame cannot be finished, so the stream
    is cut without a close frame (1006 on the client's side) and the server carries on."""
    supervisor, port = slow_server
    with _when_logged("took no data for 2s") as cut, trio.fail_after(30):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/events?session=big", max_message_size=1 << 22) as ws:
            for _ in range(150):
                supervisor.bus.publish(SessionOutput, session_id="big", data="x" * 100_000)
            await cut.wait()
            _, code, _ = await _read_until_close(ws)
        assert code == 1006
        async with open_websocket_url(f"ws://127.0.0.1:{port}/events?since=0&session=big") as again:
            assert json.loads(await again.get_message())["seq"] == 1


async def test_invalid_utf8_on_events_closes_1007(slow_server: tuple[Supervisor, int]) -> None:
    """/events takes no frames; one that is not even UTF-8 is closed 1007, not cut (1006)."""
    _, port = slow_server
    with trio.fail_after(10):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/events") as ws:
            async with ws._stream_lock:
                await ws._stream.send_all(text_frame(b"\xff\xfe"))
            _, code, _ = await _read_until_close(ws)
    assert code == 1007
