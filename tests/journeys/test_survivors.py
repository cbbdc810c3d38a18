"""No program runs twice: a program that outlived a killed daemon is adopted (tmux) or ended, and said so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tether.testing import require_peer

from .daemon import kill_marked, proc_alive, processes_with_env, running, stored_rows, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> object:
    yield
    kill_marked("TETHER_TEST_MARK", tmp_path.name)

SESSIONS = 5
STUBBORN = "trap '' HUP; while :; do sleep 0.2; done"


def _config(tmp_path: Path, marker: str, *, persist: str) -> Path:
    lines = []
    for i in range(SESSIONS):
        lines += [
            "[[sessions]]", f'id = "p{i}"', 'backend = "process"',
            f'options = {{ argv = ["sh", "-c", "{STUBBORN}"], persist = "{persist}", '
            f'env = {{ TETHER_TEST_MARK = "{marker}-{i}" }} }}',
        ]
    config = tmp_path / "tether.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _pids(daemon: object) -> dict[str, int]:
    sessions = daemon.sessions()  # type: ignore[attr-defined]
    return {sid: int(s["preserved"]["extra"]["pid"]) for sid, s in sessions.items()
            if s["status"] == "connected" and s.get("preserved") and s["preserved"]["extra"].get("pid")}


def _stored_pids(state: Path) -> dict[str, int]:
    """The pids the database holds (the write-behind store is at most flush_interval behind)."""
    found = {}
    for sid, body in stored_rows(state).items():
        preserved = body["state"].get("preserved") or {}
        pid = preserved.get("extra", {}).get("pid")
        if pid:
            found[sid] = int(pid)
    return found


def _survivor_events(daemon: object) -> list[dict[str, object]]:
    result = daemon.cli("watch", "--json", "--since", "0", "--type", "session.survivor",  # type: ignore[attr-defined]
                        "--count", str(SESSIONS), timeout=30)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_program_that_ignores_sighup_is_ended_before_a_new_one_starts(tmp_path: Path) -> None:
    """kill -9 leaves SIGHUP-proof programs behind; the next start ends each one and starts exactly one new."""
    state = tmp_path / "state"
    marker = tmp_path.name
    with running(state, _config(tmp_path, marker, persist="none")) as daemon:
        daemon.start()
        before = wait_for(lambda: len(_pids(daemon)) == SESSIONS and _pids(daemon), what="every program to run")
        wait_for(lambda: _stored_pids(state) == before, what="the snapshots to hold the pids")
        daemon.stop("SIGKILL")
        assert all(proc_alive(pid) for pid in before.values()), "the programs should have outlived the daemon"
        daemon.start()
        after = wait_for(lambda: len(_pids(daemon)) == SESSIONS and _pids(daemon), what="new programs")
        events = _survivor_events(daemon)
        assert sorted((e["session_id"], e["pid"], e["action"]) for e in events) == sorted(
            (sid, pid, "ended") for sid, pid in before.items()
        )
        assert not any(proc_alive(pid) for pid in before.values())
        for i in range(SESSIONS):
            copies = processes_with_env("TETHER_TEST_MARK", f"{marker}-{i}", comm="sh")
            assert copies == [after[f"p{i}"]], "one program each"
        daemon.stop("SIGTERM")
        assert not any(proc_alive(pid) for pid in after.values()), "a clean stop ends the programs"


def test_a_tmux_kept_program_is_adopted_with_its_pid(tmp_path: Path) -> None:
    """With persist = "tmux" the same program continues across kill -9 and a clean stop, never doubled."""
    require_peer(shutil.which("tmux") is not None, "tmux is not installed")
    state = tmp_path / "state"
    marker = tmp_path.name
    with running(state, _config(tmp_path, marker, persist="tmux")) as daemon:
        daemon.start()
        first = wait_for(lambda: len(_pids(daemon)) == SESSIONS and _pids(daemon), what="every program to run")
        wait_for(lambda: _stored_pids(state) == first, what="the snapshots to hold the pids")
        for how in ("SIGKILL", "SIGTERM", "SIGINT"):
            daemon.stop(how)
            assert all(proc_alive(pid) for pid in first.values()), f"tmux keeps the programs through {how}"
            daemon.start()
            again = wait_for(lambda: len(_pids(daemon)) == SESSIONS and _pids(daemon), what="re-attached")
            assert again == first, f"the same programs continue after {how}"
            for i in range(SESSIONS):
                assert processes_with_env("TETHER_TEST_MARK", f"{marker}-{i}", comm="sh") == [first[f"p{i}"]]
        events = _survivor_events(daemon)
        assert {(e["session_id"], e["action"]) for e in events} == {(f"p{i}", "adopted") for i in range(SESSIONS)}
