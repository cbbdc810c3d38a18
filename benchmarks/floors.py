"""What trio itself costs for the operations one supervised session cannot avoid.

    python benchmarks/floors.py [N]

No tether code runs here: bare trio tasks do what every session task does at
least (park on a shared timer heap and be woken, enter a cancel scope with a
deadline, pass a checkpoint, wake and exit). The figures are the floor under
tether's storm, trickle and cancel numbers with one trio task per session, as
the design card asks; benchmarks/FINDINGS.md compares them with tether's.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable

import trio

from tether.engine._timers import TimerQueue

ROUNDS = 4  # a storm session: three backoffs, four attempts


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED


class _Sleeper:
    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None

    def wake(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)


async def _scope_with_deadline() -> None:
    with trio.CancelScope() as scope:  # noqa: ASYNC100 -- entering and leaving it is what is measured
        scope.deadline = trio.current_time() + 15


async def _nothing() -> None:
    pass


def storm_floor(n: int, extra: Callable[[], Awaitable[None]]) -> float:
    """CPU seconds for n tasks to each park-and-wake 3 times (10/20/40 ms) and run `extra` 4 times."""

    async def main() -> float:
        timers = TimerQueue()
        done = 0
        go = trio.Event()

        async def session() -> None:
            nonlocal done
            sleeper = _Sleeper()
            await go.wait()
            for k in range(ROUNDS):
                await extra()
                if k < ROUNDS - 1:
                    timers.schedule(trio.current_time() + 0.01 * 2**k, sleeper.wake)
                    sleeper.task = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(_abort)
            done += 1

        async with trio.open_nursery() as nursery:
            await nursery.start(timers.run)
            for _ in range(n):
                nursery.start_soon(session)
            await trio.sleep(0.2)
            cpu0 = _cpu()
            go.set()
            while done < n:
                await trio.sleep(0.02)
            spent = _cpu() - cpu0
            nursery.cancel_scope.cancel()
        return spent

    return trio.run(main)


def wake_and_exit_floor(n: int) -> float:
    """Seconds to wake n parked tasks, each inside a cancel scope, and let all of them end."""

    async def main() -> float:
        parked: list[trio.lowlevel.Task] = []
        left = n
        all_done = trio.Event()

        async def session() -> None:
            nonlocal left
            with trio.CancelScope():
                parked.append(trio.lowlevel.current_task())
                await trio.lowlevel.wait_task_rescheduled(_abort)
            left -= 1
            if not left:
                all_done.set()

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(session)
            while len(parked) < n:
                await trio.sleep(0.01)
            start = time.perf_counter()
            for task in parked:
                trio.lowlevel.reschedule(task)
            await all_done.wait()
            return time.perf_counter() - start

    return trio.run(main)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    park = storm_floor(n, _nothing)
    scoped = storm_floor(n, _scope_with_deadline)
    checkpoint = storm_floor(n, trio.lowlevel.checkpoint)
    per = n * ROUNDS
    result = {
        "n": n,
        "storm_park_wake_cpu_s": round(park, 3),
        "cancel_scope_with_deadline_us": round((scoped - park) / per * 1e6, 2),
        "checkpoint_us": round((checkpoint - park) / per * 1e6, 2),
        "wake_and_exit_s": round(wake_and_exit_floor(n), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
