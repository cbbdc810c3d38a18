"""Instructions per reconnect attempt, tether against naive asyncio: a figure load barely moves.

    python benchmarks/instructions.py [--small 500] [--large 1500] [--quick] [--cells tether,...]

Every session connects, drops, fails 3 attempts and the 4th succeeds (5 connects); this runs under
valgrind's callgrind for two fleet sizes per implementation; the difference
between the two instruction totals, divided by the extra attempts, is the
cost of one attempt with start-up (imports, the first connects) cancelled
out. callgrind counts instructions, not seconds, so a busy machine cannot
inflate it as it inflates seconds. It still moves a little: the backoff
sleeps are real time, so how many sessions wake per scheduler pass, and when
the clock-driven collector walks, vary from run to run (the same tether
spread over about 12k per attempt in three runs: benchmarks/FINDINGS.md).
Completion is waited for on an event, not by polling, so the harness adds
next to nothing per attempt. Needs valgrind (Debian package ``valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FAILS = 3
BASE, MULT, CAP = 0.01, 2.0, 0.1


def storm_tether(n: int) -> None:
    import trio

    import tether
    from tether.testing import ScriptedBackend

    policy = tether.ReconnectPolicy(base_delay=BASE, multiplier=MULT, max_delay=CAP, jitter="none",
                                    max_retries=FAILS + 2, health_check_interval=0, keepalive_interval=0,
                                    stable_after=0)

    async def main() -> None:
        backend = ScriptedBackend()
        async with tether.open_supervisor(backends=[backend], connect_limit=None, gc_policy="managed") as sup:
            with sup.subscribe(types=["session.connected", "reconnect.succeeded"], buffer=n + 10) as sub:
                await sup.register_many(
                    tether.SessionSpec(id=f"s{i}", backend="scripted", policy=policy) for i in range(n)
                )
                for _ in range(n):
                    await sub.get()
                for i in range(n):
                    backend.fail_next(f"s{i}", FAILS)
                    backend.drop(f"s{i}")
                for _ in range(n):
                    await sub.get()

    trio.run(main)


def storm_asyncio(n: int) -> None:
    async def main() -> None:
        connected = asyncio.Event()
        recovered = asyncio.Event()
        counts = {"up": 0, "back": 0}

        class Sess:
            __slots__ = ("fail", "waiter")

            def __init__(self) -> None:
                self.fail = 0
                self.waiter: asyncio.Future[None] | None = None

        async def connect(s: Sess) -> None:
            await asyncio.sleep(0)
            if s.fail > 0:
                s.fail -= 1
                raise ConnectionError("scripted")

        async def run(s: Sess) -> None:
            loop = asyncio.get_running_loop()
            first = True
            while True:
                failures = 0
                while True:
                    try:
                        await connect(s)
                        break
                    except ConnectionError:
                        failures += 1
                        await asyncio.sleep(min(CAP, BASE * MULT ** (failures - 1)))
                key = "up" if first else "back"
                first = False
                counts[key] += 1
                if counts[key] == n:
                    (connected if key == "up" else recovered).set()
                s.waiter = loop.create_future()
                await s.waiter

        sessions = [Sess() for _ in range(n)]
        tasks = [asyncio.create_task(run(s)) for s in sessions]
        await connected.wait()
        for s in sessions:
            s.fail = FAILS
            assert s.waiter is not None
            s.waiter.set_result(None)
        await recovered.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def storm_trio_floor(n: int) -> None:
    """What trio itself costs for the same storm: one task per session, a cancel scope per attempt
    (its connect timeout), ``trio.sleep`` for the backoff, an Event to wait for a drop. No records."""
    import trio

    async def main() -> None:
        counts = {"up": 0, "back": 0}
        connected, recovered = trio.Event(), trio.Event()
        fails = [0] * n
        drops = [trio.Event() for _ in range(n)]

        async def connect(i: int) -> None:
            await trio.lowlevel.checkpoint()
            if fails[i] > 0:
                fails[i] -= 1
                raise ConnectionError("scripted")

        async def run(i: int) -> None:
            first = True
            while True:
                failures = 0
                while True:
                    with trio.move_on_after(15):
                        try:
                            await connect(i)
                            break
                        except ConnectionError:
                            failures += 1
                    await trio.sleep(min(CAP, BASE * MULT ** (failures - 1)))
                key = "up" if first else "back"
                first = False
                counts[key] += 1
                if counts[key] == n:
                    (connected if key == "up" else recovered).set()
                await drops[i].wait()
                drops[i] = trio.Event()

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(run, i)
            await connected.wait()
            for i in range(n):
                fails[i] = FAILS
                drops[i].set()
            await recovered.wait()
            nursery.cancel_scope.cancel()

    trio.run(main)


def measure(impl: str, n: int, python: str = sys.executable) -> int:
    """callgrind's instruction total for one storm of `n` sessions in a fresh `python` process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, __file__,
             "--run", impl, str(n)],
            capture_output=True, text=True, check=True,
        )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=1500)
    parser.add_argument("--run", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--before", metavar="PYTHON",
                        help="also measure the tether installed for this interpreter (an earlier commit's venv)")
    parser.add_argument("--quick", action="store_true", help="smaller fleets (200 and 600 sessions)")
    parser.add_argument("--out", type=Path, help="default results/instructions.json (results-quick/ with --quick)")
    parser.add_argument("--cells", help="comma-separated cells (naive-asyncio,trio-floor,tether,tether-before): "
                        "printed only, nothing written (to measure one change quickly)")
    args, _ = parser.parse_known_args()  # nox passes run.py's own options too
    if args.quick:
        args.small, args.large = 200, 600
    if args.out is None:
        args.out = Path(__file__).parent / ("results-quick" if args.quick else "results") / "instructions.json"
    if args.run:
        impl, n = args.run[0], int(args.run[1])
        {"tether": storm_tether, "trio-floor": storm_trio_floor, "naive-asyncio": storm_asyncio}[impl](n)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
    attempts = (args.large - args.small) * (FAILS + 2)  # the first connect, 3 failed attempts, the 4th
    per_attempt = {}
    cells = [("naive-asyncio", "naive-asyncio", sys.executable), ("trio-floor", "trio-floor", sys.executable),
             ("tether", "tether", sys.executable)]
    if args.before:
        cells.append(("tether-before", "tether", args.before))
    if args.cells:
        cells = [cell for cell in cells if cell[0] in args.cells.split(",")]
    for label, impl, python in cells:
        small, large = measure(impl, args.small, python), measure(impl, args.large, python)
        per_attempt[label] = (large - small) / attempts
        print(f"{label:14} {per_attempt[label]:>10,.0f} instructions per attempt "
              f"({small:,} at {args.small} sessions, {large:,} at {args.large})")
    if args.cells:
        return
    ratio = per_attempt["tether"] / per_attempt["naive-asyncio"]
    floor = per_attempt["trio-floor"] / per_attempt["naive-asyncio"]
    verdict = "PASS" if ratio <= 2.0 else "FAIL"
    print(f"tether / naive-asyncio: {ratio:.2f}x per attempt (target <= 2x: {verdict}); "
          f"bare trio with a scope per attempt: {floor:.2f}x")
    if args.before:
        print(f"tether / tether-before: {per_attempt['tether'] / per_attempt['tether-before']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"per_attempt": per_attempt, "ratio": ratio, "floor_ratio": floor,
                                    "small": args.small,
                                    "large": args.large, "fails_per_session": FAILS}, indent=2) + "\n")


if __name__ == "__main__":
    main()
