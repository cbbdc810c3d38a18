"""Looking after the SQLite file by hand: check it, repair it, release a quarantined row.

For the user whose daemon refuses to start (a damaged file) or who sees rows
kept aside as unreadable. Nothing here loses data: `repair` moves the old
file aside (``<name>.corrupt-<time>``, with its -wal and -shm) and copies
every row it can still read, byte for byte, into a fresh file; `release`
saves a row's raw text to ``released/<id>-<time>.json`` beside the database
before it deletes it. Both take the store's owner lock, so they refuse to
run under a live daemon; `check` only reads and works beside one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs

from ..rules._errors import CorruptStoreError, SnapshotError, StoreError
from ._ownerlock import LockHeldError, OwnerLock
from ._sqlite import _CREATE, APPLICATION_ID, LAYOUT_VERSION, SqliteStore, decode_row

RELEASED_DIR = "released"


@attrs.frozen(kw_only=True)
class CheckReport:
    """What `check_store` found."""

    path: str
    ok: bool
    """The file opens, passes SQLite's integrity check and is a tether database."""
    problem: str = ""
    rows: int = 0
    unreadable: tuple[tuple[str, str], ...] = ()
    """(session id, why) of each row a daemon would keep aside (quarantine)."""


@attrs.frozen(kw_only=True)
class RepairReport:
    moved_to: str
    """Where the old file is now (untouched)."""
    copied: int
    """Snapshot rows copied."""
    lost: int
    """Snapshot rows (or pages of rows) SQLite could no longer read at all."""
    log_rows: int = 0
    """Output-log rows (heads and pieces) copied; a log that lost a piece is reported on load and
    replaced by the session's next log, like any damaged log."""
    unreadable_tables: tuple[str, ...] = ()
    """Tables SQLite could not read at all (the page their rows start from is damaged): their rows
    are not counted in `lost`, and only the moved-aside file still holds them."""


def _owner_lock(path: Path) -> OwnerLock:
    lock = OwnerLock(path.with_name(path.name + ".lock"))
    try:
        lock.acquire()
    except LockHeldError as exc:
        raise StoreError(str(path), f"in use by {exc.holder}: stop the daemon first") from None
    return lock


def check_store(path: Path) -> CheckReport:
    """Read-only health check of a tether SQLite file (safe beside a running daemon)."""
    if not path.exists():
        return CheckReport(path=str(path), ok=False, problem="no such file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return CheckReport(path=str(path), ok=False, problem=f"cannot be opened: {exc}")
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            return CheckReport(path=str(path), ok=False, problem="corrupt: " + "; ".join(problems[:5]))
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if app_id not in (0, APPLICATION_ID):
            return CheckReport(path=str(path), ok=False, problem=f"not a tether database (application_id {app_id:#x})")
        rows = conn.execute("SELECT id, schema, body FROM sessions ORDER BY id").fetchall()
    except sqlite3.DatabaseError as exc:
        return CheckReport(path=str(path), ok=False, problem=f"corrupt: {exc}")
    finally:
        conn.close()
    unreadable = []
    for sid, schema, body in rows:
        try:
            decode_row(str(sid), schema, body)
        except SnapshotError as exc:
            unreadable.append((str(sid), exc.problem))
    return CheckReport(path=str(path), ok=True, rows=len(rows), unreadable=tuple(unreadable))


def repair_store(path: Path) -> RepairReport:
    """Move a damaged file aside and start a fresh one holding every row still readable."""
    lock = _owner_lock(path)
    try:
        store = SqliteStore(path)
        moved = store._move_aside()
        unreadable: list[str] = []
        rows, lost = _salvage(moved, "sessions", _SESSION_COLUMNS, unreadable)
        tables = {table: _salvage(moved, table, columns, unreadable)[0] for table, columns in _LOG_TABLES.items()}
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            os.chmod(path, 0o600)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _CREATE:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {LAYOUT_VERSION}")
            conn.executemany(_insert("sessions", _SESSION_COLUMNS), rows)
            for table, columns in _LOG_TABLES.items():
                conn.executemany(_insert(table, columns), tables[table])
            conn.execute("COMMIT")
        finally:
            conn.close()
    finally:
        lock.release()
    log_rows = sum(len(found) for found in tables.values())
    return RepairReport(moved_to=str(moved), copied=len(rows), lost=lost, log_rows=log_rows,
                        unreadable_tables=tuple(unreadable))


_SESSION_COLUMNS = ("id", "schema", "body", "saved_at")
_LOG_TABLES = {
    "output_heads": ("session_id", "log_id", "start_at", "end_at", "reserved_to", "peer_stream", "peer_base",
                     "interrupted", "trimmed_unknown_before"),
    "output_rows": ("session_id", "log_id", "start_at", "stop_at", "kind", "size", "data"),
}


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_MAX_ROWID = 2**63 - 1


def _salvage(
    path: Path, table: str, columns: tuple[str, ...], unreadable: list[str]
) -> tuple[list[tuple[object, ...]], int]:
    """Every row of `table` in `path` SQLite can still read, and how many rowids lay in damaged
    places (at most that many rows lost). A table a layout-1 file does not have yields nothing;
    one that cannot be read at all is named in `unreadable`."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        unreadable.append(table)
        return [], 0
    try:
        try:
            known = conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (table,)).fetchone()
            if known is None:
                return [], 0
            conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()
        except sqlite3.DatabaseError:
            unreadable.append(table)
            return [], 0
        return _walk(conn, f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 1")
    finally:
        conn.close()


def _walk(conn: sqlite3.Connection, select_next: str) -> tuple[list[tuple[object, ...]], int]:
    """Row after row by seeking the next rowid, so a damaged page costs only the rows on it and the
    walk takes as many steps as there are rows (rowids may be sparse, or garbage on a bad page).

    A seek that lands on a damaged page fails; the walk then looks further ahead in doubling
    steps until a seek succeeds and narrows back (bisection) to the first place past the damage.
    The rowids skipped count as lost (an upper bound: some may have been deleted rows); damage
    at the very end counts as one.
    """

    def next_row(after: int) -> tuple[int, tuple[object, ...]] | None:
        found = conn.execute(select_next, (after,)).fetchone()
        return None if found is None else (int(found[0]), tuple(found[1:]))

    rows: list[tuple[object, ...]] = []
    lost = 0
    after = 0  # tether's tables never set a rowid: SQLite numbers them from 1
    while True:
        try:
            found = next_row(after)
        except sqlite3.DatabaseError:
            found = _past_damage(next_row, after)
            lost += max(1, found[0] - after - 1) if found is not None else 1
        if found is None:
            return rows, lost
        after = found[0]
        rows.append(found[1])


def _past_damage(
    next_row: Callable[[int], tuple[int, tuple[object, ...]] | None], bad: int
) -> tuple[int, tuple[object, ...]] | None:
    """The first row a seek past `bad` (whose seek failed) can reach; None when none is past it."""
    good: int | None = None
    found = None
    step = 1
    while good is None:
        if bad >= _MAX_ROWID:
            return None
        probe = min(bad + step, _MAX_ROWID)
        try:
            found, good = next_row(probe), probe
        except sqlite3.DatabaseError:
            bad, step = probe, step * 2
    while good - bad > 1:  # bisect: a seek from `bad` fails, one from `good` succeeds
        middle = (bad + good) // 2
        try:
            found, good = next_row(middle), middle
        except sqlite3.DatabaseError:
            bad = middle
    return found


def release_rows(path: Path, session_ids: Iterable[str]) -> dict[str, Path]:
    """Save each row's raw text beside the database, then delete the row; returns where each went."""
    lock = _owner_lock(path)
    released: dict[str, Path] = {}
    try:
        folder = path.parent / RELEASED_DIR
        folder.mkdir(mode=0o700, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for sid in session_ids:
                row = conn.execute("SELECT schema, body, saved_at FROM sessions WHERE id = ?", (sid,)).fetchone()
                if row is None:
                    raise StoreError(str(path), f"no stored session {sid!r}")
                target = folder / f"{_safe(sid)}-{stamp}.json"
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    body = row[1].decode("utf-8", "replace") if isinstance(row[1], bytes) else str(row[1])
                    json.dump({"id": sid, "schema": row[0], "saved_at": row[2], "body": body}, file)
                conn.execute("DELETE FROM sessions WHERE id = ?", (sid,))
                released[sid] = target
        except sqlite3.DatabaseError as exc:
            raise CorruptStoreError(str(path), f"{exc}; run `tether store repair` first") from exc
        finally:
            conn.close()
    finally:
        lock.release()
    return released


def _safe(session_id: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in session_id)
