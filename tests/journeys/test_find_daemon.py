"""Client commands find the running daemon the way the daemon was configured: from the config
file's state_dir (its daemon.json and token) and, without a daemon.json, the config's port; and
when nothing answers, they say why."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from .daemon import running, tether_command

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_status_with_config_finds_the_daemon_in_the_configs_state_dir(tmp_path: Path) -> None:
    """`tether run cfg` keeps its state where the config says; `tether status --config cfg` looks there
    (daemon.json and token), whatever $TETHER_STATE_DIR says; without --config it cannot know."""
    configured = tmp_path / "configured-state"
    config = tmp_path / "tether.toml"
    config.write_text(f'state_dir = "{configured}"\n[[sessions]]\nid = "web"\nbackend = "scripted"\n')
    elsewhere = tmp_path / "elsewhere"
    with running(configured, config, env={"TETHER_STATE_DIR": str(elsewhere)}) as daemon:
        daemon.start()
        found = tether_command("status", "--json", "--config", str(config), state=elsewhere)
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["total"] == 1
        missing = tether_command("status", "--config", str(config), "--session", "nope", state=elsewhere)
        assert missing.returncode == 1
        assert missing.stderr == "tether: no session 'nope' is registered\n"
        lost = tether_command("status", state=elsewhere)
        assert lost.returncode == 3
        assert f"no daemon.json in {elsewhere}" in lost.stderr
        assert "connection refused: nothing listens there" in lost.stderr
        daemon.stop()


def test_without_daemon_json_the_configs_port_is_used(tmp_path: Path) -> None:
    """The config says port P (auth off on loopback): a client with --config reaches P even where
    no daemon.json says so."""
    port = _free_port()
    config = tmp_path / "tether.toml"
    config.write_text(f'state_dir = "{tmp_path / "never-written"}"\n[server]\nport = {port}\nauth = false\n'
                      '[[sessions]]\nid = "web"\nbackend = "scripted"\n')
    state = tmp_path / "state"
    with running(state, config, port=None, extra_args=["--state-dir", str(state)]) as daemon:
        daemon.start()
        assert json.loads((state / "daemon.json").read_text())["port"] == port
        found = tether_command("status", "--json", "--config", str(config), state=tmp_path / "other")
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["total"] == 1
        daemon.stop()
