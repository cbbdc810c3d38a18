"""The readiness probe against a real Jupyter Server: up, stopped, frozen; and what is asked of it."""

from __future__ import annotations

import signal
import socket

import pytest
import trio

import tether
from tether_websocket import WebSocketBackend
from tether_websocket._options import parse_options
from tether_websocket._probe import probe_url

from .conftest import JupyterServer, free_port

R = tether.DisconnectReason


def _spec(options: dict[str, object]) -> tether.SessionSpec:
    return tether.SessionSpec(id="p", backend="websocket", options=options)


def test_the_probe_asks_without_credentials() -> None:
    """Jupyter: ``api/`` (no token needed); a ws:// URL: its path over http, its query (a token) dropped."""
    assert probe_url(parse_options({"base_url": "http://h:8888/lab", "token": "T"})) == "http://h:8888/lab/api/"
    assert probe_url(parse_options({"url": "wss://h/term/1?token=T"})) == "https://h/term/1"
    assert probe_url(parse_options({"url": "ws://h:81"})) == "http://h:81/"


async def _probe(options: dict[str, object], within: float = 3.0) -> None:
    await WebSocketBackend().probe_target(_spec(options), trio.current_time() + within)


async def test_probe_of_a_live_jupyter_returns(jupyter: JupyterServer) -> None:
    """Up: Jupyter's api/ answers; a terminal WebSocket URL answers too (HTTP 400 without an upgrade is an answer)."""
    await _probe(jupyter.options())
    await _probe({"url": f"ws://127.0.0.1:{jupyter.port}/terminals/websocket/none?token={jupyter.token}"})
    await _probe(jupyter.options(token="wrong-token"))  # credentials are the sessions' business


async def test_probe_of_a_stopped_jupyter_is_network(jupyter: JupyterServer) -> None:
    """Down (refused): network, at once."""
    jupyter.stop()
    start = trio.current_time()
    with pytest.raises(tether.LinkError) as caught:
        await _probe(jupyter.options())
    assert caught.value.reason is R.NETWORK
    assert trio.current_time() - start < 1.0


async def test_probe_of_a_frozen_jupyter_times_out_at_the_deadline(jupyter: JupyterServer) -> None:
    """SIGSTOPped server: the kernel accepts, no answer: timeout, by the deadline."""
    assert jupyter.proc is not None
    jupyter.proc.send_signal(signal.SIGSTOP)
    try:
        start = trio.current_time()
        with pytest.raises(tether.LinkError) as caught:
            await _probe(jupyter.options(), within=1.0)
        assert caught.value.reason is R.TIMEOUT
        assert 0.9 <= trio.current_time() - start < 2.0
    finally:
        jupyter.proc.send_signal(signal.SIGCONT)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "HTTP 503"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "did not answer HTTP"),
        (b"", "did not answer HTTP"),
    ],
    ids=["gateway-503", "not-http", "closed"],
)
async def test_probe_of_a_server_that_is_not_there_behind_the_port(reply: bytes, expected: str) -> None:
    """A gateway's 503, something that is not HTTP, a bare close: all network (not ready)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(reply)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, answer)
            with pytest.raises(tether.LinkError) as caught:
                await _probe({"base_url": f"http://127.0.0.1:{port}/"})
        assert caught.value.reason is R.NETWORK
        assert expected in str(caught.value)


async def test_probe_of_nothing_listening_is_network() -> None:
    with pytest.raises(tether.LinkError) as caught:
        await _probe({"url": f"ws://127.0.0.1:{free_port()}/t"})
    assert caught.value.reason is R.NETWORK
