"""The supervisor persists snapshots and resumes every session after a restart (flaw 11)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import trio

import tether
from tether import DisconnectReason, EpisodeOutcome, SessionStatus
from tether.store._memory import MemoryStore
from tether.store._sqlite import open_sqlite_store
from tether.testing import ScriptedBackend, wait_for_status, wait_reconnected, wait_until

from .conftest import core_registry, drain

SpecFactory = Callable[..., tether.SessionSpec]


async def test_flaw_11_a_restart_remembers_every_session_and_its_history(
    spec: SpecFactory, autojump_clock: object
) -> None:
    store = MemoryStore()
    first = ScriptedBackend()
    async with tether.open_supervisor(registry=core_registry(first), store=store, flush_interval=0.1) as sup:
        await sup.register(spec("a", stable_after=0, options={"cwd": "/srv"}))
        await wait_for_status(sup, "a", SessionStatus.CONNECTED)
        first.fail_next("a", 2)
        before = sup.state("a")
        first.drop("a")
        await wait_reconnected(sup, "a", before)
        first.links["a"].report_state(tether.PreservedState(cwd="/tmp/x", handle="a#9"))
        before = sup.state("a")
    second = ScriptedBackend()
    async with tether.open_supervisor(registry=core_registry(second), store=store) as sup:
        await wait_for_status(sup, "a", SessionStatus.CONNECTED)
        state = sup.state("a")
        assert before.episodes_total == 1
        assert state.episodes_total == 2
        assert state.history == (before.episode,)  # the old episode, attempts and all
        assert state.history[0].attempts_made == 3
        assert state.episode is not None
        assert state.episode.disconnect.reason is DisconnectReason.SUPERVISOR_RESTART
        assert second.ledger("a").states[0] == tether.PreservedState(cwd="/tmp/x", handle="a#9")


async def test_restored_mid_backoff_keeps_its_episode_and_schedule(spec: SpecFactory, autojump_clock: object) -> None:
    store = MemoryStore()
    first = ScriptedBackend()
    async with tether.open_supervisor(registry=core_registry(first), store=store, flush_interval=0.1) as sup:
        await sup.register(spec("a", base_delay=100, max_delay=100, max_retries=5))
        await wait_for_status(sup, "a", SessionStatus.CONNECTED)
        first.fail_next("a", 2)
        first.drop("a")
        await wait_until(lambda: (ep := sup.state("a").episode) is not None and ep.attempts_made == 2)
        await trio.sleep(1)
    second = ScriptedBackend()
    async with tether.open_supervisor(registry=core_registry(second), store=store) as sup:
        assert sup.state("a").episode.attempts_made == 2  # type: ignore[union-attr]
        await wait_for_status(sup, "a", SessionStatus.BACKING_OFF)
        assert second.ledger("a").connects == 0
        await wait_for_status(sup, "a", SessionStatus.CONNECTED)
        episode = sup.state("a").episode
        assert episode is not None and episode.number == 1 and episode.attempts_made == 3
        assert episode.outcome is EpisodeOutcome.RECOVERED


async def test_a_failed_session_stays_failed_after_restart(spec: SpecFactory, autojump_clock: object) -> None:
    store = MemoryStore()
    first = ScriptedBackend()
    async with tether.open_supervisor(registry=core_registry(first), store=store) as sup:
        await sup.register(spec("a", options={"fail_connects": 1, "fail_reason": "auth"}))
        await wait_for_status(sup, "a", SessionStatus.FAILED)
    second = ScriptedBackend()
    second.script("a", {})  # the credentials were fixed meanwhile
    async with tether.open_supervisor(registry=core_registry(second), store=store) as sup:
        await trio.sleep(100)
        assert sup.state("a").status is SessionStatus.FAILED
        assert second.ledger("a").connects == 0
        attempt = await sup.force_reconnect("a")
        assert attempt is not None and attempt.success


async def test_unregister_deletes_the_snapshot(spec: SpecFactory, autojump_clock: object) -> None:
    store = MemoryStore()
    backend = ScriptedBackend()
    async with tether.open_supervisor(registry=core_registry(backend), store=store, flush_interval=0.1) as sup:
        await sup.register(spec("a"))
        await sup.register(spec("b"))
        await trio.sleep(1)
        assert set(store.rows) == {"a", "b"}
        await sup.unregister("a")
        await trio.sleep(1)
        assert set(store.rows) == {"b"}


async def test_batched_writes_share_one_transaction(autojump_clock: object) -> None:
    store = MemoryStore()
    backend = ScriptedBackend()
    policy = tether.ReconnectPolicy(jitter="none")
    async with tether.open_supervisor(
        registry=core_registry(backend), store=store, flush_interval=1.0, connect_limit=None
    ) as sup:
        await sup.register_many([tether.SessionSpec(id=f"s{i}", backend="scripted", policy=policy) for i in range(500)])
        await wait_until(lambda: store.stats().rows_written >= 500)
        assert store.stats().writes == 1


async def test_durable_mode_reports_a_transition_only_after_it_is_committed(
    spec: SpecFactory, autojump_clock: object
) -> None:
    store = MemoryStore()
    backend = ScriptedBackend()
    async with tether.open_supervisor(registry=core_registry(backend), store=store, durable=True) as sup:
        with sup.subscribe() as sub:
            await sup.register(spec("a"))
            await wait_until(lambda: sub.pending >= 2)
            for event in drain(sub):
                assert isinstance(event, tether.Event)
                saved = json.loads(store.rows["a"])
                if event.type == "session.connected":
                    assert saved["state"]["status"] == "connected"


async def test_secrets_in_a_running_session_never_reach_the_file(tmp_path: Path) -> None:
    """Real clock: SQLite runs in a worker thread, which MockClock's autojump cannot see."""
    db = tmp_path / "state" / "tether.sqlite3"
    backend = ScriptedBackend()
    async with (
        open_sqlite_store(db) as store,
        tether.open_supervisor(registry=core_registry(backend), store=store, durable=True) as sup,
    ):
        await sup.register(tether.SessionSpec(id="a", backend="scripted", options={"cwd": "/"}))
        await wait_for_status(sup, "a", SessionStatus.CONNECTED)
        backend.links["a"].report_state(
            tether.PreservedState(cwd="/", env={"API_TOKEN": "s3cr3t-value", "EDITOR": "vi"})
        )
        await sup.force_reconnect("a", "process-restart")
        assert backend.ledger("a").states[-1].env["API_TOKEN"] == "s3cr3t-value"  # type: ignore[union-attr]
    blobs = b"".join(p.read_bytes() for p in db.parent.iterdir())
    assert b"s3cr3t-value" not in blobs
    assert b"EDITOR" in blobs


class _FlakyStore:
    """A memory store that fails its first `failures` writes, as a full disk or a locked database would."""

    def __init__(self, failures: int) -> None:
        self.inner = MemoryStore()
        self.failures = failures
        self.rows = self.inner.rows

    async def load_all(self) -> tether.LoadReport:
        return await self.inner.load_all()

    async def write(self, snapshots, deleted=(), *, fences=None, logs=()):  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            await trio.lowlevel.checkpoint()
            raise OSError("disk full")
        return await self.inner.write(snapshots, deleted, fences=fences, logs=logs)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def stats(self) -> tether.StoreStats:
        return self.inner.stats()


async def test_durable_mode_holds_events_until_the_store_recovers(spec: SpecFactory, autojump_clock: object) -> None:
    store = _FlakyStore(failures=3)
    backend = ScriptedBackend()
    async with tether.open_supervisor(registry=core_registry(backend), store=store, durable=True) as sup:
        with sup.subscribe() as sub:
            await sup.register(spec("a"))
            await trio.sleep(1.5)  # two failed writes so far
            assert sub.pending == 0
            assert "a" not in store.rows
            await wait_until(lambda: sub.pending >= 2)
            assert [e.type for e in drain(sub)][:2] == ["session.registered", "session.connected"]
            assert json.loads(store.rows["a"])["state"]["status"] == "connected"


async def test_a_snapshot_the_store_cannot_encode_does_not_block_the_others(autojump_clock: object) -> None:
    store = MemoryStore()
    backend = ScriptedBackend()
    backend.validate = lambda spec: None  # type: ignore[method-assign]  # accept options JSON cannot hold
    bad = tether.SessionSpec(id="bad", backend="scripted", options={"blob": b"\x00"})
    good = tether.SessionSpec(id="good", backend="scripted")
    async with tether.open_supervisor(registry=core_registry(backend), store=store, flush_interval=0.1) as sup:
        await sup.register(bad)
        await sup.register(good)
        await wait_for_status(sup, "good", SessionStatus.CONNECTED)
        await trio.sleep(1)
        assert set(store.rows) == {"good"}
        assert json.loads(store.rows["good"])["state"]["status"] == "connected"
