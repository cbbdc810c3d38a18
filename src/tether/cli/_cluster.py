"""The daemon as a member of a PostgreSQL cluster: its supervisor gets sessions by claims.

With ``[store] url`` (or ``$TETHER_STORE_URL``) the daemon opens the
PostgreSQL store, a supervisor whose store is a `ClusterStore` (no start-up
load: a session runs here only once this process claims it), and a
`Coordinator` driving that supervisor. The config's sessions are *declared*
to the cluster (every process may declare the same ones); which process runs
each is the cluster's decision. Sessions of local backends (no ``remote``
feature: a program on this machine's pty) are pinned to this host.

Leaving the context is a clean stop: the coordinator releases every session
(the supervisor stops it and keeps its program, e.g. in tmux) before the
supervisor closes, so the other processes take them at their next poll.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from ..cluster._coordinator import Coordinator, Move, open_coordinator
from ..cluster._store import ClusterStore
from ..contract._plugin import Backend, Feature
from ..engine._plugins import PluginRegistry
from ..engine._supervisor import Supervisor, open_supervisor
from ..rules._cluster import LeaseTiming
from ..rules._errors import UnknownBackendError
from ..rules._spec import SessionSpec
from ..store._postgres import open_postgres_store

logger = logging.getLogger("tether.cluster")


def movable_in(supervisor: Supervisor) -> Callable[[SessionSpec], bool]:
    """A session may move between machines when its backend crosses a network (Feature.REMOTE)."""

    def movable(spec: SessionSpec) -> bool:
        try:
            return Feature.REMOTE in supervisor.registry.backend(spec.backend).features
        except UnknownBackendError:
            return False  # unknown here: keep it where it was declared
    return movable


def _announce_moves(supervisor: Supervisor) -> Callable[[Move], None]:
    """A claimed session another node held before: say so in the log and as a `session.moved` event."""

    def moved(move: Move) -> None:
        if move.previous_owner is None:
            return
        logger.info("session %s moved here from node %d (fence %d)", move.session_id, move.previous_owner, move.fence)
        supervisor.note_moved(move.session_id, move.previous_owner, move.node_id, move.fence)
    return moved


@asynccontextmanager
async def open_cluster_member(
    url: str,
    *,
    sessions: Sequence[SessionSpec],
    registry: PluginRegistry | None,
    backends: Iterable[Backend],
    flush_interval: float,
    lease_ttl: float,
    **supervisor_options: Any,
) -> AsyncIterator[tuple[Supervisor, Coordinator]]:
    """The supervisor and coordinator of one cluster member, stopped cleanly on exit."""
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_postgres_store(url))
        logger.info("snapshot store: %s (shared)", store.where)
        supervisor = await stack.enter_async_context(
            open_supervisor(registry=registry, backends=backends, store=ClusterStore(store),
                            flush_interval=flush_interval, **supervisor_options)
        )
        coordinator = await stack.enter_async_context(
            open_coordinator(url, supervisor, store=store, timing=LeaseTiming(ttl=lease_ttl),
                             is_movable=movable_in(supervisor), on_move=_announce_moves(supervisor))
        )
        supervisor.set_reconnect_check(coordinator.confirm)  # never reconnect a session another node took
        if sessions:
            changed = await coordinator.declare(sessions)
            logger.info("declared %d sessions to the cluster (%d new or changed)", len(sessions), changed)
        yield supervisor, coordinator
