"""A call never takes longer than its budget, long work leaves a resume token, and calls never wait on each other.

Measured from the client, around a real `tether mcp` subprocess: the budget
is what the server promises, so the slack allowed on top of it is only the
round trip over stdio (generous: the machine is shared).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from tether_mcp import DEFAULT_CALL_BUDGET, ServerOptions

from .conftest import BASH, Daemon, open_mcp

SLACK = 1.5
"""Seconds allowed past a budget for the stdio round trip on a loaded machine."""


async def test_a_long_command_returns_a_token_within_the_budget(env: dict[str, str], tmp_path: Path) -> None:
    """sleep 3 with a 1 s timeout: back in about 1 s with a token; a later call gets its status and output."""
    with trio.fail_after(60):
        async with open_mcp(env, log=tmp_path / "mcp.log") as mcp:
            await mcp.call("open_session", session={"id": "sh", **BASH})
            started = trio.current_time()
            running = await mcp.run("sh", "sleep 3; echo finished; exit_code=7; (exit $exit_code)", timeout=1)
            took = trio.current_time() - started
            assert running["done"] is False and running["outcome"] == "running" and running["token"]
            assert took < 1 + SLACK
            first = await mcp.call("wait_command", token=running["token"], timeout=0.5)
            assert first["done"] is False and first["token"] == running["token"]
            done = await mcp.call("wait_command", token=running["token"], timeout=20)
            assert (done["done"], done["exit_status"], done["output"]) == (True, 7, "finished\n")
            repeated = await mcp.call("wait_command", token=running["token"])  # a finished run stays answerable
            assert repeated["exit_status"] == 7


async def test_calls_never_wait_on_each_other(env: dict[str, str], tmp_path: Path) -> None:
    """Twenty waits that will not match for seconds hold up neither a read nor a listing."""
    with trio.fail_after(60):
        async with open_mcp(env, log=tmp_path / "mcp.log") as mcp:
            await mcp.call("open_session", session={"id": "sh", **BASH})
            finished = 0

            async def wait_long() -> None:
                nonlocal finished
                result = await mcp.call("wait_for", session_id="sh", pattern="never-printed-xyz", timeout=5)
                assert result["satisfied"] is False
                finished += 1

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(wait_long)
                await trio.testing.wait_all_tasks_blocked()  # the twenty requests are out, waiting for replies
                listed = await mcp.call("list_sessions")
                ran = await mcp.run("sh", "echo quick")
                assert finished == 0, "a quick call waited for the long ones"
                assert listed["sessions"][0]["id"] == "sh" and ran["output"] == "quick\n"
            assert finished == 20


async def test_a_daemon_that_stops_answering_costs_one_budget(env: dict[str, str], daemon: Daemon,
                                                              tmp_path: Path) -> None:
    """SIGSTOP the daemon: a call answers with a timeout error at its budget, and works again after SIGCONT."""
    daemon.start()
    with trio.fail_after(60):
        async with open_mcp(env, "--daemon-only", "--call-budget", "2", log=tmp_path / "mcp.log") as mcp:
            await mcp.call("open_session", session={"id": "sh", **BASH})
            daemon.signal(signal.SIGSTOP)
            try:
                started = trio.current_time()
                message = await mcp.error("read_output", session_id="sh")
                took = trio.current_time() - started
            finally:
                daemon.signal(signal.SIGCONT)
            assert took < 2 + SLACK
            assert "did not finish within its 2 s" in message
            assert (await mcp.run("sh", "echo awake"))["output"] == "awake\n"


def test_the_default_budget_is_under_a_minute() -> None:
    """Agents' clients often give up on a call at 60 s: the default stays under it, and can be set."""
    assert DEFAULT_CALL_BUDGET < 60
    assert ServerOptions(call_budget=120).call_budget == 120
    with pytest.raises(ValueError, match="call_budget"):
        ServerOptions(call_budget=0)


def test_a_bad_budget_is_refused_at_the_command_line(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "tether", "mcp", "--call-budget", "-1"], env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 2
    assert "--call-budget: must be more than 0" in result.stderr
