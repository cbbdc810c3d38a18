"""Output logs in the stores: written with snapshots in one transaction, loaded at start, bounded on disk.

The same contract runs against `MemoryStore` and a real SQLite file; the
SQLite-only tests cover the layout migration, damaged rows, the disk bound and
a writer killed with SIGKILL in the middle of its transactions.
"""

# Tests read and damage small files directly: blocking file I/O in them is the point, not a hazard.
# ruff: noqa: ASYNC240

from __future__ import annotations

import random
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tether.rules._errors import SnapshotError
from tether.rules._output import LogLimits, Loss, LossKind, OutputLog, PeerMark
from tether.rules._secrets import DEFAULT_SECRET_PATTERNS
from tether.rules._snapshots import SnapshotStore
from tether.store._codec import SNAPSHOT_SCHEMA_VERSION, encode_snapshot
from tether.store._memory import MemoryStore
from tether.store._sqlite import DB_FILENAME, LAYOUT_VERSION, open_sqlite_store

from .test_sqlite_store import snap


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SnapshotStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    async with open_sqlite_store(tmp_path / DB_FILENAME) as sqlite_store:
        yield sqlite_store


def busy_log(n: int = 5) -> OutputLog:
    log = OutputLog()
    for i in range(n):
        log.append(f"line {i}\n".encode())
    log.mark_lost(3)
    log.append_at(PeerMark("pane", 0), b"\x00\xff binary \x1b]7;file:///x\x07")
    return log


async def flush(store: SnapshotStore, logs: dict[str, OutputLog], **kwargs: object) -> None:
    """One write of every log's pending flush; each log is told once it committed."""
    flushes = [log.take_flush(sid) for sid, log in logs.items()]
    await store.write(kwargs.pop("snapshots", []), logs=flushes, **kwargs)  # type: ignore[arg-type]
    for log, f in zip(logs.values(), flushes, strict=True):
        log.flushed(f)


def everything(log: OutputLog) -> tuple[bytes, tuple[Loss, ...]]:
    got = log.read(0, 1 << 30)
    return got.data, got.losses


# -- the contract, for every store ---------------------------------------------------------------


async def test_logs_round_trip_beside_the_snapshots(store: SnapshotStore) -> None:
    """A write stores snapshots and log flushes together; a load hands both back."""
    logs = {"a": busy_log(), "b": busy_log(n=50)}
    await flush(store, logs, snapshots=[snap("a"), snap("b")])
    report = await store.load_all()
    assert [s.spec.id for s in report.snapshots] == ["a", "b"] and set(report.logs) == {"a", "b"}
    for sid, log in logs.items():
        restored = OutputLog.restore(report.logs[sid])
        assert restored.log_id == log.log_id and everything(restored) == everything(log)


async def test_later_flushes_add_rows_and_trim_old_ones(store: SnapshotStore) -> None:
    """Each flush writes only what is new, and rows that left the window go."""
    limits = LogLimits(max_bytes=100, row_bytes=16)
    log = OutputLog(limits)
    for i in range(40):
        log.append(f"{i:04d}|".encode())
        await flush(store, {"s": log})
    restored = OutputLog.restore((await store.load_all()).logs["s"], limits)
    assert everything(restored) == everything(log)
    assert restored.start == log.start > 0


async def test_deleting_a_session_deletes_its_log(store: SnapshotStore) -> None:
    """Unregister removes the snapshot and the log in one go; a flush in the same batch is dropped."""
    logs = {"gone": busy_log(), "kept": busy_log()}
    await flush(store, logs, snapshots=[snap("gone"), snap("kept")])
    logs["gone"].append(b"late output")
    await flush(store, logs, deleted=["gone"])
    report = await store.load_all()
    assert set(report.logs) == {"kept"} and [s.spec.id for s in report.snapshots] == ["kept"]


async def test_a_new_log_under_the_same_session_replaces_the_old_one(store: SnapshotStore) -> None:
    """A session registered again starts a new log: the old log's rows do not leak into it."""
    await flush(store, {"s": busy_log(n=30)})
    fresh = OutputLog()
    fresh.append(b"new life")
    await flush(store, {"s": fresh})
    restored = OutputLog.restore((await store.load_all()).logs["s"])
    assert restored.log_id == fresh.log_id and everything(restored) == (b"new life", ())


async def test_an_unencodable_snapshot_fails_the_log_flush_too(store: SnapshotStore) -> None:
    """All or nothing: the log's rows are not written when the batch's snapshot cannot be."""
    log = busy_log()
    bad = snap("bad", options={"target": "t", "weird": object()})
    with pytest.raises(SnapshotError):
        await store.write([bad], logs=[log.take_flush("bad")])
    assert (await store.load_all()).logs == {}


async def test_a_quarantined_session_keeps_its_stored_log(tmp_path: Path) -> None:
    """A session whose snapshot could not be read keeps its log untouched, like its row."""
    path = tmp_path / DB_FILENAME
    first = busy_log()
    async with open_sqlite_store(path) as sqlite_store:
        await flush(sqlite_store, {"q": first}, snapshots=[snap("q")])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sessions SET body = 'not json' WHERE id = 'q'")
    conn.close()
    async with open_sqlite_store(path) as sqlite_store:
        report = await sqlite_store.load_all()
        assert sqlite_store.quarantined == {"q"} and "q" in report.logs
        await flush(sqlite_store, {"q": OutputLog()})
        assert OutputLog.restore((await sqlite_store.load_all()).logs["q"]).log_id == first.log_id


# -- SQLite: layout, damage, bounds, crashes ------------------------------------------------------


async def test_a_layout_1_database_gains_the_log_tables_and_keeps_its_snapshots(tmp_path: Path) -> None:
    """A database written before output logs opens, keeps every snapshot, and is layout 2 after."""
    path = tmp_path / DB_FILENAME
    conn = sqlite3.connect(path)
    conn.executescript(
        "PRAGMA journal_mode = WAL; PRAGMA application_id = 1413829704; PRAGMA user_version = 1;"
        "CREATE TABLE sessions (id TEXT PRIMARY KEY NOT NULL, schema INTEGER NOT NULL, body TEXT NOT NULL,"
        " saved_at REAL NOT NULL);"
    )
    body = encode_snapshot(snap("old"), DEFAULT_SECRET_PATTERNS)
    conn.execute("INSERT INTO sessions VALUES ('old', ?, ?, 1.0)", (SNAPSHOT_SCHEMA_VERSION, body))
    conn.commit()
    conn.close()
    async with open_sqlite_store(path) as sqlite_store:
        report = await sqlite_store.load_all()
        assert [s.spec.id for s in report.snapshots] == ["old"] and report.logs == {}
        await flush(sqlite_store, {"old": busy_log()})
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (LAYOUT_VERSION,) == (2,)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    conn.close()
    assert tables == {"sessions", "output_heads", "output_rows"}


async def test_a_damaged_log_is_reported_and_its_session_still_loads(tmp_path: Path) -> None:
    """Rows that do not cover the head are an error naming the session; the snapshot loads; the
    session's next log replaces the damaged one."""
    path = tmp_path / DB_FILENAME
    log = OutputLog(LogLimits(row_bytes=8))
    log.append(b"0123456789abcdefghij")
    async with open_sqlite_store(path) as sqlite_store:
        await flush(sqlite_store, {"s": log, "t": busy_log()}, snapshots=[snap("s")])
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM output_rows WHERE session_id = 's' AND start_at = 8")
        conn.execute("UPDATE output_rows SET kind = 'confetti' WHERE session_id = 't' AND kind = 'unseen'")
    conn.close()
    async with open_sqlite_store(path) as sqlite_store:
        report = await sqlite_store.load_all()
        assert [s.spec.id for s in report.snapshots] == ["s"] and report.logs == {}
        problems = {e.session_id: e.problem for e in report.errors}
        assert problems == {"s": "output log: hole at 8..16", "t": "output log: 'confetti' is not a valid RowKind"}
        assert sqlite_store.quarantined == frozenset()
        fresh = OutputLog()
        fresh.append(b"again")
        await flush(sqlite_store, {"s": fresh})
        assert everything(OutputLog.restore((await sqlite_store.load_all()).logs["s"])) == (b"again", ())


async def test_disk_use_stays_within_the_stated_bound(tmp_path: Path) -> None:
    """64 MB through 10 busy sessions with a 64 KiB bound: each keeps at most max_bytes + row_bytes
    of data in the stated number of rows, and the file stops growing once pages are reused."""
    path = tmp_path / DB_FILENAME
    limits = LogLimits()
    logs = {f"s{i}": OutputLog(limits) for i in range(10)}
    chunk = bytes(range(256)) * 25  # 6,400 bytes, a busy flush interval
    sizes = []
    async with open_sqlite_store(path) as sqlite_store:
        for round_ in range(1000):
            for log in logs.values():
                log.append(chunk)
                if round_ % 97 == 0:
                    log.mark_lost()
            await flush(sqlite_store, logs)
            if round_ % 100 == 99:
                sizes.append(sum(p.stat().st_size for p in tmp_path.glob(DB_FILENAME + "*")))
    conn = sqlite3.connect(path)
    per_session = conn.execute(
        "SELECT session_id, sum(length(data)), count(*) FROM output_rows GROUP BY session_id"
    ).fetchall()
    conn.close()
    max_rows = -(-limits.max_bytes // limits.row_bytes) + 1 + limits.max_gaps
    for sid, nbytes, nrows in per_session:
        assert nbytes <= limits.max_bytes + limits.row_bytes, sid
        assert nrows <= max_rows, sid
    assert max(sizes[2:]) <= 1.1 * sizes[1], sizes  # steady state: freed pages are reused
    assert path.stat().st_size < 3 * 10 * (limits.max_bytes + limits.row_bytes), sizes


WRITER = r"""
import sys, trio
from tether.rules._output import LogLimits, OutputLog
from tether.store._sqlite import open_sqlite_store

def byte_at(sid, position):
    return (position * 7 + sid * 13) % 251

async def main(path, sessions):
    limits = LogLimits(max_bytes=32768, row_bytes=1024)
    async with open_sqlite_store(path) as store:
        report = await store.load_all()
        logs = {}
        for sid in range(sessions):
            stored = report.logs.get(str(sid))
            logs[sid] = OutputLog.restore(stored, limits) if stored else OutputLog(limits)
        rounds = 0
        while True:
            for sid, log in logs.items():
                log.append(b"")  # a restored log first turns its unsaved range into a loss
                start = log.end
                log.append(bytes(byte_at(sid, p) for p in range(start, start + 30000 + sid)))
            flushes = [log.take_flush(str(sid)) for sid, log in logs.items()]
            print("writing", rounds, flush=True)
            await store.write([], logs=flushes)
            for log, f in zip(logs.values(), flushes):
                log.flushed(f)
            rounds += 1

trio.run(main, sys.argv[1], int(sys.argv[2]))
"""


@pytest.mark.slow
async def test_a_writer_killed_mid_transaction_leaves_every_log_readable(tmp_path: Path) -> None:
    """kill -9 at random moments of a writer's big transactions, five times over one file: the
    database opens, every log restores, every kept byte is the one written at its position, and
    what the killed writer had not committed reads as one unsaved loss."""
    path = tmp_path / DB_FILENAME
    sessions, rng = 40, random.Random(16)
    for _ in range(5):
        with trio.fail_after(60):
            process = await trio.lowlevel.open_process(
                [sys.executable, "-c", WRITER, str(path), str(sessions)], stdout=-1,
            )
            assert process.stdout is not None
            lines, wanted = b"", rng.randint(2, 6)
            while lines.count(b"writing") < wanted:
                lines += await process.stdout.receive_some(4096)
            await trio.sleep(rng.random() * 0.05)  # somewhere inside the next transaction
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
            await process.stdout.aclose()
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
        conn.close()
        async with open_sqlite_store(path) as sqlite_store:
            report = await sqlite_store.load_all()
        assert report.errors == () and len(report.logs) == sessions
        for sid, stored in report.logs.items():
            log = OutputLog.restore(stored, LogLimits(max_bytes=32768, row_bytes=1024))
            got = log.read(0, 1 << 30)
            for piece in got.pieces():
                if isinstance(piece, Loss):
                    assert piece.kind in (LossKind.TRIMMED, LossKind.UNSAVED)
                    continue
                start, data = piece
                assert data == bytes((p * 7 + int(sid) * 13) % 251 for p in range(start, start + len(data)))
            assert log.end == stored.head.end and stored.head.reserved > stored.head.end


def test_the_writer_script_is_valid_python() -> None:
    """The SIGKILL test's child is compiled here too, so a typo fails fast and clearly."""
    compile(WRITER, "writer", "exec")


async def test_repair_copies_the_output_logs_too(tmp_path: Path) -> None:
    """`repair` moves the file aside and copies every readable row, the logs' included."""
    from tether.store._maintenance import repair_store

    path = tmp_path / DB_FILENAME
    logs = {"a": busy_log(), "b": busy_log(n=40)}
    async with open_sqlite_store(path) as sqlite_store:
        await flush(sqlite_store, logs, snapshots=[snap("a"), snap("b")])
    report = repair_store(path)
    assert report.copied == 2 and report.log_rows > 2
    async with open_sqlite_store(path) as sqlite_store:
        loaded = await sqlite_store.load_all()
    assert loaded.errors == ()
    for sid, log in logs.items():
        assert everything(OutputLog.restore(loaded.logs[sid])) == everything(log)
