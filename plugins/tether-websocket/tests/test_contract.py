"""tether's backend conformance suite, run against the websocket backend.

The peers are real: in-process trio-websocket servers on 127.0.0.1 (an echo, one
that hangs up, a refused port, and a listener that never answers the handshake)
and, for the Jupyter flavour, the real Jupyter Server from the conftest.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator
from functools import partial

import pytest
import trio
import trio_websocket

from tether import SessionSpec
from tether.testing import BackendContract
from tether_websocket import WebSocketBackend

from .conftest import JupyterServer, free_port, quick_policy

Handler = Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]


async def _echo(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


async def _hang_up(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    await trio.sleep(0.2)
    await ws.aclose(1000, "bye")


async def _serve(nursery: trio.Nursery, handler: Handler) -> str:
    server = await nursery.start(partial(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None))
    return f"ws://127.0.0.1:{server.port}/term"


def _spec(sid: str, url: str, **policy: float) -> SessionSpec:
    return SessionSpec(
        id=sid, backend="websocket",
        options={"url": url, "adapter": "raw", "ping_interval": 0, "close_timeout": 0.5},
        policy=quick_policy(**policy),
    )


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port whose TCP connects complete (the kernel's backlog) but nothing ever answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


class TestWebSocketRawContract(BackendContract):
    @pytest.fixture
    def tether_backend_factory(self) -> type[WebSocketBackend]:
        return WebSocketBackend

    @pytest.fixture
    async def tether_backend_spec(self, nursery: trio.Nursery) -> SessionSpec:
        return _spec("contract", await _serve(nursery, _echo))

    @pytest.fixture
    async def tether_backend_closing_spec(self, nursery: trio.Nursery) -> SessionSpec:
        return _spec("bye", await _serve(nursery, _hang_up))

    @pytest.fixture
    def tether_backend_failing_spec(self) -> SessionSpec:
        return _spec("refused", f"ws://127.0.0.1:{free_port()}/term")

    @pytest.fixture
    def tether_backend_hanging_spec(self, silent_listener: int) -> SessionSpec:
        return _spec("silent", f"ws://127.0.0.1:{silent_listener}/term", connect_timeout=1.0)


class TestWebSocketJupyterContract(BackendContract):
    """The same contract through Jupyter's REST API and terminado protocol."""

    @pytest.fixture
    def tether_backend_factory(self) -> type[WebSocketBackend]:
        return WebSocketBackend

    @pytest.fixture
    def tether_backend_spec(self, shared_jupyter: JupyterServer) -> SessionSpec:
        return SessionSpec(
            id="contract", backend="websocket", options=shared_jupyter.options(), policy=quick_policy()
        )

    @pytest.fixture
    def tether_backend_closing_spec(self, shared_jupyter: JupyterServer) -> SessionSpec:
        # The restore line exports it; the shell then exits at its next prompt.
        options = shared_jupyter.options(env={"PROMPT_COMMAND": "exit"}, shell_integration=False)
        return SessionSpec(id="exits", backend="websocket", options=options, policy=quick_policy())

    @pytest.fixture
    def tether_backend_failing_spec(self, shared_jupyter: JupyterServer) -> SessionSpec:
        options = {**shared_jupyter.options(), "base_url": f"http://127.0.0.1:{free_port()}/"}
        return SessionSpec(id="refused", backend="websocket", options=options, policy=quick_policy())
