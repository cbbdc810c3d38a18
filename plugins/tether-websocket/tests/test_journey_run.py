"""`tether exec` on a Jupyter terminal through the real daemon, as a user drives it.

``tether run`` (a child process, port 0) has one websocket session on a real
Jupyter Server (token by reference, from the daemon's environment). ``tether
exec`` gives the command's output and exit status; a ``cd`` in one exec holds
for the next. The daemon stops on SIGTERM (the server keeps the shell), then is
killed with -9; each time it starts again, re-attaches to the same shell (the
same pid, the same cwd). No exec waits for ``tether status`` first: exec waits
for the connection and for a new shell's first prompt itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import JupyterServer, daemon_harness

pytestmark = pytest.mark.slow

TOKEN_VAR = "TETHER_TEST_JUPYTER_TOKEN"


def _config(tmp_path: Path, server: JupyterServer) -> Path:
    config = tmp_path / "tether.toml"
    config.write_text(
        "[[sessions]]\n"
        'id = "nb"\n'
        'backend = "websocket"\n'
        f'options = {{ base_url = "{server.base_url}", token = {{ from_env = "{TOKEN_VAR}" }} }}\n'
        "[sessions.policy]\n"
        "base_delay = 0.2\nmax_delay = 1.0\nconnect_timeout = 10\nkeepalive_interval = 1\n"
    )
    return config


def _connected(daemon: object) -> bool:
    session = daemon.sessions().get("nb", {})  # type: ignore[attr-defined]
    return bool(session.get("status") == "connected")


def _exec(daemon: object, command: str) -> tuple[int, str]:
    done = daemon.cli("exec", "nb", "--", command, check=False)  # type: ignore[attr-defined]
    return done.returncode, done.stdout.strip()


def test_exec_on_a_jupyter_terminal_across_daemon_restarts(jupyter: JupyterServer, tmp_path: Path) -> None:
    """exec: /tmp and 0 for ``cd /tmp && pwd``, 1 for ``false``; after SIGTERM and after kill -9,
    the same shell runs the next exec at once, still in /tmp."""
    with daemon_harness.running(tmp_path / "state", _config(tmp_path, jupyter),
                                env={TOKEN_VAR: jupyter.token}) as daemon:
        daemon.start()
        assert _exec(daemon, "cd /tmp && pwd") == (0, "/tmp"), daemon.log()
        assert _exec(daemon, "false") == (1, "")
        status, pid = _exec(daemon, "echo $$")
        assert status == 0 and pid.isdigit()

        assert daemon.stop("SIGTERM") < 10
        assert daemon.process.returncode == 0, daemon.log()
        daemon.start()
        assert _exec(daemon, "echo $$:$PWD") == (0, f"{pid}:/tmp"), daemon.log()
        assert _exec(daemon, "false") == (1, "")

        daemon.kill()
        daemon.start()
        assert _exec(daemon, "echo $$:$PWD") == (0, f"{pid}:/tmp"), daemon.log()
        assert _connected(daemon)
        assert daemon.stop("SIGTERM") < 10
