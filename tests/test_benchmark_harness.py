"""The benchmark harness measures what benchmarks/README.md says it does (a benchmark is not a
test, but a harness that silently skips a workload publishes a table with holes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
