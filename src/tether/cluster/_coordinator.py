"""Several tether processes sharing sessions through PostgreSQL: membership, claims, fencing.

The protocol (docs/cluster.md, DESIGN.md "Out of one machine"), by the
database's clock only:

- Join: a fresh node row per process start; its lease is renewed every
  ttl/3 (`tether.cluster._sql.renew`). The local deadline comes from the time
  taken *before* each renewal was sent (`tether.cluster._lease`).
- Every `poll` seconds: reap expired nodes (dead is final), count, and claim
  free sessions up to a fair share, each claim bumping the session's fence
  from a sequence; shed down to the share when others joined; pinned
  sessions (``home`` = this host) are always claimed here and never move.
- A watchdog self-fences when the local deadline passes: every owned
  session is stopped at once (`ClusterMember.fence_lost`), before the
  database can hand them to anyone else; the process then joins again under
  a new id. A process frozen past its lease (SIGSTOP, a long pause) does the
  same on resume: whichever of its tasks runs first sees the deadline passed,
  and the store refuses to write for a lost lease (`Lease.writer`).
- A clean stop releases every session with its fence after the member has
  stopped it (remote programs kept, e.g. in tmux), so others claim them at
  their next poll.

The coordinator drives the engine only through `ClusterMember`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Protocol, final

import attrs
import trio

from ..rules._cluster import LeaseTiming, plan_claims
from ..rules._errors import DuplicateSessionError, SnapshotError, StoreError
from ..rules._secrets import DEFAULT_SECRET_PATTERNS
from ..rules._spec import SessionSpec
from ..rules._state import SessionState
from ..store._codec import decode_snapshot, decode_spec, encode_spec
from ..store._pg_connection import DEFAULT_SCHEMA, PgConnection
from ..store._pg_schema import check_schema
from ..store._postgres import PostgresStore
from . import _sql
from ._lease import DEFAULT_CLOCK, Clock, Lease

logger = logging.getLogger("tether.cluster")


class ClusterMember(Protocol):
    """What the coordinator needs of a supervisor (the engine provides it; tests use a stand-in).

    Rules the member keeps:

    - `register` starts supervising a claimed session whose every snapshot
      write carries ``fences={session_id: fence}``; a `WriteResult.fenced`
      from the store means `fence_lost` for those ids.
    - `release` stops supervising without deleting the snapshot and without
      ending a remote program kept alive (tmux): a hand-over. It returns once
      the session's last snapshot has been written (or the write failed).
    - `fence_lost` stops the sessions at once, synchronously: their tasks are
      cancelled, nothing more of theirs is written, and their ids may be
      registered again right after.
    """

    async def register(self, spec: SessionSpec, *, restore: SessionState | None, fence: int) -> object: ...

    async def release(self, session_id: str) -> None: ...

    def fence_lost(self, session_ids: Collection[str]) -> None: ...


@attrs.frozen
class Move:
    """A session claimed by this node; `previous_owner` is the node that held it before (None: free)."""

    session_id: str
    fence: int
    node_id: int
    previous_owner: int | None


@attrs.define
class CoordinatorStats:
    joins: int = 0
    renewals: int = 0
    renew_failures: int = 0
    lease_losses: int = 0
    claimed: int = 0
    moved_in: int = 0
    """Claimed sessions that another node held before (a takeover or a hand-over)."""
    released: int = 0
    shed: int = 0
    fenced: int = 0
    """Sessions stopped because their fence or our lease was lost."""
    reaped: int = 0
    quarantined: int = 0
    rounds: int = 0


_Decoded = tuple[SessionSpec, SessionState | None] | SnapshotError


def _decode(row: _sql.Claimed) -> _Decoded:
    """The spec to run and the state to restore of a claimed row, or why it cannot be read."""
    try:
        restore: SessionState | None = None
        spec: SessionSpec | None = None
        if row.body is not None:
            snapshot = decode_snapshot(row.session_id, row.body)
            spec, restore = snapshot.spec, snapshot.state
        if row.spec is not None:
            spec = decode_spec(row.session_id, row.spec)  # the declared spec wins over the one last run
        if spec is None:
            raise SnapshotError(row.session_id, "has neither a spec nor a snapshot")
    except SnapshotError as exc:
        return exc
    return spec, restore


def _always_movable(spec: SessionSpec) -> bool:
    return True


@final
class Coordinator:
    """One process's membership in a tether cluster. Get one from `open_coordinator`."""

    def __init__(
        self,
        url: str,
        member: ClusterMember,
        *,
        timing: LeaseTiming | None = None,
        host: str | None = None,
        schema: str = DEFAULT_SCHEMA,
        is_movable: Callable[[SessionSpec], bool] = _always_movable,
        claim_batch: int = 500,
        clock: Clock = DEFAULT_CLOCK,
        self_fence: bool = True,
        secret_patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS,
        on_move: Callable[[Move], None] | None = None,
    ) -> None:
        self.url = url
        self.member = member
        self.timing = timing if timing is not None else LeaseTiming()
        self.host = host if host is not None else socket.gethostname()
        self.schema = schema
        self.is_movable = is_movable
        self.claim_batch = claim_batch
        self.self_fence = self_fence
        self._patterns = tuple(secret_patterns)
        self._on_move = on_move
        self.lease = Lease(self.timing, clock=clock, on_lost=self._fence_everything, enforce=self_fence)
        self._beat = PgConnection(url, schema=schema, application_name="tether lease")
        self._work = PgConnection(url, schema=schema, application_name="tether claims")
        self.owned: dict[str, int] = {}
        """Session id -> fence of every session this node supervises now."""
        self._movable: set[str] = set()
        self._skip: set[str] = set()
        """Sessions this process could not start (bad spec, backend missing): left for others."""
        self._lost = trio.Event()
        self._stopping = False
        self._pending: dict[str, bool] = {}
        self._confirm_wanted = trio.Event()
        self._confirmed = trio.Event()
        self.stats = CoordinatorStats()

    @property
    def node_id(self) -> int | None:
        return self.lease.node_id

    @property
    def where(self) -> str:
        return self._beat.where

    # -- what the engine calls -----------------------------------------------------------------

    def writer(self) -> int | None:
        """`WriteGuard` for the store: our node id while the lease holds, else None."""
        return self.lease.writer()

    def fenced(self, session_ids: frozenset[str]) -> None:
        """`WriteGuard`: the store refused these sessions' writes; the member stops them, we forget them."""
        mine = [sid for sid in session_ids if sid in self.owned]
        self.stats.fenced += len(mine)
        self._forget(mine)

    def fence_of(self, session_id: str) -> int | None:
        return self.owned.get(session_id)

    @property
    def fences(self) -> Mapping[str, int]:
        """Session id -> fence of every owned session (what the outbox passes to `store.write`)."""
        return self.owned

    async def declare(self, specs: Iterable[SessionSpec]) -> int:
        """Add sessions to the cluster (or update their spec); returns the rows changed.

        A session whose backend is local (`is_movable` false: a program on
        this machine's pty) is pinned here (``home`` = this host) and only
        nodes on this host ever claim it. An existing row keeps its owner,
        fence, home and snapshot.
        """
        rows = [
            _sql.Declared(
                spec.id,
                spec.backend,
                encode_spec(spec, self._patterns),
                None if self.is_movable(spec) else self.host,
            )
            for spec in specs
        ]
        return await self._work.run(lambda conn: _sql.declare(conn, rows))

    async def confirm(self, session_id: str) -> bool:
        """Do we still hold `session_id`? Asked before each reconnect; many asks share one query.

        False once the lease is lost or the session's fence moved on (the
        session is then stopped with `fence_lost`). While the database cannot
        be reached, the local lease decides: sessions keep running until the
        deadline, then the watchdog stops them.
        """
        if session_id not in self.owned or not self.lease.live:
            await trio.lowlevel.checkpoint()
            return False
        self._pending[session_id] = False
        self._confirm_wanted.set()
        done = self._confirmed
        await done.wait()
        return session_id in self.owned

    # -- the loops -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Join, then heartbeat, watch, claim and confirm until cancelled; join again after a loss."""
        await self._work.run(lambda conn: check_schema(conn, self.schema, self.where))
        started = False
        while True:
            await self._join()
            if not started:
                task_status.started()
                started = True
            self._lost = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat)
                if self.self_fence:
                    nursery.start_soon(self._watchdog)
                nursery.start_soon(self._claimer)
                nursery.start_soon(self._confirmer)
                await self._lost.wait()
                nursery.cancel_scope.cancel()
            if self._stopping or not self.self_fence:
                # Stopped: nothing to join. A test's stale writer (self_fence off) stays out of the cluster.
                await trio.sleep_forever()
            old = self.lease.node_id
            if old is not None:
                await self._end_quietly(old, "fenced")

    async def stop(self) -> None:
        """Clean stop: stop claiming, release every session to the member and then in the database
        (with its fence), and end this node, so the others take the sessions at their next poll."""
        self._stopping = True
        node = self.lease.node_id
        sessions: dict[str, int] = {}
        while self.owned:  # a claim in flight may add a few while we release
            batch = dict(self.owned)
            async with trio.open_nursery() as nursery:
                for sid in batch:
                    nursery.start_soon(self._release_one, sid)
            self._forget(batch)
            sessions.update(batch)
        if node is None or not self.lease.live:
            return
        try:
            released = await self._work.run(lambda conn: _sql.release(conn, node, sessions))
            self.stats.released += len(released)
            await self._work.run(lambda conn: _sql.end_node(conn, node, "stopped"))
        except StoreError as exc:
            logger.warning("clean stop could not hand sessions back (%s); they move when our lease expires", exc)
        self.lease.lose("stopped")

    async def _release_one(self, session_id: str) -> None:
        try:
            await self.member.release(session_id)
        except Exception as exc:  # already gone (fenced in the meantime): nothing left to hand over
            logger.info("releasing %s: %s", session_id, exc)

    async def aclose(self) -> None:
        await self._beat.aclose()
        await self._work.aclose()

    async def _join(self) -> None:
        """Register a fresh node id, retrying with the connection's backoff while the database is away."""
        while True:
            sent = self.lease.clock()
            try:
                node = await self._beat.run(
                    lambda conn: _sql.register_node(conn, self.host, os.getpid(), self.timing.ttl)
                )
            except StoreError as exc:
                logger.warning("cannot join the cluster yet: %s", exc)
                await trio.sleep(min(1.0, self.timing.renew_every))
                continue
            self.lease.joined(node, sent)
            self.stats.joins += 1
            logger.info("joined the cluster as node %d on %s (ttl %gs)", node, self.host, self.timing.ttl)
            return

    async def _heartbeat(self) -> None:
        node = self.lease.node_id
        assert node is not None
        ttl = self.timing.ttl
        next_at = trio.current_time() + self.timing.renew_every
        while True:
            await trio.sleep_until(next_at)
            if not self.lease.live:
                self._lost.set()
                return
            sent = self.lease.clock()
            try:
                ok = await self._beat.run(lambda conn: _sql.renew(conn, node, ttl))
            except StoreError as exc:
                self.stats.renew_failures += 1
                logger.warning("lease renewal failed (%.1fs left): %s", self.lease.remaining(), exc)
                next_at = trio.current_time() + min(self.timing.renew_every, 0.5)
                continue
            if not ok:
                self.lease.lose("the database says our lease expired")
                self._lost.set()
                return
            if self.lease.renewed(node, sent):
                self.stats.renewals += 1
            next_at = trio.current_time() + self.timing.renew_every

    async def _watchdog(self) -> None:
        while self.lease.live:  # noqa: ASYNC110 - the deadline moves with every renewal: sleep, look again
            await trio.sleep(max(0.0, self.lease.remaining()))
        self._lost.set()

    async def _claimer(self) -> None:
        node = self.lease.node_id
        assert node is not None
        while True:
            again = False
            try:
                again = await self._round(node)
            except StoreError as exc:
                logger.warning("claim round failed: %s", exc)
            if not again:
                await trio.sleep(self.timing.poll_every)
            else:
                await trio.lowlevel.checkpoint()

    async def _round(self, node: int) -> bool:
        """One reap-count-claim-shed round; True when a full batch was claimed (go again at once)."""
        self.stats.rounds += 1
        reaped = await self._work.run(_sql.reap)
        self.stats.reaped += len(reaped)
        count = await self._work.run(lambda conn: _sql.counts(conn, node))
        if count.owned != len(self.owned):
            await self._reconcile(node)
        if not self.lease.live or self._stopping:
            return False
        pinned = await self._claim(node, limit=self.claim_batch, pinned=True)
        plan = plan_claims(
            movable=count.movable, live_nodes=count.live_nodes, owned=len(self._movable), batch=self.claim_batch
        )
        claimed = await self._claim(node, limit=plan.claim, pinned=False) if plan.claim else 0
        if plan.shed:
            await self._shed(node, plan.shed)
        return (plan.claim > 0 and claimed == plan.claim) or pinned == self.claim_batch

    async def _claim(self, node: int, *, limit: int, pinned: bool) -> int:
        skip = sorted(self._skip)

        def claim_and_decode(conn: Any) -> list[tuple[_sql.Claimed, _Decoded]]:
            # Decoded in the worker thread: a claim of thousands must not stall the loop that renews the lease.
            claimed = _sql.claim(conn, node, self.host, limit=limit, pinned=pinned, skip=skip)
            return [(row, _decode(row)) for row in claimed]

        rows = await self._work.run(claim_and_decode)
        for row, decoded in rows:
            await self._start(node, row, decoded, pinned=pinned)
        return len(rows)

    async def _start(self, node: int, row: _sql.Claimed, decoded: _Decoded, *, pinned: bool) -> None:
        if self.lease.node_id != node or not self.lease.live:
            return  # lost while claiming: the rows stay with the old node id, which is ended
        if self._stopping:
            await self._work.run(lambda conn: _sql.release(conn, node, {row.session_id: row.fence}))
            return
        if isinstance(decoded, SnapshotError):
            exc = decoded
            logger.error("session %s cannot be read, quarantined in the database: %s", row.session_id, exc)
            self.stats.quarantined += 1
            problem = str(exc)
            await self._work.run(lambda conn: _sql.quarantine(conn, row.session_id, row.fence, problem))
            return
        spec, restore = decoded
        self.owned[row.session_id] = row.fence
        if not pinned:
            self._movable.add(row.session_id)
        try:
            await self.member.register(spec, restore=restore, fence=row.fence)
        except DuplicateSessionError:
            # Still winding down here after a fence loss: hand it back, a later round claims it again.
            self._forget([row.session_id])
            await self._work.run(lambda conn: _sql.release(conn, node, {row.session_id: row.fence}))
            return
        except Exception as exc:
            logger.error("session %s could not be started here, left for other nodes: %s", row.session_id, exc)
            self._forget([row.session_id])
            self._skip.add(row.session_id)
            await self._work.run(lambda conn: _sql.release(conn, node, {row.session_id: row.fence}))
            return
        if self.lease.node_id != node or not self.lease.live or row.session_id not in self.owned:
            self.member.fence_lost([row.session_id])  # lost while it was being registered
            self._forget([row.session_id])
            return
        self.stats.claimed += 1
        if row.previous_owner is not None:
            self.stats.moved_in += 1
        move = Move(row.session_id, row.fence, node, row.previous_owner)
        logger.debug("claimed %s (fence %d, from node %s)", row.session_id, row.fence, row.previous_owner)
        if self._on_move is not None:
            self._on_move(move)

    async def _shed(self, node: int, count: int) -> None:
        """Hand `count` movable sessions back so a node that joined later gets its share."""
        victims = sorted(self._movable)[-count:]
        handed = {sid: self.owned[sid] for sid in victims}
        async with trio.open_nursery() as nursery:
            for sid in victims:
                nursery.start_soon(self._release_one, sid)
        self._forget(victims)
        released = await self._work.run(lambda conn: _sql.release(conn, node, handed))
        self.stats.shed += len(released)
        logger.info("handed %d sessions back to balance the cluster", len(released))

    async def _reconcile(self, node: int) -> None:
        """The database and we disagree on what we own: stop what we lost, hand back what we never ran."""
        in_db = await self._work.run(lambda conn: _sql.owned(conn, node))
        lost = [sid for sid, fence in self.owned.items() if in_db.get(sid) != fence]
        if lost:
            self.stats.fenced += len(lost)
            logger.warning("%d sessions were taken over by other nodes; stopping them here", len(lost))
            self._forget(lost)
            self.member.fence_lost(lost)
        stray = {sid: fence for sid, fence in in_db.items() if sid not in self.owned}
        if stray:
            await self._work.run(lambda conn: _sql.release(conn, node, stray))

    async def _confirmer(self) -> None:
        node = self.lease.node_id
        assert node is not None
        while True:
            await self._confirm_wanted.wait()
            self._confirm_wanted = trio.Event()
            asked, self._pending = self._pending, {}
            done, self._confirmed = self._confirmed, trio.Event()
            fences = {sid: self.owned[sid] for sid in asked if sid in self.owned}
            try:
                held = await self._work.run(partial(_sql.still_held, node_id=node, fences=fences))
            except StoreError:
                held = set(fences)  # unreachable: the lease's deadline decides
            lost = [sid for sid in fences if sid not in held]
            if lost:
                self.stats.fenced += len(lost)
                self._forget(lost)
                self.member.fence_lost(lost)
            done.set()

    # -- losing ----------------------------------------------------------------------------

    def _fence_everything(self, node: int, why: str) -> None:
        """The lease is lost: stop every session now (synchronously), then join again."""
        self._lost.set()
        self._confirmed.set()
        if not self.self_fence:
            return  # a test's stale writer: only the database's fence stops it
        sessions = list(self.owned)
        self.stats.lease_losses += 1
        if why == "stopped":
            return
        self.stats.fenced += len(sessions)
        self._forget(sessions)
        if sessions:
            logger.warning("self-fencing: stopping %d sessions (%s)", len(sessions), why)
            self.member.fence_lost(sessions)

    def _forget(self, session_ids: Iterable[str]) -> None:
        for sid in session_ids:
            self.owned.pop(sid, None)
            self._movable.discard(sid)

    async def _end_quietly(self, node: int, why: str) -> None:
        """Best effort: mark the old node dead so its sessions can be claimed at once (by us too)."""
        try:
            with trio.move_on_after(self.timing.ttl):
                await self._work.run(lambda conn: _sql.end_node(conn, node, why))
        except StoreError as exc:
            logger.info("could not end node %d (%s); it expires by itself", node, exc)


@asynccontextmanager
async def open_coordinator(
    url: str,
    member: ClusterMember,
    *,
    store: PostgresStore | None = None,
    **options: Any,
) -> AsyncIterator[Coordinator]:
    """Join the cluster at `url` for the duration of the block; a clean stop on exit.

    `store` (the member's snapshot store) gets this node's lease as its
    `WriteGuard` before the first claim, so no write can outlive the lease.

    Returns once this node is registered (claims start right away). Leaving
    the block releases every session to the member and then in the database,
    so the other nodes take them over at their next poll.
    """
    coordinator = Coordinator(url, member, **options)
    if store is not None:
        store.guard = coordinator
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(coordinator.run)
            try:
                yield coordinator
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(coordinator.timing.ttl):
                    await coordinator.stop()
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await coordinator.aclose()
