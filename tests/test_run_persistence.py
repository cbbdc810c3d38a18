"""Runs across restarts: what a snapshot keeps of them, how a restored session takes them back, and
how the supervisor answers their waiters when the program survived, was replaced, or the session went.

The pure half (`ConsoleOutput.restore_runs`, the codec) needs no clock; the engine half drives a
supervisor with the scripted backend and a `MemoryStore` (the full JSON round trip) under trio's
MockClock, stopping and opening it again on the same store as a daemon restart does.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import tether
from tether.engine._console import RESTART_REPLACED, SESSION_REMOVED, SHELL_ENDED, SHELL_REPLACED
from tether.rules._console import ConsoleOutput, PendingRun, SavedRuns
from tether.rules._errors import SnapshotError
from tether.rules._osc import RunResult, encode_shell_mark
from tether.rules._output import OutputLog
from tether.rules._snapshots import SessionSnapshot
from tether.rules._spec import SessionSpec
from tether.rules._state import SessionStatus
from tether.store._codec import decode_snapshot, encode_snapshot, snapshot_from_dict, snapshot_to_dict
from tether.testing import ScriptedBackend

NONCE = "0123456789abcdef"


def _marks(nonce: str, output: bytes, status: int) -> bytes:
    return encode_shell_mark("C", nonce=nonce) + output + encode_shell_mark("D", status=status, nonce=nonce)


# -- the pure half ----------------------------------------------------------------------------------


def test_a_run_lost_to_a_new_program_stops_where_the_old_one_did() -> None:
    """The new program's first output can land before tether knows it is new: not the run's."""
    console = ConsoleOutput(OutputLog())
    _, tracker = console.start_run("sleep 60")
    console.output(encode_shell_mark("C", nonce=tracker.nonce) + b"half")
    console.link_ended()
    console.output(b"$ ")  # the next link's program, before the engine heard it is a new one
    (lost,) = console.lose_runs(SHELL_REPLACED)
    assert console.log.read(lost.output_start, 1 << 10).data[: lost.output_stop - lost.output_start] == b"half"
    assert lost.output_stop == console.log.end - 2
    console.program_replaced()
    console.start_run("true")
    console.output(b"printed by the new program")
    (ended,) = console.lose_runs(SHELL_ENDED)  # its own program ended: all it printed is its own
    assert ended.output_stop == console.log.end


def test_a_restored_run_finds_its_end_mark_already_in_the_restored_log() -> None:
    """Marks written down with the log after the snapshot that still had the run pending complete it."""
    console = ConsoleOutput(OutputLog())
    console.output(b"$ __tether_run ...\r\n")
    sent = 2
    console.output(_marks(NONCE, b"built\r\n", 4) + b"$ ")
    done = ConsoleOutput(console.log).restore_runs([PendingRun(NONCE, sent)])
    (result,) = done
    assert (result.nonce, result.status, result.started) == (NONCE, 4, True)
    assert console.log.read(result.output_start, result.output_stop - result.output_start).data == b"built\r\n"


def test_a_restored_run_started_in_the_log_ends_with_the_output_that_comes() -> None:
    """A C mark the snapshot missed is found in the log; the D mark then comes as output."""
    log = OutputLog()
    log.append(b"echo\r\n" + encode_shell_mark("C", nonce=NONCE) + b"part one ")
    restored = ConsoleOutput(log)
    assert restored.restore_runs([PendingRun(NONCE, 0)]) == []
    assert restored.pending_runs() == (PendingRun(NONCE, 0, started_at=6 + len(encode_shell_mark("C", nonce=NONCE))),)
    _, (result,) = restored.output(b"part two" + encode_shell_mark("D", status=0, nonce=NONCE))
    assert result.started
    assert log.read(result.output_start, result.output_stop - result.output_start).data == b"part one part two"


def test_restored_runs_lost_to_a_new_program_say_that_tether_restarted() -> None:
    """Until a link shows the same program, restored runs lost to a new one name the restart, and
    their range stops where the old program's output did (the new one may print first)."""
    restored = ConsoleOutput(OutputLog())
    restored.restore_runs([PendingRun(NONCE, 0)])
    restored.output(b"$ the new shell's prompt came before its link was known to be new")
    (lost,) = restored.lose_runs(SHELL_REPLACED, restored_why=RESTART_REPLACED)
    assert lost.lost == RESTART_REPLACED and lost.status is None
    assert (lost.output_start, lost.output_stop) == (0, 0)
    adopted = ConsoleOutput(OutputLog())
    adopted.restore_runs([PendingRun(NONCE, 0)])
    adopted.reattached()  # a link showed the same program: later losses are ordinary ones
    (later,) = adopted.lose_runs(SHELL_REPLACED, restored_why=RESTART_REPLACED)
    assert later.lost == SHELL_REPLACED


# -- the codec ------------------------------------------------------------------------------------------


def _snapshot(runs: SavedRuns | None = None) -> SessionSnapshot:
    spec = SessionSpec(id="s1", backend="scripted")
    state = tether.SessionState(
        id="s1", backend="scripted", target="scripted", status=SessionStatus.CONNECTED, status_since=1.0,
        episode=None, history=(), preserved=None, last_disconnect=None, connected_at=1.0, next_attempt_at=None,
        episodes_total=0, episodes_recovered=0, episodes_failed=0,
    )
    return SessionSnapshot(spec=spec, state=state, saved_at=2.0, runs=runs)


def test_a_snapshot_without_runs_is_what_an_older_tether_wrote_and_loads() -> None:
    """No ``runs`` key unless there are runs: schema 1 as before, and an old dict loads as it is."""
    body = snapshot_to_dict(_snapshot())
    assert "runs" not in body and body["schema"] == 1
    old = json.loads(json.dumps(body))  # what a tether from before runs were kept wrote
    assert snapshot_from_dict(old).runs is None


_nonces = st.text("0123456789abcdef", min_size=8, max_size=64)
_offsets = st.integers(0, 1 << 62)
_pending = st.builds(PendingRun, _nonces, _offsets, st.none() | _offsets)
_finished = st.builds(RunResult, _nonces, st.none() | st.integers(-255, 255), _offsets, _offsets, st.booleans(),
                      st.none() | st.sampled_from([SHELL_ENDED, SHELL_REPLACED, RESTART_REPLACED, SESSION_REMOVED]))
_saved = st.builds(SavedRuns, pending=st.tuples(*[_pending] * 2) | st.just(()),
                   finished=st.lists(_finished, max_size=3).map(tuple))


@given(_saved)
def test_saved_runs_round_trip_through_the_stored_text(runs: SavedRuns) -> None:
    """Pending runs and uncollected outcomes come back exactly, through JSON; empty parts are left out."""
    text = encode_snapshot(_snapshot(runs), ())
    assert decode_snapshot("s1", text).runs == runs
    stored = json.loads(text)["runs"]
    assert set(stored) == {name for name in ("pending", "finished") if getattr(runs, name)}


@pytest.mark.parametrize(("bad", "where"), [
    ({"pending": [{"nonce": "NOT-HEX", "sent_at": 0}]},
     "(nonce: must be 8-64 lowercase hex digits, got 'NOT-HEX') @ $.runs.pending[0]"),
    ({"pending": [{"nonce": NONCE, "sent_at": -1}]},
     "(sent_at: must be a log position >= 0, got -1) @ $.runs.pending[0]"),
    ({"pending": [{"nonce": NONCE, "sent_at": 0, "command": "rm -rf /"}]},
     "extra fields found (command) @ $.runs.pending[0]"),
])
def test_bad_saved_runs_are_an_error_naming_the_field(bad: dict[str, Any], where: str) -> None:
    body = snapshot_to_dict(_snapshot())
    body["runs"] = bad
    with pytest.raises(SnapshotError) as caught:
        snapshot_from_dict(body)
    assert where in str(caught.value) and "s1" in str(caught.value)


# -- the engine, across a restart -------------------------------------------------------------------------


def _spec() -> SessionSpec:
    return SessionSpec(id="s1", backend="scripted")


async def _shell(sup: tether.Supervisor, backend: ScriptedBackend) -> None:
    """The scripted program shows tether's prompt mark: `run` may type into it."""
    await sup.wait("s1", connected=True, budget=10)
    backend.links["s1"]._request.report_output(b"$ " + encode_shell_mark("A", shell="bash"))


def _emit(backend: ScriptedBackend, data: bytes) -> None:
    backend.links["s1"]._request.report_output(data)


@asynccontextmanager
async def _supervising(backend: ScriptedBackend, store: tether.MemoryStore | None = None, *,
                       shell: bool = False) -> AsyncIterator[tether.Supervisor]:
    """A supervisor on `store` (one start of a daemon); with `shell`, session s1 registered and at
    a prompt."""
    async with tether.open_supervisor(backends=[backend], store=store, flush_interval=0.1) as sup:
        if shell:
            await sup.register(_spec())
            await _shell(sup, backend)
        yield sup


async def test_a_pending_run_finishes_after_a_restart_when_the_program_survived(autojump_clock: Any) -> None:
    """The token outlives the supervisor; the re-attached program's marks finish it with its status."""
    backend, store = ScriptedBackend(), tether.MemoryStore()
    async with _supervising(backend, store, shell=True) as sup:
        started = await sup.run("s1", "make -j8 SECRET=hunter2", budget=1)
        assert not started.done
        _emit(backend, encode_shell_mark("C", nonce=started.token) + b"compiling\r\n")
        stored = json.loads(store.rows["s1"])["runs"]  # written before the token was handed out
        assert [run["nonce"] for run in stored["pending"]] == [started.token]
        assert "hunter2" not in store.rows["s1"] and "make" not in json.dumps(stored)
    async with _supervising(backend, store) as sup:
        await sup.wait("s1", connected=True, budget=10)
        assert backend.ledger("s1").modes[-1] is tether.ConnectMode.REATTACH
        waiting = await sup.wait_run("s1", started.token, budget=0)
        assert not waiting.done
        _emit(backend, b"linked\r\n" + encode_shell_mark("D", status=2, nonce=started.token))
        outcome = await sup.wait_run("s1", started.token, budget=5)
        assert (outcome.done, outcome.exit_status, outcome.lost, outcome.started) == (True, 2, None, True)
        shown = sup.read("s1", outcome.output_start, 1 << 16)
        inside = [(at, data[: outcome.output_stop - at]) if isinstance(piece, tuple) else piece.kind.value
                  for piece in shown.pieces()
                  for at, data in [piece if isinstance(piece, tuple) else (piece.start, b"")]
                  if at < outcome.output_stop]
        # the scripted program replays nothing: what it printed while tether was away is one unseen gap
        assert inside == [(outcome.output_start, b"compiling\r\n"), "unseen", (outcome.output_stop - 8, b"linked\r\n")]
        await sup.flush()
        assert "runs" not in json.loads(store.rows["s1"])  # collected: the snapshot no longer keeps it


async def test_an_outcome_finished_but_not_collected_is_kept_across_a_restart(autojump_clock: Any) -> None:
    backend, store = ScriptedBackend(), tether.MemoryStore()
    async with _supervising(backend, store, shell=True) as sup:
        started = await sup.run("s1", "true", budget=0)
        _emit(backend, _marks(started.token, b"", 0))
    async with _supervising(backend, store) as sup:
        outcome = await sup.wait_run("s1", started.token, budget=0)
        assert (outcome.done, outcome.exit_status) == (True, 0)


async def test_a_pending_run_is_lost_when_a_restart_replaced_its_program(autojump_clock: Any) -> None:
    """A new program after the restart: the waiter hears why, at once, and so does the next one."""
    backend, store = ScriptedBackend(), tether.MemoryStore()
    async with _supervising(backend, store, shell=True) as sup:
        started = await sup.run("s1", "sleep 60", budget=1)
    backend.ledger("s1").program_alive = False  # the program ended with the old supervisor
    async with _supervising(backend, store) as sup:
        outcome = await sup.wait_run("s1", started.token, budget=30)
        assert (outcome.done, outcome.exit_status, outcome.lost) == (True, None, RESTART_REPLACED)
        assert backend.ledger("s1").program == 2
        again = await sup.wait_run("s1", started.token, budget=0)
        assert again.lost == RESTART_REPLACED


async def test_a_run_waited_on_when_its_session_is_unregistered_is_answered_as_lost(autojump_clock: Any) -> None:
    backend = ScriptedBackend()
    async with _supervising(backend, shell=True) as sup:
        started = await sup.run("s1", "sleep 60", budget=0)
        _emit(backend, encode_shell_mark("C", nonce=started.token) + b"half")
        answers: list[tether.RunOutcome] = []

        async def wait() -> None:
            answers.append(await sup.wait_run("s1", started.token, budget=600))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            await sup.unregister("s1")
        (outcome,) = answers
        assert (outcome.done, outcome.exit_status, outcome.lost) == (True, None, SESSION_REMOVED)
        assert outcome.output_stop - outcome.output_start == len(b"half")


async def test_a_run_waited_on_when_the_supervisor_stops_is_told_so(autojump_clock: Any) -> None:
    """Not lost (the program may survive it) and not a hang: `SupervisorClosedError`, at once."""
    backend, store = ScriptedBackend(), tether.MemoryStore()
    errors: list[BaseException] = []
    async with trio.open_nursery() as outer:
        async with tether.open_supervisor(backends=[backend], store=store) as sup:
            await sup.register(_spec())
            await _shell(sup, backend)
            started = await sup.run("s1", "sleep 60", budget=0)

            async def wait() -> None:
                try:
                    await sup.wait_run("s1", started.token, budget=600)
                except tether.SupervisorClosedError as exc:
                    errors.append(exc)

            outer.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            stopped_at = trio.current_time()
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() - stopped_at < 5
    (error,) = errors
    assert "token stays good" in str(error)
    assert [run["nonce"] for run in json.loads(store.rows["s1"])["runs"]["pending"]] == [started.token]


def test_saved_runs_are_frozen_values() -> None:
    runs = SavedRuns(pending=(PendingRun(NONCE, 1),))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        runs.pending = ()  # type: ignore[misc]


def test_the_lost_reasons_docs_control_md_lists_are_the_ones_sent() -> None:
    """The table of `lost` values in docs/control.md is exactly the set the engine answers with."""
    text = (Path(__file__).parent.parent / "docs" / "control.md").read_text()
    table = text.split("| `lost` | when |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r'^\| `"([^"]+)"` \|', table, re.M))
    assert documented == {SHELL_ENDED, SHELL_REPLACED, RESTART_REPLACED, SESSION_REMOVED}
