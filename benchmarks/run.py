"""tether's benchmark: supervision overhead across thousands of sessions.

    python benchmarks/run.py [--quick] [--out benchmarks/results] [--ns 1000,10000] [--only storm,idle]

Every measurement runs in a fresh subprocess (`benchmarks/_worker.py`), so
RSS and GC state are clean. Results: results.json, results.md (table, ratios,
targets as PASS/FAIL) and PNG scaling curves, all under --out.
Targets are printed, never asserted: a benchmark is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_worker.py"
IMPLS = ("tether", "naive-asyncio", "trio-floor")
KB = 1024


def tether_of(python: str) -> str:
    """Where `python` imports tether from (which commit a cell measures)."""
    found = subprocess.run([python, "-c", "import tether; print(tether.__file__)"], capture_output=True, text=True)
    return found.stdout.strip()


def machine() -> dict:
    import psutil
    import trio

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", *a], cwd=HERE.parent, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except Exception:
            return ""

    return {
        "platform": platform.platform(), "cpu": cpu_model, "logical_cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0], "trio": trio.__version__,
        "tether_commit": git("rev-parse", "--short", "HEAD"),
        "src_dirty": bool(git("status", "--porcelain", "--", "src")),
        "loadavg_start": os.getloadavg(),
        "tether_imported_from": tether_of(sys.executable),
    }


BEFORE_KEYS = ("storm", "idle", "cancel-exit")
"""What `--before` measures twice: the figures a regression would show first."""


def run_one(workload: str, impl: str, n: int, extra: list[str], timeout: float, before: str | None = None) -> dict:
    """One cell in a fresh process; impl tether-before is tether as installed for the `before` interpreter."""
    python, worker_impl = (before, "tether") if impl == "tether-before" and before else (sys.executable, impl)
    cmd = [python, str(WORKER), workload, worker_impl, str(n), *extra]
    label = f"{workload:18} {impl:14} N={n:<7} {' '.join(extra)}"
    print(f"  {label} ...", end="", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f" TIMEOUT after {timeout:.0f}s", flush=True)
        return {"error": f"timeout after {timeout:.0f}s"}
    dt = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f" FAILED ({dt:.1f}s): {' | '.join(tail)}", flush=True)
        return {"error": " | ".join(tail)}
    res = json.loads(lines[-1])
    res["process_s"] = round(dt, 2)
    res["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    print(f" {dt:.1f}s", flush=True)
    return res


LARGEST_ORDER = ["storm", "idle", "cancel-exit", "cancel-unregister-64", "trickle", "storm-jitter",
                 "idle-tracemalloc", "cancel-unregister"]


def plan(
    quick: bool, ns: list[int], only: set[str] | None, largest_order: list[str] = LARGEST_ORDER,
    before: bool = False,
) -> list[tuple[str, str, int, list[str]]]:
    """(key, impl, n, extra args) in priority order: the most telling measurements first."""
    idle_args = ["--idle-scale", "0.1"] if quick else []
    tm_max = max(ns) if quick else 10_000  # tracemalloc is slow; bytes/session barely depends on N
    runs: list[tuple[str, str, int, list[str]]] = []

    def at(n: int, keys: list[str], baselines_first: bool = False) -> None:
        for key in keys:
            for impl in IMPLS[::-1] if baselines_first else IMPLS:
                if key.startswith("cancel-unregister") and impl != "tether":
                    continue
                if key == "idle-tracemalloc" and n > tm_max:
                    continue
                extra = {
                    "storm-jitter": ["--jitter", "full"], "idle": idle_args,
                    "idle-tracemalloc": ["--tracemalloc", *idle_args], "cancel-unregister-64": ["--workers", "64"],
                    "trickle": ["--trickle-seconds", "1"] if quick else [],
                }.get(key, [])
                runs.append((key, impl, n, extra))
                if before and impl == "tether" and key in BEFORE_KEYS:
                    runs.append((key, "tether-before", n, extra))

    every = ["storm", "storm-jitter", "idle", "idle-tracemalloc", "cancel-exit", "cancel-unregister-64",
             "trickle"] + ([] if quick else ["cancel-unregister"])
    for n in ns if quick else ns[:-1]:
        at(n, every)
    events_n = 10_000 if quick else 200_000
    for subs in (1, 10, 100):
        runs.append(("events", "tether", max(2_000, events_n // max(1, subs // 10)), ["--subscribers", str(subs)]))
    ws_total = 1_000 if quick else 40_000
    for batch in (0, 100):
        for subs in (1, 10) if quick else (1, 10, 100):
            total = max(200, ws_total // subs) * (10 if batch else 1)
            runs.append(("events-ws", "tether", total, ["--batch", str(batch), "--subscribers", str(subs)]))
    runs.append(("snapshots", "tether", 1_000 if quick else 20_000, []))
    # the largest N last, most telling first, so a spent budget skips the least
    if not quick:
        at(ns[-1], largest_order, baselines_first=True)
    if only:
        runs = [r for r in runs if r[0].split("-")[0] in only or r[0] in only]
    return runs


WORKLOAD_OF = {
    "storm": "storm", "storm-jitter": "storm", "idle": "idle", "idle-tracemalloc": "idle",
    "cancel-exit": "cancel-exit", "cancel-unregister": "cancel-unregister",
    "cancel-unregister-64": "cancel-unregister", "trickle": "trickle", "events": "events",
    "events-ws": "events-ws", "snapshots": "snapshots",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: small N, short windows (< 2 min)")
    ap.add_argument("--out", help="default benchmarks/results, or benchmarks/results-quick with --quick")
    ap.add_argument("--ns", help="comma-separated session counts (default 1000,10000,100000; quick 500,2000)")
    ap.add_argument("--only", help="comma-separated workloads: storm,idle,cancel,trickle,events")
    ap.add_argument("--budget", type=float, default=None, help="seconds; later runs are skipped past it")
    ap.add_argument("--largest-order", help="comma-separated run keys for the largest N, in order")
    ap.add_argument("--run-timeout", type=float, default=360.0, help="seconds per subprocess")
    ap.add_argument("--before", metavar="PYTHON",
                    help="also run storm, idle and cancel-exit with the tether this interpreter imports "
                         "(a venv holding an earlier commit), side by side in the same run")
    ap.add_argument("--note", default="", help="free text recorded with the machine (e.g. 'shared machine')")
    args = ap.parse_args()
    ns = [int(x) for x in args.ns.split(",")] if args.ns else ([300, 1000] if args.quick else [1000, 10_000, 100_000])
    budget = args.budget or (110.0 if args.quick else 19 * 60.0)
    only = set(args.only.split(",")) if args.only else None
    out = Path(args.out or HERE / ("results-quick" if args.quick else "results"))
    out.mkdir(parents=True, exist_ok=True)

    info = machine()
    info["note"] = args.note
    info["mode"] = "quick" if args.quick else "full"
    print(f"tether benchmark ({info['mode']}): {info['cpu']} x{info['logical_cpus']}, "
          f"Python {info['python']}, trio {info['trio']}, load {info['loadavg_start']}")
    if args.before:
        info["before"] = {"python": args.before, "tether_imported_from": tether_of(args.before)}
    runs = plan(args.quick, ns, only, args.largest_order.split(",") if args.largest_order else LARGEST_ORDER,
                before=bool(args.before))
    results: list[dict] = []
    start = time.perf_counter()
    for key, impl, n, extra in runs:
        elapsed = time.perf_counter() - start
        left = budget - elapsed
        row = {"key": key, "impl": impl, "n": n, "args": extra}
        if left < 5:
            row["result"] = {"error": "skipped: time budget spent"}
            print(f"  {key:18} {impl:14} N={n:<7} skipped (budget)")
        else:
            row["result"] = run_one(WORKLOAD_OF[key], impl, n, extra, timeout=min(left, args.run_timeout),
                                    before=args.before)
        results.append(row)
    info["loadavg_end"] = os.getloadavg()
    info["total_s"] = round(time.perf_counter() - start, 1)
    doc = {"machine": info, "ns": ns, "runs": results}
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    from _report import render

    md = render(doc, out)
    (out / "results.md").write_text(md)
    print()
    print(md)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
