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
triggers it; a leak or a large bring-up does.
"""

from __future__ import annotations

import gc
from typing import final

import attrs
import trio


@final
@attrs.define
class GcStats:
    """What the managed policy did; for the benchmarks and the curious."""

    young: int = 0
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

    def __enter__(self) -> ManagedCollector:
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._alive_after_full = len(gc.get_objects())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._was_enabled:
            gc.enable()

    def tick(self) -> None:
        """Collect what the last interval allocated; everything, once live objects grew enough."""
        grown = gc.get_count()[0]
        self._grown_since_full += grown
        full_due = max(self.full_floor, int(self._alive_after_full * self.full_ratio))
        if self._grown_since_full > full_due:
            freed = gc.collect(2)
            self.stats.freed += freed
            self.stats.full += 1
            self._alive_after_full = max(0, self._alive_after_full + self._grown_since_full - freed)
            self._grown_since_full = 0
        elif grown:
            self.stats.freed += gc.collect(0)
            self.stats.young += 1

    async def run(self) -> None:
        while True:
            await trio.sleep(self.interval)
            self.tick()
