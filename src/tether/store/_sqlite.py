"""The embedded snapshot store: one SQLite file in WAL mode, driven from Trio.

Why these choices:

- stdlib `sqlite3` has no async API, so every call runs in a worker thread
  (`trio.to_thread.run_sync`, not abandoned on cancel, so a transaction is
  never left half-way). One connection, used by one thread at a time under a
  `trio.Lock` (hence ``check_same_thread=False``).
- WAL: the flusher's commits never block a reader (``tether status``, a
  backup), and a commit is one append to the WAL instead of a rewrite.
- ``synchronous=NORMAL`` by default: in WAL mode a commit is already in the
  operating system's hands when it returns, so it survives the tether
  process being killed (SIGKILL, OOM) - the crash this store exists for.
  Only a power loss or kernel crash can lose the last commits, and the
  flusher is write-behind anyway, so an fsync per batch would buy little.
  ``durable=True`` selects ``synchronous=FULL`` (fsync the WAL on every
  commit) for users who need a commit to survive power loss too.
- One writer: opening takes an exclusive `flock` on ``<name>.lock`` (the
  kernel drops it when the holder dies, SIGKILL included), so a second
  daemon on the same file is refused with a `StoreError` naming the first
  one's pid instead of silently overwriting its sessions.
- Secrets: snapshots are redacted before encoding; the directory is 0700
  and the database 0600 (SQLite gives its -wal and -shm files the database
  file's mode, and we tighten any we find).
- Bad input loses nothing. A file that is not a readable tether database is
  refused with a `StoreError` naming it, and left as it is, unless
  ``move_aside_corrupt=True`` renames it (and its -wal/-shm) to
  ``<name>.corrupt-<time>`` and starts afresh. A row that fails to load is
  reported and quarantined: kept byte for byte, never overwritten or deleted
  by `write` until `release`d. Upserts also refuse to replace a row written
  with a newer schema, at the SQL level.
- Output logs (`tether.rules._output`) live in two tables beside the
  snapshots, written in the same transaction: ``output_heads`` (one row per
  session: the log's identity, window and reservation) and ``output_rows``
  (data rows of at most ``LogLimits.row_bytes`` and loss rows). A flush
  upserts its rows, then deletes the session's rows that left the window or
  belong to an older log. Disk per session is therefore bounded by
  ``max_bytes + row_bytes`` of data in at most ``ceil(max_bytes / row_bytes)
  + 1 + max_gaps`` rows, plus the head; SQLite reuses the freed pages.
- Layouts: 1 had only ``sessions``; 2 adds the output tables. Opening a
  layout-1 file creates them in one transaction and keeps every snapshot.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar, final

import trio

from ..rules._errors import CorruptStoreError, SnapshotError, StoreError
from ..rules._output import LogFlush, StoredLog
from ..rules._paths import default_state_dir
from ..rules._secrets import DEFAULT_SECRET_PATTERNS
from ..rules._snapshots import LoadReport, SessionSnapshot, StoreStats, WriteResult
from ._bookkeeping import StoreBookkeeping
from ._codec import SNAPSHOT_SCHEMA_VERSION, encode_snapshot, parse_snapshot_text, snapshot_from_dict
from ._logrows import HEAD_COLUMNS, head_row, log_row, stored_logs
from ._ownerlock import LockHeldError, OwnerLock

logger = logging.getLogger("tether.store")

T = TypeVar("T")

DB_FILENAME = "tether.sqlite3"
APPLICATION_ID = 0x54455448
"""``PRAGMA application_id`` of a tether database ("TETH"), so we never adopt someone else's file."""
LAYOUT_VERSION = 2
"""``PRAGMA user_version``: the table layout (not the snapshot schema, which lives per row).
1: sessions; 2: sessions, output_heads, output_rows."""
_SQLITE_HEADER = b"SQLite format 3\x00"
_SIDE_FILES = ("-wal", "-shm")

_CREATE = (
    """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY NOT NULL,
    schema INTEGER NOT NULL,
    body TEXT NOT NULL,
    saved_at REAL NOT NULL
)
""",
    """
CREATE TABLE IF NOT EXISTS output_heads (
    session_id TEXT PRIMARY KEY NOT NULL,
    log_id TEXT NOT NULL,
    start_at INTEGER NOT NULL,
    end_at INTEGER NOT NULL,
    reserved_to INTEGER NOT NULL,
    peer_stream TEXT,
    peer_base INTEGER NOT NULL,
    interrupted INTEGER NOT NULL,
    trimmed_unknown_before INTEGER NOT NULL
)
""",
    """
CREATE TABLE IF NOT EXISTS output_rows (
    session_id TEXT NOT NULL,
    log_id TEXT NOT NULL,
    start_at INTEGER NOT NULL,
    stop_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER,
    data BLOB NOT NULL,
    PRIMARY KEY (session_id, log_id, start_at)
)
""",
)
_TABLES = frozenset({"sessions", "output_heads", "output_rows"})
_UPSERT = """
INSERT INTO sessions (id, schema, body, saved_at) VALUES (?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET schema = excluded.schema, body = excluded.body, saved_at = excluded.saved_at
WHERE sessions.schema <= excluded.schema
"""
_DELETE = "DELETE FROM sessions WHERE id = ?"
_UPSERT_HEAD = """
INSERT INTO output_heads (session_id, log_id, start_at, end_at, reserved_to, peer_stream, peer_base, interrupted,
                          trimmed_unknown_before)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (session_id) DO UPDATE SET log_id = excluded.log_id, start_at = excluded.start_at,
    end_at = excluded.end_at, reserved_to = excluded.reserved_to, peer_stream = excluded.peer_stream,
    peer_base = excluded.peer_base, interrupted = excluded.interrupted,
    trimmed_unknown_before = excluded.trimmed_unknown_before
"""
_UPSERT_ROW = """
INSERT INTO output_rows (session_id, log_id, start_at, stop_at, kind, size, data) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (session_id, log_id, start_at) DO UPDATE SET stop_at = excluded.stop_at, kind = excluded.kind,
    size = excluded.size, data = excluded.data
"""
_TRIM_ROWS = "DELETE FROM output_rows WHERE session_id = ? AND (log_id != ? OR stop_at <= ?)"
_DELETE_HEAD = "DELETE FROM output_heads WHERE session_id = ?"
_DELETE_ROWS = "DELETE FROM output_rows WHERE session_id = ?"


def default_store_path() -> Path:
    """The default SQLite database file."""
    return default_state_dir() / DB_FILENAME


@final
class SqliteStore:
    """A `SnapshotStore` in one SQLite file. Construction does no I/O; `open` (or first use) does.

    Prefer `open_sqlite_store`, which opens it, reports a bad file at once and
    closes it for you.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        secret_patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS,
        durable: bool = False,
        move_aside_corrupt: bool = False,
    ) -> None:
        self._default_location = path is None
        self.path = Path(path) if path is not None else default_store_path()
        self.durable = durable
        self.move_aside_corrupt = move_aside_corrupt
        self._patterns = tuple(secret_patterns)
        self._lock = trio.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._owner = OwnerLock(self._side(".lock"))
        self._books = StoreBookkeeping()
        self._threads = trio.CapacityLimiter(1)
        """The store's own worker thread: plugins blocked in trio's default thread pool can never
        starve persistence (the limiter, not the pool, is what bounds trio's threads)."""

    # -- the store protocol -------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if needed) and check the database; a no-op when already open."""
        async with self._lock:
            await self._ensure_open()

    async def load_all(self) -> LoadReport:
        async with self._lock:
            conn = await self._ensure_open()
            snapshots, errors = await self._in_thread(lambda: self._load_sync(conn))
            logs, log_errors = await self._in_thread(lambda: self._load_logs_sync(conn))
            return self._books.loaded(snapshots, errors, logs, log_errors)

    async def write(
        self,
        snapshots: Sequence[SessionSnapshot],
        deleted: Sequence[str] = (),
        *,
        fences: Mapping[str, int] | None = None,
        logs: Sequence[LogFlush] = (),
    ) -> WriteResult:
        """Upsert, delete and apply log flushes in one transaction. `fences` are ignored: one owner
        per file (the lock).

        Quarantined ids are skipped (logged once, counted in ``rows_skipped``).
        An encoding failure (`SnapshotError`) or a database failure
        (`StoreError`) leaves the database exactly as it was.
        """
        async with self._lock:
            conn = await self._ensure_open()
            keep, drop, skipped = self._books.quarantine.split(snapshots, deleted)
            flushes = self._books.quarantine.logs(logs, deleted)
            started = time.perf_counter()
            nbytes, guarded = await self._in_thread(lambda: self._write_sync(conn, keep, drop, flushes))
            self._books.counters.wrote_logs(
                sum(len(f.rows) for f in flushes), sum(len(r.data) for f in flushes for r in f.rows)
            )
            self._books.counters.wrote(
                len(keep) - guarded, len(drop), skipped + guarded, nbytes, time.perf_counter() - started
            )
            return WriteResult()

    async def aclose(self) -> None:
        """Wait for the write in progress, then close (checkpointing the WAL). Idempotent."""
        async with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                await self._in_thread(conn.close)
            else:
                await trio.lowlevel.checkpoint()
            self._owner.release()

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

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self._threads)

    async def _ensure_open(self) -> sqlite3.Connection:
        if self._closed:
            raise trio.ClosedResourceError("the snapshot store is closed")
        if self._conn is None:
            self._conn = await self._in_thread(self._open_sync)
        return self._conn

    def _open_sync(self) -> sqlite3.Connection:
        self._prepare_files()
        try:
            self._owner.acquire()
        except LockHeldError as exc:
            raise StoreError(
                str(self.path),
                f"in use by {exc.holder} (lock {exc.path}): two writers would overwrite each other's sessions",
            ) from None
        try:
            try:
                return self._connect_checked()
            except CorruptStoreError as exc:
                if not self.move_aside_corrupt:
                    raise
                moved = self._move_aside()
                logger.warning("%s; moved it aside to %s and started an empty store", exc, moved)
                self._prepare_files()
                return self._connect_checked()
        except BaseException:
            self._owner.release()
            raise

    def _prepare_files(self) -> None:
        """Private directory and file modes before SQLite creates anything."""
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(parent, 0o700)
        elif self._default_location:
            os.chmod(parent, 0o700)
        if not self.path.exists():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        for file in (self.path, *(self._side(s) for s in _SIDE_FILES)):
            try:
                mode = file.stat().st_mode
            except FileNotFoundError:
                continue
            if stat.S_IMODE(mode) & 0o077:
                os.chmod(file, 0o600)

    def _side(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)

    def _fail(self, problem: str) -> StoreError:
        return StoreError(str(self.path), problem)

    def _corrupt(self, problem: str) -> CorruptStoreError:
        return CorruptStoreError(str(self.path), f"{problem}; refusing to touch it")

    def _connect_checked(self) -> sqlite3.Connection:
        with open(self.path, "rb") as f:
            header = f.read(len(_SQLITE_HEADER))
        if header and header != _SQLITE_HEADER:
            raise self._corrupt("is not an SQLite database (bad header)")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            self._check(conn)
            self._setup(conn)
        except sqlite3.OperationalError as exc:  # locked, I/O error, read-only: not corruption
            conn.close()
            raise self._fail(f"cannot be opened: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
            conn.close()
            raise self._corrupt(f"is corrupt ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _check(self, conn: sqlite3.Connection) -> None:
        """Read-only checks, before anything is written to the file."""
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise self._corrupt(f"is corrupt ({'; '.join(problems[:5])})")
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if app_id not in (0, APPLICATION_ID):
            raise self._corrupt(f"belongs to another application (application_id {app_id:#x})")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        if app_id == 0 and tables - _TABLES:
            raise self._corrupt(f"is not a tether database (has tables {', '.join(sorted(tables))})")
        (layout,) = conn.execute("PRAGMA user_version").fetchone()
        if layout > LAYOUT_VERSION:
            raise self._fail(
                f"was written by a newer tether (layout {layout} > {LAYOUT_VERSION}); upgrade tether to read it"
            )

    def _setup(self, conn: sqlite3.Connection) -> None:
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise self._fail(f"cannot use WAL journaling (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        (layout,) = conn.execute("PRAGMA user_version").fetchone()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _CREATE:
                conn.execute(statement)
            if 0 < layout < LAYOUT_VERSION:
                logger.info("%s: table layout %d -> %d (output log tables added)", self.path, layout, LAYOUT_VERSION)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {LAYOUT_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._prepare_files()  # the -wal and -shm files now exist: make sure they are private

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        os.replace(self.path, target)
        for suffix in _SIDE_FILES:
            side = self._side(suffix)
            if side.exists():
                os.replace(side, target.with_name(target.name + suffix))
        return target

    def _load_sync(self, conn: sqlite3.Connection) -> tuple[list[SessionSnapshot], list[SnapshotError]]:
        snapshots: list[SessionSnapshot] = []
        errors: list[SnapshotError] = []
        try:
            rows = conn.execute("SELECT id, schema, body FROM sessions ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            raise self._fail(f"cannot read snapshots: {exc}") from exc
        for sid, schema, body in rows:
            try:
                snapshots.append(decode_row(str(sid), schema, body))
            except SnapshotError as exc:
                errors.append(exc)
        return snapshots, errors

    def _load_logs_sync(self, conn: sqlite3.Connection) -> tuple[dict[str, StoredLog], list[SnapshotError]]:
        try:
            heads = conn.execute(f"SELECT {', '.join(HEAD_COLUMNS)} FROM output_heads ORDER BY session_id").fetchall()
            rows = conn.execute(
                "SELECT r.session_id, r.start_at, r.stop_at, r.kind, r.size, r.data FROM output_rows r "
                "JOIN output_heads h ON h.session_id = r.session_id AND h.log_id = r.log_id "
                "ORDER BY r.session_id, r.start_at"
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(f"cannot read output logs: {exc}") from exc
        return stored_logs(heads, rows)

    def _write_sync(
        self,
        conn: sqlite3.Connection,
        snapshots: Sequence[SessionSnapshot],
        deleted: Sequence[str],
        flushes: Sequence[LogFlush] = (),
    ) -> tuple[int, int]:
        """Returns (bytes encoded, rows left alone because they hold a newer schema)."""
        # Encode everything first: a bad snapshot must fail the batch before the transaction starts.
        rows = [(s.spec.id, SNAPSHOT_SCHEMA_VERSION, encode_snapshot(s, self._patterns), s.saved_at) for s in snapshots]
        heads = [head_row(f.session_id, f.head) for f in flushes]
        log_rows = [log_row(f.session_id, f.head.log_id, r) for f in flushes for r in f.rows]
        trims = [(f.session_id, f.head.log_id, f.head.start) for f in flushes]
        gone = [(sid,) for sid in deleted]
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = conn.executemany(_UPSERT, rows).rowcount if rows else 0
                conn.executemany(_DELETE, gone)
                conn.executemany(_DELETE_HEAD, gone)
                conn.executemany(_DELETE_ROWS, gone)
                conn.executemany(_UPSERT_HEAD, heads)
                conn.executemany(_UPSERT_ROW, log_rows)
                conn.executemany(_TRIM_ROWS, trims)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail(f"writing {len(rows)} snapshots and {len(deleted)} deletions failed: {exc}") from exc
        guarded = len(rows) - changed
        if guarded:
            logger.warning(
                "%d snapshots not written: their rows hold a newer schema than %d", guarded, SNAPSHOT_SCHEMA_VERSION
            )
        return sum(len(row[2]) for row in rows), guarded


def decode_row(sid: str, schema: object, body: object) -> SessionSnapshot:
    """One stored row as a snapshot; any problem (including a schema column that disagrees with
    the body it labels) is a `SnapshotError`, so the row is quarantined, never run."""
    if not isinstance(body, (str, bytes)):
        raise SnapshotError(sid, f"body is {type(body).__name__}, not JSON text")
    data = parse_snapshot_text(sid, body)
    if schema != data.get("schema"):
        raise SnapshotError(sid, f"the row's schema column says {schema!r} but its body says {data.get('schema')!r}")
    return snapshot_from_dict(data, session_id=sid)


@asynccontextmanager
async def open_sqlite_store(
    path: str | os.PathLike[str] | None = None,
    *,
    secret_patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS,
    durable: bool = False,
    move_aside_corrupt: bool = False,
) -> AsyncIterator[SqliteStore]:
    """An async context manager: an open, checked `SqliteStore`, closed on exit.

    `path` defaults to `default_store_path()`. A corrupt or foreign file
    raises `StoreError` here, before anything is written, unless
    `move_aside_corrupt` is set.
    """
    store = SqliteStore(path, secret_patterns=secret_patterns, durable=durable, move_aside_corrupt=move_aside_corrupt)
    await store.open()
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
