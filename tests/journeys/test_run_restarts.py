"""`tether exec` tokens across daemon restarts and `tether remove`, driven as a user would.

A command left running by ``exec --timeout`` keeps its token through SIGTERM
and kill -9 of the daemon: with ``persist = "tmux"`` the shell keeps running,
and the next daemon finishes the run from the marks it printed (while the
daemon was down, replayed from the pane log), so ``exec --resume`` prints the
command's output and exits with its status. Without tmux a new shell replaces
the old one and ``--resume`` says so (exit 125). A run still waited on over
/control when its session is removed is answered as lost, naming the
removal, and a waiter cut off by a stopping daemon is told it is stopping;
the token is still good after the next start. What docs/cli.md and
docs/control.md say about runs and restarts, checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from tether.testing import require_peer

from .daemon import Daemon, kill_marked, proc_alive, running, stored_rows, wait_for
from .test_console_commands import _daemon_env, _pid

pytestmark = pytest.mark.slow

MARK = "TETHER_TEST_MARK"


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> object:
    yield
    kill_marked(MARK, tmp_path.name)  # a tmux-kept shell outlives a killed daemon


def _config(tmp_path: Path, *, persist: str) -> Path:
    config = tmp_path / "tether.toml"
    config.write_text(
        '[[sessions]]\nid = "sh"\nbackend = "process"\n'
        f'options = {{ argv = ["bash"], persist = "{persist}", env = {{ {MARK} = "{tmp_path.name}" }} }}\n'
        "[sessions.policy]\nbase_delay = 0.1\nmax_delay = 0.5\njitter = \"none\"\n"
    )
    return config


@contextmanager
def _shell_daemon(tmp_path: Path, persist: str) -> Iterator[tuple[Daemon, Path, int]]:
    """A running daemon with session "sh" (bash, `persist` as given) and the shell's pid."""
    state = tmp_path / "state"
    with running(state, _config(tmp_path, persist=persist), env=_daemon_env(tmp_path)) as daemon:
        daemon.start()
        yield daemon, state, wait_for(lambda: _pid(daemon), what="the shell to run")


def _started(daemon: Daemon, command: str) -> str:
    """Start `command` with a 1 s budget; the token exec prints for --resume."""
    slow = daemon.cli("exec", "sh", "--timeout", "1", "--", command, check=False, timeout=30)
    assert slow.returncode == 124, slow
    token = re.search(r"--resume (\S+)", slow.stderr)
    assert token, slow.stderr
    return token.group(1)


def _resume(daemon: Daemon, token: str) -> Any:
    return daemon.cli("exec", "sh", "--timeout", "30", "--resume", token, check=False, timeout=60)


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (the shell's running command)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] not in (b"Z", b"X"):
            found.append(int(entry))
    return found


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_run_in_a_tmux_kept_shell_finishes_across_a_daemon_restart(tmp_path: Path, how: str) -> None:
    """The token survives the daemon; the shell tmux kept finishes the command meanwhile; --resume
    prints its output and exits with its status."""
    require_peer(shutil.which("tmux") is not None, "tmux is not installed")
    with _shell_daemon(tmp_path, "tmux") as (daemon, state, shell):
        # `(exit 3)`: the status 3, from a subshell (a bare `exit 3` would end the shell itself)
        token = _started(daemon, "sleep 4; echo hi; (exit 3)")
        stored = stored_rows(state)["sh"]
        assert [run["nonce"] for run in stored["runs"]["pending"]] == [token]  # written before it was printed
        assert "sleep" not in json.dumps(stored["runs"])  # the command itself is never stored
        daemon.stop(how)
        assert proc_alive(shell), f"tmux keeps the shell through {how}"
        wait_for(lambda: not _children(shell), what="the command to finish while the daemon is down")
        daemon.start()
        resumed = _resume(daemon, token)
        assert resumed.returncode == 3, resumed
        assert _lines(resumed.stdout) == "hi\n", resumed.stdout
        assert resumed.stderr == "", resumed.stderr
        assert _pid(daemon) == shell  # the same shell, re-attached
        again = _resume(daemon, token)  # asked again: the same answer, while the daemon keeps it
        assert (again.returncode, _lines(again.stdout)) == (3, "hi\n"), again
        wait_for(lambda: "runs" not in stored_rows(state)["sh"], what="the collected run to leave the snapshot")
        assert daemon.cli("exec", "sh", "--", "echo", "next").stdout.strip() == "next"
        daemon.cli("remove", "sh")
        daemon.stop("SIGTERM")


def test_a_run_whose_shell_a_restart_replaced_is_lost_and_says_why(tmp_path: Path) -> None:
    """Without tmux the shell ends with the daemon; the next one is new: --resume exits 125 saying so,
    after any number of restarts until someone has been told."""
    with _shell_daemon(tmp_path, "none") as (daemon, state, first):
        token = _started(daemon, "echo before-$((1+1)); sleep 60")
        daemon.stop("SIGTERM")
        daemon.start()
        wait_for(lambda: _pid(daemon) not in (None, first), what="a new shell")

        def finished() -> list[dict[str, Any]]:
            return list(stored_rows(state)["sh"].get("runs", {}).get("finished", []))

        kept = wait_for(finished, what="the lost outcome to be written down")
        assert [(run["nonce"], run["status"]) for run in kept] == [(token, None)], kept
        assert "pending" not in stored_rows(state)["sh"]["runs"], "a lost run no longer waits"
        daemon.stop("SIGKILL")
        daemon.start()  # nobody collected it yet: the outcome is still kept
        resumed = _resume(daemon, token)
        assert resumed.returncode == 125, resumed
        assert _lines(resumed.stdout) == "before-2\n", resumed.stdout  # what it printed before
        assert resumed.stderr == ("tether: the shell was replaced by a new program when tether restarted, "
                                  "before the command finished; its output is above\n"), resumed.stderr
        wait_for(lambda: "runs" not in stored_rows(state)["sh"], what="the collected outcome to leave the snapshot")
        daemon.stop("SIGTERM")
        daemon.start()  # collected, then restarted: the token is gone
        gone = _resume(daemon, token)
        assert gone.returncode == 1, gone
        assert gone.stderr == f"tether: session 'sh' has no run '{token}' pending or finished\n", gone.stderr
        daemon.stop("SIGTERM")


async def _wait_run_then(state: Path, token: str, while_waiting: threading.Event, budget: float) -> dict[str, Any]:
    """``wait-run`` over /control; sets `while_waiting` once the daemon is surely waiting on it (the
    reply to a `status` sent after it came back: the daemon starts each request in order, and a
    wait-run parks at its first step), and returns the wait-run's reply."""
    daemon = json.loads((state / "daemon.json").read_text())
    secret = (state / "token").read_text().strip()
    with trio.fail_after(budget + 30):
        async with open_websocket_url(
            f"{daemon['url']}/control", extra_headers=[(b"Authorization", f"Bearer {secret}".encode())]
        ) as ws:
            await ws.send_message(json.dumps({"id": 1, "op": "wait-run", "session_id": "sh", "token": token,
                                              "budget": budget}))
            await ws.send_message(json.dumps({"id": 2, "op": "status"}))
            replies: dict[int, dict[str, Any]] = {}
            while 1 not in replies:
                reply = json.loads(await ws.get_message())
                replies[reply["id"]] = reply
                if reply["id"] == 2:
                    while_waiting.set()
            return replies[1]


def _waiter(state: Path, token: str, budget: float) -> tuple[threading.Thread, threading.Event, list[Any]]:
    waiting = threading.Event()
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(trio.run(_wait_run_then, state, token, waiting, budget)))
    thread.start()
    assert waiting.wait(30), "the wait-run never started"
    return thread, waiting, out


def test_a_run_waited_on_when_its_session_is_removed_is_answered_as_lost(tmp_path: Path) -> None:
    """`tether remove` answers a wait-run in flight at once: done, no status, lost naming the removal."""
    with _shell_daemon(tmp_path, "none") as (daemon, state, _):
        token = _started(daemon, "echo waiting-$((2+2)); sleep 60")
        thread, _, out = _waiter(state, token, budget=120)
        assert daemon.cli("remove", "sh").stdout == "sh: unregistered\n"
        thread.join(60)
        assert not thread.is_alive(), "the wait-run was not answered"
        result = out[0]["result"]
        assert result["done"] is True and result["exit_status"] is None, result
        assert result["lost"] == "the session was removed (unregistered) before the command finished"
        assert result["token"] == token and result["started"] is True
        daemon.stop("SIGTERM")


def test_exec_waiting_when_its_session_is_removed_exits_125_naming_the_removal(tmp_path: Path) -> None:
    """`tether remove` while `tether exec` waits: exec ends at once, exit 125, saying why."""
    with _shell_daemon(tmp_path, "none") as (daemon, state, _):
        env = {**os.environ, "TETHER_STATE_DIR": str(state), **_daemon_env(tmp_path)}
        waiting = subprocess.Popen(
            [sys.executable, "-m", "tether", "exec", "sh", "--timeout", "120", "--", "echo started-$((1+1)); sleep 60"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # its output shows once the shell ran the line: exec's request waits on the run by then
            wait_for(lambda: "started-2" in daemon.cli("tail", "sh").stdout, what="the command to start")
            assert daemon.cli("remove", "sh").stdout == "sh: unregistered\n"
            out, err = waiting.communicate(timeout=60)
        finally:
            waiting.kill()
        assert waiting.returncode == 125, (out, err)
        assert (out, err) == ("", "tether: the session was removed (unregistered) before the command finished\n")
        daemon.stop("SIGTERM")


def test_a_run_waited_on_when_the_daemon_stops_is_told_so_and_resumes_after(tmp_path: Path) -> None:
    """SIGTERM answers a wait-run in flight with `closed`; the token finishes after the next start."""
    require_peer(shutil.which("tmux") is not None, "tmux is not installed")
    with _shell_daemon(tmp_path, "tmux") as (daemon, state, _):
        token = _started(daemon, "sleep 3; echo after-stop")
        thread, _, out = _waiter(state, token, budget=120)
        daemon.stop("SIGTERM")
        thread.join(60)
        assert not thread.is_alive(), "the wait-run was not answered"
        assert out[0]["error"]["type"] == "closed", out[0]
        daemon.start()
        resumed = _resume(daemon, token)
        assert (resumed.returncode, _lines(resumed.stdout)) == (0, "after-stop\n"), resumed
        daemon.cli("remove", "sh")
        daemon.stop("SIGTERM")
