"""Membership, claims and fencing against a real PostgreSQL, in one process (tether.cluster).

The nodes here are `Coordinator`s driving the `StandInMember` of
tether.testing; tests/test_cluster_processes.py runs them as real processes.
Waits are on conditions (the database's state, the member's sessions), bounded.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import trio

import tether
from tether.cluster import _sql
from tether.cluster._coordinator import Coordinator, open_coordinator
from tether.rules._cluster import LeaseTiming
from tether.store._pg_schema import migrate_url
from tether.store._postgres import PostgresStore
from tether.testing import wait_until
from tether.testing._cluster import StandInMember, SupervisionLog, overlaps, session_ids, supervision_intervals
from tether.testing._postgres import PostgresServer

TIMING = LeaseTiming(ttl=2.0, poll=0.2)


def connect(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET search_path TO tether")
    return conn


def sql(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with connect(url) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def specs(count: int, prefix: str = "s") -> list[tether.SessionSpec]:
    return [tether.SessionSpec(id=sid, backend="scripted") for sid in session_ids(count, prefix)]


@asynccontextmanager
async def node(url: str, name: str, log_dir: Any, **options: Any) -> AsyncIterator[tuple[Coordinator, StandInMember]]:
    """One member (scripted sessions, its own store) with its coordinator, in this trio run."""
    store = PostgresStore(url)
    await store.open()
    member = StandInMember(store, log=SupervisionLog(log_dir / f"{name}.log", node=name), flush_interval=0.1)
    options.setdefault("timing", TIMING)
    options.setdefault("host", name)
    async with trio.open_nursery() as nursery:
        await nursery.start(member.run)
        async with open_coordinator(url, member, store=store, **options) as coordinator:
            yield coordinator, member
        nursery.cancel_scope.cancel()  # the member's flusher outlives the clean stop, then ends
    await store.aclose()


def test_leases_expire_and_are_reaped_by_the_database_clock(pg_url: str) -> None:
    """Renewal works while live; once expired by the database's clock it fails; dead is final."""
    with connect(pg_url) as conn:
        me = _sql.register_node(conn, "h", 1, 0.3)
        assert _sql.renew(conn, me, 0.3)
        for _ in range(200):
            if conn.execute("SELECT now() > expires_at FROM nodes WHERE node_id = %s", (me,)).fetchone() == (True,):
                break
            conn.execute("SELECT pg_sleep(0.01)")
        assert not _sql.renew(conn, me, 0.3), "an expired lease was renewed"
        assert _sql.reap(conn) == [me]
        conn.execute("UPDATE nodes SET expires_at = now() + interval '1 hour' WHERE node_id = %s", (me,))
        assert not _sql.renew(conn, me, 0.3), "a dead node came back"
        assert conn.execute("SELECT state, ended FROM nodes").fetchall() == [("dead", "expired")]


def test_concurrent_claims_never_assign_a_session_twice(pg_url: str) -> None:
    """Four claimers on four connections take 2,000 sessions in batches; each is claimed once."""
    with connect(pg_url) as conn:
        rows = [_sql.Declared(s.id, "scripted", "{}", None) for s in specs(2000)]
        assert _sql.declare(conn, rows) == 2000
    got: list[list[_sql.Claimed]] = []
    errors: list[BaseException] = []

    def claimer() -> None:
        try:
            mine: list[_sql.Claimed] = []
            with connect(pg_url) as conn:
                node_id = _sql.register_node(conn, "h", 1, 60.0)
                while batch := _sql.claim(conn, node_id, "h", limit=37, pinned=False, skip=[]):
                    mine += batch
            got.append(mine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    claimed = [c.session_id for mine in got for c in mine]
    fences = [c.fence for mine in got for c in mine]
    assert len(claimed) == 2000 and len(set(claimed)) == 2000
    assert len(set(fences)) == 2000
    assert all(len(mine) > 0 for mine in got)


async def test_two_nodes_balance_then_a_clean_stop_hands_everything_over(pg_url: str, tmp_path: Any) -> None:
    async with node(pg_url, "a", tmp_path) as (a, member_a):
        await a.declare(specs(200))
        async with node(pg_url, "b", tmp_path) as (b, member_b):
            await wait_until(lambda: len(member_a.sessions) == 100 and len(member_b.sessions) == 100, timeout=20)
            before = dict(b.owned)
            handed = dict(a.owned)
            assert set(before).isdisjoint(handed)
        # b stopped cleanly: its sessions were released with their fences, a takes them at its next poll
        await wait_until(lambda: len(member_a.sessions) == 200, timeout=10)
        assert all(a.owned[sid] > fence for sid, fence in before.items())
        assert a.stats.moved_in >= 100
    intervals = supervision_intervals([tmp_path / "a.log", tmp_path / "b.log"])
    assert overlaps(intervals) == []
    rows = sql(pg_url, "SELECT count(*), count(owner), count(body) FROM sessions")
    assert rows == [(200, 0, 200)], "a clean stop leaves every session free and its snapshot written"
    assert sql(pg_url, "SELECT state, ended FROM nodes ORDER BY node_id") == [("dead", "stopped")] * 2


async def test_sessions_of_a_local_backend_stay_on_their_host(pg_url: str, tmp_path: Any) -> None:
    """A pinned session (home = its host) is claimed only there, and not taken over elsewhere."""
    local = {"p000000", "p000001"}

    def movable(spec: tether.SessionSpec) -> bool:
        return spec.id not in local

    async with node(pg_url, "b", tmp_path) as (_b, member_b):
        async with node(pg_url, "a", tmp_path, is_movable=movable) as (a, member_a):
            await a.declare(specs(2, "p") + specs(4, "m"))
            await wait_until(lambda: len(member_a.sessions) + len(member_b.sessions) == 6, timeout=20)
            assert local <= set(member_a.sessions) and not local & set(member_b.sessions)
            assert sql(pg_url, "SELECT session_id, home FROM sessions WHERE home IS NOT NULL ORDER BY 1") == [
                ("p000000", "a"), ("p000001", "a")]
        await wait_until(lambda: len(member_b.sessions) == 4, timeout=10)
        await trio.sleep(3 * TIMING.poll_every)  # b had rounds to take the pinned ones, and did not
        assert set(member_b.sessions) == {f"m00000{i}" for i in range(4)}


async def test_a_stolen_session_is_stopped_before_it_reconnects(pg_url: str, tmp_path: Any) -> None:
    """`confirm` (asked before each reconnect) sees a newer fence and stops the session."""
    async with node(pg_url, "a", tmp_path) as (a, member):
        await a.declare(specs(3))
        await wait_until(lambda: len(member.sessions) == 3, timeout=10)
        with connect(pg_url) as conn:
            thief = _sql.register_node(conn, "elsewhere", 1, 60.0)
            conn.execute("UPDATE sessions SET owner = %s, fence = nextval('fences') WHERE session_id = 's000001'",
                         (thief,))
        answers = [await a.confirm("s000000"), await a.confirm("s000001")]
        assert answers == [True, False]
        assert set(member.sessions) == {"s000000", "s000002"}


async def test_an_unreadable_row_is_quarantined_in_the_database(pg_url: str, tmp_path: Any) -> None:
    """A claimed row whose spec does not decode is handed back marked, kept as it is, and never claimed again."""
    sql(pg_url, "INSERT INTO sessions (session_id, backend, spec) VALUES ('bad', 'scripted', '{\"schema\": 1}')")
    async with node(pg_url, "a", tmp_path) as (a, member):
        await a.declare(specs(1))
        await wait_until(lambda: len(member.sessions) == 1, timeout=10)
        await wait_until(lambda: sql(pg_url, "SELECT owner, problem IS NOT NULL, spec FROM sessions"
                                             " WHERE session_id = 'bad'") == [(None, True, '{"schema": 1}')],
                         timeout=10)
        rounds = a.stats.rounds
        await wait_until(lambda: a.stats.rounds > rounds + 2, timeout=10)
        assert a.stats.quarantined == 1 and set(member.sessions) == {"s000000"}




async def test_a_node_cut_off_from_the_database_self_fences_then_rejoins(own_postgres: PostgresServer,
                                                                         tmp_path: Any) -> None:
    """The database goes away: sessions run until the local deadline, then stop; it comes back: a new
    node id claims them again with newer fences."""
    url = own_postgres.create_database("t_cut_off")
    migrate_url(url, "tether")
    fenced_at: list[float] = []
    async with node(url, "a", tmp_path) as (a, member):
        original: Callable[..., None] = member.fence_lost

        def spy(session_ids: Any) -> None:
            fenced_at.append(a.lease.clock())
            original(session_ids)

        member.fence_lost = spy  # type: ignore[method-assign]
        await a.declare(specs(20))
        await wait_until(lambda: len(member.sessions) == 20, timeout=10)
        first_node, first_fences = a.node_id, dict(a.owned)
        await trio.to_thread.run_sync(own_postgres.kill)
        deadline = a.lease.deadline
        await wait_until(lambda: not member.sessions, timeout=10)
        assert fenced_at and fenced_at[0] >= deadline
        assert fenced_at[0] < deadline + TIMING.stop_margin, "stopped after the database could have expired us"
        await trio.to_thread.run_sync(own_postgres.start)
        await wait_until(lambda: len(member.sessions) == 20, timeout=20)
        assert a.node_id != first_node
        assert all(a.owned[sid] > fence for sid, fence in first_fences.items())
