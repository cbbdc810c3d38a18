"""Drive a real bash through the daemon's /control, with the typed client: read, send, wait, run, resize.

A real supervisor with the process backend (a real bash on a real pty),
served on loopback, and the client every user has (`tether.open_client`).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

import tether
from tether.server._client import DaemonEndpoint
from tether.server._server import serve_events
from tether.server._settings import ServerSettings

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@asynccontextmanager
async def daemon_client(nursery: trio.Nursery) -> AsyncIterator[tuple[tether.Supervisor, tether.DaemonClient]]:
    tether_process = pytest.importorskip("tether_process")
    async with tether.open_supervisor(backends=[tether_process.ProcessBackend()]) as sup:
        port = await nursery.start(lambda task_status: serve_events(
            sup, ServerSettings(port=0, auth=False), token=None, task_status=task_status))
        async with tether.open_client(DaemonEndpoint(f"ws://127.0.0.1:{port}", None)) as client:
            yield sup, client


def bash(sid: str = "sh") -> dict[str, object]:
    return {"id": sid, "backend": "process", "options": {"argv": ["bash"], "rows": 30, "cols": 100}}


async def test_run_read_wait_and_resize_through_the_client(nursery: trio.Nursery) -> None:
    async with daemon_client(nursery) as (_sup, client):
        await client.register(bash())
        with trio.fail_after(20):
            connected = await client.wait("sh", connected=True, budget=15)
            assert connected.satisfied
            await client.wait("sh", pattern=r"[$#] $", budget=15)  # the first prompt
            ok = await client.run("sh", "true", budget=10)
            failed = await client.run("sh", "false", budget=10)
            printed = await client.run("sh", "printf 'one\\ntwo\\n'", budget=10)
        assert (ok.done, ok.exit_status) == (True, 0)
        assert (failed.done, failed.exit_status) == (True, 1)
        read = await client.read("sh", printed.output_start, printed.output_stop - printed.output_start)
        assert read.data.replace(b"\r\n", b"\n") == b"one\ntwo\n" and not read.losses
        with trio.fail_after(20):
            await client.resize("sh", 42, 131)
            size = await client.run("sh", "stty size", budget=10)
        shown = await client.read("sh", size.output_start, size.output_stop - size.output_start)
        assert shown.data.strip() == b"42 131"
        with trio.fail_after(20):
            since = (await client.read("sh", None, 1)).end
            await client.send("sh", text="echo tether-$((6*7))\r")
            found = await client.wait("sh", pattern=r"tether-42", since=since, budget=10)
        assert found.satisfied and found.match == "tether-42" and found.match_start is not None


async def test_a_long_command_returns_a_token_and_finishes_later(nursery: trio.Nursery) -> None:
    async with daemon_client(nursery) as (_sup, client):
        await client.register(bash())
        with trio.fail_after(30):
            await client.wait("sh", pattern=r"[$#] $", budget=15)
            first = await client.run("sh", "sleep 2; echo done", budget=0.5)
            assert not first.done and first.token
            later = await client.wait_run("sh", first.token, budget=10)
        assert later.done and later.exit_status == 0 and later.token == first.token
        out = await client.read("sh", later.output_start, later.output_stop - later.output_start)
        assert out.data.strip() == b"done"
        with pytest.raises(tether.RunNotFoundError):
            await client.wait_run("sh", "0123456789abcdef", budget=0)


async def test_input_errors_are_typed(nursery: trio.Nursery) -> None:
    async with daemon_client(nursery) as (_sup, client):
        await client.register(bash())
        with trio.fail_after(20):
            await client.wait("sh", connected=True, budget=15)
        with pytest.raises(tether.RequestError, match=r"send.keys\[0\]: unknown key 'ctrl-shift-teleport'"):
            await client.send("sh", keys=["ctrl-shift-teleport"])
        with pytest.raises(tether.CursorError):
            await client.read("sh", 10**12)
        with pytest.raises(tether.SessionNotFoundError):
            await client.run("nope", "true")
