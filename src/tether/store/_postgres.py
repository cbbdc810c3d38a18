"""The shared snapshot store: PostgreSQL, for several tether processes (docs/cluster.md).

A `SnapshotStore` like the SQLite one (same codec, redaction, quarantine,
counters, one transaction per batch), with what sharing needs:

- Every snapshot write carries its owner's fencing token and is checked in
  the same statement (``UPDATE ... WHERE fence = <token>``): a process that
  lost a session to another (it was paused, cut off, or simply slow) cannot
  overwrite the newer owner's state. Such sessions come back in
  `WriteResult.fenced` and nothing of theirs is written; the rest of the
  batch is. A `WriteGuard` (the cluster member's lease) adds two checks: the
  store asks it before sending anything (a lease past its local deadline
  writes nothing fenced), and the statement itself requires the writer's
  lease to be live by the database's clock.
- A write without a fence (a library user with one process and no cluster)
  is a plain upsert, but only of a row nobody owns: it can never overwrite a
  claimed session. Deletes follow the same two rules.
- Connection loss is a `StoreError` (the engine's outbox keeps the changes
  queued and retries); the connection is re-made with backoff on a later call
  (`tether.store._pg_connection`).
- Bad rows lose nothing: a body that fails to decode is reported and
  quarantined exactly as the other stores do (`tether.store._bookkeeping`).
- Output logs (`tether.rules._output`) go in the same transaction and under
  the same rules: a fenced session's log is written only while its row holds
  the writer's fence (the row is locked for the rest of the transaction, so a
  claim cannot slip in between), an unfenced one only while nobody owns it.
  A log refused that way is reported in `WriteResult.fenced` with the rest.

psycopg is imported only when a store is opened, so ``import tether`` never
needs it (it is the optional ``tether[postgres]`` extra).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, final

import attrs

from ..rules._errors import SnapshotError
from ..rules._output import LogFlush, StoredLog
from ..rules._secrets import DEFAULT_SECRET_PATTERNS
from ..rules._snapshots import LoadReport, SessionSnapshot, StoreStats, WriteResult
from ._bookkeeping import StoreBookkeeping
from ._codec import SNAPSHOT_SCHEMA_VERSION, decode_snapshot, encode_snapshot
from ._logrows import HEAD_COLUMNS, ROW_COLUMNS, head_row, log_row, stored_logs
from ._pg_connection import DEFAULT_SCHEMA, PgConnection
from ._pg_schema import check_schema

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger("tether.store")


class WriteGuard(Protocol):
    """What a cluster member's lease lends the store: who is writing, and whether it still may."""

    def writer(self) -> int | None:
        """The node id whose lease covers a write right now, or None when the lease is lost.

        Called on the Trio side just before a batch goes out. Returning None
        means: write nothing fenced (the caller has stopped those sessions).
        """
        ...

    def fenced(self, session_ids: frozenset[str]) -> None:
        """These sessions' writes were refused (taken over, or the lease is gone): forget them."""
        ...


_FENCED_UPDATE = """
UPDATE sessions AS s
SET schema = u.schema, body = u.body, saved_at = u.saved_at, written_fence = u.fence, written_at = now()
FROM unnest(%(ids)s::text[], %(schemas)s::int[], %(bodies)s::text[], %(saved)s::float8[], %(fences)s::int8[])
    AS u(session_id, schema, body, saved_at, fence)
WHERE s.session_id = u.session_id
  AND s.fence = u.fence
  AND (s.schema IS NULL OR s.schema <= u.schema)
  AND (%(node)s::bigint IS NULL OR (s.owner = %(node)s AND EXISTS (
        SELECT 1 FROM nodes n WHERE n.node_id = %(node)s AND n.state = 'live' AND n.expires_at > now())))
RETURNING s.session_id
"""
_FREE_UPSERT = """
INSERT INTO sessions AS s (session_id, backend, schema, body, saved_at, written_at)
SELECT u.session_id, u.backend, u.schema, u.body, u.saved_at, now()
FROM unnest(%(ids)s::text[], %(backends)s::text[], %(schemas)s::int[], %(bodies)s::text[], %(saved)s::float8[])
    AS u(session_id, backend, schema, body, saved_at)
ON CONFLICT (session_id) DO UPDATE
SET schema = excluded.schema, body = excluded.body, saved_at = excluded.saved_at, backend = excluded.backend,
    written_fence = NULL, written_at = now()
WHERE s.owner IS NULL AND (s.schema IS NULL OR s.schema <= excluded.schema)
RETURNING s.session_id
"""
_FENCED_DELETE = """
DELETE FROM sessions AS s
USING unnest(%(ids)s::text[], %(fences)s::int8[]) AS d(session_id, fence)
WHERE s.session_id = d.session_id AND s.fence = d.fence
  AND (%(node)s::bigint IS NULL OR (s.owner = %(node)s AND EXISTS (
        SELECT 1 FROM nodes n WHERE n.node_id = %(node)s AND n.state = 'live' AND n.expires_at > now())))
RETURNING s.session_id
"""
_FREE_DELETE = "DELETE FROM sessions WHERE session_id = ANY(%(ids)s) AND owner IS NULL RETURNING session_id"
_ROWS_OF = "SELECT session_id, fence, schema, owner FROM sessions WHERE session_id = ANY(%(ids)s)"
_LOG_FENCE_HELD = """
SELECT s.session_id FROM sessions AS s
JOIN unnest(%(ids)s::text[], %(fences)s::int8[]) AS u(session_id, fence) ON s.session_id = u.session_id
WHERE s.fence = u.fence
  AND (%(node)s::bigint IS NULL OR (s.owner = %(node)s AND EXISTS (
        SELECT 1 FROM nodes n WHERE n.node_id = %(node)s AND n.state = 'live' AND n.expires_at > now())))
FOR UPDATE OF s
"""
_LOG_OWNED = "SELECT session_id FROM sessions WHERE session_id = ANY(%(ids)s) AND owner IS NOT NULL FOR SHARE"
_UPSERT_HEAD = f"""
INSERT INTO output_heads ({", ".join(HEAD_COLUMNS)}) VALUES ({", ".join(["%s"] * len(HEAD_COLUMNS))})
ON CONFLICT (session_id) DO UPDATE SET {", ".join(f"{c} = excluded.{c}" for c in HEAD_COLUMNS[1:])}
"""
_UPSERT_PIECE = f"""
INSERT INTO output_rows ({", ".join(ROW_COLUMNS)}) VALUES ({", ".join(["%s"] * len(ROW_COLUMNS))})
ON CONFLICT (session_id, log_id, start_at) DO UPDATE
SET stop_at = excluded.stop_at, kind = excluded.kind, size = excluded.size, data = excluded.data
"""
_TRIM_PIECES = "DELETE FROM output_rows WHERE session_id = %s AND (log_id <> %s OR stop_at <= %s)"
_DELETE_LOGS = (
    "DELETE FROM output_heads WHERE session_id = ANY(%(ids)s)",
    "DELETE FROM output_rows WHERE session_id = ANY(%(ids)s)",
)


@attrs.frozen
class _Row:
    session_id: str
    backend: str
    body: str
    saved_at: float


@attrs.frozen
class _Outcome:
    fenced: frozenset[str]
    guarded: int
    """Rows left alone because they hold a newer snapshot schema."""
    written: int
    deleted: int
    nbytes: int = 0
    log_rows: int = 0
    log_bytes: int = 0


@final
class PostgresStore:
    """A `SnapshotStore` in PostgreSQL. Construction does no I/O; `open` (or first use) does.

    Prefer `open_postgres_store`, which checks the schema at once and closes the store for you.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        secret_patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS,
        guard: WriteGuard | None = None,
        application_name: str = "tether store",
    ) -> None:
        self.url = url
        self.schema = schema
        self.guard = guard
        self._patterns = tuple(secret_patterns)
        self._conn = PgConnection(url, schema=schema, application_name=application_name)
        self._books = StoreBookkeeping()
        self._checked = False
        self.fenced_total = 0
        """Sessions reported in `WriteResult.fenced` so far."""

    @property
    def where(self) -> str:
        """The database, for messages (no password)."""
        return self._conn.where

    @property
    def connection(self) -> PgConnection:
        return self._conn

    # -- the store protocol -------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and check the schema version (a `StoreError` says to run `tether store migrate`)."""
        await self._conn.run(self._check_sync)

    async def load_all(self) -> LoadReport:
        """Every stored snapshot (rows declared but never written have none and are skipped),
        and every readable output log."""
        snapshots, errors = await self._conn.run(self._load_sync)
        logs, log_errors = await self._conn.run(self._load_logs_sync)
        return self._books.loaded(snapshots, errors, logs, log_errors)

    async def write(
        self,
        snapshots: Sequence[SessionSnapshot],
        deleted: Sequence[str] = (),
        *,
        fences: Mapping[str, int] | None = None,
        logs: Sequence[LogFlush] = (),
    ) -> WriteResult:
        """Upsert, delete and apply log flushes in one transaction; sessions whose fence was lost
        come back in `fenced`.

        A snapshot (or log) in `fences` is written only while its row still holds
        that fence; one not in `fences` only when nobody owns its row. Quarantined
        ids are skipped. An encoding failure (`SnapshotError`) or a database
        failure (`StoreError`) leaves the database exactly as it was.
        """
        fences = dict(fences or {})
        keep, drop, skipped = self._books.quarantine.split(snapshots, deleted)
        flushes = self._books.quarantine.logs(logs, deleted)
        started = time.perf_counter()
        node: int | None = None
        lost: set[str] = set()
        if self.guard is not None:
            node = self.guard.writer()
            if node is None:  # the lease is gone: nothing fenced may leave this process
                lost = {s.spec.id for s in keep if s.spec.id in fences} | {d for d in drop if d in fences}
                lost |= {f.session_id for f in flushes if f.session_id in fences}
                keep = [s for s in keep if s.spec.id not in fences]
                drop = [d for d in drop if d not in fences]
                flushes = [f for f in flushes if f.session_id not in fences]
        outcome = _Outcome(frozenset(), 0, 0, 0)
        if keep or drop or flushes:
            outcome = await self._conn.run(lambda conn: self._write_sync(conn, keep, drop, fences, node, flushes))
            self._books.counters.wrote_logs(outcome.log_rows, outcome.log_bytes)
        fenced = outcome.fenced | lost
        self.fenced_total += len(fenced)
        if fenced:
            logger.warning("%d sessions were taken over by another owner; nothing of theirs was written", len(fenced))
            if self.guard is not None:
                self.guard.fenced(frozenset(fenced))
        self._books.counters.wrote(
            outcome.written,
            outcome.deleted,
            skipped + outcome.guarded,
            outcome.nbytes,
            time.perf_counter() - started,
        )
        return WriteResult(fenced=frozenset(fenced))

    async def aclose(self) -> None:
        await self._conn.aclose()

    def stats(self) -> StoreStats:
        return self._books.stats()

    @property
    def quarantined(self) -> frozenset[str]:
        """Ids whose rows failed to load and are left untouched."""
        return self._books.quarantined

    def release(self, session_ids: Iterable[str]) -> None:
        """Allow writes to overwrite (and deletes to remove) these quarantined rows again."""
        self._books.release(session_ids)

    # -- worker-thread side -------------------------------------------------------------------

    def _check_sync(self, conn: psycopg.Connection[Any]) -> None:
        check_schema(conn, self.schema, self.where)
        self._checked = True

    def _load_sync(self, conn: psycopg.Connection[Any]) -> tuple[list[SessionSnapshot], list[SnapshotError]]:
        if not self._checked:
            self._check_sync(conn)
        snapshots: list[SessionSnapshot] = []
        errors: list[SnapshotError] = []
        for sid, body in conn.execute("SELECT session_id, body FROM sessions WHERE body IS NOT NULL ORDER BY 1"):
            try:
                snapshots.append(decode_snapshot(str(sid), body))
            except SnapshotError as exc:
                errors.append(exc)
        return snapshots, errors

    def _write_sync(
        self,
        conn: psycopg.Connection[Any],
        snapshots: Sequence[SessionSnapshot],
        drop: Sequence[str],
        fences: Mapping[str, int],
        node: int | None,
        flushes: Sequence[LogFlush] = (),
    ) -> _Outcome:
        # Encoded here, in the worker thread, so thousands of snapshots never stall the Trio loop
        # (where the lease is renewed), and before the first statement: a bad snapshot (SnapshotError)
        # fails the batch with nothing sent.
        rows = [_Row(s.spec.id, s.spec.backend, encode_snapshot(s, self._patterns), s.saved_at) for s in snapshots]
        if not self._checked:
            self._check_sync(conn)
        fenced_rows = [r for r in rows if r.session_id in fences]
        free_rows = [r for r in rows if r.session_id not in fences]
        fenced_drop = [d for d in drop if d in fences]
        free_drop = [d for d in drop if d not in fences]
        written: set[str] = set()
        removed: set[str] = set()
        if fenced_rows:
            params = {
                "ids": [r.session_id for r in fenced_rows],
                "schemas": [SNAPSHOT_SCHEMA_VERSION] * len(fenced_rows),
                "bodies": [r.body for r in fenced_rows],
                "saved": [r.saved_at for r in fenced_rows],
                "fences": [fences[r.session_id] for r in fenced_rows],
                "node": node,
            }
            written |= {row[0] for row in conn.execute(_FENCED_UPDATE, params)}
        if free_rows:
            params = {
                "ids": [r.session_id for r in free_rows],
                "backends": [r.backend for r in free_rows],
                "schemas": [SNAPSHOT_SCHEMA_VERSION] * len(free_rows),
                "bodies": [r.body for r in free_rows],
                "saved": [r.saved_at for r in free_rows],
            }
            written |= {row[0] for row in conn.execute(_FREE_UPSERT, params)}
        if fenced_drop:
            params = {"ids": fenced_drop, "fences": [fences[d] for d in fenced_drop], "node": node}
            removed |= {row[0] for row in conn.execute(_FENCED_DELETE, params)}
        if free_drop:
            removed |= {row[0] for row in conn.execute(_FREE_DELETE, {"ids": free_drop})}
        missing = [r.session_id for r in rows if r.session_id not in written]
        missing_drop = [d for d in drop if d not in removed]
        fenced: set[str] = set()
        guarded = 0
        if missing or missing_drop:
            found = {
                row[0]: row[1:] for row in conn.execute(_ROWS_OF, {"ids": [*missing, *missing_drop]})
            }
            for sid in missing:
                current = found.get(sid)
                if current is None:  # deleted by its owner (unregistered): ours is stale
                    fenced.add(sid)
                    continue
                fence, schema, _owner = current
                given = fences.get(sid)
                if schema is not None and schema > SNAPSHOT_SCHEMA_VERSION and (given is None or fence == given):
                    guarded += 1
                else:
                    fenced.add(sid)
            fenced |= {d for d in missing_drop if d in found}
        if removed:
            for statement in _DELETE_LOGS:
                conn.execute(statement, {"ids": sorted(removed)})
        refused, log_rows, log_bytes = self._write_logs_sync(conn, flushes, fences, node, fenced)
        fenced |= refused
        if guarded:
            logger.warning(
                "%d snapshots not written: their rows hold a newer schema than %d", guarded, SNAPSHOT_SCHEMA_VERSION
            )
        return _Outcome(
            frozenset(fenced), guarded, len(written), len(removed), sum(len(r.body) for r in rows), log_rows, log_bytes
        )

    def _write_logs_sync(
        self,
        conn: psycopg.Connection[Any],
        flushes: Sequence[LogFlush],
        fences: Mapping[str, int],
        node: int | None,
        fenced: set[str],
    ) -> tuple[set[str], int, int]:
        """Apply the log flushes whose session this writer may write; (refused ids, rows, bytes)."""
        if not flushes:
            return set(), 0, 0
        held = [f.session_id for f in flushes if f.session_id in fences and f.session_id not in fenced]
        allowed: set[str] = set()
        if held:
            params = {"ids": held, "fences": [fences[sid] for sid in held], "node": node}
            allowed |= {row[0] for row in conn.execute(_LOG_FENCE_HELD, params)}
        free = [f.session_id for f in flushes if f.session_id not in fences]
        if free:
            owned = {row[0] for row in conn.execute(_LOG_OWNED, {"ids": free})}
            allowed |= set(free) - owned
        apply = [f for f in flushes if f.session_id in allowed]
        pieces = [log_row(f.session_id, f.head.log_id, r) for f in apply for r in f.rows]
        with conn.cursor() as cur:
            cur.executemany(_UPSERT_HEAD, [head_row(f.session_id, f.head) for f in apply])
            if pieces:
                cur.executemany(_UPSERT_PIECE, pieces)
            cur.executemany(_TRIM_PIECES, [(f.session_id, f.head.log_id, f.head.start) for f in apply])
        refused = {f.session_id for f in flushes} - allowed
        return refused, len(pieces), sum(len(r.data) for f in apply for r in f.rows)

    def _load_logs_sync(self, conn: psycopg.Connection[Any]) -> tuple[dict[str, StoredLog], list[SnapshotError]]:
        heads = conn.execute(f"SELECT {', '.join(HEAD_COLUMNS)} FROM output_heads ORDER BY session_id").fetchall()
        rows = conn.execute(
            "SELECT r.session_id, r.start_at, r.stop_at, r.kind, r.size, r.data FROM output_rows r "
            "JOIN output_heads h ON h.session_id = r.session_id AND h.log_id = r.log_id "
            "ORDER BY r.session_id, r.start_at"
        ).fetchall()
        return stored_logs(heads, rows)


@asynccontextmanager
async def open_postgres_store(
    url: str,
    *,
    schema: str = DEFAULT_SCHEMA,
    secret_patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS,
    guard: WriteGuard | None = None,
) -> AsyncIterator[PostgresStore]:
    """An async context manager: an open `PostgresStore` whose schema was checked, closed on exit."""
    import trio

    store = PostgresStore(url, schema=schema, secret_patterns=secret_patterns, guard=guard)
    try:
        await store.open()
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
