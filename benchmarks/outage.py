"""Back the moment the host is: tether-ssh against autossh on the same real sshd outages.

    python benchmarks/outage.py [--runs 5] [--outages 5,20] [--sessions 1,100] [--quick] [--out DIR]

Each cell is one fresh subprocess (``outage.py --cell TOOL SESSIONS OUTAGE``)
with an sshd of its own on 127.0.0.1 (the live tests' helper). It brings
the sessions up, kills sshd (listener and every connection), waits the
outage, starts sshd again and measures, per session, the seconds from
sshd's return (its port accepting again) to *usable output*: the new remote
shell's prompt (``# ``: both tools run root's login shell). A row's figure is
the median over runs of the slowest session. Both tools use
``ServerAliveInterval=1`` (CountMax 2); autossh runs as ``autossh -M 0`` with
its defaults otherwise (``AUTOSSH_GATETIME=0`` so a refused first login does
not make it give up). tether runs as a library supervisor with its default
connect limit (10), connection sharing on (the plugin's default) and the
policy printed with the results.

Targets (printed PASS/FAIL, never asserted): under 1 s for 1 session; all 100
within 3 s; bring-up of 100 within 5 s; tether ahead of autossh in every row,
both measured in the same run, interleaved. The machine is shared: the
1-minute load average is recorded before and after every cell and printed
with each figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROMPT = "# "
"""What usable output is: root's prompt from the new login shell (the same shell for both tools)."""
TETHER_POLICY = {"base_delay": 0.25, "max_delay": 1.0, "jitter": "full", "connect_timeout": 10.0,
                 "keepalive_interval": 1.0, "health_check_interval": 5.0, "max_retries": None}
"""Retries forever, capped at 1 s: without the engine's readiness gate this cap sets how soon a
session tries again after sshd returns (the gate will replace it with one probe per target)."""
CELL_TIMEOUT = 300.0
RECOVERY_TIMEOUT = 120.0


def _sshd_helper() -> ModuleType:
    """The live tests' real-sshd helper (plugins/tether-ssh/tests/conftest.py), loaded by path."""
    path = ROOT / "plugins" / "tether-ssh" / "tests" / "conftest.py"
    spec = importlib.util.spec_from_file_location("tether_ssh_live_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# -- one cell (a subprocess) -------------------------------------------------------------------


class Firsts:
    """Per session: when the prompt first showed after `mark` (monotonic seconds)."""

    def __init__(self) -> None:
        self.mark: float | None = None
        self.seen: dict[str, float] = {}
        self._tails: dict[str, str] = {}

    def reset(self, mark: float) -> None:
        self.mark = mark
        self.seen.clear()
        self._tails.clear()

    def feed(self, sid: str, text: str) -> None:
        if self.mark is None or sid in self.seen:
            return
        tail = (self._tails.get(sid, "") + text)[-256:]
        self._tails[sid] = tail
        if PROMPT in tail:
            self.seen[sid] = time.monotonic()


def _restart_sshd(sshd: Any) -> float:
    """Start sshd again; the monotonic time its port first accepted (polled every 5 ms)."""
    sshd_path = shutil.which("sshd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    with sshd.log.open("ab") as log:
        sshd.process = subprocess.Popen([sshd_path, "-D", "-e", "-f", str(sshd.config)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            try:
                sock.connect(("127.0.0.1", sshd.port))
            except OSError:
                time.sleep(0.005)
                continue
            return time.monotonic()
    raise RuntimeError("sshd did not come back")


def _figures(firsts: Firsts, sessions: int) -> dict[str, Any]:
    assert firsts.mark is not None
    times = sorted(t - firsts.mark for t in firsts.seen.values())
    if len(times) < sessions:
        return {"all": None, "p50": statistics.median(times) if times else None, "back": len(times)}
    return {"all": round(times[-1], 3), "p50": round(statistics.median(times), 3), "back": len(times)}


async def _wait_all(firsts: Firsts, sessions: int, within: float) -> None:
    import trio

    with trio.move_on_after(within):
        while len(firsts.seen) < sessions:
            await trio.sleep(0.01)


async def _cell_tether(helper: ModuleType, sshd: Any, sessions: int, outage: float) -> dict[str, Any]:
    import trio

    import tether
    from tether_ssh import SshBackend

    backend = SshBackend()
    firsts = Firsts()
    policy = tether.ReconnectPolicy(**TETHER_POLICY)  # type: ignore[arg-type]
    async with helper.ssh_supervisor(backend) as sup, trio.open_nursery() as nursery:

        async def read(sub: Any) -> None:
            async for event in sub:
                if isinstance(event, tether.SessionOutput):
                    firsts.feed(event.session_id, event.data)

        sub = sup.subscribe(types=["session.output"], buffer=100_000)
        nursery.start_soon(read, sub)
        firsts.reset(time.monotonic())
        await sup.register_many(helper.ssh_spec(sshd, session_id=f"s{i:03d}", policy=policy)
                                for i in range(sessions))
        await _wait_all(firsts, sessions, RECOVERY_TIMEOUT)
        bring_up = _figures(firsts, sessions)
        logins_up = backend.logins.started
        sshd.stop()
        with trio.move_on_after(30):
            while any(s.status is tether.SessionStatus.CONNECTED for s in sup.states().values()):
                await trio.sleep(0.01)
        await trio.sleep(outage)
        since = sshd.log_size()
        firsts.reset(await trio.to_thread.run_sync(_restart_sshd, sshd))
        await _wait_all(firsts, sessions, RECOVERY_TIMEOUT)
        back = _figures(firsts, sessions)
        nursery.cancel_scope.cancel()
        sub.close()
    return {"bring_up": bring_up, "back": back, "logins_bring_up": logins_up,
            "logins_after_return": sshd.logins(since=since), "peak_logins_in_flight": backend.logins.peak}


async def _cell_autossh(sshd: Any, sessions: int, outage: float, workdir: Path) -> dict[str, Any]:
    import trio

    sys.path.insert(0, str(ROOT / "plugins" / "tether-ssh" / "src"))
    from tether_ssh._pty import set_terminal_modes

    firsts = Firsts()
    argv = ["autossh", "-M", "0", "-tt", "-F", "/dev/null", "-i", str(sshd.client_key),
            "-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2", "-p", str(sshd.port), "root@127.0.0.1"]
    env = {**os.environ, "TERM": "xterm-256color", "AUTOSSH_GATETIME": "0",
           "AUTOSSH_LOGFILE": str(workdir / "autossh.log")}
    processes: list[trio.Process] = []
    streams: list[trio.lowlevel.FdStream] = []

    async def read(sid: str, stream: trio.lowlevel.FdStream) -> None:
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return
            if not data:
                return
            firsts.feed(sid, data.decode("utf-8", errors="replace"))

    try:
        async with trio.open_nursery() as nursery:
            firsts.reset(time.monotonic())
            for i in range(sessions):
                master, slave = os.openpty()
                set_terminal_modes(slave)
                processes.append(await trio.lowlevel.open_process(
                    argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True))
                os.close(slave)
                streams.append(trio.lowlevel.FdStream(master))
                nursery.start_soon(read, f"a{i:03d}", streams[-1])
            await _wait_all(firsts, sessions, RECOVERY_TIMEOUT)
            bring_up = _figures(firsts, sessions)
            logins_up = sshd.logins()
            sshd.stop()
            await trio.sleep(outage)
            since = sshd.log_size()
            firsts.reset(await trio.to_thread.run_sync(_restart_sshd, sshd))
            await _wait_all(firsts, sessions, RECOVERY_TIMEOUT)
            back = _figures(firsts, sessions)
            nursery.cancel_scope.cancel()
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        for stream in streams:
            await stream.aclose()
    return {"bring_up": bring_up, "back": back, "logins_bring_up": logins_up,
            "logins_after_return": sshd.logins(since=since)}


def run_cell(tool: str, sessions: int, outage: float) -> dict[str, Any]:
    import trio

    helper = _sshd_helper()
    with tempfile.TemporaryDirectory(prefix="tether-outage-") as tmp:
        sshd = helper.Sshd(Path(tmp), helper.free_port())
        sshd.prepare()
        sshd.start()
        try:
            if tool == "tether":
                result = trio.run(_cell_tether, helper, sshd, sessions, outage)
            else:
                result = trio.run(_cell_autossh, sshd, sessions, outage, Path(tmp))
            result["drop_connection_lines"] = sshd.log.read_text().count("drop connection")
        finally:
            sshd.stop()
    return result


# -- the driver ----------------------------------------------------------------------------------


def _cell_subprocess(tool: str, sessions: int, outage: float) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, __file__, "--cell", tool, str(sessions), str(outage)],
                              capture_output=True, text=True, timeout=CELL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {CELL_TIMEOUT:.0f}s", "load_before": load_before}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail), "load_before": load_before}
    result: dict[str, Any] = json.loads(lines[-1])
    result.update(load_before=round(load_before, 2), load_after=round(os.getloadavg()[0], 2),
                  cell_s=round(time.perf_counter() - started, 1))
    return result


def _median(values: list[float | None]) -> float | None:
    """Median of the runs; a run where some session never came back counts as infinitely slow."""
    if not values:
        return None
    return statistics.median(float("inf") if v is None else v for v in values)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return "never" if value == float("inf") else f"{value:.2f}"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _summarise(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, int, float], dict[str, Any]] = {}
    for cell in cells:
        key = (cell["tool"], cell["sessions"], cell["outage"])
        row = rows.setdefault(key, {"tool": key[0], "sessions": key[1], "outage": key[2], "back": [],
                                    "bring_up": [], "loads": [], "errors": 0, "logins_after_return": []})
        result = cell["result"]
        if "error" in result:
            row["errors"] += 1
            continue
        row["back"].append(result["back"]["all"])
        row["bring_up"].append(result["bring_up"]["all"])
        row["loads"].append(result["load_before"])
        row["logins_after_return"].append(result["logins_after_return"])
    summary = []
    for row in rows.values():
        row["back_median"] = _median(row["back"])
        row["bring_up_median"] = _median(row["bring_up"])
        row["load_max"] = max(row["loads"], default=None)
        summary.append(row)
    return summary


def _targets(summary: list[dict[str, Any]]) -> list[str]:
    def find(tool: str, sessions: int, outage: float) -> dict[str, Any] | None:
        return next((r for r in summary if (r["tool"], r["sessions"], r["outage"]) == (tool, sessions, outage)), None)

    lines = []
    for row in sorted((r for r in summary if r["tool"] == "tether"), key=lambda r: (r["outage"], r["sessions"])):
        back = row["back_median"]
        limit = 1.0 if row["sessions"] == 1 else 3.0
        what = "under 1 s" if row["sessions"] == 1 else f"all {row['sessions']} within 3 s"
        ok = back is not None and back < limit
        lines.append(f"{'PASS' if ok else 'FAIL'}  {row['outage']:g} s outage, {row['sessions']} session(s): "
                     f"{what} (median {_fmt(back)} s)")
        other = find("autossh", row["sessions"], row["outage"])
        if other is not None and other["back_median"] is not None and back is not None:
            ahead = back < other["back_median"]
            lines.append(f"{'PASS' if ahead else 'FAIL'}  {row['outage']:g} s outage, {row['sessions']} session(s): "
                         f"ahead of autossh ({_fmt(back)} s vs {_fmt(other['back_median'])} s)")
        if row["sessions"] >= 100:
            up = row["bring_up_median"]
            lines.append(f"{'PASS' if up is not None and up < 5.0 else 'FAIL'}  bring-up of {row['sessions']} "
                         f"sessions within 5 s (median {_fmt(up)} s)")
    return lines


def _markdown(doc: dict[str, Any]) -> str:
    info = doc["machine"]
    out = [
        "# Outage recovery: tether-ssh and autossh on the same sshd outages", "",
        f"{info.get('cpu', '')} x{info.get('logical_cpus', '')}, Python {info.get('python', '')}, "
        f"commit {info.get('tether_commit', '')}; load {info.get('loadavg_start')} at the start, "
        f"{info.get('loadavg_end')} at the end. {info.get('note', '')}", "",
        f"Runs per cell: {doc['runs']}. tether policy: `{json.dumps(TETHER_POLICY)}`, sharing on, connect limit 10.",
        "Seconds from sshd's return to the new shell's prompt in the slowest session (median of runs); "
        "load = highest 1-minute load average before a cell of the row.", "",
        "| outage | sessions | tether | autossh | tether bring-up | autossh bring-up | tether logins after return "
        "| autossh logins after return | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    summary = doc["summary"]
    keys = sorted({(r["outage"], r["sessions"]) for r in summary})
    for outage, sessions in keys:
        t = next((r for r in summary if (r["tool"], r["outage"], r["sessions"]) == ("tether", outage, sessions)), {})
        a = next((r for r in summary if (r["tool"], r["outage"], r["sessions"]) == ("autossh", outage, sessions)), {})
        loads = [x for x in (t.get("load_max"), a.get("load_max")) if x is not None]
        out.append(
            f"| {outage:g} s | {sessions} | {_fmt(t.get('back_median'))} | {_fmt(a.get('back_median'))} "
            f"| {_fmt(t.get('bring_up_median'))} | {_fmt(a.get('bring_up_median'))} "
            f"| {_count(_median(t.get('logins_after_return', [])))} | {_count(_median(a.get('logins_after_return', [])))} "
            f"| {max(loads) if loads else '-'} |"
        )
    out += ["", "## Targets", "", *[f"    {line}" for line in doc["targets"]], ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", nargs=3, metavar=("TOOL", "SESSIONS", "OUTAGE"), help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--outages", default="5,20", help="seconds, comma-separated")
    ap.add_argument("--sessions", default="1,100", help="comma-separated")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 run, 5 s outage, 1 and 10 sessions")
    ap.add_argument("--tools", default="tether,autossh", help="which to run (the comparison needs both)")
    ap.add_argument("--out", help="default benchmarks/results, or benchmarks/results-quick with --quick")
    ap.add_argument("--note", default="", help="free text recorded with the machine (e.g. 'shared machine')")
    args, _ = ap.parse_known_args()  # nox passes run.py's own options too
    if args.cell:
        tool, sessions, outage = args.cell
        print(json.dumps(run_cell(tool, int(sessions), float(outage))))
        return
    tools = [t for t in ("tether", "autossh") if t in args.tools.split(",")]
    if "autossh" in tools and shutil.which("autossh") is None:
        sys.exit("autossh is not installed (Debian: apt-get install autossh)")
    runs = 1 if args.quick else args.runs
    outages = [5.0] if args.quick else [float(x) for x in args.outages.split(",")]
    counts = [1, 10] if args.quick else [int(x) for x in args.sessions.split(",")]
    sys.path.insert(0, str(HERE))
    from run import machine

    info = machine()
    info["note"] = args.note
    print(f"outage benchmark: {runs} run(s) of outages {outages} s x sessions {counts}; load {info['loadavg_start']}")
    cells: list[dict[str, Any]] = []
    for outage in outages:
        for sessions in counts:
            for run in range(runs):
                for tool in tools:  # interleaved: both see the same machine
                    result = _cell_subprocess(tool, sessions, outage)
                    cells.append({"tool": tool, "sessions": sessions, "outage": outage, "run": run, "result": result})
                    shown = result.get("error") or (
                        f"back {_fmt(result['back']['all'])} s (p50 {_fmt(result['back']['p50'])}), "
                        f"bring-up {_fmt(result['bring_up']['all'])} s, "
                        f"logins after return {result['logins_after_return']}, load {result['load_before']}")
                    print(f"  {outage:>4g} s  {sessions:>3}  {tool:8} run {run + 1}: {shown}", flush=True)
    info["loadavg_end"] = os.getloadavg()
    summary = _summarise(cells)
    doc = {"machine": info, "runs": runs, "policy": TETHER_POLICY, "cells": cells, "summary": summary,
           "targets": _targets(summary)}
    out = Path(args.out or HERE / ("results-quick" if args.quick else "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "outage.json").write_text(json.dumps(doc, indent=1, default=str))
    md = _markdown(doc)
    (out / "outage.md").write_text(md)
    print()
    print(md)


if __name__ == "__main__":
    main()
