"""`tether exec` on ssh sessions, the way a user drives it: the real daemon, a real sshd.

Two sessions on one server: a plain login shell and one kept in tmux. Right
after ``tether run`` starts, ``exec`` waits for each shell's first prompt and
runs: a ``cd`` sticks, ``false`` exits 1, the output is the command's own. Then
the daemon stops cleanly (SIGTERM) and starts again, and is killed (kill -9)
and started again: the tmux shell is the same shell (its variable is still
set, the exec re-attaches to a shell idle at its prompt), the plain one is a
new login in the directory the last one was in; ``exec`` works in both.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import Sshd, daemon_harness, toml_options

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, sshd: Sshd, tmux_socket: str) -> Path:
    lines = []
    for sid, options in (("plain", sshd.options()), ("kept", sshd.options(persist="tmux", tmux_socket=tmux_socket))):
        lines += [
            "[[sessions]]", f'id = "{sid}"', 'backend = "ssh"', f"options = {toml_options(options)}",
            "[sessions.policy]", "base_delay = 0.2", "max_delay = 1.0", "connect_timeout = 10",
        ]
    config = tmp_path / "tether.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _exec(daemon: object, sid: str, command: str) -> subprocess.CompletedProcess[str]:
    return daemon.cli("exec", sid, "--timeout", "30", "--", command, check=False)  # type: ignore[attr-defined]


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return done.stdout.replace("\r\n", "\n")


def test_exec_over_ssh_through_stop_and_kill(sshd: Sshd, tmux_socket: str, tmp_path: Path) -> None:
    with daemon_harness.running(tmp_path / "state", _config(tmp_path, sshd, tmux_socket)) as daemon:
        daemon.start()
        for sid in ("plain", "kept"):  # no wait for the connection: exec waits for the shell's prompt
            assert _ok(_exec(daemon, sid, "cd /tmp && pwd")) == "/tmp\n"
            failed = _exec(daemon, sid, "echo no; false")
            assert (failed.returncode, failed.stdout.strip()) == (1, "no"), failed
        assert _ok(_exec(daemon, "kept", "KEPT_VAR=still-here; echo set")) == "set\n"

        for stop in ("SIGTERM", "kill -9"):
            if stop == "SIGTERM":
                assert daemon.stop("SIGTERM") < 10
                assert daemon.process.returncode == 0, daemon.log()
            else:
                daemon.kill()
            daemon.start()
            assert _ok(_exec(daemon, "kept", "echo $KEPT_VAR; pwd")) == "still-here\n/tmp\n", stop
            assert _ok(_exec(daemon, "plain", "pwd")) == "/tmp\n", stop
            slow = _exec(daemon, "plain", "sleep 0.5; (exit 3)")
            assert slow.returncode == 3, slow
