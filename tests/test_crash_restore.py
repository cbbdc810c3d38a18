"""A supervisor killed with SIGKILL mid-storm restarts with every session's state.

A child process supervises 1,000 scripted sessions with an SQLite store, drops
them all into a reconnect storm where every attempt fails, and is killed with
SIGKILL while the storm runs. The database must open cleanly, hold a readable
snapshot of every session at least as new as what the child had announced,
and a second child must restore every session from it and bring it back.

Needs the store integration in the supervisor (``open_supervisor(store=,
durable=, flush_interval=)`` restoring every stored session on entry): the
module skips itself until `open_supervisor` accepts ``store``.
"""

from __future__ import annotations

import inspect
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import tether
from tether.rules._state import SessionStatus
from tether.store._sqlite import open_sqlite_store

SESSIONS = 1_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        "store" not in inspect.signature(tether.open_supervisor).parameters,
        reason="needs the store integration: open_supervisor(store=, durable=, flush_interval=)",
    ),
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL"),
]

WORKER = r'''
import json, sys
import trio
import tether
from tether.store._sqlite import open_sqlite_store
from tether.testing import ScriptedBackend, wait_until

STRATEGIES = (
    tether.SimpleReconnect, tether.SessionRestore, tether.ProcessRestart,
    tether.SshReconnect, tether.StateRecovery, tether.ForceReconnect,
)


def registry(backend):
    reg = tether.PluginRegistry()
    for strategy in STRATEGIES:
        reg.add_strategy(strategy())
    reg.add_backend(backend)
    return reg


def spec(i):
    return tether.SessionSpec(
        id=f"s{i:04d}", backend="scripted", options={"cwd": f"/srv/{i}"},
        policy=tether.ReconnectPolicy(
            max_retries=None, base_delay=0.05, max_delay=0.2, health_check_interval=0, stable_after=0,
        ),
    )


def all_status(sup, status):
    states = sup.states().values()
    return all(s.status is status for s in states)


async def storm(db, n, durable):
    backend = ScriptedBackend()
    async with open_sqlite_store(db) as store, tether.open_supervisor(
        registry=registry(backend), store=store, durable=durable, flush_interval=0.05,
        connect_limit=None, seed=1,
    ) as sup:
        specs = [spec(i) for i in range(n)]
        await sup.register_many(specs)
        await wait_until(lambda: all_status(sup, tether.SessionStatus.CONNECTED), timeout=120)
        with sup.subscribe(types=["reconnect.failed"], buffer=10 * n) as sub:
            for s in specs:
                backend.fail_next(s.id, 10**9)
                backend.drop(s.id)
            seen = {}
            while len(seen) < n or min(seen.values()) < 2:
                await trio.sleep(0.05)  # then drain: one checkpoint per event would starve us in a storm
                while (item := sub.get_nowait()) is not None:
                    if not isinstance(item, tether.Lagged):
                        seen[item.session_id] = max(seen.get(item.session_id, 0), item.attempt)
        if not durable:
            # Write-behind: wait for two more flushes, so what we announce is on disk.
            target = store.stats().writes + 2
            await wait_until(lambda: store.stats().writes >= target, timeout=60)
        print("STORM " + json.dumps(seen), flush=True)
        await trio.sleep_forever()


async def restore(db, n):
    backend = ScriptedBackend()
    async with open_sqlite_store(db) as store, tether.open_supervisor(
        registry=registry(backend), store=store, flush_interval=0.05, connect_limit=None, seed=2,
    ) as sup:
        restored = {sid: st for sid, st in sup.states().items()}
        await wait_until(lambda: all_status(sup, tether.SessionStatus.CONNECTED), timeout=120)
        summary = {
            "errors": [str(e) for e in sup.restore_errors],
            "restored": {
                sid: {"episodes_total": st.episodes_total, "status": st.status.value,
                      "episode": st.episode.number if st.episode else None,
                      "attempts_made": st.episode.attempts_made if st.episode else None}
                for sid, st in restored.items()
            },
            "preserved_cwd": {sid: st.preserved.cwd if st.preserved else None for sid, st in restored.items()},
            "history": {sid: [e.number for e in st.history] for sid, st in restored.items()},
            "connected": sum(s.status is tether.SessionStatus.CONNECTED for s in sup.states().values()),
        }
    stats = store.stats()
    summary["store"] = {"writes": stats.writes, "rows_written": stats.rows_written,
                        "rows_skipped": stats.rows_skipped, "quarantined": stats.quarantined}
    print("RESTORED " + json.dumps(summary), flush=True)


if sys.argv[2] == "storm":
    trio.run(storm, sys.argv[1], int(sys.argv[3]), sys.argv[4] == "durable")
else:
    trio.run(restore, sys.argv[1], int(sys.argv[3]))
'''


async def _run_until_line(argv: list[str], prefix: str, *, kill: bool) -> tuple[dict[str, Any], int]:
    """Run the worker until it prints a line starting with `prefix`; SIGKILL it there if `kill`."""
    buffer = b""
    with trio.fail_after(300):
        process = await trio.lowlevel.open_process(argv, stdout=-1)
        assert process.stdout is not None
        try:
            while True:
                chunk = await process.stdout.receive_some(65536)
                if not chunk:
                    raise AssertionError(f"worker exited before {prefix!r}: {buffer[-2000:]!r}")
                buffer += chunk
                for line in buffer.split(b"\n")[:-1]:
                    if line.startswith(prefix.encode()):
                        if kill:
                            process.send_signal(signal.SIGKILL)
                        code = await process.wait()
                        return json.loads(line[len(prefix) + 1:]), code
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()


@pytest.mark.parametrize("durable", [False, True], ids=["write-behind", "durable"])
async def test_sigkill_mid_storm_then_restore(tmp_path: Path, durable: bool) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    db = tmp_path / "state" / "tether.sqlite3"
    base = [sys.executable, str(worker), str(db)]

    seen, code = await _run_until_line(
        [*base, "storm", str(SESSIONS), "durable" if durable else "behind"], "STORM", kill=True
    )
    assert code == -signal.SIGKILL
    assert len(seen) == SESSIONS

    # The database a killed process left behind opens cleanly and holds every session.
    async with open_sqlite_store(db) as store:
        report = await store.load_all()
    assert report.errors == ()
    assert len(report.snapshots) == SESSIONS
    for snap in report.snapshots:
        sid = snap.session_id
        state = snap.state
        assert state.status.recovering, (sid, state.status)
        assert state.episode is not None
        assert state.episode.attempts_made >= seen[sid], (sid, state.episode.attempts_made, seen[sid])
        assert state.preserved is not None and state.preserved.cwd == f"/srv/{int(sid[1:])}"
    persisted = {s.session_id: s.state for s in report.snapshots}

    summary, code = await _run_until_line([*base, "restore", str(SESSIONS)], "RESTORED", kill=False)
    assert code == 0
    assert summary["errors"] == []
    assert summary["connected"] == SESSIONS
    assert set(summary["restored"]) == set(persisted)
    for sid, state in persisted.items():
        restored = summary["restored"][sid]
        assert state.episode is not None
        assert restored["episodes_total"] == state.episodes_total, "counters come back as they were"
        assert restored["episode"] == state.episode.number, "the interrupted episode continues"
        assert restored["attempts_made"] >= state.episode.attempts_made, "its attempts are not forgotten"
        assert summary["preserved_cwd"][sid] == f"/srv/{int(sid[1:])}", "preserved state restored"

    # Leaving the second supervisor flushed its final state.
    async with open_sqlite_store(db) as store:
        final = await store.load_all()
    statuses = {s.state.status for s in final.snapshots}
    assert statuses == {SessionStatus.CONNECTED}, ("final flush", summary["store"])
