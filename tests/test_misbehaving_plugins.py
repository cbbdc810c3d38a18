"""One plugin's misbehaviour never harms other sessions, the store or the supervisor.

A backend whose connect blocks in a worker thread that cannot be cancelled
(``trio.to_thread.run_sync`` without abandon), and one that blocks the event
loop itself, beside healthy sessions, with a real SQLite store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import tether
from tether import DisconnectReason, SessionStatus
from tether.testing import ScriptedBackend, wait_until

from .conftest import core_registry

RELEASE = threading.Event()


class _Link:
    async def probe(self) -> None:
        await trio.lowlevel.checkpoint()

    def current_state(self) -> None:
        return None

    async def send(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()


class StuckBackend:
    """Backend ``stuck``: connect waits in a thread on `RELEASE`, and trio cannot cancel that wait."""

    name = "stuck"
    features: frozenset[tether.Feature] = frozenset()
    default_strategies: Mapping[DisconnectReason, str] = {}

    def __init__(self) -> None:
        self.connects = 0

    def validate(self, spec: tether.SessionSpec) -> None:
        pass

    def target(self, spec: tether.SessionSpec) -> str:
        return f"stuck-{spec.id}"

    @asynccontextmanager
    async def open_link(self, request: tether.LinkRequest) -> AsyncIterator[_Link]:
        self.connects += 1
        await trio.to_thread.run_sync(RELEASE.wait)
        yield _Link()


class LoopHogBackend(StuckBackend):
    """Backend ``hog``: connect sleeps in the event loop itself (time.sleep in async code)."""

    name = "hog"

    @asynccontextmanager
    async def open_link(self, request: tether.LinkRequest) -> AsyncIterator[_Link]:
        time.sleep(1.5)  # noqa: ASYNC251 -- the misbehaviour under test
        yield _Link()


def _spec(sid: str, backend: str, **policy: object) -> tether.SessionSpec:
    policy.setdefault("connect_timeout", 1.0)
    policy.setdefault("base_delay", 0.1)
    policy.setdefault("max_delay", 0.5)
    policy.setdefault("max_retries", None)
    return tether.SessionSpec(id=sid, backend=backend, policy=tether.ReconnectPolicy(**policy))  # type: ignore[arg-type]


@pytest.fixture
def released() -> object:
    RELEASE.clear()
    yield
    RELEASE.set()


async def test_fifty_stuck_connects_beside_healthy_sessions(tmp_path: Path, released: object) -> None:
    """Stuck threads are abandoned, attempts still end by connect_timeout plus a grace, unregister is
    bounded, persistence keeps writing (its own thread), healthy sessions keep recovering."""
    scripted, stuck = ScriptedBackend(), StuckBackend()
    registry = core_registry(scripted)
    registry.add_backend(stuck)
    async with tether.open_sqlite_store(tmp_path / "t.sqlite3") as store, tether.open_supervisor(
        registry=registry, store=store, flush_interval=0.05, connect_limit=None
    ) as sup:
        try:
            with sup.subscribe(types=["plugin.misbehaved"]) as reports:
                for i in range(50):
                    await sup.register(_spec(f"stuck-{i}", "stuck"))
                for i in range(5):
                    await sup.register(_spec(f"ok-{i}", "scripted", stable_after=0))
                with trio.fail_after(20):
                    await wait_until(lambda: all(
                        sup.state(f"stuck-{i}").episodes_total >= 1 for i in range(50)))
                for i in range(50):  # the first connect ended (timed out), so the episode began: recorded
                    assert sup.state(f"stuck-{i}").last_disconnect.reason is DisconnectReason.TIMEOUT  # type: ignore[union-attr]
                report = await reports.get()
                assert isinstance(report, tether.PluginMisbehaved)
                assert (report.problem, report.phase, report.name) == ("stuck", "connect", "stuck")
                assert "did not return from connect" in report.detail
            for round_ in range(3):  # healthy sessions keep recovering meanwhile
                for i in range(5):
                    scripted.drop(f"ok-{i}")
                with trio.fail_after(10):
                    await wait_until(lambda r=round_: all(
                        sup.state(f"ok-{i}").episodes_total >= r + 1
                        and sup.state(f"ok-{i}").status is SessionStatus.CONNECTED for i in range(5)))
            with trio.fail_after(10):  # every attempt ends, thread or no thread, and is recorded
                await wait_until(lambda: all(sup.state(f"stuck-{i}").attempts_failed >= 1 for i in range(50)))
            assert all(
                a.reason is DisconnectReason.TIMEOUT for i in range(50)
                for a in sup.state(f"stuck-{i}").episode.attempts  # type: ignore[union-attr]
            )
            # something certainly dirty (the write-behind may already have written the rest)
            before = store.stats().rows_written
            await sup.register(_spec("registered-after", "scripted", stable_after=0))
            with trio.fail_after(5):
                assert await sup.flush()
            assert store.stats().rows_written > before, "persistence kept writing"
            with trio.fail_after(1.0 + 1.5):  # unregister of a session stuck in plugin code: bounded
                await sup.unregister("stuck-0")
            assert "stuck-0" not in sup.session_ids
            # trio's default thread limiter holds 40: those threads are stuck and were abandoned;
            # the other connects wait for a thread, cancellably, and time out like any attempt.
            assert sup.stats().plugin_problems.get("(direct)", 0) >= 40
            assert "plugin calls never returned" in sup.stuck_report()
        finally:
            RELEASE.set()  # let the threads go, so the supervisor's nursery can close


async def test_a_plugin_that_blocks_the_loop_is_named(released: object) -> None:
    scripted = ScriptedBackend()
    registry = core_registry(scripted)
    registry.add_backend(LoopHogBackend())
    async with tether.open_supervisor(registry=registry, stall_threshold=0.5) as sup:
        with sup.subscribe(types=["plugin.misbehaved"]) as reports:
            await sup.register(_spec("hog-1", "hog", connect_timeout=5.0))
            with trio.fail_after(10):
                report = await reports.get()
    assert isinstance(report, tether.PluginMisbehaved)
    assert report.problem == "blocked-loop" and report.session_id == "hog-1" and report.name == "hog"
    assert report.seconds >= 1.0
    assert "tests.test_misbehaving_plugins" in report.detail
