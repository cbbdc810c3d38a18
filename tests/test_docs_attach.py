"""docs/control.md's `/attach` section is true: its transcript runs against a real server frame
for frame, and the refusals, losses and end it describes are what a client gets."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tether import SessionSpec, SessionStatus, open_supervisor
from tether.server._server import serve_events
from tether.server._settings import ServerSettings
from tether.testing import ScriptedBackend, wait_for_status

from .test_docs_control import matches
from .test_events_resume import _refusal

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

TEXT = (Path(__file__).parent.parent / "docs" / "control.md").read_text()
SECTION = TEXT[TEXT.index("## `/attach`"):TEXT.index("## The Python client")]
TRANSCRIPT = re.findall(r"```\n(# ws://.*?)```", SECTION, flags=re.DOTALL)[0]


def frame(text: str) -> Any:
    return ast.literal_eval(text) if text.startswith("b'") else json.loads(text)


async def attached_server(nursery: trio.Nursery, history: int = 64 * 1024) -> tuple[Any, int]:
    supervisor = await nursery.start(_supervisor, history)
    port = await nursery.start(lambda task_status: serve_events(
        supervisor, ServerSettings(port=0), token=None, task_status=task_status))
    await supervisor.register(SessionSpec(id="sh", backend="scripted"))
    await wait_for_status(supervisor, "sh", SessionStatus.CONNECTED)
    return supervisor, port


async def _supervisor(history: int, task_status: Any) -> None:
    async with open_supervisor(backends=[ScriptedBackend()], output_history_bytes=history) as supervisor:
        task_status.started(supervisor)
        await trio.sleep_forever()


async def test_the_transcript_is_what_the_server_sends(nursery: trio.Nursery) -> None:
    lines = [line for line in TRANSCRIPT.splitlines() if line.strip()]
    printed = ast.literal_eval(re.search(r"printed (b'.*')$", lines[0]).group(1))  # type: ignore[union-attr]
    supervisor, port = await attached_server(nursery)
    await supervisor.send("sh", printed)  # the scripted program echoes what it is sent
    with trio.fail_after(20):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/attach?session=sh&since=0") as ws:
            for line in lines[1:]:
                direction, body = line[0], frame(line[2:])
                if direction == ">":
                    await ws.send_message(body if isinstance(body, bytes) else json.dumps(body))
                    continue
                got = await ws.get_message()
                if isinstance(body, bytes):
                    assert got == body
                else:
                    assert isinstance(got, str) and matches(body, json.loads(got)) == [], got


async def until_closed(ws: Any) -> tuple[list[Any], int | None]:
    """Every text frame until the server closes, and its close code."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await ws.get_message()))
    except ConnectionClosed as closed:
        return frames, closed.reason.code if closed.reason else None


async def test_a_range_the_log_cannot_give_is_a_loss_frame_and_an_unregister_ends_it(nursery: trio.Nursery) -> None:
    supervisor, port = await attached_server(nursery, history=16)
    await supervisor.send("sh", b"0123456789" * 4)  # 40 bytes, the log keeps the last 16
    with trio.fail_after(20):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/attach?session=sh&since=0") as ws:
            hello = json.loads(await ws.get_message())
            assert hello["since"] == 0 and hello["end"] == 40
            loss = json.loads(await ws.get_message())
            assert loss == {"type": "loss", "start": 0, "stop": 24, "kind": "trimmed", "size": 24}
            assert await ws.get_message() == (b"0123456789" * 4)[24:]  # since + bytes + losses = the cursor
            await supervisor.unregister("sh")
            frames, code = await until_closed(ws)
            assert frames[-1] == {"type": "ended", "reason": "unregistered"}
            assert all(f["type"] == "event" for f in frames[:-1])
            assert code == 1000


@pytest.mark.parametrize(("query", "status", "kind"), [
    ("session=sh&since=0&tail=10", 400, "bad-query"), ("session=sh&colour=1", 400, "bad-query"),
    ("since=0", 400, "bad-query"), ("session=sh&since=999", 400, "bad-cursor"), ("session=nobody", 404, "not-found"),
])
async def test_refused_handshakes(nursery: trio.Nursery, query: str, status: int, kind: str) -> None:
    _, port = await attached_server(nursery)
    with trio.fail_after(20):
        got, body = await _refusal(port, f"/attach?{query}")
    assert (got, body["error"]["type"]) == (status, kind), body
