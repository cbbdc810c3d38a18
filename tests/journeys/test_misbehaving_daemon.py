"""A misbehaving plugin, installed through real entry points, cannot wedge the daemon.

50 sessions whose connect blocks forever in a worker thread trio cannot
cancel, one whose connect blocks the event loop, beside healthy sessions:
the healthy ones keep recovering, persistence keeps writing, unregister is
bounded, the reports name the distribution, and SIGTERM ends the daemon
within its bound.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from .daemon import Daemon, control, install_plugin, stored_rows, wait_for

pytestmark = pytest.mark.slow

PLUGIN = '''
import time
from contextlib import asynccontextmanager

import trio

import tether


class _Link:
    async def probe(self):
        await trio.lowlevel.checkpoint()

    def current_state(self):
        return None

    async def send(self, data):
        await trio.lowlevel.checkpoint()


class StuckBackend:
    """connect blocks in a worker thread that trio cannot cancel: a wrapped blocking client library."""

    name = "stuck"
    plugin_api = 1
    features = frozenset()
    default_strategies = {}

    def validate(self, spec):
        pass

    def target(self, spec):
        return "stuck:" + spec.id

    @asynccontextmanager
    async def open_link(self, request):
        await trio.to_thread.run_sync(time.sleep, 10**6)
        yield _Link()


class HogBackend(StuckBackend):
    """connect holds the event loop for 2 s (time.sleep in async code)."""

    name = "hog"

    @asynccontextmanager
    async def open_link(self, request):
        time.sleep(2)
        yield _Link()
'''


def _config(tmp_path: Path) -> Path:
    lines = []
    for i in range(50):
        lines += ["[[sessions]]", f'id = "stuck-{i:02d}"', 'backend = "stuck"',
                  "[sessions.policy]", "connect_timeout = 1.0", "base_delay = 0.2", 'max_retries = "forever"']
    lines += ["[[sessions]]", 'id = "hog"', 'backend = "hog"',
              "[sessions.policy]", "connect_timeout = 5.0", "max_retries = 0"]
    for i in range(10):
        lines += ["[[sessions]]", f'id = "ok-{i}"', 'backend = "scripted"', "options = { drop_after = 1.0 }",
                  "[sessions.policy]", "base_delay = 0.1", "max_delay = 0.5", "stable_after = 0",
                  'max_retries = "forever"']
    config = tmp_path / "tether.toml"
    config.write_text("\n".join(lines) + "\n[store]\nflush_interval = 0.2\n")
    return config


def test_a_misbehaving_plugin_cannot_wedge_the_daemon(tmp_path: Path) -> None:
    site = install_plugin(tmp_path / "site", "tether-stubborn", "0.1", "tether_stubborn", PLUGIN,
                          {"stuck": "StuckBackend", "hog": "HogBackend"})
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    state = tmp_path / "state"
    daemon = Daemon(state, _config(tmp_path), env=env)
    try:
        daemon.start()
        plugins = json.loads(daemon.cli("plugins", "--json").stdout)
        assert {("stuck", "tether-stubborn"), ("hog", "tether-stubborn")} <= {
            (p["name"], p["distribution"]) for p in plugins["loaded"]
        }
        sessions = wait_for(lambda: (s := daemon.sessions()) and all(
            s[f"ok-{i}"]["episodes_total"] >= 3 for i in range(10)) and s, timeout=60,
            what="healthy sessions to recover again and again")
        assert all(sessions[f"stuck-{i:02d}"]["status"] in ("reconnecting", "backing-off") for i in range(50))
        saved = {sid: row["saved_at"] for sid, row in stored_rows(state).items()}
        wait_for(lambda: (rows := stored_rows(state)) and all(
            rows[f"ok-{i}"]["saved_at"] > saved[f"ok-{i}"] for i in range(10)), what="persistence to keep writing")
        wait_for(lambda: (s := daemon.sessions()) and all(
            s[f"stuck-{i:02d}"]["attempts_failed"] >= 1 for i in range(50)),
            timeout=60, what="every stuck session's attempts to end and be recorded")
        reports = [json.loads(line) for line in daemon.cli(
            "watch", "--json", "--since", "0", "--type", "plugin.misbehaved", "--count", "41").stdout.splitlines()]
        assert {(r["problem"], r["name"], r["distribution"]) for r in reports} == {
            ("stuck", "stuck", "tether-stubborn"), ("blocked-loop", "hog", "tether-stubborn")}
        hog = next(r for r in reports if r["problem"] == "blocked-loop")
        assert hog["session_id"] == "hog" and hog["seconds"] >= 1.5 and "tether_stubborn" in hog["detail"]
        started = time.monotonic()
        reply = control(state, {"id": 1, "op": "unregister", "session_id": "stuck-00"})
        assert reply == {"id": 1, "result": {"session_id": "stuck-00"}}
        assert time.monotonic() - started < 3, "unregister is bounded"
        took = daemon.stop("SIGTERM", timeout=10)
        assert took < 3.5, f"the daemon took {took:.1f}s to stop"
        assert "plugin calls never returned" in daemon.log()
        rows = stored_rows(state)
        assert len(rows) == 60 and "stuck-00" not in rows, "a stop keeps every snapshot; unregister deleted one"
    finally:
        daemon.kill()
