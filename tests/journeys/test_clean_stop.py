"""A clean stop keeps every saved session (SIGTERM, Ctrl-C, --duration): only unregister deletes."""

from __future__ import annotations

from pathlib import Path

import pytest

from .daemon import Daemon, running, stored_rows, wait_for

pytestmark = pytest.mark.slow

SESSIONS = 20


def _config(tmp_path: Path) -> Path:
    lines = []
    for i in range(SESSIONS):
        lines += [
            "[[sessions]]", f'id = "s{i:02d}"', 'backend = "scripted"',
            "options = { drop_after = 0.3 }",
            "[sessions.policy]", "base_delay = 0.05", "max_delay = 0.2", "max_retries = 1000",
        ]
    config = tmp_path / "tether.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _all_stored(state: Path) -> set[str]:
    return set(stored_rows(state))


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_signal_stop_keeps_every_snapshot(tmp_path: Path, how: str) -> None:
    """After a SIGTERM or Ctrl-C the database still holds every session, and the next start restores them."""
    state = tmp_path / "state"
    expected = {f"s{i:02d}" for i in range(SESSIONS)}
    with running(state, _config(tmp_path)) as daemon:
        daemon.start()
        wait_for(lambda: _all_stored(state) == expected, what="every session to be stored")
        wait_for(lambda: all(s["episodes_total"] >= 1 for s in daemon.sessions().values()),
                 what="every session to have dropped once")
        assert daemon.stop(how) < 3
        assert daemon.process is not None and daemon.process.returncode == 0, daemon.log()
        assert _all_stored(state) == expected
        daemon.start()
        restored = daemon.sessions()
        assert set(restored) == expected
        assert all(s["episodes_total"] >= 1 for s in restored.values()), "state was lost on restore"


def test_duration_stop_keeps_every_snapshot(tmp_path: Path) -> None:
    """``--duration`` ends the daemon by itself and keeps every session."""
    state = tmp_path / "state"
    expected = {f"s{i:02d}" for i in range(SESSIONS)}
    daemon = Daemon(state, _config(tmp_path), extra_args=["--duration", "3"])
    try:
        daemon.start()
        assert daemon.wait_exit() == 0, daemon.log()
        assert _all_stored(state) == expected
    finally:
        daemon.kill()
