"""The same journey against a running `tether run`: the MCP server is a client of the daemon.

The daemon is stopped with SIGTERM and killed with -9 while the MCP server
keeps running, and the MCP server is restarted while the daemon runs; every
time the agent continues from its cursor, and is told the truth: a tmux-kept
shell was re-attached (the same program, its variables intact), a shell
killed from outside was replaced.
"""

from __future__ import annotations

import signal
from pathlib import Path

import trio

from .conftest import Daemon, kill_hard, need_tmux, open_mcp, wait_pid_gone

KEPT = {"id": "box", "backend": "process", "options": {"command": "bash", "persist": "tmux"}}


def position(cursor: str) -> int:
    return int(cursor.split(".")[1])


async def test_journey_through_a_daemon(env: dict[str, str], daemon: Daemon, tmp_path: Path) -> None:
    """Open, run, read, wait, kill the shell, restart the daemon twice (SIGTERM, -9) and the MCP server."""
    need_tmux()
    log = tmp_path / "mcp.log"
    daemon.start()
    with trio.fail_after(180):
        async with open_mcp(env, "--daemon-only", log=log) as mcp:
            listed = await mcp.call("list_sessions")
            assert listed["tether"]["mode"] == "daemon" and listed["tether"]["at"].startswith("ws://127.0.0.1:")
            opened = await mcp.call("open_session", session=KEPT)
            cursor = opened["cursor"]
            assert (await mcp.run("box", "true"))["exit_status"] == 0
            assert (await mcp.run("box", "false"))["exit_status"] == 1
            read = await mcp.call("read_output", session_id="box", cursor=cursor)
            assert "__tether_run" in read["text"] and read["since_cursor"]["link"] == "unbroken"
            sent = await mcp.call("send_input", session_id="box", text="echo mark-$((3*3))", enter=True,
                                  cursor=read["cursor"])
            waited = await mcp.call("wait_for", session_id="box", pattern="mark-9", cursor=sent["cursor"], timeout=20)
            assert waited["satisfied"]

            # the shell killed from outside: tmux's pane dies, tether starts a new shell and says so
            pid = (await mcp.call("list_sessions"))["sessions"][0]["pid"]
            cursor = (await mcp.call("read_output", session_id="box", cursor=waited["cursor"]))["cursor"]
            kill_hard(pid)
            await wait_pid_gone(pid)
            back = await mcp.call("wait_for", session_id="box", connected=True, cursor=cursor, timeout=30)
            assert back["since_cursor"]["link"] == "replaced", back
            await mcp.run("box", "X=41; X=$((X+1))")
            cursor = (await mcp.call("read_output", session_id="box", cursor=back["cursor"]))["cursor"]
            shell = (await mcp.call("list_sessions"))["sessions"][0]["pid"]

            # the daemon restarts (SIGTERM) under the running MCP server; the shell lives on in tmux
            daemon.stop(signal.SIGTERM)
            daemon.start()
            again = await mcp.call("wait_for", session_id="box", connected=True, cursor=cursor, timeout=30)
            assert again["satisfied"] and again["since_cursor"]["link"] == "reattached", again
            resumed = await mcp.call("read_output", session_id="box", cursor=cursor)
            assert resumed["range"][0] == position(cursor)
            assert (await mcp.run("box", "echo $X"))["output"] == "42\n"
            assert (await mcp.call("list_sessions"))["sessions"][0]["pid"] == shell

            # a command outlives its call, then the daemon is killed with -9 before it finishes
            long = await mcp.run("box", "sleep 3; echo slept-$X", timeout=1)
            assert long["done"] is False
            cursor = (await mcp.call("read_output", session_id="box", cursor=resumed["cursor"]))["cursor"]
            daemon.stop(signal.SIGKILL)
            daemon.start()
            done = await mcp.call("wait_command", token=long["token"], timeout=30)
            assert (done["outcome"], done["exit_status"], done["output"]) == ("finished", 0, "slept-42\n")
            after_kill = await mcp.call("read_output", session_id="box", cursor=cursor)
            assert after_kill["since_cursor"]["link"] == "reattached", after_kill
            assert after_kill["range"][0] == position(cursor)
            cursor = after_kill["cursor"]

        # the MCP server restarts while the daemon runs: nothing happened to the session meanwhile
        async with open_mcp(env, "--daemon-only", log=log) as mcp:
            resumed = await mcp.call("read_output", session_id="box", cursor=cursor)
            assert resumed["range"][0] == position(cursor)
            assert resumed["since_cursor"]["link"] == "unbroken"
            assert (await mcp.run("box", "echo $X"))["output"] == "42\n"
            await mcp.call("close_session", session_id="box")
