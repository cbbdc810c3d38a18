"""Shared connections through the real daemon: ``tether run`` with ssh sessions, stopped and killed.

What a user would check: the sessions are connected (``tether status``), sshd
logged one login for the shared ones, the control sockets sit in a private
directory, and after a stop nothing of tether's is left running: no master,
no client, no directory. After a kill -9 the clients end with the daemon
(their parent-death signal), and the next start ends the master the dead
daemon left and removes its directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tether_ssh._control_dir import base_directory

from .conftest import Sshd, daemon_harness, processes_matching, toml_options

pytestmark = pytest.mark.slow

SHARED = 4


def _config(tmp_path: Path, sshd: Sshd) -> Path:
    lines = []
    for i in range(SHARED + 1):
        options = sshd.options(shell_integration=False, share_connection=i < SHARED)
        lines += [
            "[[sessions]]", f'id = "{"shared" if i < SHARED else "own"}{i}"', 'backend = "ssh"',
            f"options = {toml_options(options)}",
            "[sessions.policy]", "base_delay = 0.2", "max_delay = 1.0", "connect_timeout = 10",
            "keepalive_interval = 1", 'max_retries = "forever"',
        ]
    config = tmp_path / "tether.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _masters(sshd: Sshd) -> list[int]:
    return [pid for pid in processes_matching("ControlMaster=yes")
            if f" {sshd.port} ".encode() in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")]


def _control_dirs(pid: int) -> list[Path]:
    base = base_directory()
    return [d for d in base.iterdir() if d.name.startswith(f"{pid}-")] if base.exists() else []


def _clients(directory: Path) -> list[int]:
    """The shared connections' clients (one per session); the master's own command line differs."""
    masters = set(processes_matching("ControlMaster=yes"))
    return [pid for pid in processes_matching(f"ControlPath={directory}/") if pid not in masters]


def _all_connected(daemon: object) -> bool:
    sessions = daemon.sessions()  # type: ignore[attr-defined]
    return len(sessions) == SHARED + 1 and all(s["status"] == "connected" for s in sessions.values())


def test_shared_connections_through_stop_and_kill(sshd: Sshd, tmp_path: Path) -> None:
    """Start, SIGTERM (nothing left), start, kill -9 (clients end; the master is ended by the next start)."""
    wait_for = daemon_harness.wait_for
    with daemon_harness.running(tmp_path / "state", _config(tmp_path, sshd)) as daemon:
        daemon.start()
        wait_for(lambda: _all_connected(daemon), what="every ssh session to connect", timeout=60)
        assert sshd.logins() == 2, "four shared sessions are one login; the unshared one is its own"
        (directory,) = _control_dirs(daemon.pid)
        for private in (directory.parent, directory):
            assert stat.S_IMODE(private.lstat().st_mode) == 0o700
        assert len(_masters(sshd)) == 1
        assert len(_clients(directory)) == SHARED

        assert daemon.stop("SIGTERM") < 5
        assert daemon.process.returncode == 0, daemon.log()
        wait_for(lambda: not _masters(sshd), what="the master to end with the daemon", timeout=5)
        assert _clients(directory) == []
        assert not directory.exists(), "the control directory is removed on a clean stop"

        since = sshd.log_size()
        daemon.start()
        wait_for(lambda: _all_connected(daemon), what="every ssh session to connect again", timeout=60)
        assert sshd.logins(since=since) == 2
        (directory,) = _control_dirs(daemon.pid)
        (master,) = _masters(sshd)
        dead_pid = daemon.pid

        daemon.kill()
        wait_for(lambda: not _clients(directory), what="the clients to end with the killed daemon", timeout=5)
        assert directory.exists() and daemon_harness.proc_alive(master), "left by the crash, as expected"

        daemon.start()
        wait_for(lambda: _all_connected(daemon), what="every ssh session to connect after the crash", timeout=60)
        wait_for(lambda: not daemon_harness.proc_alive(master), what="the crashed daemon's master to end",
                 timeout=10)
        assert _control_dirs(dead_pid) == [], "the crashed daemon's directory is swept"
        assert len(_masters(sshd)) == 1
        daemon.stop("SIGTERM")
    assert os.path.isdir(base_directory())
