"""Exact replay through the real daemon: a remote tmux loop prints while ``tether run`` is away.

One journey, the ways tether goes away: a clean stop (SIGTERM), a crash
(kill -9) and a network black hole (an nft table dropping the sshd port). A
remote loop prints numbered lines throughout; each time, the test waits until
the remote pane log holds bytes tether never received (so the program really
printed while tether was away), then brings tether back. What a user would
check, through ``tether status`` and ``/control`` only: the session comes back
on the same remote pane (same tmux pane, same shell pid), and one reader that
reads on from its cursor sees every number once, in order, and no loss; what
it saw before a restart is never changed. A clean stop leaves the program
running.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest

from tether_ssh import tmux_name

from .conftest import Sshd, black_hole, daemon_harness, toml_options

pytestmark = pytest.mark.slow

NUMBER = re.compile(rb"n=(\d+)\r\n")
DONE = re.compile(rb"done=(\d+)\r\n")
AWAY_BYTES = 400
"""How far the remote log must get past what tether held before tether comes back: more than
a screen's worth of lines (24 rows), which is all a tmux redraw alone would give back."""


def _config(tmp_path: Path, sshd: Sshd, tmux_socket: str) -> Path:
    options = sshd.options(persist="tmux", tmux_socket=tmux_socket, shell_integration=False)
    config = tmp_path / "tether.toml"
    config.write_text("\n".join([
        "[[sessions]]", 'id = "s1"', 'backend = "ssh"', f"options = {toml_options(options)}",
        "[sessions.policy]", "base_delay = 0.2", "max_delay = 1.0", "connect_timeout = 10",
        "keepalive_interval = 1", 'max_retries = "forever"',
    ]) + "\n")
    return config


@attrs.define
class Reader:
    """A /control client reading the session's output log on from its cursor, as a viewer would."""

    state: Path
    cursor: int = 0
    data: bytes = b""
    losses: list[dict[str, Any]] = attrs.field(factory=list)

    def shows(self, pattern: re.Pattern[bytes]) -> bool:
        self.read_on()
        return pattern.search(self.data) is not None

    def read_on(self) -> bytes:
        """Everything after the cursor, page by page; the cursor moves to the log's end."""
        new = b""
        while True:
            reply = daemon_harness.control(self.state, {"id": 1, "op": "read", "session_id": "s1",
                                                        "since": self.cursor, "max_bytes": 1 << 20})
            assert "error" not in reply, reply
            result = reply["result"]
            new += base64.b64decode(result["data"])
            self.losses += result["losses"]
            self.cursor = result["next"]
            if self.cursor >= result["end"]:
                self.data += new
                return new

    def last(self) -> int:
        self.read_on()
        found = NUMBER.findall(self.data)
        return int(found[-1]) if found else 0


def _tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True).stdout.strip()


def _pane(socket: str) -> str:
    """The remote pane's id and its shell's pid (the remote host is this machine)."""
    return _tmux(socket, "display", "-p", "-t", f"={tmux_name('s1')}:", "#{pane_id} #{pane_pid}")


def _remote_bytes(socket: str) -> int:
    """Bytes the remote pane log has taken so far: the newest segment's offset plus its size."""
    directory = Path(_tmux(socket, "show-options", "-qv", "-t", f"={tmux_name('s1')}:", "@tether-pane-log"))
    segment = int((directory / "format").read_text().split()[1])
    newest = sorted(directory.glob("seg.?????????"))[-1]
    return int(newest.name[4:]) * segment + newest.stat().st_size


def _status(daemon: Any) -> str | None:
    session = daemon.sessions().get("s1")
    return None if session is None else str(session["status"])


def test_the_remote_loop_prints_through_stop_crash_and_black_hole_and_the_log_holds_it_exactly_once(
    sshd: Sshd, tmux_socket: str, tmp_path: Path
) -> None:
    wait_for = daemon_harness.wait_for
    state = tmp_path / "state"
    stop_file = tmp_path / "stop-the-loop"
    reader = Reader(state)

    def printed_while_away() -> None:
        """Tether is gone (or cut off): wait until the loop printed more than a screen after that."""
        gone_at = _remote_bytes(tmux_socket)
        wait_for(lambda: _remote_bytes(tmux_socket) >= gone_at + AWAY_BYTES,
                 what="the remote loop to print while tether is away", timeout=30)

    def back(what: str) -> None:
        wait_for(lambda: _status(daemon) == "connected", what=f"the session to come back after {what}",
                 timeout=60)
        assert _pane(tmux_socket) == pane, f"re-attached to the same remote pane and shell after {what}"
        before = reader.last()
        wait_for(lambda: reader.last() > before, what=f"new lines after {what}", timeout=30)

    with daemon_harness.running(state, _config(tmp_path, sshd, tmux_socket)) as daemon:
        daemon.start()
        wait_for(lambda: _status(daemon) == "connected", what="the ssh session to connect", timeout=60)
        pane = _pane(tmux_socket)
        loop = (f"i=0; while [ ! -e {stop_file} ]; do i=$((i+1)); echo n=$i; sleep 0.02; done; "
                "echo done=$i\r")
        reply = daemon_harness.control(state, {"id": 1, "op": "send", "session_id": "s1", "text": loop})
        assert "error" not in reply, reply
        wait_for(lambda: reader.last() >= 50, what="the loop to print", timeout=30)

        assert daemon.stop("SIGTERM") < 10
        assert daemon.process.returncode == 0, daemon.log()
        printed_while_away()
        daemon.start()
        back("a clean stop")

        daemon.kill()  # kill -9: no final flush, the ssh client dies with it
        printed_while_away()
        daemon.start()
        back("kill -9")

        with black_hole(sshd.port):
            wait_for(lambda: _status(daemon) != "connected", what="the black hole to be noticed", timeout=30)
            printed_while_away()
        back("a black hole")
        session = daemon.sessions()["s1"]
        attempts = (session["episode"] or session["history"][-1])["attempts"]
        assert attempts[-1]["success"] and attempts[-1]["same_program"], session

        stop_file.touch()
        wait_for(lambda: reader.shows(DONE), what="the loop to end", timeout=30)
        whole = Reader(state)
        assert whole.read_on() == reader.data, "the log read whole is what the reader saw, piece by piece"
        assert daemon.stop("SIGTERM") < 10
        assert daemon.process.returncode == 0, daemon.log()
    assert _pane(tmux_socket) == pane, "a clean stop leaves the remote program running"

    (done,) = (int(n) for n in DONE.findall(reader.data))
    assert reader.losses == []
    numbers = [int(n) for n in NUMBER.findall(reader.data)]
    assert numbers == list(range(1, done + 1)), "every number exactly once, in order, across every absence"
