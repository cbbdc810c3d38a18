"""The PostgreSQL snapshot store against a real PostgreSQL: the store contract, fencing, schema, reconnects."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import trio

import tether
from tether.cluster import _sql
from tether.store._pg_schema import LATEST_VERSION, migrate_url
from tether.store._postgres import PostgresStore, open_postgres_store
from tether.testing._postgres import PostgresServer


def snapshot(sid: str, *, saved_at: float = 1.0, options: dict[str, Any] | None = None,
             cwd: str | None = None) -> tether.SessionSnapshot:
    spec = tether.SessionSpec(id=sid, backend="scripted", options=options or {})
    state = tether.SessionState(
        id=sid, backend="scripted", target="scripted", status=tether.SessionStatus.CONNECTED,
        status_since=saved_at, episode=None, history=(),
        preserved=tether.PreservedState(cwd=cwd) if cwd else None, last_disconnect=None,
        connected_at=saved_at, next_attempt_at=None, episodes_total=0, episodes_recovered=0, episodes_failed=0,
    )
    return tether.SessionSnapshot(spec=spec, state=state, saved_at=saved_at)


def sql(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path TO tether")
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    async with open_postgres_store(pg_url) as opened:
        yield opened


def claim_for_new_node(url: str, sid: str) -> tuple[int, int]:
    """Register a node and claim `sid` for it, as another process would: (node id, fence)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path TO tether")
        node = _sql.register_node(conn, "elsewhere", 1, 60.0)
        conn.execute("UPDATE sessions SET owner = NULL WHERE session_id = %s", (sid,))
        claimed = _sql.claim(conn, node, "elsewhere", limit=1, pinned=False, skip=[])
    assert [c.session_id for c in claimed] == [sid]
    return node, claimed[0].fence


async def test_round_trip_and_one_transaction_per_batch(store: PostgresStore) -> None:
    """2,000 snapshots go in one transaction and come back equal."""
    snaps = [snapshot(f"s{i:04d}", saved_at=float(i), cwd=f"/tmp/{i}") for i in range(2000)]
    assert await store.write(snaps) == tether.WriteResult()
    assert store.stats().writes == 1 and store.stats().rows_written == 2000
    report = await store.load_all()
    assert report.errors == () and list(report.snapshots) == snaps
    await store.write([], ["s0000", "s0001"])
    assert len((await store.load_all()).snapshots) == 1998


async def test_secrets_are_redacted_in_the_database(store: PostgresStore, pg_url: str) -> None:
    """A literal secret in the options never reaches PostgreSQL."""
    await store.write([snapshot("s1", options={"password": "hunter2"})])
    [(body,)] = sql(pg_url, "SELECT body FROM sessions")
    assert "hunter2" not in body and tether.REDACTED in body


async def test_unreadable_rows_are_quarantined_and_kept(store: PostgresStore, pg_url: str) -> None:
    """A row that does not decode is reported, never overwritten or deleted, until released."""
    await store.write([snapshot("good"), snapshot("bad")])
    sql(pg_url, "UPDATE sessions SET body = '{not json' WHERE session_id = 'bad'")
    report = await store.load_all()
    assert [s.session_id for s in report.snapshots] == ["good"]
    assert [e.session_id for e in report.errors] == ["bad"] and store.quarantined == {"bad"}
    await store.write([snapshot("bad", saved_at=9.0)], ["bad"])
    assert sql(pg_url, "SELECT body FROM sessions WHERE session_id = 'bad'") == [("{not json",)]
    assert store.stats().rows_skipped == 2
    store.release(["bad"])
    await store.write([snapshot("bad", saved_at=9.0)])
    assert [s.saved_at for s in (await store.load_all()).snapshots] == [9.0, 1.0]
    assert store.quarantined == set()


async def test_a_bad_snapshot_fails_the_batch_before_the_transaction(store: PostgresStore, pg_url: str) -> None:
    """An unencodable snapshot is a SnapshotError and nothing of the batch is written."""
    bad = snapshot("bad", options={"when": object()})
    with pytest.raises(tether.SnapshotError, match="bad"):
        await store.write([snapshot("ok"), bad])
    assert sql(pg_url, "SELECT count(*) FROM sessions") == [(0,)]


async def test_a_row_of_a_newer_schema_is_left_alone(store: PostgresStore, pg_url: str) -> None:
    await store.write([snapshot("s1")])
    sql(pg_url, "UPDATE sessions SET schema = 99, body = 'future' WHERE session_id = 's1'")
    result = await store.write([snapshot("s1", saved_at=5.0)])
    assert result.fenced == frozenset()
    assert sql(pg_url, "SELECT body FROM sessions") == [("future",)]


async def test_a_stale_fence_is_rejected_after_a_newer_claim(store: PostgresStore, pg_url: str) -> None:
    """The old owner's write loses to a newer claim, in the same statement; the batch's others land."""
    await store.write([snapshot("s1"), snapshot("s2")])
    _node_a, fence_a = claim_for_new_node(pg_url, "s1")
    assert await store.write([snapshot("s1", saved_at=2.0)], fences={"s1": fence_a}) == tether.WriteResult()
    node_b, fence_b = claim_for_new_node(pg_url, "s1")  # taken over: a new node, a newer fence
    assert fence_b > fence_a
    result = await store.write([snapshot("s1", saved_at=3.0), snapshot("s2", saved_at=3.0)], fences={"s1": fence_a})
    assert result.fenced == {"s1"}
    rows = sql(pg_url, "SELECT session_id, saved_at, written_fence, owner FROM sessions ORDER BY 1")
    assert rows == [("s1", 2.0, fence_a, node_b), ("s2", 3.0, None, None)]
    assert await store.write([snapshot("s1", saved_at=4.0)], fences={"s1": fence_b}) == tether.WriteResult()
    assert sql(pg_url, "SELECT saved_at, written_fence FROM sessions WHERE session_id = 's1'") == [(4.0, fence_b)]


async def test_fenced_deletes_and_unfenced_writes_never_touch_an_owned_row(store: PostgresStore, pg_url: str) -> None:
    await store.write([snapshot("s1"), snapshot("s2")])
    _node, fence = claim_for_new_node(pg_url, "s1")
    assert (await store.write([snapshot("s1", saved_at=7.0)])).fenced == {"s1"}  # no fence: owned row refused
    assert (await store.write([], ["s1"], fences={"s1": fence - 1})).fenced == {"s1"}
    assert (await store.write([], ["s1"])).fenced == {"s1"}
    assert sql(pg_url, "SELECT saved_at FROM sessions WHERE session_id = 's1'") == [(1.0,)]
    assert (await store.write([], ["s1"], fences={"s1": fence})).fenced == frozenset()
    assert sql(pg_url, "SELECT session_id FROM sessions") == [("s2",)]
    assert (await store.write([snapshot("s1")], fences={"s1": fence})).fenced == {"s1"}  # deleted: gone for good


async def test_a_guard_that_lost_its_lease_writes_nothing_fenced(pg_url: str) -> None:
    """With the lease gone locally, fenced sessions are reported and the database is not asked."""

    class Lost:
        def writer(self) -> int | None:
            return None

        def fenced(self, session_ids: frozenset[str]) -> None:
            pass

    async with open_postgres_store(pg_url) as plain:
        await plain.write([snapshot("s1")])
    _node, fence = claim_for_new_node(pg_url, "s1")
    async with open_postgres_store(pg_url, guard=Lost()) as store:
        result = await store.write([snapshot("s1", saved_at=8.0)], fences={"s1": fence})
        assert result.fenced == {"s1"} and store.stats().writes == 1
    assert sql(pg_url, "SELECT saved_at FROM sessions") == [(1.0,)]


async def test_the_statement_checks_the_writers_lease_by_the_database_clock(pg_url: str) -> None:
    """A writer whose node row has expired is refused even with the right fence."""
    async with open_postgres_store(pg_url) as plain:
        await plain.write([snapshot("s1")])
    node, fence = claim_for_new_node(pg_url, "s1")

    class Guard:
        def writer(self) -> int | None:
            return node

        def fenced(self, session_ids: frozenset[str]) -> None:
            pass

    async with open_postgres_store(pg_url, guard=Guard()) as store:
        assert (await store.write([snapshot("s1", saved_at=2.0)], fences={"s1": fence})).fenced == frozenset()
        sql(pg_url, "UPDATE nodes SET expires_at = now() - interval '1 second' WHERE node_id = %s", (node,))
        assert (await store.write([snapshot("s1", saved_at=3.0)], fences={"s1": fence})).fenced == {"s1"}
    assert sql(pg_url, "SELECT saved_at FROM sessions") == [(2.0,)]


async def test_an_unmigrated_database_is_refused_with_the_command_to_run(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("t_unmigrated")
    with pytest.raises(tether.StoreError, match="run `tether store migrate`"):
        async with open_postgres_store(url):
            pass
    assert migrate_url(url, "tether")[0] == 0
    assert migrate_url(url, "tether") == (LATEST_VERSION, [])
    async with open_postgres_store(url) as store:
        assert (await store.load_all()).snapshots == ()


def test_concurrent_migrations_apply_each_step_once(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("t_concurrent_migrate")
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(migrate_url(url, "tether"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(applied) for _, applied in results) == [0, 0, 0, LATEST_VERSION]
    assert sql(url, "SELECT version FROM migrations ORDER BY 1") == [(v,) for v in range(1, LATEST_VERSION + 1)]




async def test_a_restarted_database_is_a_store_error_then_reconnects(own_postgres: PostgresServer) -> None:
    """Connection loss is a StoreError (the outbox retries); a later write reconnects by itself."""
    url = own_postgres.create_database("t_restart")
    migrate_url(url, "tether")
    async with open_postgres_store(url) as store:
        await store.write([snapshot("s1")])
        await trio.to_thread.run_sync(own_postgres.restart)
        with pytest.raises(tether.StoreError, match="connection lost"):
            await store.write([snapshot("s1", saved_at=2.0)])
        for _ in range(200):  # the reconnect waits out its backoff: retry as the outbox would
            try:
                await store.write([snapshot("s1", saved_at=3.0)])
                break
            except tether.StoreError:
                await trio.sleep(0.05)
        assert store.connection.connects == 2
        assert [s.saved_at for s in (await store.load_all()).snapshots] == [3.0]


async def test_a_password_never_appears_in_errors() -> None:
    store = PostgresStore("postgresql://tether:s3cret@127.0.0.1:1/nowhere")
    with pytest.raises(tether.StoreError) as info:
        await store.open()
    assert "s3cret" not in str(info.value) and "127.0.0.1:1/nowhere" in str(info.value)
