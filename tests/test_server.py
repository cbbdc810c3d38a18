"""The event server over real loopback sockets: auth, filters, resume, lag, control, bad frames.

Rules: 127.0.0.1, port 0, real clock (there is real I/O), a fail_after around every test.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tether import SessionOutput, SessionSpec, Supervisor, open_supervisor
from tether.server._server import serve_events
from tether.server._settings import ServerSettings
from tether.testing import ScriptedBackend

# trio-websocket 0.12's *client* never closes its socket when the server rejects the handshake
# or closes the connection first (aclose returns early once a close reason is set). Those
# sockets are collected in this module's teardown and their warnings ignored here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

TOKEN = "s3cret-token"



async def _handshake(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A raw HTTP upgrade: the status and whatever came back (trio-websocket 0.12's client
    leaks its socket when a handshake is rejected, so rejections are tested by hand)."""
    host, _, port = url.removeprefix("ws://").partition(":")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data or (b'"error"' not in data and not data.startswith(b"HTTP/1.1 101")):
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data
AUTH = [(b"Authorization", f"Bearer {TOKEN}".encode())]


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[tuple[Supervisor, str]]:
    async with open_supervisor(backends=[ScriptedBackend()]) as supervisor:
        settings = ServerSettings(host="127.0.0.1", port=0, subscriber_buffer=200, max_message_size=4096)
        port = await nursery.start(lambda task_status: serve_events(
            supervisor, settings, token=TOKEN, task_status=task_status))
        yield supervisor, f"ws://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()
    gc.collect()


async def _json(ws: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await ws.get_message())
    return data


async def test_handshake_without_token_is_401_and_wrong_token_403(served: tuple[Supervisor, str]) -> None:
    """No data flows before the token is checked; header and query token both work."""
    supervisor, url = served
    with trio.fail_after(10):
        await supervisor.register(SessionSpec(id="a", backend="scripted"))
        status, data = await _handshake(url, "/events?since=0")
        assert status == 401 and b"session.registered" not in data
        status, data = await _handshake(url, "/events?since=0", {"Authorization": "Bearer nope"})
        assert status == 403 and b"session.registered" not in data
        assert (await _handshake(url, "/events?token=nope"))[0] == 403
        assert (await _handshake(url, "/nowhere", {"Authorization": f"Bearer {TOKEN}"}))[0] == 404
        assert (await _handshake(url, f"/events?token={TOKEN}"))[0] == 101
        async with open_websocket_url(f"{url}/control?token={TOKEN}") as ws:
            await ws.send_message(json.dumps({"id": 1, "op": "status"}))
            assert (await _json(ws))["id"] == 1


@pytest.mark.parametrize(
    "query", ["since=-1", "since=abc", "since=999", "bogus=1", "session=", "batch=0", "batch=1001", "batch=x",
              "since=%C2%B2", "batch=%D9%A3", "since=" + "9" * 30]
)
async def test_bad_query_is_400(served: tuple[Supervisor, str], query: str) -> None:
    """A bad since= (or unknown parameter) is refused in the handshake."""
    _, url = served
    with trio.fail_after(10):
        status, data = await _handshake(url, f"/events?{query}", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 400
        assert b'"error"' in data


async def test_filters_and_resume_since(served: tuple[Supervisor, str]) -> None:
    """session= and type= patterns filter; since= replays from the ring."""
    supervisor, url = served
    with trio.fail_after(10):
        await supervisor.register(SessionSpec(id="a", backend="scripted"))
        await supervisor.register(SessionSpec(id="b", backend="scripted"))
        async with open_websocket_url(f"{url}/events?session=b&type=session.*&since=0", extra_headers=AUTH) as ws:
            first = await _json(ws)
            assert (first["session_id"], first["type"]) == ("b", "session.registered")
            second = await _json(ws)
            assert (second["session_id"], second["type"]) == ("b", "session.connected")
            supervisor.bus.publish(SessionOutput, session_id="a", data="not for us")
            supervisor.bus.publish(SessionOutput, session_id="b", data="for us")
            third = await _json(ws)
            assert third["type"] == "session.output" and third["data"] == "for us"
            assert third["seq"] > second["seq"]


async def test_batch_sends_what_is_waiting_as_one_array_in_order(served: tuple[Supervisor, str]) -> None:
    """?batch=N: each frame is a JSON array of up to N events; nothing is lost or reordered."""
    supervisor, url = served
    with trio.fail_after(10):
        await supervisor.register(SessionSpec(id="a", backend="scripted"))
        for i in range(25):
            supervisor.bus.publish(SessionOutput, session_id="a", data=f"line {i}")
        last = supervisor.bus.last_seq
        async with open_websocket_url(f"{url}/events?since=0&batch=10", extra_headers=AUTH) as ws:
            frames: list[list[dict[str, Any]]] = []
            while not frames or frames[-1][-1]["seq"] < last:
                frame = json.loads(await ws.get_message())
                assert isinstance(frame, list) and 1 <= len(frame) <= 10
                frames.append(frame)
            seqs = [event["seq"] for frame in frames for event in frame]
            assert seqs == list(range(1, seqs[-1] + 1))
            assert len(frames) >= 3  # 27 or more events in frames of at most 10
            supervisor.bus.publish(SessionOutput, session_id="a", data="live")
            live = json.loads(await ws.get_message())
            assert [event["data"] for event in live] == ["live"]  # a lone event is not held back


async def test_control_commands_and_typed_errors(served: tuple[Supervisor, str]) -> None:
    """register, status, force-reconnect, unregister; errors carry the id and a type."""
    supervisor, url = served
    with trio.fail_after(10):
        async with open_websocket_url(url + "/control", extra_headers=AUTH) as ws:
            async def ask(request: dict[str, Any]) -> dict[str, Any]:
                await ws.send_message(json.dumps(request))
                return await _json(ws)

            reply = await ask({"id": "r1", "op": "register", "session": {"id": "x", "backend": "scripted"}})
            assert reply["id"] == "r1" and reply["result"]["id"] == "x"
            reply = await ask({"id": 2, "op": "register", "session": {"id": "x", "backend": "scripted"}})
            assert reply["error"]["type"] == "duplicate"
            reply = await ask({"id": 3, "op": "register",
                               "session": {"id": "y", "backend": "scripted", "policy": {"max_delay": 1}}})
            assert reply["error"]["type"] == "invalid-config"
            assert reply["error"]["errors"] == [
                {"path": "session.policy.max_delay", "problem": "must be >= base_delay (2.0), got 1.0"}]
            reply = await ask({"id": 4, "op": "status"})
            assert reply["result"]["total"] == 1 and reply["result"]["stats"]["registered_sessions"] == 1
            reply = await ask({"id": 4, "op": "status", "detail": True})
            assert [s["id"] for s in reply["result"]["sessions"]] == ["x"]
            reply = await ask({"id": 5, "op": "force-reconnect", "session_id": "x"})
            assert reply["result"]["attempt"]["success"] is True
            reply = await ask({"id": 6, "op": "force-reconnect", "session_id": "x", "strategy": "nope"})
            assert reply["error"]["type"] == "unknown-strategy"
            reply = await ask({"id": 7, "op": "unregister", "session_id": "x"})
            assert reply == {"id": 7, "result": {"session_id": "x"}}
            reply = await ask({"id": 8, "op": "unregister", "session_id": "x"})
            assert reply["error"]["type"] == "not-found"
            reply = await ask({"id": 9, "op": "explode"})
            assert reply["error"]["type"] == "unknown-op"
            reply = await ask({"id": 10, "op": "unregister", "session_id": 5})
            assert reply["error"]["type"] == "invalid-request"
            reply = await ask({"id": 11, "op": "status", "extra": True})
            assert reply["error"]["type"] == "invalid-request"
            assert (await ask([1, 2]))["error"]["type"] == "invalid-request"  # type: ignore[arg-type]
        assert supervisor.session_ids == []


@pytest.mark.parametrize(
    ("path", "frame", "code"),
    [
        ("/control", "this is not json", 1007),
        ("/control", "NaN", 1007),
        ("/control", b"\x00binary", 1003),
        ("/control", json.dumps({"id": 1, "op": "status", "pad": "x" * 10_000}), 1009),
        ("/events", "hello", 1003),
        ("/events", b"\x00binary", 1003),
        ("/events", "x" * 10_000, 1009),
    ],
)
async def test_bad_frames_close_with_the_right_code(
    served: tuple[Supervisor, str], path: str, frame: str | bytes, code: int
) -> None:
    """Each bad frame closes only its own connection, with the proper code; the server carries on."""
    supervisor, url = served
    with trio.fail_after(10):
        async with open_websocket_url(url + "/events", extra_headers=AUTH) as bystander:
            async with open_websocket_url(url + path, extra_headers=AUTH) as ws:
                await ws.send_message(frame)
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason is not None and info.value.reason.code == code
            supervisor.bus.publish(SessionOutput, session_id="z", data="still here")
            assert (await _json(bystander))["data"] == "still here"


async def test_too_many_bad_requests_close_1008(served: tuple[Supervisor, str]) -> None:
    """A client that only sends nonsense is cut off with a policy close."""
    _, url = served
    with trio.fail_after(10):
        async with open_websocket_url(url + "/control", extra_headers=AUTH) as ws:
            for i in range(16):
                await ws.send_message(json.dumps({"id": i, "op": "nope"}))
            async def drain() -> None:
                while True:
                    await ws.get_message()

            with pytest.raises(ConnectionClosed) as info:
                await drain()
            assert info.value.reason is not None and info.value.reason.code == 1008


async def test_hundred_subscribers_one_never_reads(served: tuple[Supervisor, str]) -> None:
    """99 readers get every event in order while one subscriber never reads: its buffer stays
    bounded, it is told it lagged or is dropped (1013, or 1006 when its socket stayed full past
    send_timeout), and it never holds the others back."""
    supervisor, url = served
    total = 300
    received: dict[int, int] = {}

    async def reader(index: int, task_status: trio.TaskStatus[None]) -> None:
        async with open_websocket_url(url + "/events?session=s", extra_headers=AUTH) as ws:
            task_status.started()
            while received.get(index, 0) < total:
                event = await _json(ws)
                if event["type"] == "lagged":  # a busy reader may lag too: the ring refills the gap
                    assert event["resync"] is True
                    continue
                assert event["data"] == str(received.get(index, 0))  # in order, no gap, no duplicate
                received[index] = received.get(index, 0) + 1

    with trio.fail_after(60):
        # The stuck client alone asks for session "big": 16 MB it never reads fills its socket.
        async with open_websocket_url(url + "/events?session=big", extra_headers=AUTH,
                                      max_message_size=1 << 20) as stuck:
            async with trio.open_nursery() as nursery:
                for i in range(99):
                    await nursery.start(reader, i)
                for n in range(total):
                    supervisor.bus.publish(SessionOutput, session_id="s", data=str(n))
                    for _ in range(7):
                        supervisor.bus.publish(SessionOutput, session_id="big", data="x" * 8_000)
                    if n % 20 == 0:
                        await trio.sleep(0.001)
            assert len(received) == 99 and all(count == total for count in received.values())
            seen_lag = False
            try:
                with trio.move_on_after(10):
                    while not seen_lag:
                        event = await _json(stuck)
                        if event["type"] == "lagged":
                            seen_lag = True
                            assert event["missed"] > 0
            except ConnectionClosed as exc:  # dropping is the other allowed answer
                assert exc.reason is not None and exc.reason.code in (1006, 1013)  # noqa: PT017
                seen_lag = True
            assert seen_lag
