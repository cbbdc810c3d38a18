"""`tether mcp` as a process: found by `tether`, stops on SIGTERM or a closed stdin, keeps its sessions."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import trio

import tether
from tether_mcp import DEFAULT_CALL_BUDGET

from .conftest import BASH, Daemon, open_mcp


def test_tether_lists_and_runs_the_plugin_command(env: dict[str, str]) -> None:
    listed = subprocess.run([sys.executable, "-m", "tether", "--help"], env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    assert "mcp       from tether-mcp" in listed.stdout
    helped = subprocess.run([sys.executable, "-m", "tether", "mcp", "--help"], env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    assert "usage: tether mcp" in helped.stdout and "--call-budget" in helped.stdout


def _logged(log: Path) -> str:
    return log.read_text() if log.exists() else ""


async def _wait_line(log: Path, text: str, process: trio.Process) -> None:
    while text not in _logged(log):  # a log file: nothing to await
        assert process.poll() is None, _logged(log)
        await trio.sleep(0.05)


async def test_sigterm_stops_the_server_and_its_sessions_come_back(env: dict[str, str], state: Path,
                                                                    tmp_path: Path) -> None:
    """SIGTERM with stdin still open: the embedded supervisor stops within seconds and keeps the session."""
    with trio.fail_after(60):
        async with open_mcp(env, log=tmp_path / "first.log") as mcp:
            await mcp.call("open_session", session={"id": "sh", **BASH})
        log = tmp_path / "second.log"
        with log.open("w") as err:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "tether", "mcp", "--log-level", "info"], env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        try:
            await _wait_line(log, "(1 sessions restored)", process)
            started = trio.current_time()
            process.send_signal(signal.SIGTERM)
            code = await process.wait()  # stdin is still open: the signal alone stops it
            assert code == 0 and trio.current_time() - started < 5
            assert "SIGTERM: stopping" in log.read_text()
        finally:
            process.kill()
            await process.wait()
            assert process.stdin is not None and process.stdout is not None
            await process.stdin.aclose()
            await process.stdout.aclose()
    rows = sqlite3.connect(state / "tether.sqlite3").execute("select id from sessions").fetchall()
    assert rows == [("sh",)]


def test_the_other_names_of_the_command(env: dict[str, str]) -> None:
    for argv in ([str(Path(sys.executable).with_name("tether-mcp")), "--help"],
                 [sys.executable, "-m", "tether_mcp", "--help"]):
        helped = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True)
        assert "--call-budget" in helped.stdout


async def test_one_state_directory_has_one_writer(env: dict[str, str], tmp_path: Path) -> None:
    """A second embedded server on the same state says why it cannot supervise, and what to do, at
    once (each call, well within the call budget: waiting would not free the store)."""
    with trio.fail_after(90):
        async with open_mcp(env, log=tmp_path / "a.log") as first:
            await first.call("open_session", session={"id": "sh", **BASH})
            async with open_mcp(env, log=tmp_path / "b.log") as second:
                for _ in range(2):
                    with trio.fail_after(DEFAULT_CALL_BUDGET / 2):
                        message = await second.error("list_sessions")
                    assert "no tether daemon runs for" in message and "its store cannot be opened here" in message
                    assert "in use by process" in message
                    assert "Run `tether run` once for this state directory" in message
            async with open_mcp(env, "--embedded", log=tmp_path / "c.log") as third:
                with trio.fail_after(DEFAULT_CALL_BUDGET / 2):
                    message = await third.error("open_session", session={"id": "other", **BASH})
                assert message.startswith(f"--embedded cannot open the state in {env['TETHER_STATE_DIR']}: process ")
                assert re.search(r": process \d+ holds its store", message) and "no tether daemon runs" not in message
                assert "another directory" in message
            assert [s["id"] for s in (await first.call("list_sessions"))["sessions"]] == ["sh"]


async def test_daemon_only_waits_for_a_daemon_within_the_budget(env: dict[str, str], tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_mcp(env, "--daemon-only", "--call-budget", "1", log=tmp_path / "mcp.log") as mcp:
            message = await mcp.error("list_sessions")
            assert "did not finish within its 1 s" in message and "cannot connect to the daemon" in message
    assert not (Path(env["TETHER_STATE_DIR"]) / "tether.sqlite3").exists()  # it never supervised here


async def test_where_the_sessions_live(env: dict[str, str], daemon: Daemon, tmp_path: Path) -> None:
    """`--state-dir` finds a daemon's daemon.json and token; `--url` and `--token` name one directly;
    `--embedded` never looks for it (and then cannot open the store the daemon writes); `--state-dir`
    alone on a fresh directory supervises there, its store in that directory."""
    daemon.start()
    running = tether.find_daemon(state_dir=daemon.state)
    bare = {key: value for key, value in env.items() if key != "TETHER_STATE_DIR"}
    log = tmp_path / "mcp.log"
    elsewhere = tmp_path / "elsewhere"
    with trio.fail_after(120):
        async with open_mcp(bare, "--state-dir", str(daemon.state), log=log) as mcp:
            listed = await mcp.call("list_sessions")
            assert listed["tether"] == {"mode": "daemon", "at": running.url}
            await mcp.call("open_session", session={"id": "shared", **BASH})
        async with open_mcp({**bare, "TETHER_STATE_DIR": str(elsewhere)}, "--url", running.url,
                            "--token", running.token or "", log=log) as mcp:
            listed = await mcp.call("list_sessions")
            assert listed["tether"] == {"mode": "daemon", "at": running.url}
            assert [s["id"] for s in listed["sessions"]] == ["shared"]
        assert not elsewhere.exists()  # nothing was supervised there
        embedded_log = tmp_path / "embedded.log"
        async with open_mcp(env, "--embedded", log=embedded_log) as mcp:
            for tool, arguments in (("list_sessions", {}), ("read_output", {"session_id": "shared"})):
                with trio.fail_after(DEFAULT_CALL_BUDGET / 2):  # at once, not at the end of the budget
                    message = await mcp.error(tool, **arguments)
                assert message == (
                    f"--embedded cannot open the state in {daemon.state}: the tether daemon running there "
                    f"(process {daemon.pid}, {running.url}) holds its store. Drop --embedded to use that daemon's "
                    "sessions, or give --state-dir another directory for sessions of this server's own")
            await trio.to_thread.run_sync(daemon.stop)  # the store is free now: the next call supervises here
            listed = await mcp.call("list_sessions")
            assert listed["tether"] == {"mode": "embedded", "at": str(daemon.state)}
            assert [s["id"] for s in listed["sessions"]] == ["shared"]
        said = embedded_log.read_text()  # its log says the same at start, and then that it supervises
        assert f"WARNING tether.mcp: --embedded cannot open the state in {daemon.state}" in said
        assert f"--embedded: supervising here, state in {daemon.state} (1 sessions restored)" in said
        assert "no tether daemon runs" not in said
        async with open_mcp(bare, "--state-dir", str(elsewhere), log=log) as mcp:
            listed = await mcp.call("list_sessions")
            assert listed["tether"] == {"mode": "embedded", "at": str(elsewhere)} and listed["sessions"] == []
            await mcp.call("open_session", session={"id": "mine", **BASH})
        rows = sqlite3.connect(elsewhere / "tether.sqlite3").execute("select id from sessions").fetchall()
        assert rows == [("mine",)]
