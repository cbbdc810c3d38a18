"""The benchmark harness measures what benchmarks/README.md says it does (a benchmark is not a
test, but a harness that silently skips a workload publishes a table with holes)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def run_module(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import run  # type: ignore[import-not-found]

    return run


def test_every_workload_is_planned(run_module: object) -> None:
    for quick in (True, False):
        keys = {key for key, *_ in run_module.plan(quick, [1000, 10_000], None)}  # type: ignore[attr-defined]
        assert {"storm", "idle", "cancel-exit", "trickle", "events", "events-ws", "snapshots"} <= keys


def test_before_measures_the_named_keys_twice(run_module: object) -> None:
    runs = run_module.plan(True, [1000], None, before=True)  # type: ignore[attr-defined]
    before = sorted(key for key, impl, *_ in runs if impl == "tether-before")
    assert before == sorted(run_module.BEFORE_KEYS)  # type: ignore[attr-defined]


def test_a_before_run_puts_both_sides_in_one_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--ns", "100", "--only", "cancel",
         "--before", sys.executable, "--out", str(out)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    doc = json.loads((out / "results.json").read_text())
    cells = {(row["key"], row["impl"]) for row in doc["runs"] if "error" not in row["result"]}
    assert ("cancel-exit", "tether-before") in cells and ("cancel-exit", "tether") in cells
    table = (out / "results.md").read_text().split("## Before and after (same run)")[1]
    assert "| cancel: leave the context / cancel all (s) | 100 |" in table


def test_the_readme_performance_table_is_the_published_run() -> None:
    """README's figures are the ones in benchmarks/results-before-after (no figure typed by hand)."""
    readme = (BENCHMARKS.parent / "README.md").read_text()
    published = BENCHMARKS / "results-before-after"
    doc = json.loads((published / "results.json").read_text())
    per_attempt = json.loads((published / "instructions-quick.json").read_text())["per_attempt"]

    def cell(key: str, impl: str, field: str) -> float:
        return next(r["result"][field] for r in doc["runs"] if (r["key"], r["impl"], r["n"]) == (key, impl, 100_000))

    storm = [cell("storm", impl, "cpu_s") for impl in ("tether", "naive-asyncio", "trio-floor", "tether-before")]
    assert f"| storm: CPU seconds | {storm[0]:.1f} | {storm[1]:.1f} | {storm[2]:.1f} | {storm[0] / storm[1]:.1f}x | " \
           f"{storm[0] / storm[2]:.2f}x | {storm[0] / storm[3]:.2f}x |" in readme
    idle = [cell("idle", impl, "rss_bytes_per_session") / 1024 for impl in ("tether", "naive-asyncio", "trio-floor")]
    assert f"| idle: RSS per session | {idle[0]:.1f} KB | {idle[1]:.1f} KB | {idle[2]:.1f} KB |" in readme
    exit_s = [cell("cancel-exit", impl, "cancel_s") for impl in ("tether", "naive-asyncio", "trio-floor")]
    assert f"| {exit_s[0]:.1f} s | {exit_s[1]:.1f} s | {exit_s[2]:.1f} s |" in readme
    shown = {name: f"{value / 1000:.1f}k" for name, value in per_attempt.items()}
    for name in ("naive-asyncio", "trio-floor", "tether"):
        assert shown[name] in readme, name
    assert f"{per_attempt['tether'] / per_attempt['tether-before']:.2f}x what it cost last round" in readme


@pytest.mark.parametrize("reader", ["in process (Supervisor.read_next)", "/control read (client, wait)", "/attach"])
def test_the_console_benchmark_reads_what_was_printed(reader: str) -> None:
    # by its path: other test folders have a `console` module of their own
    spec = importlib.util.spec_from_file_location("tether_bench_console", BENCHMARKS / "console.py")
    assert spec is not None and spec.loader is not None
    console = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(console)

    cell = trio.run(console.measure, console.READERS[reader], 2, 0.3)
    assert cell["received MB/s"] > 0
    assert cell["received MB/s"] <= cell["printed MB/s"] * 1.001
