"""One timer task wakes every parked session from a heap.

A ``trio.sleep`` per session costs a cancel scope and a raised ``Cancelled``
per wake; at 100,000 sessions that dominated the design notes' benchmarks.
Here a session parks with ``wait_task_rescheduled`` and this task reschedules
it when its deadline passes: one cancel scope per *batch* of due timers.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import final

import trio


@final
class TimerEntry:
    """A scheduled wake-up; `cancel` makes it a no-op (removed lazily)."""

    __slots__ = ("callback", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None] | None) -> None:
        self.deadline = deadline
        self.callback = callback

    def cancel(self) -> None:
        self.callback = None


@final
class TimerQueue:
    """Deadlines for many sleepers, served by one task (`run`)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerEntry]] = []
        self._counter = itertools.count()
        self._scope: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, deadline: float, callback: Callable[[], None]) -> TimerEntry:
        """Call `callback` (synchronously, from the timer task) once trio time reaches `deadline`."""
        entry = TimerEntry(deadline, callback)
        heapq.heappush(self._heap, (deadline, next(self._counter), entry))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline
        return entry

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve deadlines until cancelled."""
        task_status.started()
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                entry = heapq.heappop(heap)[2]
                callback = entry.callback
                if callback is not None:
                    entry.callback = None
                    callback()
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
