"""A damaged or partly unreadable SQLite file has a way forward that loses nothing (check, repair, release)."""
# ruff: noqa: ASYNC240 -- these tests drive a file on purpose, from trio tests

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tether.rules._errors import CorruptStoreError, StoreError
from tether.store._codec import snapshot_to_dict
from tether.store._maintenance import check_store, release_rows, repair_store
from tether.store._ownerlock import OwnerLock
from tether.store._sqlite import DB_FILENAME, open_sqlite_store

from .test_sqlite_store import plant, raw_rows, snap


async def _filled(path: Path, count: int) -> None:
    async with open_sqlite_store(path) as store:
        await store.write([snap(f"s{i:04d}", options={"pad": "x" * 300}) for i in range(count)])


def _damage(path: Path) -> None:
    """Overwrite some of the table's pages in the middle of the file, as a bad disk would."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for n in range(5, 9):
        data[n * page + 100 : n * page + 3000] = b"\xde\xad" * 1450
    path.write_bytes(bytes(data))


async def test_a_damaged_file_is_refused_then_repaired_keeping_every_readable_row(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    await _filled(path, 300)
    _damage(path)
    report = check_store(path)
    assert not report.ok and report.problem.startswith("corrupt")
    with pytest.raises(CorruptStoreError):
        async with open_sqlite_store(path):
            pass
    repaired = repair_store(path)
    assert Path(repaired.moved_to).exists(), "the damaged file is kept"
    assert repaired.copied > 200 and repaired.copied + repaired.lost >= 250
    assert check_store(path).ok
    async with open_sqlite_store(path) as store:
        loaded = await store.load_all()
    assert len(loaded.snapshots) + len(loaded.errors) == repaired.copied


async def test_release_saves_a_kept_row_and_then_deletes_it(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    await _filled(path, 2)
    bad = json.dumps(snapshot_to_dict(snap("newer")) | {"schema": 99})
    plant(path, [("newer", 99, bad)])
    report = check_store(path)
    assert report.ok and [sid for sid, _ in report.unreadable] == ["newer"]
    saved = release_rows(path, ["newer"])
    assert json.loads(saved["newer"].read_text())["body"] == bad
    assert saved["newer"].stat().st_mode & 0o077 == 0
    assert "newer" not in raw_rows(path) and len(raw_rows(path)) == 2


async def test_repair_and_release_refuse_to_run_under_a_live_daemon(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    await _filled(path, 1)
    lock = OwnerLock(path.with_name(path.name + ".lock"))
    lock.acquire()
    try:
        with pytest.raises(StoreError, match="stop the daemon first"):
            repair_store(path)
        with pytest.raises(StoreError, match="stop the daemon first"):
            release_rows(path, ["s0000"])
        assert check_store(path).ok, "check only reads: it works beside a daemon"
    finally:
        lock.release()


async def test_repair_walks_sparse_rowids_in_steps_of_rows_not_of_numbers(tmp_path: Path) -> None:
    """Rowids that grew far past the row count (deleted output rows, a garbage number on a bad page)
    are walked row by row: a row at rowid 10**15 is copied and the repair ends at once."""
    path = tmp_path / DB_FILENAME
    await _filled(path, 3)
    body = json.dumps(snapshot_to_dict(snap("far")))
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO sessions (rowid, id, schema, body, saved_at) VALUES (?, 'far', 1, ?, 0)",
                 (10**15, body))
    conn.commit()
    conn.close()
    repaired = repair_store(path)
    assert (repaired.copied, repaired.lost, repaired.unreadable_tables) == (4, 0, ())
    assert set(raw_rows(path)) == {"s0000", "s0001", "s0002", "far"}


async def test_repair_goes_past_a_damaged_page_and_names_a_table_it_cannot_read(tmp_path: Path) -> None:
    """Every row after a damaged page is still copied; a table whose first page is gone is named."""
    path = tmp_path / DB_FILENAME
    await _filled(path, 300)
    _damage(path)
    repaired = repair_store(path)
    copied = set(raw_rows(path))
    assert "s0299" in copied, "the walk went on past the damage to the table's end"
    assert len(copied) == repaired.copied and 0 < repaired.lost < 100
    second = tmp_path / "second" / DB_FILENAME
    second.parent.mkdir()
    await _filled(second, 3)
    conn = sqlite3.connect(second)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'sessions'").fetchone()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(second.read_bytes())
    data[(root - 1) * 4096 : root * 4096] = b"\xde\xad" * 2048
    second.write_bytes(bytes(data))
    assert repair_store(second).unreadable_tables == ("sessions",)
