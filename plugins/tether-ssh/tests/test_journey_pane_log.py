"""Exact replay through the real daemon: ``tether run`` killed (kill -9) while a remote tmux loop prints.

What a user would check, through ``/control`` only: the session's output log
read before the crash, and after the restart read on from the same cursor:
every number once, in order, nothing the reader saw changed, no loss (the
remote pane log held what the dead daemon never read or never wrote down). A
clean stop (SIGTERM) then leaves the remote program running.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tether_ssh import tmux_name

from .conftest import Sshd, daemon_harness, toml_options

pytestmark = pytest.mark.slow

NUMBER = re.compile(rb"n=(\d+)\r\n")
COUNT = 6000


def _config(tmp_path: Path, sshd: Sshd, tmux_socket: str) -> Path:
    options = sshd.options(persist="tmux", tmux_socket=tmux_socket, shell_integration=False)
    config = tmp_path / "tether.toml"
    config.write_text("\n".join([
        "[[sessions]]", 'id = "s1"', 'backend = "ssh"', f"options = {toml_options(options)}",
        "[sessions.policy]", "base_delay = 0.2", "max_delay = 1.0", "connect_timeout = 10",
        "keepalive_interval = 1", 'max_retries = "forever"',
    ]) + "\n")
    return config


def _read(state: Path, since: int) -> tuple[bytes, list[dict[str, Any]], int]:
    """The log from `since` to its end through /control ``read``, page by page: bytes, losses, next cursor."""
    data, losses = b"", []
    while True:
        reply = daemon_harness.control(state, {"id": 1, "op": "read", "session_id": "s1", "since": since,
                                               "max_bytes": 1 << 20})
        assert "error" not in reply, reply
        result = reply["result"]
        data += base64.b64decode(result["data"])
        losses += result["losses"]
        since = result["next"]
        if since >= result["end"]:
            return data, losses, since


def _last(state: Path) -> int:
    data, _, _ = _read(state, 0)
    found = NUMBER.findall(data)
    return int(found[-1]) if found else 0


def _connected(daemon: Any) -> bool:
    return daemon.sessions().get("s1", {}).get("status") == "connected"


def test_kill_9_while_the_remote_loop_prints_then_the_log_continues_exactly(
    sshd: Sshd, tmux_socket: str, tmp_path: Path
) -> None:
    wait_for = daemon_harness.wait_for
    state = tmp_path / "state"
    with daemon_harness.running(state, _config(tmp_path, sshd, tmux_socket)) as daemon:
        daemon.start()
        wait_for(lambda: _connected(daemon), what="the ssh session to connect", timeout=60)
        loop = f"i=0; while [ $i -lt {COUNT} ]; do i=$((i+1)); echo n=$i; [ $((i % 10)) -eq 0 ] && sleep 0.01; done\r"
        reply = daemon_harness.control(state, {"id": 1, "op": "send", "session_id": "s1", "text": loop})
        assert "error" not in reply, reply
        wait_for(lambda: _last(state) >= 300, what="the loop to print", timeout=30)
        seen, seen_losses, cursor = _read(state, 0)  # a reader's view just before the crash

        daemon.kill()  # kill -9: no final flush, the ssh clients die with it
        pane = f"={tmux_name('s1')}"
        assert subprocess.run(["tmux", "-L", tmux_socket, "has-session", "-t", pane]).returncode == 0

        daemon.start()
        wait_for(lambda: _connected(daemon), what="the session to come back after kill -9", timeout=60)
        wait_for(lambda: _last(state) == COUNT, what="the loop's last line", timeout=60)
        after, after_losses, _ = _read(state, cursor)  # the same reader, on from its cursor
        whole, whole_losses, _ = _read(state, 0)

        assert daemon.stop("SIGTERM") < 10
        assert daemon.process.returncode == 0, daemon.log()
    assert subprocess.run(["tmux", "-L", tmux_socket, "has-session", "-t", pane]).returncode == 0
    before_numbers = [int(n) for n in NUMBER.findall(seen)]
    assert before_numbers[-1] < COUNT - 100, "the crash came while the loop printed"
    assert seen_losses == [] and after_losses == [] and whole_losses == []
    assert whole[: len(seen)] == seen, "what the reader saw before the crash is still there, unchanged"
    numbers = [int(n) for n in NUMBER.findall(seen + after)]
    assert numbers == list(range(1, COUNT + 1)), "every number exactly once, in order, across the crash"
    assert [int(n) for n in NUMBER.findall(whole)] == numbers
