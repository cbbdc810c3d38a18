"""persist = tmux keeps a pane log: a re-attach delivers exactly the bytes tether missed.

A real tmux program prints numbered lines without pause; the link is dropped
(its tmux client killed) or tether itself goes away, the program keeps
printing, and a new link re-attaches. The output log must then hold the
program's stream exactly: every line once, in order, and where the pane log
had to trim, one loss of exactly the trimmed size.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from pathlib import Path

import attrs
import pytest
import trio

from tether import ConnectMode, ConsoleOutput, LogLimits, Loss, LossKind, OutputLog, open_sqlite_store
from tether.testing import require_peer
from tether_process import ProcessBackend, TmuxHandle
from tether_process._panelog import SEGMENTS_KEPT

from .conftest import Spec, tmux_has, wait_for
from .console import Console, open_console

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ptys and /proc: Linux")

LOOP = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); echo n=$i; [ $((i % 20)) -eq 0 ] && sleep 0.01; done; sleep 600"


def stream(count: int) -> bytes:
    """What the loop prints through a terminal: its first `count` lines."""
    return b"".join(b"n=%d\r\n" % i for i in range(1, count + 1))


def last_number(data: bytes) -> int:
    found = re.findall(rb"n=(\d+)\r\n", data)
    return int(found[-1]) if found else 0


@pytest.fixture(autouse=True)
def _tmux() -> None:
    require_peer(shutil.which("tmux") is not None, "tmux not installed")


async def printed_past(console: Console, number: int) -> None:
    await console.until(lambda: last_number(console.log.read(max(0, console.log.end - 64)).data) > number, 30)


async def drop_the_client(console: Console) -> None:
    """Kill the link's tmux client: a dropped link, the program keeps running."""
    assert console.link is not None
    os.kill(console.link._child.pid, signal.SIGKILL)
    await console.until(lambda: console.closed is not None)


def check_exact(log: OutputLog) -> tuple[list[Loss], int]:
    """Every position of the log is the loop's stream at that offset, or inside a loss."""
    read = log.read(0, 1 << 30)
    count = last_number(read.data) + 2
    expected = stream(count)
    losses: list[Loss] = []
    for piece in read.pieces():
        if isinstance(piece, Loss):
            losses.append(piece)
            continue
        start, data = piece
        assert data == expected[start : start + len(data)], f"bytes at {start} are not the program's"
    return losses, last_number(read.data)


async def test_numbered_lines_through_a_drop_arrive_exactly_once(backend: ProcessBackend, spec: Spec) -> None:
    """Drop the link while the loop prints, wait, re-attach: every number once, no loss."""
    session = spec(argv=["bash", "--norc", "-c", LOOP], persist="tmux", shell_integration=False)
    async with open_console(backend, session) as console:
        await printed_past(console, 50)
        assert console.link is not None
        state = console.link.current_state()
        await drop_the_client(console)
    console.log.mark_interrupted()  # what the engine records at a drop
    seen_before = last_number(console.everything())
    await trio.sleep(0.5)  # the program prints on, into its pane log only
    async with open_console(backend, session, console, ConnectMode.REATTACH, state) as console:
        await printed_past(console, seen_before + 200)
        losses, last = check_exact(console.log)
    assert losses == [] and last > seen_before + 200
    data = console.everything()
    numbers = [int(n) for n in re.findall(rb"n=(\d+)\r\n", data)]
    assert numbers == list(range(1, len(numbers) + 1))  # every number exactly once, in order


async def test_a_pane_log_trimmed_while_away_is_one_exact_loss(backend: ProcessBackend, spec: Spec) -> None:
    """With a small pane log and a long absence, what the log dropped is one unseen loss of exactly
    its size, and the bytes around it are the program's own."""
    session = spec(argv=["bash", "--norc", "-c", LOOP], persist="tmux", shell_integration=False, pane_log_bytes=4096)
    async with open_console(backend, session) as console:
        await printed_past(console, 20)
        assert console.link is not None
        state = console.link.current_state()
        handle = TmuxHandle.decode(state.handle)
        assert handle is not None and handle.log is not None
        await drop_the_client(console)
    console.log.mark_interrupted()
    held = console.log.end
    log = handle.log
    await wait_for(lambda: log.oldest() > held, within=30)  # away until the pane log trimmed unread bytes
    async with open_console(backend, session, console, ConnectMode.REATTACH, state) as console:
        await printed_past(console, last_number(stream(10_000)[: log.oldest()]) + 50)
        losses, _ = check_exact(console.log)
    assert len(losses) == 1
    (loss,) = losses
    assert loss.kind is LossKind.UNSEEN and loss.start == held and loss.size == loss.stop - loss.start > 0
    assert loss.stop % log.segment_bytes == 0  # it ends where the oldest kept segment begins
    assert len(log.segments()) <= SEGMENTS_KEPT  # the pane log's own bound held while nobody read it
    assert sum(os.stat(log.segment_path(i)).st_size for i in log.segments()) <= 4096


async def test_tether_killed_then_restored_continues_the_same_stream(
    backend: ProcessBackend, spec: Spec, tmp_path: Path
) -> None:
    """The log is written behind to SQLite; tether dies without a final flush; the restored log
    and a re-attach give the program's stream with no loss and no duplicate."""
    session = spec(argv=["bash", "--norc", "-c", LOOP], persist="tmux", shell_integration=False)
    limits = LogLimits(max_bytes=1 << 20)
    path = tmp_path / "tether.sqlite3"
    console = Console(ConsoleOutput(OutputLog(limits)))
    async with open_sqlite_store(path) as store, open_console(backend, session, console) as console:
        for _ in range(3):
            await printed_past(console, last_number(console.everything()) + 30)
            flush = console.log.take_flush("p1")
            await store.write([], logs=[flush])
            console.log.flushed(flush)
        await printed_past(console, last_number(console.everything()) + 30)  # seen, never written down
        assert console.link is not None
        state = console.link.current_state()
        unsaved_cursor = console.log.readable_end  # a reader had read this far
    # "kill -9": the in-memory log is gone; the program in tmux printed on
    assert tmux_has(TmuxHandle.decode(state.handle))  # type: ignore[arg-type]
    async with open_sqlite_store(path) as store:
        stored = (await store.load_all()).logs["p1"]
    restored = Console(ConsoleOutput(OutputLog.restore(stored, limits)))
    assert restored.log.resume is not None and restored.log.end < unsaved_cursor
    async with open_console(backend, session, restored, ConnectMode.REATTACH, state) as restored:
        await printed_past(restored, last_number(stream(10_000)[:unsaved_cursor]) + 100)
        flush = restored.log.take_flush("p1")  # what the engine's first flush after a restart does
        restored.log.flushed(flush)
        losses, _ = check_exact(restored.log)
        after = restored.log.read(unsaved_cursor, 1 << 20)
    assert losses == []  # the same stream filled the unsaved positions exactly
    assert after.losses == () and after.data.startswith(stream(10_000)[unsaved_cursor : unsaved_cursor + 20])


async def test_a_handle_from_before_pane_logs_reattaches_as_before(backend: ProcessBackend, spec: Spec) -> None:
    """A handle without a pane log (an older tether's program): re-attach works, output is what the
    tmux client draws, and no numbered stream is claimed."""
    session = spec(argv=["bash", "--norc", "-c", LOOP], persist="tmux", shell_integration=False)
    async with open_console(backend, session) as console:
        await printed_past(console, 10)
        assert console.link is not None
        state = console.link.current_state()
        await drop_the_client(console)
    old = TmuxHandle.decode(state.handle)
    assert old is not None and old.log is not None
    legacy = attrs.evolve(state, handle=attrs.evolve(old, log=None).encode())
    assert '"log"' not in (legacy.handle or "")
    fresh = Console(ConsoleOutput(OutputLog()))
    async with open_console(backend, session, fresh, ConnectMode.REATTACH, legacy) as fresh:
        assert fresh.link is not None and fresh.link.pane_log_position is None
        await fresh.until(lambda: b"n=" in fresh.everything())
    assert fresh.log.resume is None
