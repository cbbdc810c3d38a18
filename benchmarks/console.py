"""Bytes per second out of busy consoles: in process, through /control `read`, through /attach.

    python benchmarks/console.py [--quick] [--out benchmarks/results]

Each of 1 and 100 scripted sessions prints as fast as it can (the scripted link
echoes what `Supervisor.send` types, in 4 KiB pieces) while one reader per
session follows its log from position 0: `Supervisor.read_next` in the same
process (the baseline), the typed client's `read` with a server-side wait
over `/control`, and the `/attach` stream. Readers and the server share one
process and one trio loop, so a figure is what the whole pipeline sustains
on one core, not a network's. Bytes a reader fell too far behind to get are
counted as lost (the log is bounded: 64 KiB a session by default), never
hidden. The load average is recorded; targets are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import tether  # noqa: E402
from tether.rules._output import Loss  # noqa: E402
from tether.server._attach_client import Output, open_attach  # noqa: E402
from tether.server._server import serve_events  # noqa: E402
from tether.server._settings import ServerSettings  # noqa: E402
from tether.testing import ScriptedBackend  # noqa: E402

CHUNK = b"0123456789abcdef" * 256  # 4 KiB of output per send
Reader = Callable[["Run", str], Awaitable[None]]


class Run:
    """One measurement: the supervisor, the server's address, and what the readers got."""

    def __init__(self, supervisor: tether.Supervisor, url: str, until: float) -> None:
        self.supervisor = supervisor
        self.url = url
        self.until = until
        self.received = 0
        self.lost = 0
        self.printed = 0


async def _print(run: Run, sid: str) -> None:
    while trio.current_time() < run.until:
        await run.supervisor.send(sid, CHUNK)
        run.printed += len(CHUNK)


async def read_in_process(run: Run, sid: str) -> None:
    cursor = 0
    while trio.current_time() < run.until:
        read = await run.supervisor.read_next(sid, cursor, 64 * 1024, budget=0.5)
        _count(run, read)
        cursor = read.next


async def read_over_control(run: Run, sid: str) -> None:
    cursor = 0
    async with tether.open_client(url=run.url) as client:
        while trio.current_time() < run.until:
            read = await client.read(sid, cursor, 1 << 20, wait=0.5)
            _count(run, read)
            cursor = read.next


async def read_over_attach(run: Run, sid: str) -> None:
    async with open_attach(url=run.url, session_id=sid, since=0) as stream:
        while trio.current_time() < run.until:
            with trio.move_on_after(0.5):
                item = await stream.receive()
                if isinstance(item, Output):
                    run.received += len(item.data)
                elif isinstance(item, Loss):
                    run.lost += item.stop - item.start


def _count(run: Run, read: tether.LogRead) -> None:
    for piece in read.pieces():
        if isinstance(piece, Loss):
            run.lost += piece.stop - piece.start
        else:
            run.received += len(piece[1])


async def measure(reader: Reader, sessions: int, seconds: float) -> dict[str, float]:
    policy = tether.ReconnectPolicy(health_check_interval=0.0, keepalive_interval=0.0)
    async with tether.open_supervisor(backends=[ScriptedBackend()]) as supervisor, trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve_events(
            supervisor, ServerSettings(port=0), token=None, task_status=task_status))
        ids = [f"s{i}" for i in range(sessions)]
        await supervisor.register_many(tether.SessionSpec(id=sid, backend="scripted", policy=policy) for sid in ids)
        await tether.testing.wait_until(
            lambda: all(supervisor.state(sid).status is tether.SessionStatus.CONNECTED for sid in ids))
        run = Run(supervisor, f"ws://127.0.0.1:{port}", trio.current_time() + seconds)
        started, cpu = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as work:
            for sid in ids:
                work.start_soon(_print, run, sid)
                work.start_soon(reader, run, sid)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        nursery.cancel_scope.cancel()
    return {
        "received MB/s": round(run.received / wall / 1e6, 2),
        "printed MB/s": round(run.printed / wall / 1e6, 2),
        "lost (fell behind) %": round(100 * run.lost / max(1, run.lost + run.received), 1),
        "cpu/wall": round(cpu / wall, 2),
    }


READERS: dict[str, Reader] = {
    "in process (Supervisor.read_next)": read_in_process,
    "/control read (client, wait)": read_over_control,
    "/attach": read_over_attach,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 s a cell instead of 5")
    parser.add_argument("--out", type=Path, help="default results/console.json (results-quick/ with --quick)")
    args, _ = parser.parse_known_args()  # nox passes run.py's own options too
    args.out = args.out or HERE / ("results-quick" if args.quick else "results") / "console.json"
    seconds = 1.0 if args.quick else 5.0
    results: dict[str, object] = {"load_start": os.getloadavg(), "seconds_per_cell": seconds}
    for sessions in (1, 100):
        for name, reader in READERS.items():
            cell = trio.run(measure, reader, sessions, seconds)
            results[f"{sessions} session(s), {name}"] = cell
            print(f"{sessions:>3} session(s)  {name:36} {cell}", flush=True)
    results["load_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"load average {results['load_start']} -> {results['load_end']}; written to {args.out}")


if __name__ == "__main__":
    main()
