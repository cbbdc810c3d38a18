"""docs/cluster.md: its example runs, its config parses, and the numbers it states are the code's."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import psycopg
import trio

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tether
from tether.rules._cluster import LeaseTiming
from tether.testing import wait_until

DOC = Path(__file__).parent.parent / "docs" / "cluster.md"
TEXT = DOC.read_text()
CODE = dict(re.findall(r"```(\w+)\n(.*?)```", TEXT, flags=re.DOTALL))


def owners(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path TO tether")
        return conn.execute("SELECT owner IS NOT NULL, body IS NOT NULL FROM sessions").fetchall()


async def test_the_python_example_runs_and_hands_over_on_exit(pg_url: str) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(CODE["python"], str(DOC), "exec"), namespace)
    spec = tether.SessionSpec(id="doc-1", backend="scripted")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(namespace["node"], pg_url, [spec])
        await wait_until(lambda: owners(pg_url) == [(True, True)], timeout=30)
        nursery.cancel_scope.cancel()
    assert owners(pg_url) == [(False, True)], "leaving the block released the session, its snapshot kept"


def test_the_config_example_selects_postgresql() -> None:
    tether_toml = tomllib.loads(CODE["toml"])
    config = tether.parse_config(tether_toml)
    assert config.store.store_url() == tether_toml["store"]["url"]
    assert config.store.lease_ttl == 15 == tether.StoreConfig().lease_ttl


def test_the_stated_timing_is_the_codes() -> None:
    timing = LeaseTiming()
    assert timing.ttl == 15.0 and "default 15 s" in TEXT
    assert timing.renew_every == timing.ttl / 3 and timing.stop_margin == timing.ttl / 6
    assert timing.poll_every == timing.ttl / 6
    from .test_cluster_processes import TAKEOVER_BOUND, TIMING

    assert (TIMING.ttl, TIMING.poll_every, TAKEOVER_BOUND) == (3.0, 0.5, 5.5)
    assert "ttl 3 s" in TEXT and "poll 0.5 s" in TEXT and "assert 5.5 s" in TEXT and "1.5 s" in TEXT
