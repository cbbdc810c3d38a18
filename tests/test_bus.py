"""The event bus: sequence numbers, filters, bounded buffers with lag markers, resume from the ring."""

from __future__ import annotations

import pytest
import trio

import tether
from tether import EventBus, EventFilter, Lagged, SessionRegistered, SessionUnregistered


def _publish(bus: EventBus, n: int, session: str = "a") -> None:
    for _ in range(n):
        bus.publish(SessionUnregistered, session_id=session)


def test_sequence_numbers_are_global_and_increasing() -> None:
    bus = EventBus()
    first = bus.publish(SessionRegistered, session_id="a", backend="b", target="t")
    second = bus.publish(SessionUnregistered, session_id="b")
    assert (first.seq, second.seq) == (1, 2)
    assert second.at >= first.at


def test_filters_by_session_and_type_pattern() -> None:
    f = EventFilter(frozenset({"a"}), ("session.*",))
    bus = EventBus()
    assert f.matches(bus.publish(SessionUnregistered, session_id="a"))
    assert not f.matches(bus.publish(SessionUnregistered, session_id="b"))
    assert not f.matches(bus.publish(tether.HealthCheckFailed, session_id="a", error="x"))
    assert EventFilter().matches(bus.publish(tether.HealthCheckFailed, session_id="z", error="x"))


def test_a_slow_subscriber_gets_a_lag_marker_and_memory_stays_bounded() -> None:
    bus = EventBus()
    with bus.subscribe(buffer=10) as slow, bus.subscribe(buffer=10_000) as fast:
        _publish(bus, 1000)
        assert slow.pending == 10
        items = [slow.get_nowait() for _ in range(11)]
        assert all(isinstance(i, tether.Event) for i in items[:10])
        assert items[10] == Lagged(missed_from=11, missed=990)
        assert slow.get_nowait() is None
        _publish(bus, 1)
        item = slow.get_nowait()
        assert isinstance(item, tether.Event) and item.seq == 1001
        assert fast.pending == 1001


def test_resume_from_the_ring_and_report_what_it_no_longer_holds() -> None:
    bus = EventBus(ring_size=100)
    _publish(bus, 250)
    with bus.subscribe(since=200) as sub:
        seqs = [sub.get_nowait().seq for _ in range(50)]  # type: ignore[union-attr]
        assert seqs == list(range(201, 251))
    with bus.subscribe(since=10) as sub:
        assert sub.get_nowait() == Lagged(missed_from=11, missed=140)
        assert sub.get_nowait().seq == 151  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="since must be between 0 and 250"):
        bus.subscribe(since=999)


async def test_a_waiting_subscriber_wakes_on_publish_and_ends_on_close() -> None:
    bus = EventBus()
    got: list[int] = []
    sub = bus.subscribe()

    async def reader() -> None:
        async for item in sub:
            assert isinstance(item, tether.Event)
            got.append(item.seq)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        _publish(bus, 3)
        await trio.testing.wait_all_tasks_blocked()
        sub.close()
    assert got == [1, 2, 3]
    assert bus.subscriber_count == 0


def test_publishing_never_blocks_with_a_subscriber_that_never_reads() -> None:
    bus = EventBus(ring_size=1000)
    stuck = bus.subscribe(buffer=5)
    _publish(bus, 100_000)
    assert stuck.pending == 5
    assert len(bus.recent()) == 1000
