"""Cluster benchmark: 3 tether processes sharing sessions through a real PostgreSQL.

    python benchmarks/cluster.py [--sessions 3000] [--ttl 3]

Starts its own PostgreSQL (Debian's, fsync on, as a real deployment would
run it), three ``tether.testing.cluster_node`` processes (the coordinator
driving the stand-in member with scripted sessions, 20% of them changing per
second), waits until they are balanced, measures the database's write rate,
SIGKILLs one and measures how long until each of its sessions is supervised
again (from the machine-wide CLOCK_MONOTONIC supervision logs). Then, in the
same run, the cost per session of the fenced PostgreSQL write against SQLite
alone (the same batches, one process), and the lease's background queries.

The machine has 2 cores shared with other work: the figures carry the load
average seen at the start and end so a loaded run is visible as such.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from tether import SessionSnapshot, SessionSpec, SessionState, SessionStatus
from tether.cluster import _sql
from tether.store._pg_schema import migrate_url
from tether.store._postgres import PostgresStore
from tether.store._sqlite import SqliteStore
from tether.testing._cluster import machine_clock, overlaps, read_log, supervision_intervals
from tether.testing._postgres import postgres_missing_reason, running_postgres


def _load() -> float:
    return os.getloadavg()[0]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _held(out: Path) -> int:
    statuses = [line["status"] for line in _lines(out) if "status" in line]
    return statuses[-1]["held"] if statuses else 0


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def _declare(url: str, count: int) -> None:
    import psycopg

    from tether.store._codec import encode_spec

    rows = [_sql.Declared(f"s{i:06d}", "scripted", encode_spec(SessionSpec(id=f"s{i:06d}", backend="scripted"), ()),
                          None) for i in range(count)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path TO tether")
        _sql.declare(conn, rows)


def _snapshot(i: int) -> SessionSnapshot:
    spec = SessionSpec(id=f"s{i:06d}", backend="scripted")
    state = SessionState(id=spec.id, backend="scripted", target="scripted", status=SessionStatus.CONNECTED,
                         status_since=1.0, episode=None, history=(), preserved=None, last_disconnect=None,
                         connected_at=1.0, next_attempt_at=None, episodes_total=0, episodes_recovered=0,
                         episodes_failed=0)
    return SessionSnapshot(spec=spec, state=state, saved_at=time.time())


async def _store_cost(url: str, root: Path, sessions: int, rounds: int = 5) -> dict[str, float]:
    """µs per session of one batched write: SQLite alone, PostgreSQL with fences and the lease check,
    and PostgreSQL without them (rows nobody owns), so the fence's own cost shows as the difference."""
    snaps = [_snapshot(i) for i in range(sessions)]
    sqlite = SqliteStore(root / "bench.sqlite3")
    await sqlite.open()
    pg = PostgresStore(url)
    await pg.open()
    fences: dict[str, int] = {}

    def claim_all(conn: Any) -> int:
        node = _sql.register_node(conn, "bench", os.getpid(), 600.0)
        conn.execute("DELETE FROM sessions WHERE session_id LIKE 's%%'")
        rows = [_sql.Declared(s.spec.id, "scripted", "{}", None) for s in snaps]
        _sql.declare(conn, rows)
        for claimed in _sql.claim(conn, node, "bench", limit=sessions, pinned=False, skip=[]):
            fences[claimed.session_id] = claimed.fence
        return node

    node = await pg.connection.run(claim_all)

    class Guard:
        def writer(self) -> int:
            return node

        def fenced(self, session_ids: frozenset[str]) -> None:
            raise AssertionError(f"fenced in a benchmark: {sorted(session_ids)[:3]}")

    pg.guard = Guard()
    free = [_snapshot(i + sessions) for i in range(sessions)]  # rows nobody owns: the unfenced upsert
    timings: dict[str, list[float]] = {"sqlite": [], "postgres_fenced": [], "postgres_unfenced": []}
    for _ in range(rounds):
        started = time.perf_counter()
        await sqlite.write(snaps)
        timings["sqlite"].append(time.perf_counter() - started)
        started = time.perf_counter()
        result = await pg.write(snaps, fences=fences)
        timings["postgres_fenced"].append(time.perf_counter() - started)
        assert not result.fenced
        started = time.perf_counter()
        result = await pg.write(free)
        timings["postgres_unfenced"].append(time.perf_counter() - started)
        assert not result.fenced
    await sqlite.aclose()
    await pg.aclose()
    best = {name: min(values) for name, values in timings.items()}
    return {
        "batch": sessions,
        "sqlite_us_per_session": best["sqlite"] / sessions * 1e6,
        "postgres_fenced_us_per_session": best["postgres_fenced"] / sessions * 1e6,
        "postgres_unfenced_us_per_session": best["postgres_unfenced"] / sessions * 1e6,
        "ratio_postgres_to_sqlite": best["postgres_fenced"] / best["sqlite"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=3000, help="sessions in the cluster (shared by 3 nodes)")
    parser.add_argument("--ttl", type=float, default=3.0)
    parser.add_argument("--poll", type=float, default=0.5)
    parser.add_argument("--steady", type=float, default=5.0, help="seconds of steady state measured")
    parser.add_argument("--churn", type=float, default=0.2, help="fraction of sessions changing per second")
    parser.add_argument("--balance-timeout", type=float, default=600.0)
    parser.add_argument("--claim-batch", type=int, default=500)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    reason = postgres_missing_reason()
    if reason:
        print(f"cluster benchmark skipped: {reason}")
        return
    figures: dict[str, Any] = {"sessions": args.sessions, "nodes": 3, "ttl": args.ttl, "poll": args.poll,
                               "churn": args.churn,
                               "load_at_start": _load()}
    with running_postgres(fast=False) as pg, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = pg.create_database("bench")
        migrate_url(url, "tether")
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            _measure(args, figures, url, root, procs)
        finally:
            for process in procs.values():  # never leave a node behind, whatever failed
                if process.poll() is None:
                    process.kill()
                    process.wait()
        figures["store_cost"] = trio.run(_store_cost, url, root, min(args.sessions, 5000))
    figures["load_at_end"] = _load()
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


def _measure(args: argparse.Namespace, figures: dict[str, Any], url: str, root: Path,
             procs: dict[str, subprocess.Popen[bytes]]) -> None:
    started = time.monotonic()
    for name in "abc":
        command = [sys.executable, "-m", "tether.testing.cluster_node", "--url", url, "--name", name,
                   "--host", name, "--log", str(root / f"{name}.log"), "--ttl", str(args.ttl),
                   "--poll", str(args.poll), "--report", "0.5", "--churn", str(args.churn),
                   "--flush-interval", "0.5", "--claim-batch", str(args.claim_batch)]
        with open(root / f"{name}.out", "wb") as out:
            procs[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
    for out in (root / f"{name}.out" for name in procs):
        _wait(lambda out=out: any("ready" in line for line in _lines(out)), 60, f"{out.stem} to join")
    _declare(url, args.sessions)  # after all three joined: they claim side by side, nobody sheds
    figures["seconds_to_start"] = time.monotonic() - started
    share = -(-args.sessions // 3)

    def balanced() -> bool:  # every session held, each node within the shedding slack of its share
        held = [_held(root / f"{n}.out") for n in "abc"]
        return sum(held) == args.sessions and all(abs(h - share) <= max(1, share // 10) for h in held)

    _wait(balanced, args.balance_timeout, "balance")
    figures["seconds_to_balance"] = time.monotonic() - started
    figures["held_per_node"] = [_held(root / f"{n}.out") for n in "abc"]

    def rows_written() -> tuple[int, int]:
        total_rows = total_writes = 0
        for n in procs:
            statuses = [line["status"] for line in _lines(root / f"{n}.out") if "status" in line]
            if statuses:
                total_rows += statuses[-1]["rows_written"]
                total_writes += statuses[-1]["writes"]
        return total_rows, total_writes

    rows0, writes0 = rows_written()
    t0 = time.monotonic()
    time.sleep(args.steady)
    rows1, writes1 = rows_written()
    elapsed = time.monotonic() - t0
    figures["db_rows_per_second"] = (rows1 - rows0) / elapsed
    figures["db_transactions_per_second"] = (writes1 - writes0) / elapsed
    statuses = [line["status"] for line in _lines(root / "a.out") if "status" in line]
    coordinator = statuses[-1]["coordinator"]
    figures["lease_queries_per_node_per_second"] = round(1 / (args.ttl / 3) + 2 / args.poll, 2)
    figures["coordinator_rounds_a"] = coordinator["rounds"]
    killed_at = machine_clock()
    procs["b"].send_signal(signal.SIGKILL)
    procs["b"].wait()
    _wait(lambda: _held(root / "a.out") + _held(root / "c.out") == args.sessions, 120, "takeover")
    logs = [root / f"{n}.log" for n in "abc"]
    victims = {e["sid"] for e in read_log([root / "b.log"]) if e["ev"] == "start"} - {
        e["sid"] for e in read_log([root / "b.log"]) if e["ev"] == "stop"}
    taken: dict[str, float] = {}
    for event in read_log(logs):
        if event["ev"] == "start" and event.get("sid") in victims and event["node"] != "b" \
                and event["t"] > killed_at:
            taken.setdefault(event["sid"], event["t"] - killed_at)
    delays = sorted(taken.values())
    figures["killed_sessions"] = len(victims)
    figures["takeover_first_s"] = delays[0]
    figures["takeover_p50_s"] = delays[len(delays) // 2]
    figures["takeover_worst_s"] = delays[-1]
    figures["ttl_plus_poll_s"] = args.ttl + args.poll  # the bound before the claim itself
    figures["overlaps"] = len(overlaps(supervision_intervals(logs, ended={"b": killed_at})))
    for name in "ac":
        procs[name].send_signal(signal.SIGTERM)
    for name in "ac":
        procs[name].wait(60)


if __name__ == "__main__":
    main()
