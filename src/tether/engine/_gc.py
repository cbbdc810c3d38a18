"""``gc_policy="managed"``: collect cyclic garbage when it can exist, not on a clock.

CPython's automatic collector runs a young collection every 700 net
allocations and a full one whenever the survivors grow by a quarter. With
100,000 sessions each full collection walks millions of long-lived objects
(seconds of pause), and every young collection walks whatever the last
reconnects left alive: that was most of a reconnect storm's cost and the whole
of the drop-to-reconnect tail (benchmarks/FINDINGS.md).

Reconnecting leaves no reference cycles (a test keeps it that way), so the
collector's work is mostly walking survivors it cannot free. This policy
turns automatic collection off and, every `interval` (0.1 s), collects only
the youngest generation: what the last tenth of a second allocated and kept,
walked once, in a pause of a millisecond or two (short-lived cycles, such as
an exception kept in a frame, die here). Older objects are walked only by a
full collection, which runs once the net number of live container objects
(CPython's generation-0 counter goes up on each allocation and down on each
free) has doubled since the last one, and grown by at least `full_floor`:
steady churn, however fast, allocates as much as it frees and never
triggers it; a leak or a large bring-up does. While the loop is too busy to
wake the collector on time (a reconnect storm), young collections wait:
most of what the storm allocates is freed by reference counting moments
later, and walking it while it is still alive was a quarter of the storm.
"""

from __future__ import annotations

import gc
from typing import final

import attrs
import trio


@final
@attrs.define
class GcStats:
    """What the managed policy did (the tests read it to see which rule fired)."""

    young: int = 0
    deferred: int = 0
    """Young collections skipped because the loop was busy."""
    full: int = 0
    freed: int = 0


@final
class ManagedCollector:
    """Runs in the supervisor's nursery while ``gc_policy="managed"``; restores the collector on exit."""

    def __init__(
        self,
        *,
        interval: float = 0.1,
        full_floor: int = 1_000_000,
        full_ratio: float = 1.0,
    ) -> None:
        self.interval = interval
        self.full_floor = full_floor
        self.full_ratio = full_ratio
        self.stats = GcStats()
        self._alive_after_full = 0
        self._grown_since_full = 0
        self._counted = 0
        """The part of the generation-0 counter already added to `_grown_since_full`."""

    def __enter__(self) -> ManagedCollector:
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._alive_after_full = len(gc.get_objects())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._was_enabled:
            gc.enable()

    def tick(self, *, busy: bool = False) -> None:
        """Collect what the last interval allocated; everything, once live objects grew enough.

        `busy` (the loop woke us late): skip the young collection. In a reconnect storm most of
        what the attempts allocate is freed by reference counting a moment later, so walking it
        now is wasted; once the loop has slack again, the next young collection walks only what
        is still alive. The full collection's growth rule still applies, so a leak under
        sustained load is still caught.
        """
        grown = gc.get_count()[0]  # net growth since the last collection, counted or not
        self._grown_since_full += max(0, grown - self._counted)
        self._counted = grown
        full_due = max(self.full_floor, int(self._alive_after_full * self.full_ratio))
        if self._grown_since_full > full_due:
            freed = gc.collect(2)
            self.stats.freed += freed
            self.stats.full += 1
            self._alive_after_full = max(0, self._alive_after_full + self._grown_since_full - freed)
            self._grown_since_full = 0
            self._counted = 0
        elif grown and not busy:
            self.stats.freed += gc.collect(0)
            self.stats.young += 1
            self._counted = 0
        elif grown:
            self.stats.deferred += 1

    async def run(self) -> None:
        while True:
            slept_from = trio.current_time()
            await trio.sleep(self.interval)
            self.tick(busy=trio.current_time() - slept_from > 2 * self.interval)
