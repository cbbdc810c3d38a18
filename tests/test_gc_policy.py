"""The managed GC policy and the property it relies on: reconnecting leaves no reference cycles."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator

import pytest
import trio

import tether
from tether.engine._gc import ManagedCollector
from tether.testing import ScriptedBackend, wait_until

from .conftest import core_registry


@pytest.fixture
def restore_collector() -> Iterator[None]:
    """Leave the collector as we found it, whatever the test does."""
    was = gc.isenabled()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()


async def test_storms_of_reconnects_leave_no_cyclic_garbage(backend: ScriptedBackend, restore_collector: None) -> None:
    """Everything a failed or successful attempt allocates is freed by reference counting.

    If this fails, the managed policy (which only walks young objects) would
    leave the cycles it names to pile up until the next full collection.
    """
    policy = tether.ReconnectPolicy(base_delay=0.001, max_delay=0.004, jitter=tether.Jitter.NONE, stable_after=0.0)
    specs = [tether.SessionSpec(id=f"c{i}", backend="scripted", policy=policy) for i in range(50)]
    async with tether.open_supervisor(registry=core_registry(backend), gc_policy="managed") as sup:
        await sup.register_many(specs)
        await wait_until(lambda: sup.stats().sessions_by_status.get("connected") == len(specs))
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        for round_ in range(1, 4):
            for spec in specs:
                backend.fail_next(spec.id, 2)
                backend.drop(spec.id)
            await wait_until(lambda r=round_: sup.stats().successful_reconnections == r * len(specs))
        await sup.force_reconnect("c0")
        await sup.unregister("c1")
        gc.collect()
        kinds = Counter(type(obj).__qualname__ for obj in gc.garbage)
        gc.set_debug(0)
        gc.garbage.clear()
    assert not kinds, f"reconnecting left reference cycles: {kinds.most_common(10)}"


def test_managed_collector_walks_young_objects_and_collects_fully_once_live_objects_doubled(
    restore_collector: None,
) -> None:
    with ManagedCollector(full_floor=10_000, full_ratio=1.0) as collector:
        assert not gc.isenabled()
        collector._alive_after_full = 20_000
        collector.tick()  # whatever was allocated so far: a young collection
        assert (collector.stats.young, collector.stats.full) == (1, 0)
        kept = [[i] for i in range(15_000)]  # growth below the doubling: young again
        collector.tick()
        assert (collector.stats.young, collector.stats.full) == (2, 0)
        kept += [[i] for i in range(10_000)]  # 25,000 grown since the last full one > 20,000 alive then
        collector.tick()
        assert (collector.stats.young, collector.stats.full) == (2, 1)
        assert collector._grown_since_full == 0
        del kept
    assert gc.isenabled()


def test_managed_collector_defers_young_collections_while_busy_without_counting_growth_twice(
    restore_collector: None,
) -> None:
    with ManagedCollector(full_floor=30_000, full_ratio=1.0) as collector:
        collector._alive_after_full = 0
        collector.tick()
        kept = [[i] for i in range(20_000)]
        collector.tick(busy=True)
        collector.tick(busy=True)  # the same 20,000 seen again: not growth
        assert (collector.stats.young, collector.stats.deferred, collector.stats.full) == (1, 2, 0)
        assert 20_000 <= collector._grown_since_full < 25_000
        collector.tick()  # slack again: the deferred young collection runs
        assert (collector.stats.young, collector.stats.full) == (2, 0)
        kept += [[i] for i in range(15_000)]
        collector.tick(busy=True)  # 35,000 grown > 30,000: a full collection even while busy
        assert collector.stats.full == 1
        del kept


def test_managed_collector_frees_a_cycle_from_the_young_generation(restore_collector: None) -> None:
    class Node:
        pass

    with ManagedCollector() as collector:
        node = Node()
        node.self = node  # type: ignore[attr-defined]
        del node
        collector.tick()
        assert collector.stats.freed >= 1


async def test_managed_collector_runs_on_its_interval(autojump_clock: trio.testing.MockClock) -> None:
    collector = ManagedCollector(interval=0.1)
    with collector:
        with trio.move_on_after(1.05):
            await collector.run()
    assert collector.stats.young + collector.stats.full >= 1
