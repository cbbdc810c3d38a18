"""SSH sessions shared by two tether processes through a real PostgreSQL, with the remote program in tmux.

Each member is a real `Supervisor` with the ssh backend and a `Coordinator`
(docs/cluster.md). A clean stop of one member hands its sessions to the
other, which re-attaches to the same remote tmux pane: the counting loop in
it never restarts, and the pane's pid is the same.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import tether
from tether.cluster._coordinator import Coordinator, open_coordinator
from tether.cluster._store import ClusterStore
from tether.rules._cluster import LeaseTiming
from tether.store._pg_schema import migrate_url
from tether.store._postgres import PostgresStore
from tether.testing import require_peer, wait_until
from tether.testing._postgres import PostgresServer, postgres_missing_reason, running_postgres
from tether_ssh import SshBackend, tmux_name

from .conftest import Sshd, ssh_spec, ssh_supervisor

S = tether.SessionStatus


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    reason = postgres_missing_reason()
    require_peer(reason is None, reason or "")
    with running_postgres() as server:
        yield server


@asynccontextmanager
async def member(url: str, host: str) -> AsyncIterator[tuple[Coordinator, tether.Supervisor]]:
    store = PostgresStore(url)
    await store.open()
    try:
        async with (
            ssh_supervisor(SshBackend(), store=ClusterStore(store), flush_interval=0.05) as sup,
            open_coordinator(url, sup, store=store, timing=LeaseTiming(ttl=3.0), host=host) as coordinator,
        ):
            yield coordinator, sup
    finally:
        await store.aclose()


def _pane(socket: str, sid: str) -> str:
    done = subprocess.run(["tmux", "-L", socket, "list-panes", "-t", tmux_name(sid), "-F", "#{pane_pid}"],
                          capture_output=True, text=True)
    return done.stdout.strip()


def _count(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


async def test_a_clean_stop_hands_ssh_sessions_over_with_their_tmux_programs(
    sshd: Sshd, tmux_socket: str, tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.create_database(f"ssh_{sshd.port}")
    migrate_url(url, "tether")
    specs = [ssh_spec(sshd, f"s{i}", persist="tmux", tmux_socket=tmux_socket) for i in range(4)]
    async with member(url, "b") as (_b, sup_b):
        async with member(url, "a") as (a, sup_a):
            await a.declare(specs)
            await wait_until(lambda: len(sup_a.session_ids) + len(sup_b.session_ids) == 4, timeout=20, step=0.05)
            await wait_until(lambda: all(sup.state(sid).status is S.CONNECTED
                                         for sup in (sup_a, sup_b) for sid in sup.session_ids), timeout=30, step=0.05)
            mine = sorted(sup_a.session_ids)
            assert mine and len(sup_b.session_ids) >= 1
            panes = {sid: _pane(tmux_socket, sid) for sid in mine}
            for sid in mine:
                counter = tmp_path / f"{sid}.count"
                loop = f"i=0; while :; do i=$((i+1)); echo $i > {counter}.n; mv {counter}.n {counter}; sleep 0.1; done"
                await sup_a.send(sid, loop.encode() + b"\n")
            await wait_until(lambda: all(_count(tmp_path / f"{sid}.count") >= 3 for sid in mine), timeout=10,
                             step=0.05)
        # a stopped cleanly: b claims its sessions and re-attaches to the same tmux panes
        await wait_until(lambda: set(mine) <= set(sup_b.session_ids), timeout=10, step=0.05)
        await wait_until(lambda: all(sup_b.state(sid).status is S.CONNECTED for sid in mine), timeout=30, step=0.05)
        before = {sid: _count(tmp_path / f"{sid}.count") for sid in mine}
        await trio.sleep(0.5)
        for sid in mine:
            assert _pane(tmux_socket, sid) == panes[sid], f"{sid}: a new program, not the one a left running"
            assert _count(tmp_path / f"{sid}.count") > before[sid] >= 3, f"{sid}: the loop stopped or restarted"
