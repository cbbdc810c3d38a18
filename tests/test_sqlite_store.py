"""The snapshot stores: one transaction per batch, bad input loses nothing, secrets never reach disk.

Real SQLite files in ``tmp_path``; the same contract also runs against `MemoryStore`.
"""

# Tests read and damage small files directly: blocking file I/O in them is the point, not a hazard.
# ruff: noqa: ASYNC230, ASYNC240

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tether.rules._errors import CorruptStoreError, SnapshotError, StoreError
from tether.rules._policy import ReconnectPolicy
from tether.rules._reasons import Disconnect, DisconnectReason
from tether.rules._snapshots import LoadReport, SessionSnapshot, SnapshotStore
from tether.rules._spec import SessionSpec
from tether.rules._state import Attempt, Episode, PreservedState, SessionState, SessionStatus
from tether.store import _codec
from tether.store._codec import snapshot_to_dict
from tether.store._memory import MemoryStore
from tether.store._sqlite import (
    APPLICATION_ID,
    DB_FILENAME,
    SqliteStore,
    default_state_dir,
    default_store_path,
    open_sqlite_store,
)

SECRET = "s3cr3t-value"


def snap(session_id: str = "s1", *, saved_at: float = 10.0, env: dict[str, str] | None = None,
         options: dict[str, Any] | None = None, status: SessionStatus = SessionStatus.BACKING_OFF,
         ) -> SessionSnapshot:
    """A session mid-backoff with an attempt on record."""
    drop = Disconnect(DisconnectReason.NETWORK, "reset")
    attempt = Attempt(number=1, strategy="simple-reconnect", started_at=9.0, duration=0.1, success=False,
                      reason=DisconnectReason.NETWORK)
    episode = Episode(number=1, disconnect=drop, started_at=8.0, attempts_made=1, attempts=(attempt,))
    spec = SessionSpec(id=session_id, backend="scripted", options=options or {"target": "t"},
                       policy=ReconnectPolicy(max_retries=None))
    state = SessionState(
        id=session_id, backend="scripted", target="t", status=status, status_since=9.1,
        episode=episode, history=(), preserved=PreservedState(cwd="/tmp", env=env or {"LANG": "C"}),
        last_disconnect=drop, connected_at=None, next_attempt_at=11.0,
        episodes_total=1, episodes_recovered=0, episodes_failed=0,
    )
    return SessionSnapshot(spec=spec, state=state, saved_at=saved_at)


def plant(path: Path, rows: list[tuple[str, int, Any]]) -> None:
    """Write rows behind the store's back, as damage or a newer tether would."""
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT OR REPLACE INTO sessions (id, schema, body, saved_at) VALUES (?, ?, ?, 0)", rows)
    conn.close()


def raw_rows(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        return {sid: body for sid, body in conn.execute("SELECT id, body FROM sessions")}
    finally:
        conn.close()




@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SnapshotStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    async with open_sqlite_store(tmp_path / "state" / DB_FILENAME) as sqlite_store:
        yield sqlite_store


# -- the contract, for every store -----------------------------------------------------------------------


async def test_store_satisfies_the_protocol(store: SnapshotStore) -> None:
    assert isinstance(store, SnapshotStore)
    assert await store.load_all() == LoadReport((), ())


async def test_batch_round_trips_in_one_transaction(store: SnapshotStore) -> None:
    batch = [snap(f"s{i}") for i in range(100)]
    result = await store.write(batch, fences={"s1": 7})
    assert result.fenced == frozenset()
    stats = store.stats()
    assert (stats.writes, stats.rows_written) == (1, 100)
    assert stats.bytes_written > 100 * 200
    assert stats.bytes_per_session == stats.bytes_written / 100
    assert stats.last_write_rows == 100 and stats.last_write_seconds > 0
    assert stats.writes_per_second > 0 and stats.rows_per_second > 0
    report = await store.load_all()
    assert report.errors == ()
    assert sorted(report.snapshots, key=lambda s: s.spec.id) == sorted(batch, key=lambda s: s.spec.id)


async def test_upsert_replaces_and_delete_removes_in_the_same_batch(store: SnapshotStore) -> None:
    await store.write([snap("a"), snap("b")])
    newer = snap("a", saved_at=20.0, status=SessionStatus.CONNECTED)
    await store.write([newer], deleted=["b", "never-existed"])
    assert (await store.load_all()).snapshots == (newer,)
    assert store.stats().writes == 2


async def test_empty_write_is_fine(store: SnapshotStore) -> None:
    await store.write([])
    assert (await store.load_all()).snapshots == ()


async def test_unencodable_batch_changes_nothing(store: SnapshotStore) -> None:
    """A snapshot JSON cannot hold fails the whole batch before anything is written."""
    await store.write([snap("keep")])
    bad = snap("bad", options={"target": "t", "weird": object()})
    with pytest.raises(SnapshotError, match="'bad': cannot be encoded as JSON"):
        await store.write([snap("new"), bad], deleted=["keep"])
    assert [s.spec.id for s in (await store.load_all()).snapshots] == ["keep"]


async def test_closed_store_refuses_work(store: SnapshotStore) -> None:
    await store.aclose()
    await store.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await store.write([snap()])
    with pytest.raises(trio.ClosedResourceError):
        await store.load_all()


async def test_memory_store_quarantines_bad_rows() -> None:
    store = MemoryStore()
    await store.write([snap("good"), snap("bad")])
    store.rows["bad"] = "{not json"
    report = await store.load_all()
    assert [s.spec.id for s in report.snapshots] == ["good"]
    assert [e.session_id for e in report.errors] == ["bad"]
    await store.write([snap("bad")], deleted=["bad"])
    assert store.rows["bad"] == "{not json"
    assert store.stats().rows_skipped == 2


# -- SQLite: files, modes, secrets ------------------------------------------------------------------------


async def test_reopened_store_loads_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    async with open_sqlite_store(path) as store:
        await store.write([snap("a"), snap("b")])
    async with open_sqlite_store(path) as store:
        report = await store.load_all()
    assert [s.spec.id for s in report.snapshots] == ["a", "b"]
    assert report.snapshots[0] == snap("a")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
    assert conn.execute("SELECT schema FROM sessions WHERE id = 'a'").fetchone() == (1,)
    conn.close()


async def test_a_second_writer_is_refused_while_the_first_has_the_file_open(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    async with open_sqlite_store(path) as first:
        await first.write([snap("a")])
        with pytest.raises(StoreError, match=rf"in use by process {os.getpid()}\b.*two writers") as info:
            async with open_sqlite_store(path):
                pass
        assert str(path) in str(info.value)
        await first.write([snap("b")])  # the refusal cost the first writer nothing
    async with open_sqlite_store(path) as second:  # closed: the next one may open it
        assert [s.spec.id for s in (await second.load_all()).snapshots] == ["a", "b"]


async def test_a_writer_killed_with_sigkill_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    holder = (
        "import sys, trio\n"
        "from tether import open_sqlite_store\n"
        "async def main():\n"
        "    async with open_sqlite_store(sys.argv[1]):\n"
        "        print('open', flush=True)\n"
        "        await trio.sleep_forever()\n"
        "trio.run(main)\n"
    )
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process([sys.executable, "-c", holder, str(path)], stdout=-1)
        assert process.stdout is not None
        try:
            assert (await process.stdout.receive_some(100)).startswith(b"open")
            with pytest.raises(StoreError, match=rf"in use by process {process.pid}\b"):
                async with open_sqlite_store(path):
                    pass
        finally:
            process.kill()
            await process.wait()
        async with open_sqlite_store(path) as store:
            assert (await store.load_all()).snapshots == ()


async def test_directory_is_private_and_files_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / DB_FILENAME
    async with open_sqlite_store(path) as store:
        await store.write([snap()])
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_loose_modes_on_an_existing_file_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    async with open_sqlite_store(path):
        pass
    os.chmod(path, 0o644)
    async with open_sqlite_store(path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_default_location_is_the_user_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "tether"
    assert default_store_path() == tmp_path / "xdg" / "tether" / "tether.sqlite3"
    async with open_sqlite_store() as store:
        assert store.path == default_store_path()
        await store.write([snap()])
    assert stat.S_IMODE((tmp_path / "xdg" / "tether").stat().st_mode) == 0o700


async def test_secrets_never_reach_the_database_files(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    sessions = [
        snap(
            f"s{i}",
            env={"API_TOKEN": SECRET, "LANG": "C"},
            options={"target": "t", "password": SECRET, "ssh": {"Identity_Key": SECRET}, "env": {"X_AUTH": SECRET}},
        )
        for i in range(50)
    ]
    async with open_sqlite_store(path) as store:
        await store.write(sessions)
        await store.write(sessions[:10], deleted=["s49"])
        on_disk = {f: f.read_bytes() for f in tmp_path.iterdir()}
        assert {f.name for f in on_disk} >= {DB_FILENAME, f"{DB_FILENAME}-wal", f"{DB_FILENAME}-shm"}
        assert len(on_disk[Path(f"{path}-wal")]) > 0
        for file, data in on_disk.items():
            assert SECRET.encode() not in data, file
        loaded = (await store.load_all()).snapshots[0]
    for file in tmp_path.iterdir():
        assert SECRET.encode() not in file.read_bytes(), file
    assert loaded.state.preserved is not None
    assert loaded.state.preserved.env == {"API_TOKEN": "[redacted]", "LANG": "C"}
    assert loaded.spec.options["password"] == "[redacted]"


async def test_durable_mode_uses_synchronous_full(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / DB_FILENAME, durable=True) as store:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    async with open_sqlite_store(tmp_path / DB_FILENAME) as store:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL


# -- SQLite: bad files are refused and left alone -----------------------------------------------------------


async def _refused(path: Path, match: str) -> CorruptStoreError:
    before = path.read_bytes()
    with pytest.raises(CorruptStoreError, match=match) as info:
        async with open_sqlite_store(path):
            pass
    assert str(path) in str(info.value)
    assert path.read_bytes() == before, "a refused file is never modified"
    assert not Path(f"{path}-wal").exists()
    return info.value


async def test_garbage_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    path.write_bytes(b"this is not a database\n" * 100)
    await _refused(path, "is not an SQLite database")


async def test_truncated_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    async with open_sqlite_store(path) as store:
        await store.write([snap(f"s{i}", options={"target": "t", "pad": "x" * 2000}) for i in range(200)])
    size = path.stat().st_size
    assert size > 100_000
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    await _refused(path, "corrupt")


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (n INTEGER)")
    conn.commit()
    conn.close()
    await _refused(path, "not a tether database")


async def test_database_from_a_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    async with open_sqlite_store(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer tether"):
        async with open_sqlite_store(path):
            pass


async def test_corrupt_file_is_moved_aside_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    garbage = b"garbage" * 1000
    path.write_bytes(garbage)
    async with open_sqlite_store(path, move_aside_corrupt=True) as store:
        assert (await store.load_all()).snapshots == ()
        await store.write([snap()])
    moved = [f for f in tmp_path.iterdir() if f.name.startswith(f"{DB_FILENAME}.corrupt-")]
    assert len(moved) == 1
    assert moved[0].read_bytes() == garbage


# -- SQLite: bad rows are reported, kept and never clobbered -------------------------------------------------


async def test_bad_rows_are_reported_and_good_rows_still_load(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    async with open_sqlite_store(path) as store:
        await store.write([snap("good"), snap("newer"), snap("mangled"), snap("truncated"), snap("blob")])
    newer = snapshot_to_dict(snap("newer")) | {"schema": 7}
    mangled = snapshot_to_dict(snap("mangled"))
    mangled["state"]["status"] = "dancing"
    text = json.dumps(snapshot_to_dict(snap("truncated")))
    plant(path, [
        ("newer", 7, json.dumps(newer)), ("mangled", 1, json.dumps(mangled)),
        ("truncated", 1, text[: len(text) // 2]), ("blob", 1, b"\x00\x01"),
    ])
    before = raw_rows(path)
    async with open_sqlite_store(path) as store:
        report = await store.load_all()
        assert [s.spec.id for s in report.snapshots] == ["good"]
        problems = {e.session_id: e.problem for e in report.errors}
        assert problems["newer"] == "written by a newer tether (schema 7 > 1); upgrade tether to read it"
        assert "expected SessionStatus @ $.state.status" in problems["mangled"]
        assert problems["truncated"].startswith("is not valid JSON")
        assert problems["blob"].startswith("is not valid JSON")
        assert store.quarantined == {"newer", "mangled", "truncated", "blob"}
        assert store.stats().load_errors == 4 and store.stats().quarantined == 4

        # The supervisor may register fresh sessions under those ids: their writes are skipped.
        await store.write([snap("good", saved_at=99.0), snap("newer"), snap("mangled")], deleted=["truncated"])
        assert store.stats().rows_skipped == 3 and store.stats().rows_written == 1
    after = raw_rows(path)
    for sid in ("newer", "mangled", "truncated", "blob"):
        assert after[sid] == before[sid], sid
    assert after["good"] != before["good"]


async def test_released_rows_may_be_overwritten_except_newer_schemas(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    async with open_sqlite_store(path):
        pass
    plant(path, [("mangled", 1, "{}"), ("newer", 7, json.dumps({"schema": 7}))])
    async with open_sqlite_store(path) as store:
        assert len((await store.load_all()).errors) == 2
        store.release(["mangled", "newer"])
        await store.write([snap("mangled"), snap("newer")])
        stats = store.stats()
        assert (stats.rows_written, stats.rows_skipped) == (1, 1)
    rows = raw_rows(path)
    assert json.loads(rows["mangled"])["spec"]["id"] == "mangled"
    assert rows["newer"] == json.dumps({"schema": 7}), "an older tether never replaces a newer row"


async def test_old_rows_are_migrated_on_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / DB_FILENAME
    async with open_sqlite_store(path):
        pass
    old = snapshot_to_dict(snap("old")) | {"schema": 0}
    old["saved"] = old.pop("saved_at")
    plant(path, [("old", 0, json.dumps(old))])

    def v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
        data["saved_at"] = data.pop("saved")
        return data

    monkeypatch.setattr(_codec, "MIGRATIONS", {0: v0_to_v1})
    async with open_sqlite_store(path) as store:
        assert (await store.load_all()).snapshots == (snap("old"),)


async def test_row_under_the_wrong_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    async with open_sqlite_store(path):
        pass
    plant(path, [("alias", 1, json.dumps(snapshot_to_dict(snap("real"))))])
    async with open_sqlite_store(path) as store:
        (error,) = (await store.load_all()).errors
    assert error.session_id == "alias"
    assert "describes session 'real'" in str(error)


# -- SQLite under Trio ------------------------------------------------------------------------------------


async def test_concurrent_writers_are_serialised(tmp_path: Path) -> None:
    """Callers racing on one store never share the connection: every batch lands whole."""
    async with open_sqlite_store(tmp_path / DB_FILENAME) as store:
        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(store.write, [snap(f"w{n}-{i}") for i in range(25)])
        assert store.stats().writes == 8
        assert len((await store.load_all()).snapshots) == 200


async def test_cancelled_write_is_all_or_nothing(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / DB_FILENAME) as store:
        with trio.move_on_after(0):
            await store.write([snap(f"c{i}") for i in range(500)])
        count = len((await store.load_all()).snapshots)
        assert count in (0, 500)


async def test_lazy_open_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    store = SqliteStore(path)
    assert not path.exists(), "construction does no I/O"
    await store.write([attrs.evolve(snap(), saved_at=1.0)])
    assert len((await store.load_all()).snapshots) == 1
    await store.aclose()


async def test_a_row_whose_schema_column_disagrees_with_its_body_is_quarantined(tmp_path: Path) -> None:
    """A row labelled with one schema but holding another is not run, and no write or delete touches it."""
    path = tmp_path / DB_FILENAME
    async with open_sqlite_store(path) as store:
        await store.write([snap("good")])
    body = json.dumps(snapshot_to_dict(snap("mislabelled")))
    plant(path, [("mislabelled", 0, body)])
    async with open_sqlite_store(path) as store:
        report = await store.load_all()
        assert [s.session_id for s in report.snapshots] == ["good"]
        (error,) = report.errors
        assert error.session_id == "mislabelled"
        assert "schema column says 0 but its body says 1" in str(error)
        await store.write([snap("mislabelled")], deleted=["mislabelled"])
    assert raw_rows(path)["mislabelled"] == body
