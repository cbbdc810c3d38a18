"""The output log's costs: append and read throughput, memory per session, persistence per flush.

    python benchmarks/output.py [--quick] [--out benchmarks/results]

Every figure is next to a baseline measured in the same run, on the same data:
the bounded ``bytearray`` the engine keeps today (`Session.add_output` without
its decode), and for persistence the snapshot writes of the same sessions.
Memory cells each run in a fresh process (``--cell``), measured twice: the
Python heap (tracemalloc) and the process RSS. The machine is shared: the load
average at start and end and the CPU/wall ratio of every timing are recorded,
so a figure taken under load says so. Targets are printed, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from tether.rules._console import ConsoleOutput  # noqa: E402
from tether.rules._output import DEFAULT_MAX_BYTES, LogLimits, OutputLog  # noqa: E402

LIMIT = DEFAULT_MAX_BYTES
PLAIN = {size: bytes(range(32, 127)) * (size // 95) + b"x" * (size % 95) for size in (64, 1024, 16384)}
COLOURED = {size: (b"\x1b[31mred\x1b[0m text " * (size // 20 + 1))[:size] for size in (64, 1024, 16384)}


class Baseline:
    """What the engine keeps today: one bounded bytearray per session (its add_output, no decode)."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def append(self, data: bytes) -> None:
        self.buf += data
        excess = len(self.buf) - LIMIT
        if excess > 0:
            del self.buf[:excess]


def timed(fn: Callable[[], int], repeats: int) -> dict[str, float]:
    """Best of `repeats` runs of `fn` (which returns bytes processed): MB/s, and CPU/wall of the best."""
    best = None
    for _ in range(repeats):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        nbytes = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[0]:
            best = (wall, cpu, nbytes)
    assert best is not None
    wall, cpu, nbytes = best
    return {"mb_per_s": round(nbytes / wall / 1e6, 1), "cpu_over_wall": round(cpu / wall, 2)}


def append_cell(make: Callable[[], Callable[[bytes], object]], data: bytes, total: int) -> Callable[[], int]:
    def run() -> int:
        sink = make()
        for _ in range(total // len(data)):
            sink(data)
        return (total // len(data)) * len(data)

    return run


def throughput(quick: bool) -> dict[str, object]:
    total, repeats = (8 << 20, 3) if quick else (64 << 20, 5)
    results: dict[str, object] = {}
    for size in (64, 1024, 16384):
        row = {}
        for name, data in (("plain", PLAIN[size]), ("coloured", COLOURED[size])):
            row[f"bytearray/{name}"] = timed(append_cell(lambda: Baseline().append, data, total), repeats)
            row[f"log/{name}"] = timed(append_cell(lambda: OutputLog().append, data, total), repeats)
            row[f"console/{name}"] = timed(
                append_cell(lambda: ConsoleOutput(OutputLog()).output, data, total), repeats
            )
        results[f"append {size} B chunks"] = row

    log = OutputLog()
    for _ in range(LIMIT // 1024):
        log.append(PLAIN[1024])

    def read_window() -> int:
        moved = 0
        for _ in range(200 if quick else 2000):
            cursor = log.start
            while cursor < log.end:
                got = log.read(cursor, 4096)
                moved += len(got.data)
                cursor = got.next
        return moved

    baseline = bytes(log.read(log.start, LIMIT).data)

    def copy_window() -> int:
        moved = 0
        for _ in range(200 if quick else 2000):
            view = bytearray(baseline)
            for at in range(0, len(view), 4096):
                moved += len(bytes(view[at : at + 4096]))
        return moved

    results["read 64 KiB in 4 KiB reads"] = {
        "bytearray slices": timed(copy_window, repeats), "log.read": timed(read_window, repeats),
    }
    return results


# -- memory per session (fresh process per cell) -------------------------------------------------


def memory_cell(kind: str, fill: int, n: int) -> dict[str, float]:
    def statm_rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    makers: dict[str, Callable[[], object]] = {
        "bytearray": Baseline, "log": OutputLog, "console": lambda: ConsoleOutput(OutputLog()),
    }
    chunk = PLAIN[1024]
    gc.collect()
    rss0 = statm_rss()
    tracemalloc.start()
    keep = []
    for _ in range(n):
        item = makers[kind]()
        append = item.append if hasattr(item, "append") else item.output  # type: ignore[attr-defined]
        for _ in range(fill // len(chunk)):
            append(chunk)
        keep.append(item)
    heap, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    gc.collect()
    rss1 = statm_rss()
    return {"heap_bytes_per_session": round(heap / n, 1), "rss_bytes_per_session": round((rss1 - rss0) / n, 1)}


def memory(quick: bool) -> dict[str, object]:
    n = 1000 if quick else 10_000
    rows: dict[str, object] = {"sessions": n}
    for fill in (0, LIMIT):
        for kind in ("bytearray", "log", "console"):
            out = subprocess.run(
                [sys.executable, __file__, "--cell", kind, str(fill), str(n)], capture_output=True, text=True,
                check=True,
            ).stdout
            rows[f"{kind} holding {fill // 1024} KiB"] = json.loads(out)
    return rows


# -- persistence -------------------------------------------------------------------------------------


def database_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("bench.sqlite3*"))


def persistence(quick: bool) -> dict[str, object]:
    import trio

    from tether.store._sqlite import open_sqlite_store

    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_sqlite_store import snap  # a realistic snapshot: a session mid-backoff

    n = 1000 if quick else 10_000
    flushes = 10 if quick else 20
    limits = LogLimits()

    async def run() -> dict[str, object]:
        out: dict[str, object] = {"sessions": n}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.sqlite3"
            async with open_sqlite_store(path) as store:
                snaps = [snap(f"s{i}") for i in range(n)]
                started = time.perf_counter()
                await store.write(snaps)
                out["snapshots: one write of every session (baseline), s"] = round(time.perf_counter() - started, 3)
                logs = {f"s{i}": OutputLog(limits) for i in range(n)}

                written: list[int] = []

                async def one_flush(size: int, subset: int) -> float:
                    for sid in list(logs)[:subset]:
                        logs[sid].append(PLAIN[1024][:size] if size <= 1024 else PLAIN[16384][:size])
                    pending = [log.take_flush(sid) for sid, log in logs.items() if log.needs_flush]
                    written.append(sum(len(r.data) for f in pending for r in f.rows))
                    started = time.perf_counter()
                    await store.write([], logs=pending)
                    took = time.perf_counter() - started
                    for f in pending:
                        logs[f.session_id].flushed(f)
                    return took

                await one_flush(1, n)  # every head written once
                written.clear()
                trickle = [await one_flush(16, n) for _ in range(flushes)]
                out["logs: data bytes written per trickle flush (16 B new per session, open rows rewritten)"] = (
                    sorted(written)[len(written) // 2])
                out["logs: every session printed 16 B, s per flush (median)"] = round(sorted(trickle)[len(trickle) // 2], 3)
                busy = [await one_flush(16384, n // 100) for _ in range(flushes)]
                out[f"logs: {n // 100} sessions printed 16 KiB, s per flush (median)"] = round(sorted(busy)[len(busy) // 2], 3)
                for _ in range(40):
                    await one_flush(16384, n // 10)  # fill a tenth of the logs past their bound
            size = database_size(Path(tmp))
            out["database and WAL after the run, MB"] = round(size / 1e6, 1)
            out["disk bound per session (max_bytes + row_bytes), KiB"] = (limits.max_bytes + limits.row_bytes) / 1024
        return out

    return trio.run(run)


def markdown(results: dict[str, object]) -> str:
    lines = ["# Output log benchmark", "", f"load average at start {results['load_start']}, at end {results['load_end']} "
             f"(2 shared cores: figures taken under load are marked by a CPU/wall below 1)", ""]
    for section in ("throughput", "memory", "persistence"):
        lines += [f"## {section}", "", "```", json.dumps(results[section], indent=2), "```", ""]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--cell":
        print(json.dumps(memory_cell(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", help="default benchmarks/results, or benchmarks/results-quick with --quick")
    args = parser.parse_args()
    results: dict[str, object] = {"load_start": os.getloadavg()}
    results["throughput"] = throughput(args.quick)
    results["memory"] = memory(args.quick)
    results["persistence"] = persistence(args.quick)
    results["load_end"] = os.getloadavg()
    out = Path(args.out or HERE / ("results-quick" if args.quick else "results"))
    out.mkdir(parents=True, exist_ok=True)
    name = "output-quick" if args.quick else "output"
    (out / f"{name}.json").write_text(json.dumps(results, indent=2))
    (out / f"{name}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
