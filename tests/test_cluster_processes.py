"""Several real processes sharing sessions through a real PostgreSQL: kill, freeze, restart, clean stop.

Each node is ``python -m tether.testing.cluster_node`` (a `Coordinator` driving
the `StandInMember`, scripted sessions, snapshots written with fences). Every
start and stop of supervision is logged with CLOCK_MONOTONIC, which is one
clock for the whole machine, so the logs of all nodes are merged and compared
for overlaps. A trigger installed by the test records every write the
database accepted, with the row's fence at that moment: a stale write would
show as a written fence older than the row's, or a fence going backwards.

Timing: ttl 3 s, renewals every 1 s, poll 0.5 s. The takeover bound asserted
after a SIGKILL is ttl + poll + CLAIM_SECONDS, where CLAIM_SECONDS (2 s)
covers one claim round and registering 500 sessions on this 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest

from tether.rules._cluster import LeaseTiming
from tether.store._pg_schema import migrate_url
from tether.testing._cluster import machine_clock, overlaps, read_log, supervision_intervals
from tether.testing._postgres import PostgresServer

from .journeys.daemon import wait_for

pytestmark = pytest.mark.slow

TIMING = LeaseTiming(ttl=3.0, poll=0.5)
CLAIM_SECONDS = 2.0
"""Allowance for one claim round (claim + register 500 sessions) on a loaded 2-core machine."""
TAKEOVER_BOUND = TIMING.ttl + TIMING.poll_every + CLAIM_SECONDS

_AUDIT = """
CREATE TABLE audit (
    id bigserial PRIMARY KEY, session_id text NOT NULL, written_fence bigint, fence bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION audit_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.body IS DISTINCT FROM OLD.body OR NEW.written_at IS DISTINCT FROM OLD.written_at THEN
        INSERT INTO audit (session_id, written_fence, fence) VALUES (NEW.session_id, NEW.written_fence, NEW.fence);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_write AFTER UPDATE ON sessions FOR EACH ROW EXECUTE FUNCTION audit_write();
"""


def balanced(held: dict[str, int], total: int) -> bool:
    """Every session held, each node within the shedding slack (a tenth) of its fair share."""
    share = -(-total // len(held)) if held else 0
    return sum(held.values()) == total and all(abs(count - share) <= max(1, share // 10) for count in held.values())


def sql(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path TO tether")
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


@attrs.define
class Node:
    name: str
    process: subprocess.Popen[bytes]
    out: Path
    log: Path
    err: Path

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def status(self) -> dict[str, Any] | None:
        statuses = [line["status"] for line in self.lines() if "status" in line]
        return statuses[-1] if statuses else None

    def held(self) -> int:
        status = self.status()
        return status["held"] if status is not None else 0

    def signal(self, signum: int) -> float:
        """Send `signum`; returns the machine-wide time it was sent."""
        now = machine_clock()
        self.process.send_signal(signum)
        return now


@attrs.define
class Cluster:
    url: str
    root: Path
    nodes: dict[str, Node] = attrs.field(factory=dict)

    def start(self, name: str, *args: str, declare: int = 0, ttl: float = TIMING.ttl) -> Node:
        out, log, err = (self.root / f"{name}.{ext}" for ext in ("out", "log", "err"))
        command = [
            sys.executable, "-m", "tether.testing.cluster_node", "--url", self.url, "--name", name,
            "--host", name, "--log", str(log), "--ttl", str(ttl), "--poll", str(TIMING.poll_every),
            "--report", "0.25", "--declare", str(declare), "--log-level", "info", *args,
        ]
        with open(out, "wb") as stdout, open(err, "ab") as stderr:
            process = subprocess.Popen(command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        node = self.nodes[name] = Node(name, process, out, log, err)
        wait_for(lambda: any("ready" in line for line in node.lines()) or process.poll() is not None,
                 timeout=60, what=f"node {name} to join")
        assert process.poll() is None, f"node {name} died: {err.read_text()[-2000:]}"
        return node

    def logs(self) -> list[Path]:
        return [node.log for node in self.nodes.values() if node.log.exists()]

    def held(self) -> dict[str, int]:
        return {name: node.held() for name, node in self.nodes.items() if node.process.poll() is None}

    def stop_all(self) -> None:
        for node in self.nodes.values():
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            try:
                node.process.wait(30)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    sql(pg_url, _AUDIT)
    running = Cluster(pg_url, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


def assert_no_stale_write_was_accepted(url: str) -> None:
    """Every accepted write carried the row's fence at that moment, and no session's fence went back."""
    stale = sql(url, "SELECT count(*) FROM audit WHERE written_fence IS DISTINCT FROM fence")
    assert stale == [(0,)], "the database accepted a write with an older fence"
    backwards = sql(url, """
        SELECT count(*) FROM (
            SELECT written_fence < lag(written_fence) OVER (PARTITION BY session_id ORDER BY id) AS back
            FROM audit) w WHERE back""")
    assert backwards == [(0,)]
    assert sql(url, "SELECT count(*) > 0 FROM audit") == [(True,)], "no write was audited at all"


def held_in_log(log: Path, *, before: float) -> set[str]:
    """Sessions a node's log shows it supervising at time `before`."""
    held: set[str] = set()
    for event in read_log([log]):
        if event["t"] >= before or "sid" not in event:
            continue
        if event["ev"] == "start":
            held.add(event["sid"])
        elif event["ev"] == "stop":
            held.discard(event["sid"])
    return held


def takeover_seconds(logs: list[Path], victim: str, killed_at: float) -> dict[str, float]:
    """For each session the victim held when killed: seconds until another node started it."""
    held: set[str] = set()
    for event in read_log(logs):
        if event["node"] != victim or "sid" not in event:
            continue
        if event["ev"] == "start":
            held.add(event["sid"])
        elif event["ev"] == "stop":
            held.discard(event["sid"])
    taken: dict[str, float] = {}
    for event in read_log(logs):
        sid = event.get("sid")
        if event["ev"] == "start" and event["node"] != victim and sid in held and sid not in taken \
                and event["t"] > killed_at:
            taken[sid] = event["t"] - killed_at
    missing = held - set(taken)
    assert not missing, f"{len(missing)} sessions of {victim} were never taken over"
    return taken


def test_three_processes_share_3000_sessions_and_a_kill_is_taken_over_in_bound(cluster: Cluster) -> None:
    cluster.start("a", declare=3000)
    cluster.start("b")
    cluster.start("c")
    wait_for(lambda: balanced(cluster.held(), 3000), timeout=60, what="3,000 sessions balanced over 3 nodes")
    time.sleep(1.0)  # snapshots flowing on every node
    killed_at = cluster.nodes["b"].signal(signal.SIGKILL)
    cluster.nodes["b"].process.wait()
    wait_for(lambda: sum(cluster.held().values()) == 3000, timeout=3 * TAKEOVER_BOUND,
             what="the killed node's sessions supervised again")
    taken = takeover_seconds(cluster.logs(), "b", killed_at)
    assert len(taken) == 1000
    worst = max(taken.values())
    assert worst <= TAKEOVER_BOUND, f"takeover took {worst:.2f}s > ttl + poll + claim = {TAKEOVER_BOUND}s"
    print(f"takeover of 1000 sessions: worst {worst:.2f}s, bound {TAKEOVER_BOUND}s")
    intervals = supervision_intervals(cluster.logs(), ended={"b": killed_at})
    assert overlaps(intervals) == []
    owners = sql(cluster.url, "SELECT count(DISTINCT owner), count(owner) FROM sessions")
    assert owners == [(2, 3000)]
    cluster.stop_all()
    assert [node.process.returncode for name, node in cluster.nodes.items() if name != "b"] == [0, 0]
    assert sql(cluster.url, "SELECT count(owner) FROM sessions") == [(0,)]
    assert_no_stale_write_was_accepted(cluster.url)


def audit_mark(url: str) -> int:
    return int(sql(url, "SELECT coalesce(max(id), 0) FROM audit")[0][0])


def freeze_past_the_lease(cluster: Cluster, *args: str) -> tuple[Node, float, set[int], int]:
    """Two nodes share 200 sessions; freeze `a` until `b` took them all, then resume it."""
    frozen = cluster.start("a", *args, declare=200)
    cluster.start("b")
    wait_for(lambda: balanced(cluster.held(), 200), timeout=30, what="balance")
    time.sleep(0.5)
    frozen.signal(signal.SIGSTOP)
    old_fences = {e["fence"] for e in read_log([frozen.log]) if e["ev"] == "start"}
    wait_for(lambda: sql(cluster.url, "SELECT count(*) FROM sessions s JOIN nodes n ON s.owner = n.node_id"
                                      " WHERE n.host = 'b'") == [(200,)],
             timeout=4 * TAKEOVER_BOUND, what="b to take over the frozen node's sessions")
    time.sleep(0.5)  # b writes its snapshots with the new fences
    mark = audit_mark(cluster.url)
    resumed_at = frozen.signal(signal.SIGCONT)
    return frozen, resumed_at, old_fences, mark


def test_a_process_frozen_past_its_lease_stops_its_sessions_before_any_write(cluster: Cluster) -> None:
    frozen, resumed_at, old_fences, mark = freeze_past_the_lease(cluster)
    wait_for(lambda: any(e["ev"] == "stop" and e["t"] > resumed_at for e in read_log([frozen.log])),
             timeout=10, what="the resumed node to self-fence")
    time.sleep(1.0)
    after = [e for e in read_log([frozen.log]) if e["t"] > resumed_at]
    first_stop = next(e["t"] for e in after if e["ev"] == "stop")
    stopped = {e["sid"] for e in after if e["ev"] == "stop" and e.get("why") == "fenced"}
    held_when_frozen = held_in_log(frozen.log, before=resumed_at)
    assert stopped == held_when_frozen and len(stopped) >= 90, "every session it held was stopped on resume"
    early_writes = [e for e in after if e["ev"] == "wrote" and e["t"] <= first_stop]
    assert early_writes == [], "it wrote before stopping its sessions"
    print(f"self-fenced {first_stop - resumed_at:.3f}s after SIGCONT")
    stale = sql(cluster.url, "SELECT count(*) FROM audit WHERE written_fence = ANY(%s) AND id > %s",
                (sorted(old_fences), mark))
    assert stale == [(0,)]
    assert_no_stale_write_was_accepted(cluster.url)


def test_without_self_fencing_the_database_rejects_every_stale_write(cluster: Cluster) -> None:
    """The fence alone: a resumed node that does not stop by itself has every write refused."""
    frozen, resumed_at, old_fences, mark = freeze_past_the_lease(cluster, "--no-self-fence")
    wait_for(lambda: any(e["ev"] == "write-fenced" and e["t"] > resumed_at for e in read_log([frozen.log])),
             timeout=10, what="the resumed node to try a stale write")
    after = [e for e in read_log([frozen.log]) if e["t"] > resumed_at]
    assert not [e for e in after if e["ev"] == "wrote"], "a stale write was accepted"
    assert sum(e["count"] for e in after if e["ev"] == "write-fenced") >= 1
    accepted_old = sql(cluster.url, "SELECT count(*) FROM audit WHERE written_fence = ANY(%s) AND id > %s",
                       (sorted(old_fences), mark))
    assert accepted_old == [(0,)]
    assert_no_stale_write_was_accepted(cluster.url)


def test_a_clean_stop_hands_sessions_over_within_one_poll(cluster: Cluster) -> None:
    leaving = cluster.start("a", declare=200)
    cluster.start("b")
    wait_for(lambda: balanced(cluster.held(), 200), timeout=30, what="balance")
    stopped_at = leaving.signal(signal.SIGTERM)
    assert leaving.process.wait(30) == 0
    wait_for(lambda: cluster.held().get("b") == 200, timeout=10, what="b to take the released sessions")
    released = {e["sid"]: e["t"] for e in read_log([leaving.log])
                if e["ev"] == "stop" and e["why"] == "released" and e["t"] > stopped_at}
    started: dict[str, float] = {}
    for e in read_log([cluster.nodes["b"].log]):
        if e["ev"] == "start" and e["sid"] in released and e["t"] > released[e["sid"]]:
            started.setdefault(e["sid"], e["t"])
    assert len(released) >= 90 and set(started) == set(released)
    gaps = [started[sid] - released[sid] for sid in released]
    bound = TIMING.poll_every + 1.0  # one poll, plus the release transaction and one claim of 100
    assert max(gaps) <= bound, f"hand-over gap {max(gaps):.2f}s > {bound}s"
    print(f"hand-over gap: worst {max(gaps):.3f}s, bound {bound}s")
    assert overlaps(supervision_intervals(cluster.logs())) == []
    assert_no_stale_write_was_accepted(cluster.url)




def test_postgres_restarted_under_load(own_postgres: PostgresServer, tmp_path: Path) -> None:
    """No crash, no lost session, no double supervision; writes resume after the reconnect."""
    url = own_postgres.create_database("t_restart_load")
    migrate_url(url, "tether")
    cluster = Cluster(url, tmp_path)
    try:
        cluster.start("a", "--churn", "1.0", declare=600, ttl=5.0)
        cluster.start("b", "--churn", "1.0", ttl=5.0)
        wait_for(lambda: balanced(cluster.held(), 600), timeout=30, what="balance")
        before = {name: node.status()["rows_written"] for name, node in cluster.nodes.items()}  # type: ignore[index]
        own_postgres.restart()
        wait_for(lambda: all(node.status()["rows_written"] > before[name] + 300  # type: ignore[index]
                             for name, node in cluster.nodes.items()), timeout=30, what="writes after the restart")
        wait_for(lambda: sum(cluster.held().values()) == 600, timeout=30, what="every session supervised")
        assert all(node.process.poll() is None for node in cluster.nodes.values()), "a node crashed"
        failures = [node.status()["write_failures"] for node in cluster.nodes.values()]  # type: ignore[index]
        assert sum(failures) >= 1, "the restart was not noticed: the test did not test anything"
        assert sql(url, "SELECT count(owner) FROM sessions") == [(600,)]
        assert overlaps(supervision_intervals(cluster.logs())) == []
    finally:
        cluster.stop_all()
    assert [node.process.returncode for node in cluster.nodes.values()] == [0, 0]
    assert os.path.exists(own_postgres.log_path)
