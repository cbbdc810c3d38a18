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
