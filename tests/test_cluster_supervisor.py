"""The real Supervisor as a cluster member: claimed sessions supervised with fences, handed over cleanly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg

import tether
from tether.cluster._coordinator import Coordinator, open_coordinator
from tether.cluster._store import ClusterStore
from tether.rules._cluster import LeaseTiming
from tether.store._postgres import PostgresStore
from tether.testing import ScriptedBackend, wait_until

from .conftest import core_registry

TIMING = LeaseTiming(ttl=2.0, poll=0.2)


def sql(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path TO tether")
        return conn.execute(query).fetchall()


@asynccontextmanager
async def member(url: str, host: str) -> AsyncIterator[tuple[Coordinator, tether.Supervisor]]:
    store = PostgresStore(url)
    await store.open()
    try:
        async with (
            tether.open_supervisor(registry=core_registry(ScriptedBackend()), store=ClusterStore(store),
                                   flush_interval=0.05) as sup,
            open_coordinator(url, sup, store=store, timing=TIMING, host=host) as coordinator,
        ):
            yield coordinator, sup
    finally:
        await store.aclose()


async def test_two_supervisors_share_sessions_and_hand_them_over(pg_url: str) -> None:
    specs = [tether.SessionSpec(id=f"s{i:03d}", backend="scripted") for i in range(40)]
    async with member(pg_url, "a") as (a, sup_a):
        await a.declare(specs)
        async with member(pg_url, "b") as (_b, sup_b):
            await wait_until(lambda: len(sup_a.session_ids) == 20 and len(sup_b.session_ids) == 20, timeout=20)
            await wait_until(lambda: sql(pg_url, "SELECT count(*) FROM sessions WHERE written_fence = fence"
                                                 " AND owner IS NOT NULL") == [(40,)], timeout=20)
            assert {sup_a.state(sid).status for sid in sup_a.session_ids} == {tether.SessionStatus.CONNECTED}
        await wait_until(lambda: len(sup_a.session_ids) == 40, timeout=10)
        await wait_until(lambda: all(sup_a.state(s.id).status is tether.SessionStatus.CONNECTED for s in specs),
                         timeout=10)
    assert sql(pg_url, "SELECT count(*), count(owner), count(body) FROM sessions") == [(40, 0, 40)]


async def test_a_fenced_write_stops_the_session_in_the_real_supervisor(pg_url: str) -> None:
    async with member(pg_url, "a") as (a, sup):
        await a.declare([tether.SessionSpec(id="s1", backend="scripted")])
        await wait_until(lambda: "s1" in sup.session_ids, timeout=10)
        sql(pg_url, "UPDATE sessions SET fence = nextval('fences') WHERE session_id = 's1' RETURNING 1")
        await sup.force_reconnect("s1")  # a change to write: the outbox's write is fenced
        await wait_until(lambda: "s1" not in sup.session_ids, timeout=10)
        assert a.owned == {} and a.stats.fenced == 1
