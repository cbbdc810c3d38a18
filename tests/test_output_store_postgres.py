"""Output logs in the PostgreSQL store, against a real PostgreSQL: the same contract, under the fence."""

from __future__ import annotations

import psycopg

import tether
from tether.rules._output import OutputLog
from tether.store._pg_schema import LATEST_VERSION, migrate_url
from tether.store._postgres import open_postgres_store

from .test_output_store import busy_log, everything
from .test_postgres_store import claim_for_new_node, snapshot, sql


async def flush(store: tether.SnapshotStore, logs: dict[str, OutputLog], **kwargs: object) -> tether.WriteResult:
    flushes = [log.take_flush(sid) for sid, log in logs.items()]
    result = await store.write(kwargs.pop("snapshots", []), logs=flushes, **kwargs)  # type: ignore[arg-type]
    for log, f in zip(logs.values(), flushes, strict=True):
        if f.session_id not in result.fenced:
            log.flushed(f)
    return result


async def test_logs_round_trip_and_follow_their_session(pg_url: str) -> None:
    """Written with the snapshots, loaded beside them, trimmed and replaced like in SQLite, gone with
    the session."""
    logs = {"a": busy_log(), "b": busy_log(n=60)}
    async with open_postgres_store(pg_url) as store:
        assert await flush(store, logs, snapshots=[snapshot("a"), snapshot("b")]) == tether.WriteResult()
        for i in range(200):
            logs["b"].append(b"%05d|" % i)
            await flush(store, {"b": logs["b"]})
        report = await store.load_all()
        assert set(report.logs) == {"a", "b"} and report.errors == ()
        for sid, log in logs.items():
            assert everything(OutputLog.restore(report.logs[sid])) == everything(log)
        await store.write([], ["a"])
        assert set((await store.load_all()).logs) == {"b"}
    assert sql(pg_url, "SELECT count(*) FROM output_rows WHERE session_id = 'a'") == [(0,)]


async def test_a_log_is_written_only_under_its_sessions_fence(pg_url: str) -> None:
    """Once another node claimed the session, a log write with the old fence (or none) is refused,
    reported as fenced, and the newer owner's log is left as it was."""
    log = busy_log()
    async with open_postgres_store(pg_url) as store:
        await flush(store, {"s": log}, snapshots=[snapshot("s")])
        _, fence = claim_for_new_node(pg_url, "s")
        before = sql(pg_url, "SELECT log_id, end_at FROM output_heads")
        log.append(b"written by a process that lost the session")
        assert (await flush(store, {"s": log}, fences={"s": fence - 1})).fenced == {"s"}
        assert (await flush(store, {"s": log})).fenced == {"s"}  # unfenced: the row has an owner
        assert sql(pg_url, "SELECT log_id, end_at FROM output_heads") == before
        assert (await flush(store, {"s": log}, fences={"s": fence})).fenced == frozenset()
        assert sql(pg_url, "SELECT end_at FROM output_heads") == [(log.end,)]


def test_the_migration_adds_the_log_tables(pg_url: str) -> None:
    """Version 2 of the layout holds the output tables (bytea pieces)."""
    assert migrate_url(pg_url, "tether") == (LATEST_VERSION, []) and LATEST_VERSION == 2
    with psycopg.connect(pg_url) as conn:
        kinds = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'tether' AND table_name = 'output_rows'"
        ).fetchall())
    assert kinds["data"] == "bytea"
