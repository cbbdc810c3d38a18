"""The tools the journeys do not walk through: keys, interrupt, quiet, waiting reads, resize, reconnect, close."""

from __future__ import annotations

import subprocess
from pathlib import Path

import trio

from .conftest import BASH, need_tmux, open_mcp, pid_alive, wait_pid_gone


def tmux_answers(socket: Path) -> bool:
    return subprocess.run(["tmux", "-S", str(socket), "has-session"], capture_output=True, check=False).returncode == 0


async def test_keys_interrupt_quiet_waiting_reads_and_resize(env: dict[str, str], tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with open_mcp(env, log=tmp_path / "mcp.log") as mcp:
            opened = await mcp.call("open_session", session={"id": "sh", **BASH})
            listed = (await mcp.call("list_sessions"))["sessions"][0]
            assert {"status", "backend", "target", "cwd", "shell", "pid", "recent_reconnects", "cursor"} <= set(listed)
            assert listed["shell"] == "bash"

            sent = await mcp.call("send_input", session_id="sh", text="echo typed-$((5+5))", cursor=opened["cursor"])
            await mcp.call("send_input", session_id="sh", keys=["enter"])
            seen = await mcp.call("wait_for", session_id="sh", pattern=r"typed-10\r", cursor=sent["cursor"], timeout=20)
            assert seen["satisfied"]

            quiet = await mcp.call("wait_for", session_id="sh", quiet=0.3, timeout=10)
            assert quiet["satisfied"]

            late = await mcp.call("send_input", session_id="sh", text="sleep 0.5; echo late-$((1+2))", enter=True)
            got = ""
            cursor = late["cursor"]
            while "late-3\n" not in got:  # each read waits for output after its cursor: no polling here
                read = await mcp.call("read_output", session_id="sh", cursor=cursor, wait=10)
                got += read["text"]
                cursor = read["cursor"]

            long = await mcp.run("sh", "sleep 30", timeout=1)
            assert long["done"] is False
            await mcp.call("interrupt", session_id="sh")
            stopped = await mcp.call("wait_command", token=long["token"], timeout=10)
            assert (stopped["outcome"], stopped["exit_status"]) == ("finished", 130)

            resized = await mcp.call("resize", session_id="sh", rows=30, cols=100)
            assert (resized["rows"], resized["cols"]) == (30, 100)
            assert (await mcp.run("sh", "stty size"))["output"] == "30 100\n"


async def test_reconnect_reattaches_a_kept_program_and_revives_a_failed_one(env: dict[str, str],
                                                                             tmp_path: Path) -> None:
    need_tmux()
    kept = {"id": "kept", "backend": "process", "options": {"command": "bash", "persist": "tmux"}}
    once = {"id": "once", "backend": "process", "options": {"argv": ["sh", "-c", "sleep 0.2"]},
            "policy": {"max_retries": 0}}
    with trio.fail_after(90):
        async with open_mcp(env, log=tmp_path / "mcp.log") as mcp:
            opened = await mcp.call("open_session", session=kept)
            pid = (await mcp.call("list_sessions"))["sessions"][0]["pid"]
            again = await mcp.call("reconnect", session_id="kept", cursor=opened["cursor"])
            assert again["attempt"]["success"] and again["attempt"]["same_program"]
            assert again["since_cursor"]["link"] == "reattached"
            assert (await mcp.call("list_sessions"))["sessions"][0]["pid"] == pid

            await mcp.call("open_session", session=once)
            failed = await mcp.call("wait_for", session_id="once", connected=True, timeout=0.5)
            while failed["status"] != "failed":  # the program exits; max_retries = 0: it stays down
                failed = await mcp.call("wait_for", session_id="once", quiet=0.2, timeout=5)
            revived = await mcp.call("reconnect", session_id="once")
            assert revived["attempt"]["success"] and revived["attempt"]["strategy"] == "process-restart"

            servers = list((Path(env["XDG_RUNTIME_DIR"]) / "tether-process" / "tmux").glob("*.sock"))
            assert len(servers) == 1 and tmux_answers(servers[0])
            await mcp.call("close_session", session_id="kept")
            await wait_pid_gone(pid)  # closing ends the program, tmux-kept or not
            assert not pid_alive(pid)
            while tmux_answers(servers[0]):  # noqa: ASYNC110 (another process: nothing to await)
                await trio.sleep(0.05)
            assert [s["id"] for s in (await mcp.call("list_sessions"))["sessions"]] == ["once"]
