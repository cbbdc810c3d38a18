"""An agent's journey with `tether mcp` alone on a fresh machine (no daemon): the embedded supervisor.

The SDK's own client starts the real command over stdio, lists the tools,
opens a local shell, runs ``true`` and ``false``, reads output from a cursor,
waits for a pattern, kills the shell from outside and is told the session
came back as a new program, then restarts the MCP server and continues from
its cursor: the session was kept in the state directory's SQLite store.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import trio

from .conftest import BASH, kill_hard, need_tmux, open_mcp, wait_pid_gone

TOOLS = {"list_sessions", "open_session", "close_session", "send_input", "interrupt", "read_output", "wait_for",
         "run_command", "wait_command", "reconnect", "resize"}


async def test_shell_journey_embedded(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    """Open, run, read, wait, survive a killed shell and a restart of the server, from one cursor."""
    log = tmp_path / "mcp.log"
    with trio.fail_after(120):
        async with open_mcp(env, log=log) as mcp:
            listed = await mcp.session.list_tools()
            assert {tool.name for tool in listed.tools} == TOOLS
            assert all(tool.input_schema.get("additionalProperties") is False for tool in listed.tools)

            empty = await mcp.call("list_sessions")
            assert empty["sessions"] == [] and empty["tether"]["mode"] == "embedded"

            opened = await mcp.call("open_session", session={"id": "sh", **BASH})
            assert opened["status"] == "connected" and opened["session"]["backend"] == "process"
            start = opened["cursor"]

            ok = await mcp.run("sh", "true")
            assert (ok["done"], ok["exit_status"]) == (True, 0)
            bad = await mcp.run("sh", "false", cursor=ok["cursor"])
            assert (bad["done"], bad["exit_status"]) == (True, 1)
            assert bad["since_cursor"]["link"] == "unbroken"

            said = await mcp.run("sh", "echo hello-$((6*7))")
            assert said["output"] == "hello-42\n" and said["exit_status"] == 0
            begin, stop = said["output_range"]
            assert stop - begin == len(b"hello-42\r\n")

            read = await mcp.call("read_output", session_id="sh", cursor=start)
            assert "hello-42" in read["text"] and read["since_cursor"]["link"] == "unbroken"
            assert read["range"][0] == 0 and read["losses"] == [] and read["encoding"] == "utf-8"
            again = await mcp.call("read_output", session_id="sh", cursor=read["cursor"])
            assert again["range"][0] == read["range"][1] and "hello-42" not in again["text"]

            sent = await mcp.call("send_input", session_id="sh", text="sleep 0.2; echo ready-$((40+2))",
                                  enter=True, cursor=read["cursor"])
            waited = await mcp.call("wait_for", session_id="sh", pattern=r"ready-\d+\r", cursor=sent["cursor"],
                                    timeout=20)
            assert waited["satisfied"] and waited["match"] == "ready-42\r"
            assert waited["since_cursor"]["link"] == "unbroken"

            before_kill = await mcp.call("read_output", session_id="sh", cursor=waited["cursor"])
            cursor = before_kill["cursor"]
            pid = (await mcp.call("list_sessions"))["sessions"][0]["pid"]
            kill_hard(pid)
            await wait_pid_gone(pid)
            back = await mcp.call("wait_for", session_id="sh", connected=True, cursor=cursor, timeout=20)
            assert back["satisfied"] and back["status"] == "connected"
            assert back["since_cursor"]["link"] == "replaced"
            assert "process-exit" in back["since_cursor"]["detail"] and "signal 9" in back["since_cursor"]["detail"]
            new_pid = (await mcp.call("list_sessions"))["sessions"][0]["pid"]
            assert new_pid != pid
            after = await mcp.run("sh", "echo back-$((1+1))")
            assert after["output"] == "back-2\n"
            read_after = await mcp.call("read_output", session_id="sh", cursor=cursor)
            assert read_after["since_cursor"]["link"] == "replaced"
            assert "back-2" in read_after["text"]  # the new shell's output follows the old one's in the same log
            cursor = read_after["cursor"]
            position = int(cursor.split(".")[1])

        # The server stopped with its client (stdin closed): the session is in the store, no secret in it.
        rows = sqlite3.connect(state / "tether.sqlite3").execute("select count(*) from sessions").fetchone()
        assert rows == (1,)

        async with open_mcp(env, log=log) as mcp:
            listed_again = await mcp.call("list_sessions")
            assert [s["id"] for s in listed_again["sessions"]] == ["sh"]
            restored = await mcp.call("wait_for", session_id="sh", connected=True, cursor=cursor, timeout=20)
            assert restored["satisfied"]
            # without tmux the shell ended with the server that held it: tether started a new one, and says so
            assert restored["since_cursor"]["link"] == "replaced"
            resumed = await mcp.call("read_output", session_id="sh", cursor=cursor)
            assert resumed["range"][0] == position  # continues from the cursor: no byte twice, none skipped
            assert "back-2" not in resumed["text"]
            ran = await mcp.run("sh", "echo still-$((2*3))", cursor=resumed["cursor"])
            assert ran["output"] == "still-6\n" and ran["since_cursor"]["link"] == "unbroken"


async def test_tmux_shell_survives_the_server_restart(env: dict[str, str], tmp_path: Path) -> None:
    """With persist = "tmux" the shell outlives the server: a new server re-attaches, same program, same variables."""
    need_tmux()
    log = tmp_path / "mcp.log"
    table = {"id": "kept", "backend": "process", "options": {"command": "bash", "persist": "tmux"}}
    with trio.fail_after(120):
        async with open_mcp(env, log=log) as mcp:
            opened = await mcp.call("open_session", session=table)
            assert opened["status"] == "connected"
            await mcp.run("kept", "X=17; cd /tmp")
            long = await mcp.run("kept", "sleep 4; echo finished-$X", timeout=1)
            assert long["done"] is False
            token = long["token"]
            pid = (await mcp.call("list_sessions"))["sessions"][0]["pid"]
            cursor = (await mcp.call("read_output", session_id="kept"))["cursor"]

        async with open_mcp(env, log=log) as mcp:
            back = await mcp.call("wait_for", session_id="kept", connected=True, cursor=cursor, timeout=20)
            assert back["since_cursor"]["link"] == "reattached", back
            listed = (await mcp.call("list_sessions"))["sessions"][0]
            assert listed["pid"] == pid and listed["cwd"] == "/tmp"
            # the run started before the restart: tether forgot it, its marks in the log did not
            done = await mcp.call("wait_command", token=token, timeout=20)
            assert (done["done"], done["outcome"], done["exit_status"]) == (True, "finished", 0)
            assert done["output"] == "finished-17\n"
            same = await mcp.run("kept", "echo $X $PWD")
            assert same["output"] == "17 /tmp\n"
            await mcp.call("close_session", session_id="kept")
            assert (await mcp.call("list_sessions"))["sessions"] == []
