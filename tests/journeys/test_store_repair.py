"""A damaged database has a way forward through the real commands: the daemon refuses it and names
`tether store check` and `tether store repair`; repair keeps the old file and copies every readable row;
the daemon then starts with every session that was readable; `tether store release` saves a kept row
before it deletes it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .daemon import DB_NAME, Daemon, register_over_control, running, stored_rows, tether_command, wait_for

pytestmark = pytest.mark.slow

SESSIONS = 60
PAGE = 4096


def _tables() -> list[dict[str, object]]:
    # a long target spreads the rows over many pages, so damage to a few pages costs only some rows
    return [{"id": f"r{i:02d}", "backend": "scripted", "options": {"target": f"host-{i:02d}." + "x" * 1500}}
            for i in range(SESSIONS)]


def _damage_middle(path: Path) -> bytes:
    """Overwrite two pages in the middle of the sessions table, as a bad disk would; the file's bytes after."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = [page for (page,) in conn.execute("SELECT pageno FROM dbstat WHERE name = 'sessions' AND "
                                              "pagetype = 'leaf' ORDER BY pageno")]
    conn.close()
    data = bytearray(path.read_bytes())
    for page in pages[len(pages) // 2 : len(pages) // 2 + 2]:
        data[(page - 1) * PAGE + 8 : page * PAGE - 8] = b"\xde\xad" * ((PAGE - 16) // 2)
    path.write_bytes(bytes(data))
    return bytes(data)


def test_a_damaged_database_is_refused_repaired_and_restored(tmp_path: Path) -> None:
    """Corrupt the file: the daemon refuses with the commands to run, repair keeps the old file,
    and the next start restores every readable session (and only those)."""
    state = tmp_path / "state"
    with running(state, None) as daemon:
        daemon.start()
        register_over_control(state, _tables())
        wait_for(lambda: len(stored_rows(state)) == SESSIONS, what="every session to be stored")
        daemon.stop("SIGTERM")
        damaged = _damage_middle(state / DB_NAME)

        refused = Daemon(state, None)
        refused.start(wait_ready=False)
        assert refused.wait_exit(timeout=30) == 1
        log = refused.log()
        assert "is corrupt" in log and "Traceback" not in log, log
        assert "Run `tether store check` to see what is wrong, then `tether store repair`" in log, log

        check = tether_command("store", "check", state=state)
        assert check.returncode == 1 and "corrupt" in check.stdout and "tether store repair" in check.stdout

        repair = tether_command("store", "repair", "--json", state=state, check=True)
        report = json.loads(repair.stdout)
        assert Path(report["moved_to"]).read_bytes() == damaged, "the old file is kept as it was"
        assert report["unreadable_tables"] == [] and 0 < report["lost"] < SESSIONS // 2
        readable = set(stored_rows(state))
        assert len(readable) == report["copied"] >= SESSIONS // 2
        assert f"r{SESSIONS - 1:02d}" in readable, "rows past the damage are copied too"
        assert tether_command("store", "check", state=state).stdout.startswith(f"{state / DB_NAME}: ok, ")

        daemon.start()
        restored = daemon.sessions()
        assert set(restored) == readable, "every readable session, and only those"
        assert all(s["status"] == "connected" for s in restored.values())


def test_a_kept_row_is_listed_by_check_and_released_only_with_the_daemon_stopped(tmp_path: Path) -> None:
    """A row written by a newer tether is kept aside; check (beside the daemon) names it and the
    release command; release refuses under the daemon, then saves the row and deletes it."""
    state = tmp_path / "state"
    with running(state, None) as daemon:
        daemon.start()
        register_over_control(state, _tables()[:3])
        wait_for(lambda: len(stored_rows(state)) == 3, what="the sessions to be stored")
        daemon.stop("SIGTERM")
        conn = sqlite3.connect(state / DB_NAME)
        newer = conn.execute("SELECT body FROM sessions WHERE id = 'r01'").fetchone()[0]
        conn.execute("UPDATE sessions SET schema = 99 WHERE id = 'r01'")
        conn.commit()
        conn.close()

        daemon.start()
        assert set(daemon.sessions()) == {"r00", "r02"}
        check = tether_command("store", "check", state=state)
        assert check.returncode == 0, check.stdout
        assert "1 kept aside as unreadable" in check.stdout and "  r01: " in check.stdout
        assert "`tether store release r01`" in check.stdout
        busy = tether_command("store", "release", "r01", state=state)
        assert busy.returncode == 1 and "stop the daemon first" in busy.stderr
        daemon.stop("SIGTERM")

        released = json.loads(tether_command("store", "release", "r01", "--json", state=state, check=True).stdout)
        saved = json.loads(Path(released["released"]["r01"]).read_text())
        assert (saved["schema"], saved["body"]) == (99, newer)
        assert set(stored_rows(state)) == {"r00", "r02"}
        assert tether_command("store", "check", state=state).stdout.strip().endswith("ok, 2 session rows")
