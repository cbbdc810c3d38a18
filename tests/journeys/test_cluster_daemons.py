"""Two `tether run` daemons sharing sessions through a real PostgreSQL, driven as a user would.

Same config on both (``[store] url``, 20 scripted sessions, lease_ttl 3 s),
separate state directories. They split the sessions; kill -9 of one: the
other supervises all of them again within ttl + poll + a claim; starting it
again rebalances; SIGTERM stops both cleanly and leaves every session free
in the database with its snapshot.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .daemon import Daemon, running, wait_for

pytestmark = pytest.mark.slow

SESSIONS = 20
TTL = 3.0
BOUND = TTL + TTL / 6 + 2.0  # ttl + poll + one claim on a loaded 2-core machine


def _config(tmp_path: Path, url: str) -> Path:
    lines = ["[store]", f'url = "{url}"', f"lease_ttl = {TTL}", "flush_interval = 0.2", ""]
    for i in range(SESSIONS):
        lines += ["[[sessions]]", f'id = "s{i:02d}"', 'backend = "scripted"', ""]
    config = tmp_path / "tether.toml"
    config.write_text("\n".join(lines))
    return config


def _held(daemon: Daemon) -> set[str]:
    return {sid for sid, s in daemon.sessions().items() if s["status"] == "connected"}


def _db(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path TO tether")
        return conn.execute(query).fetchall()


def test_two_daemons_share_sessions_survive_a_kill_and_stop_cleanly(pg_url: str, tmp_path: Path) -> None:
    config = _config(tmp_path, pg_url)
    everything = {f"s{i:02d}" for i in range(SESSIONS)}
    with running(tmp_path / "a", config) as a, running(tmp_path / "b", config) as b:
        a.start()
        b.start()
        wait_for(lambda: len(_held(a)) == 10 and len(_held(b)) == 10, timeout=30, what="10 sessions each")
        assert _held(a) | _held(b) == everything and not _held(a) & _held(b)
        _held_before_kill = _held(b)
        a.stop("SIGKILL")
        killed = time.monotonic()
        wait_for(lambda: _held(b) == everything, timeout=3 * BOUND, what="b to supervise all 20", interval=0.05)
        took = time.monotonic() - killed
        assert took <= BOUND, f"takeover took {took:.1f}s > {BOUND}s"
        taken = sorted(everything - _held_before_kill)
        filters = [arg for sid in taken for arg in ("--session", sid)]
        moved = b.cli("watch", "--json", "--type", "session.moved", "--since", "0", "--count", "10", *filters)
        events = [json.loads(line) for line in moved.stdout.splitlines()]
        assert sorted(e["session_id"] for e in events) == taken
        assert len({e["from_node"] for e in events}) == 1, "all moved from the killed daemon's node"
        assert "moved here from node" in b.log()
        cluster = json.loads(b.cli("status", "--cluster", "--json", "--store-url", pg_url).stdout)
        live = [n for n in cluster["nodes"] if n["state"] == "live"]
        assert len(live) == 1 and live[0]["sessions"] == SESSIONS
        assert {row["owner"] for row in cluster["sessions"]} == {live[0]["node"]}
        assert {e["to_node"] for e in events} == {live[0]["node"]}
        a.start()
        wait_for(lambda: len(_held(a)) == 10 and len(_held(b)) == 10, timeout=30, what="rebalanced after restart")
        assert b.stop("SIGTERM") < 10 and a.stop("SIGTERM") < 10
    assert _db(pg_url, "SELECT count(*), count(owner), count(body) FROM sessions") == [(SESSIONS, 0, SESSIONS)]
    ended = _db(pg_url, "SELECT ended, count(*) FROM nodes GROUP BY ended ORDER BY ended")
    assert ended == [("expired", 1), ("stopped", 2)], "the killed node expired; the two stopped cleanly"
