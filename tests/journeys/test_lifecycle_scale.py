"""100 shells through the real daemon: start, cd each somewhere, SIGTERM, start, kill -9, start.

After each start every session is back, connected, its new shell in the
directory the old one was in (read in /proc, not only in the status), and no
shell runs twice (one live program per session in /proc). The seconds from
``tether run`` to every shell back in its directory are printed (``-s``) as
the restore figure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import trio

from tether import open_client

from .daemon import Daemon, kill_marked, proc_cwd, processes_by_mark, stored_rows, wait_for

pytestmark = pytest.mark.slow

SESSIONS = 100
STUBBORN = 10
"""The first ten shells ignore SIGHUP (and the end of their input): they outlive a killed daemon
and must not run twice."""
STUBBORN_SHELL = "trap '' HUP; while :; do read -r line && eval \\\"$line\\\"; sleep 0.1; done"
MARK = "TETHER_TEST_MARK"


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> object:
    yield
    kill_marked(MARK, tmp_path.name)


def _config(tmp_path: Path) -> Path:
    lines = []
    for i in range(SESSIONS):
        argv = f'["sh", "-c", "{STUBBORN_SHELL}"]' if i < STUBBORN else '["sh"]'
        lines += [
            "[[sessions]]", f'id = "sh{i:03d}"', 'backend = "process"',
            f'options = {{ argv = {argv}, env = {{ {MARK} = "{tmp_path.name}-{i:03d}" }} }}',
            "[sessions.policy]", "health_check_interval = 0.5", "base_delay = 0.1", "max_delay = 0.5",
        ]
    config = tmp_path / "tether.toml"
    config.write_text("\n".join(lines) + "\n[store]\nflush_interval = 0.2\n")
    return config


def _cd_everywhere(state: Path, places: dict[str, Path]) -> None:
    """Type ``cd DIR`` into every shell over one /control connection, as a program driving tether would."""

    async def send() -> None:
        with trio.fail_after(30):
            async with open_client(state_dir=state) as client:
                for sid, place in places.items():
                    await client.send(sid, text=f"cd {place}\n")

    trio.run(send)


def _shells_in_place(tmp_path: Path, places: dict[str, Path], old: set[int]) -> dict[str, int] | None:
    """Session id -> its one shell's pid, when every session has exactly one, in its directory, and
    none is one of the `old` run's (a survivor tether has not yet ended is in its directory too)."""
    by_mark = processes_by_mark(MARK, tmp_path.name)
    pids = {}
    for sid, place in places.items():
        found = by_mark.get(f"{tmp_path.name}-{sid[2:]}", [])
        if len(found) != 1 or found[0] in old or proc_cwd(found[0]) != str(place):
            return None
        pids[sid] = found[0]
    return pids


def _restore(
    daemon: Daemon, tmp_path: Path, places: dict[str, Path], old: dict[str, int]
) -> tuple[float, dict[str, int]]:
    started = time.monotonic()
    daemon.start()
    pids = wait_for(lambda: _shells_in_place(tmp_path, places, set(old.values())), timeout=40, interval=0.05,
                    what="every shell back in its directory")
    took = time.monotonic() - started
    sessions = daemon.sessions()
    assert set(sessions) == set(places)
    assert all(s["status"] == "connected" and s["preserved"]["cwd"] == str(places[sid])
               for sid, s in sessions.items()), "status shows each session connected, in its directory"
    return took, pids


def test_a_hundred_shells_keep_their_directory_across_sigterm_and_kill_9(tmp_path: Path) -> None:
    state = tmp_path / "state"
    places = {f"sh{i:03d}": tmp_path / "places" / f"d{i:03d}" for i in range(SESSIONS)}
    for place in places.values():
        place.mkdir(parents=True)
    daemon = Daemon(state, _config(tmp_path))
    try:
        daemon.start()
        wait_for(lambda: len(processes_by_mark(MARK, tmp_path.name)) == SESSIONS, timeout=40,
                 what="every shell to start")
        _cd_everywhere(state, places)
        first = wait_for(lambda: _shells_in_place(tmp_path, places, set()), what="every shell to change directory")
        wait_for(lambda: (rows := stored_rows(state)) and len(rows) == SESSIONS and all(
            (rows[sid]["state"].get("preserved") or {}).get("cwd") == str(place) for sid, place in places.items()),
            what="every directory to be stored")

        assert daemon.stop("SIGTERM") < 5
        assert len(stored_rows(state)) == SESSIONS, "a clean stop keeps every row"
        assert not processes_by_mark(MARK, tmp_path.name), "a clean stop ends every shell"
        after_term, second = _restore(daemon, tmp_path, places, first)

        daemon.stop("SIGKILL")
        assert len(stored_rows(state)) == SESSIONS
        survivors = wait_for(lambda: (left := processes_by_mark(MARK, tmp_path.name)) and len(left) == STUBBORN
                             and left, what="the shells that ignore SIGHUP to be the only ones left")
        assert set(survivors) == {f"{tmp_path.name}-{i:03d}" for i in range(STUBBORN)}
        after_kill, third = _restore(daemon, tmp_path, places, second)
        left = processes_by_mark(MARK, tmp_path.name)
        assert len(left) == SESSIONS and all(pids == [third[f"sh{mark[-3:]}"]] for mark, pids in left.items()), (
            "one shell each, none doubled, no survivor kept beside a new one")
        lines = daemon.cli("watch", "--json", "--since", "0", "--type", "session.survivor", "--count", str(STUBBORN),
                           timeout=30).stdout.splitlines()
        assert sorted((e["session_id"], e["pid"], e["action"]) for e in map(json.loads, lines)) == sorted(
            (f"sh{i:03d}", second[f"sh{i:03d}"], "ended") for i in range(STUBBORN)), "each survivor said so"
        print(f"\nrestore of {SESSIONS} shells to their directories: {after_term:.2f} s after SIGTERM, "
              f"{after_kill:.2f} s after kill -9 (from `tether run` to every shell in place, in /proc)")
        daemon.stop("SIGTERM")
    finally:
        daemon.kill()
