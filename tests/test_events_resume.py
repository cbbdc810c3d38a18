"""/events says which run it serves, and a resume from another run is answered with a `restarted`
message before the new run's events: never a silent gap (tether.server._resume).

Rules: 127.0.0.1, port 0, real I/O, a fail_after around every exchange.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from tether import RestartNotice, SessionOutput, SessionUnregistered, Supervisor, open_events, open_supervisor
from tether.server._resume import Restarted, resume_point
from tether.server._server import serve_events
from tether.server._settings import ServerSettings
from tether.testing import ScriptedBackend


def test_a_resume_from_this_run_or_none_starts_where_it_says() -> None:
    assert resume_point(7, None, boot="b1", oldest_seq=1) == (7, None)
    assert resume_point(7, "b1", boot="b1", oldest_seq=1) == (7, None)
    assert resume_point(None, None, boot="b1", oldest_seq=1) == (None, None)


def test_a_resume_from_another_run_starts_at_the_ring_and_says_what_is_gone() -> None:
    since, notice = resume_point(27, "b0", boot="b1", oldest_seq=1)
    assert since == 0 and notice == Restarted(boot="b1", previous_boot="b0", since=27, replay_from=1, missed=0)
    since, notice = resume_point(3, "b0", boot="b1", oldest_seq=41)
    assert since == 40 and notice is not None and notice.missed == 40
    assert "its first 40 events are no longer kept" in notice.message()
    assert "run b0 ended" in notice.message() and "replayed from #41" in notice.message()


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[tuple[Supervisor, int]]:
    async with open_supervisor(backends=[ScriptedBackend()], event_ring=5) as supervisor:
        port = await nursery.start(lambda task_status: serve_events(
            supervisor, ServerSettings(port=0), token=None, task_status=task_status))
        yield supervisor, port
        nursery.cancel_scope.cancel()


def _publish(supervisor: Supervisor, count: int) -> None:
    for i in range(count):
        supervisor.bus.publish(SessionUnregistered, session_id=f"s{i}", detail="")


async def _first_messages(port: int, query: str, count: int) -> tuple[dict[str, str], list[Any]]:
    with trio.fail_after(10):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/events?{query}") as ws:
            headers = {k.decode().lower(): v.decode() for k, v in ws.handshake_headers}
            return headers, [json.loads(await ws.get_message()) for _ in range(count)]


async def test_every_handshake_names_the_run_and_where_the_stream_starts(server: tuple[Supervisor, int]) -> None:
    supervisor, port = server
    _publish(supervisor, 3)
    headers, messages = await _first_messages(port, "since=1", 2)
    assert headers["tether-boot"] == supervisor.bus.boot
    assert (headers["tether-last-seq"], headers["tether-since"]) == ("3", "1")
    assert [m["seq"] for m in messages] == [2, 3]


async def test_a_resume_from_another_run_gets_the_notice_then_the_ring(server: tuple[Supervisor, int]) -> None:
    """since=2 from another run (ahead or not): `restarted` first, then this run from the ring's oldest;
    the ring (5 events) lost the first 3 of 8, and the notice says so."""
    supervisor, port = server
    _publish(supervisor, 8)
    headers, messages = await _first_messages(port, "since=999&boot=gone&batch=10", 1)
    [notice] = messages[0]  # its own frame, before any event
    assert notice["type"] == "restarted"
    assert {k: notice[k] for k in ("boot", "previous_boot", "since", "replay_from", "missed")} == {
        "boot": supervisor.bus.boot, "previous_boot": "gone", "since": 999, "replay_from": 4, "missed": 3}
    assert headers["tether-since"] == "3"
    _, rest = await _first_messages(port, "since=999&boot=gone", 6)
    assert rest[0]["type"] == "restarted" and [m["seq"] for m in rest[1:]] == [4, 5, 6, 7, 8]


async def test_the_client_types_the_notice_and_reads_the_headers(server: tuple[Supervisor, int]) -> None:
    supervisor, port = server
    _publish(supervisor, 2)
    supervisor.bus.publish(SessionOutput, session_id="s", data="x")  # live only: not in the ring
    with trio.fail_after(10):
        async with open_events(url=f"ws://127.0.0.1:{port}", since=40, boot="gone", batch=1) as events:
            assert (events.boot, events.last_seq, events.since) == (supervisor.bus.boot, 3, 0)
            notice = await events.receive()
            assert isinstance(notice, RestartNotice) and (notice.previous_boot, notice.replay_from) == ("gone", 1)
            first = await events.receive()
            assert getattr(first, "seq", None) == 1
        async with open_events(url=f"ws://127.0.0.1:{port}", batch=1) as events:
            assert (events.last_seq, events.since) == (3, 3), "no since: the stream starts after the last event"


async def _refusal(port: int, target: str) -> tuple[int, dict[str, Any]]:
    """A raw HTTP upgrade that the server refuses: its status and JSON body."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        request = (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        await stream.send_all(request.encode("ascii"))
        data = b""
        while not data.endswith(b"}}"):
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize(("query", "needle"), [
    ("boot=abc", "boot= names the run that since= counts in: pass both"),
    ("since=0&boot=no%20good", "boot must be a run's id"),
])
async def test_a_boot_without_since_or_a_bad_boot_is_refused(
    server: tuple[Supervisor, int], query: str, needle: str
) -> None:
    _, port = server
    with trio.fail_after(10):
        status, body = await _refusal(port, f"/events?{query}")
    assert status == 400
    assert body["error"]["type"] == "bad-boot" and needle in body["error"]["message"]
