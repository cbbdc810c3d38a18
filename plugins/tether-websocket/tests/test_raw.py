"""The raw adapter against real in-process peers: a trio-websocket server that echoes and
closes with chosen codes, a refused port, and a frozen peer that never answers a ping.

Every fault's close code must come out as the right typed reason, and end-to-end
the supervisor must retry what is retryable and fail auth at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import attrs
import pytest
import trio
import trio_websocket

import tether
from tether import DisconnectReason, SessionSpec, SessionStatus

from .conftest import free_port, quick_policy, wait_output, wait_status

TOKEN = "raw-secret-token"


async def _handler(request: trio_websocket.WebSocketRequest) -> None:
    """Echo binary frames; ``close:<code>`` closes with that code."""
    if (b"authorization", f"token {TOKEN}".encode()) not in request.headers:
        await request.reject(401, body=b"no")
        return
    ws = await request.accept()
    try:
        while True:
            message = await ws.get_message()
            data = message.encode() if isinstance(message, str) else message
            if data.startswith(b"close:"):
                await ws.aclose(int(data[6:]), "closing as asked")
                return
            await ws.send_message(b"echo:" + data)
    except trio_websocket.ConnectionClosed:
        pass


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, _handler, "127.0.0.1", 0, None)
        yield f"ws://127.0.0.1:{server.port}/term"
        nursery.cancel_scope.cancel()


def _spec(sid: str, url: str, **options: object) -> SessionSpec:
    return SessionSpec(
        id=sid, backend="websocket",
        options={"url": url, "adapter": "raw", "token": TOKEN, "ping_interval": 0, "close_timeout": 0.5,
                 **options},
        policy=quick_policy(max_retries=3, base_delay=0.05, max_delay=0.1),
    )


async def test_raw_bytes_round_trip(supervisor: tether.Supervisor, echo_url: str) -> None:
    """Input goes out as a binary frame; the reply comes back as output."""
    with trio.fail_after(10):
        await supervisor.register(_spec("rt", echo_url))
        await wait_status(supervisor, "rt", SessionStatus.CONNECTED)
        await supervisor.send("rt", b"\x00hello")
        await wait_output(supervisor, "rt", b"echo:\x00hello")
        assert supervisor.state("rt").preserved.handle == echo_url  # type: ignore[union-attr]


async def test_going_away_reconnects(supervisor: tether.Supervisor, echo_url: str) -> None:
    """Close code 1001 is remote-closed: the session comes back by itself."""
    with trio.fail_after(10):
        await supervisor.register(_spec("away", echo_url))
        await wait_status(supervisor, "away", SessionStatus.CONNECTED)
        await supervisor.send("away", b"close:1001")
        await tether.testing.wait_until(lambda: supervisor.state("away").episodes_recovered == 1, timeout=5)
    state = supervisor.state("away")
    assert state.last_disconnect is not None
    assert state.last_disconnect.reason is DisconnectReason.REMOTE_CLOSED
    assert "1001" in state.last_disconnect.detail


async def test_policy_violation_fails_as_auth(supervisor: tether.Supervisor, echo_url: str) -> None:
    """Close code 1008 is auth: FAILED, no retry."""
    with trio.fail_after(10):
        await supervisor.register(_spec("policy", echo_url))
        await wait_status(supervisor, "policy", SessionStatus.CONNECTED)
        await supervisor.send("policy", b"close:1008")
        await wait_status(supervisor, "policy", SessionStatus.FAILED, within=5)
    state = supervisor.state("policy")
    assert state.last_disconnect is not None and state.last_disconnect.reason is DisconnectReason.AUTH
    assert state.episode is not None and state.episode.attempts_made == 0


async def test_rejected_handshake_fails_as_auth(supervisor: tether.Supervisor, echo_url: str) -> None:
    """HTTP 401 on the handshake is an AuthError on the first connect: FAILED at once."""
    with trio.fail_after(10):
        await supervisor.register(_spec("reject", echo_url, token="wrong"))
        await wait_status(supervisor, "reject", SessionStatus.FAILED, within=5)
    state = supervisor.state("reject")
    assert state.last_disconnect is not None and state.last_disconnect.reason is DisconnectReason.AUTH
    assert "401" in state.last_disconnect.detail


async def test_refused_is_network_and_waits_for_the_target(supervisor: tether.Supervisor) -> None:
    """Nothing listening: a network failure; the readiness probe finds the target down, so the session
    waits on its gate without spending its budget, and fails only at the unreachable bound."""
    url = f"ws://127.0.0.1:{free_port()}/term"
    spec = _spec("refused", url)
    spec = attrs.evolve(spec, policy=attrs.evolve(spec.policy, unreachable_timeout=2.0))
    with trio.fail_after(10):
        await supervisor.register(spec)
        await wait_status(supervisor, "refused", SessionStatus.WAITING, within=8)
        await wait_status(supervisor, "refused", SessionStatus.FAILED, within=8)
    state = supervisor.state("refused")
    # The very first connect failing is the episode's drop, not an attempt: none was made while down.
    assert state.episode is not None and state.episode.attempts_made == state.episode.attempts_unreachable
    assert state.failure is not None and state.failure.reason is DisconnectReason.NETWORK
    assert "stayed unreachable for 2s" in state.failure.detail


class FreezableProxy:
    """A TCP proxy to the echo server that can stop forwarding both ways (a frozen peer or a
    black hole at the application level: the kernel still ACKs, as FAULTS.md notes)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frozen = False

    async def handle(self, client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, upstream)
            nursery.start_soon(self._pump, upstream, client)

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream) -> None:
        try:
            while data := await source.receive_some(65536):
                if self.frozen:
                    await trio.sleep_forever()
                await sink.send_all(data)
        except trio.BrokenResourceError:
            pass


async def test_frozen_peer_is_noticed_by_ping(supervisor: tether.Supervisor, echo_url: str) -> None:
    """No pong within ping_timeout ends the link as a network fault, and the close is bounded."""
    proxy = FreezableProxy(int(echo_url.split(":")[2].split("/")[0]))
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, proxy.handle, 0)
        port = listeners[0].socket.getsockname()[1]
        spec = _spec("frozen", f"ws://127.0.0.1:{port}/term", ping_interval=0.5, ping_timeout=1.0)
        with trio.fail_after(10):
            await supervisor.register(spec)
            await wait_status(supervisor, "frozen", SessionStatus.CONNECTED)
            proxy.frozen = True
            started = time.monotonic()
            await tether.testing.wait_until(lambda: supervisor.state("frozen").episodes_total == 1, timeout=8)
            noticed = time.monotonic() - started
        state = supervisor.state("frozen")
        assert state.last_disconnect is not None
        assert state.last_disconnect.reason is DisconnectReason.NETWORK
        assert "pong" in state.last_disconnect.detail
        assert noticed < 3.0  # ping every 0.5 s + 1 s pong timeout, plus scheduling slack
        with trio.fail_after(3):  # the close handshake with a frozen peer is bounded by close_timeout
            await supervisor.unregister("frozen")
        nursery.cancel_scope.cancel()
