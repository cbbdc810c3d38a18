"""Driving a console: waiting on its output server-side, and running a command to completion.

Built on a session's `ConsoleOutput` (`tether.rules._console`): every byte at
a log position, every loss explicit. `wait` blocks until a regex matches the
output after a cursor, the output goes quiet, or the session connects; `run`
types a command wrapped in shell-integration marks that carry a fresh nonce
and returns its exit status and the log range of its output. A run that
outlives its time budget leaves a token (its nonce) to wait on later, so a
client whose calls are capped (agents: often 60 s) resumes instead of losing
the command. Nothing here polls: waiters park on the session's output lot,
which the link's reporter wakes.

A token outlives the process: the session's snapshot keeps its pending runs
and the finished ones not yet collected (`saved_runs`, `restore_runs`), so a
restarted tether answers ``wait_run`` with the real outcome when the program
survived (tmux), and as lost (`RESTART_REPLACED`) when a new one replaced it.
A run still pending when its session is unregistered is answered as lost
(`SESSION_REMOVED`); one whose waiter sees the session stop being supervised
here (tether stopping, the session moving) is told so (`SupervisorClosedError`):
its token stays good for the next start.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from typing import Final, final

import trio

from ..rules._console import RunOutcome, SavedRuns, WaitResult
from ..rules._errors import LinkError, RunNotFoundError, SupervisorClosedError
from ..rules._osc import RunResult
from ..rules._output import Loss
from ..rules._reasons import DisconnectReason
from ..rules._state import SessionStatus
from ._session import Session

FINISHED_KEPT = 64
"""Finished runs a session keeps for a later `wait_run` (the oldest goes first)."""
MATCH_WINDOW = 1 << 20
"""Bytes of output a pattern wait keeps in view (a longer match cannot be found)."""


@final
class Console:
    """A session's runs and output waiters (one per session, made when first needed)."""

    __slots__ = ("finished", "lot", "pending", "uncollected")

    def __init__(self) -> None:
        self.lot = trio.lowlevel.ParkingLot()
        """Woken on every chunk of output, every status change that a waiter may care about."""
        self.pending: dict[str, trio.Event] = {}
        self.finished: OrderedDict[str, RunResult] = OrderedDict()
        self.uncollected: set[str] = set()
        """Finished runs no `wait_run` has answered with yet: the snapshot keeps these."""

    def wake(self) -> None:
        if self.lot:
            self.lot.unpark_all()

    def completed(self, results: list[RunResult]) -> None:
        for result in results:
            self.finished[result.nonce] = result
            self.uncollected.add(result.nonce)
            while len(self.finished) > FINISHED_KEPT:
                self.uncollected.discard(self.finished.popitem(last=False)[0])
            done = self.pending.pop(result.nonce, None)
            if done is not None:
                done.set()


def console_of(session: Session) -> Console:
    waiters = session.waiters
    if waiters is None:
        waiters = session.waiters = Console()
    assert isinstance(waiters, Console)
    return waiters


async def wait_output(
    session: Session, *, pattern: str | None, since: int | None, quiet: float | None, connected: bool,
    budget: float,
) -> WaitResult:
    """Wait (server-side, no polling) for the first condition given; `budget` bounds it."""
    conditions = sum(x is not None and x is not False for x in (pattern, quiet, connected or None))
    if conditions != 1:
        raise ValueError("give exactly one of pattern, quiet or connected")
    console = console_of(session)
    log = session.console.log
    cursor = log.readable_end if since is None else since
    with trio.move_on_after(budget):
        if connected:
            while session.status is not SessionStatus.CONNECTED:
                await console.lot.park()
            return WaitResult(satisfied=True, cursor=log.readable_end, status=session.status)
        if quiet is not None:
            while True:
                mark = log.end
                with trio.move_on_after(quiet):
                    while log.end == mark:
                        await console.lot.park()
                    continue
                return WaitResult(satisfied=True, cursor=log.readable_end, status=session.status)
        assert pattern is not None
        regex = re.compile(pattern.encode("utf-8", "surrogateescape"))
        window = bytearray()
        window_start = cursor
        losses: list[Loss] = []
        while True:
            read = log.read(cursor, MATCH_WINDOW)
            for piece in read.pieces():
                if isinstance(piece, Loss):  # a match cannot span what was lost: start afresh after it
                    losses.append(piece)
                    window.clear()
                    window_start = piece.stop
                else:
                    position, data = piece
                    if position != window_start + len(window):
                        window.clear()
                        window_start = position
                    window += data
            cursor = read.next
            if len(window) > MATCH_WINDOW:
                cut = len(window) - MATCH_WINDOW
                del window[:cut]
                window_start += cut
            found = regex.search(window)
            if found is not None:
                start, stop = window_start + found.start(), window_start + found.end()
                return WaitResult(
                    satisfied=True, cursor=stop, match_start=start, match_stop=stop,
                    match=found.group().decode("utf-8", "replace"), losses=tuple(losses), status=session.status,
                )
            if cursor >= log.readable_end:
                await console.lot.park()
    return WaitResult(satisfied=False, cursor=cursor, status=session.status)


async def wait_readable(session: Session, since: int, budget: float) -> None:
    """Return once the log can be read past `since`, the session is being unregistered, or
    `budget` seconds passed (no polling: the reporter and the flusher wake the lot)."""
    log = session.console.log
    if log.readable_end > since or session.unregistering:
        await trio.lowlevel.checkpoint()
        return
    console = console_of(session)
    with trio.move_on_after(budget):
        while log.readable_end <= since and not session.unregistering:
            await console.lot.park()


PROMPT_GRACE: Final = 10.0
"""How long after its link came up `run` waits for a shell's first prompt (the mark that says
tether's integration is in it) before answering that the session has none."""


async def until_runnable(session: Session, budget: float) -> None:
    """Wait (no polling) until `run` can type into the session: connected, with its shell's
    integration seen. A session still connecting, or a new shell that has not shown its first
    prompt yet, is waited for; a re-attached shell idle at its prompt is asked for a new one.
    `start_run` then says why if it still cannot run."""
    console = console_of(session)
    asked_until: float | None = None
    with trio.move_on_after(budget):
        while not session.unregistering:
            if session.status is not SessionStatus.CONNECTED or session.link is None:
                await console.lot.park()
                continue
            output = session.console
            if output.shell is not None:
                break
            if output.awaiting_prompt:
                until = (session.connected_at or 0.0) + PROMPT_GRACE
            elif asked_until is None and output.at_idle_prompt():
                # a re-attached program shows no prompt by itself: one sitting idle at tether's
                # prompt is asked for a new one (Enter on an empty line), once
                asked_until = time.time() + PROMPT_GRACE
                await session.link.send(b"\r")
                continue
            elif asked_until is not None:
                until = asked_until
            else:
                break
            left = until - time.time()
            if left <= 0:
                break
            with trio.move_on_after(left):
                await console.lot.park()
    await trio.lowlevel.checkpoint()


def start_run(session: Session, command: str) -> tuple[bytes, str]:
    """The line to type and the run's token; refuses a session without tether's shell integration."""
    if session.status is not SessionStatus.CONNECTED or session.link is None:
        raise LinkError(f"session {session.sid!r} is {session.status.value}, not connected",
                        reason=DisconnectReason.REMOTE_CLOSED)
    if session.console.shell is None:
        raise LinkError(
            f"session {session.sid!r} has no shell with tether's integration (bash or zsh, started "
            "directly, with shell_integration on): `run` needs its completion marks",
            reason=DisconnectReason.BACKEND_ERROR,
        )
    line, tracker = session.console.start_run(command)
    console = console_of(session)
    console.pending[tracker.nonce] = trio.Event()
    return line, tracker.nonce


async def wait_run(session: Session, token: str, budget: float) -> RunOutcome:
    """The run's outcome once it finished, or not done yet after `budget` (wait again with the token)."""
    console = console_of(session)
    result = console.finished.get(token)
    if result is None:
        done = console.pending.get(token)
        if done is None:
            raise RunNotFoundError(f"session {session.sid!r} has no run {token!r} pending or finished")
        with trio.move_on_after(budget if budget != math.inf else math.inf):
            await done.wait()
        result = console.finished.get(token)
        if result is None:
            if session.finished:
                raise SupervisorClosedError(
                    f"session {session.sid!r} stopped being supervised here (tether is stopping, or it moved) "
                    f"before run {token!r} finished; its token stays good: wait on it again once it runs again"
                )
            return RunOutcome(token=token, done=False)
    else:
        await trio.lowlevel.checkpoint()
    if result.output_stop > session.console.log.readable_end:
        # held back until the flusher writes its reservation down: an answer is readable at once
        await wait_readable(session, result.output_stop - 1, READABLE_WAIT)
    console.uncollected.discard(token)
    return RunOutcome(
        token=token, done=True, exit_status=result.status, output_start=result.output_start,
        output_stop=result.output_stop, started=result.started, lost=result.lost,
    )


READABLE_WAIT: Final = 5.0
"""Bound on waiting for a finished run's output to become readable (the flusher's next write)."""

SHELL_ENDED = "the shell ended before the command finished"
SHELL_REPLACED = "the shell was replaced by a new program before the command finished"
RESTART_REPLACED = "the shell was replaced by a new program when tether restarted, before the command finished"
SESSION_REMOVED = "the session was removed (unregistered) before the command finished"


def runs_lost(session: Session, why: str) -> None:
    """The session's program ended or was replaced: its pending runs can never finish; their
    waiters get an outcome that says so (`RunOutcome.lost`) instead of waiting forever. Runs
    restored from a snapshot whose program was replaced say that tether restarted."""
    lost = session.console.lose_runs(why, restored_why=RESTART_REPLACED if why == SHELL_REPLACED else None)
    if lost:
        console_of(session).completed(lost)


def session_gone(session: Session) -> None:
    """The session is no longer supervised here. Unregistered: its pending runs can never finish
    (`SESSION_REMOVED`). Otherwise (tether stopping, the session released or moved) they are kept
    for the snapshot; their waiters are woken to be told so (`wait_run`)."""
    if session.unregistering:
        runs_lost(session, SESSION_REMOVED)
    waiters = session.waiters
    if isinstance(waiters, Console):
        for done in waiters.pending.values():
            done.set()


def saved_runs(session: Session) -> SavedRuns | None:
    """What the session's snapshot keeps of its runs: pending ones, finished ones not yet collected."""
    pending = session.console.pending_runs()
    waiters = session.waiters
    finished: tuple[RunResult, ...] = ()
    if isinstance(waiters, Console) and waiters.uncollected:
        finished = tuple(result for nonce, result in waiters.finished.items() if nonce in waiters.uncollected)
    if not pending and not finished:
        return None
    return SavedRuns(pending=pending, finished=finished)


def restore_runs(session: Session, saved: SavedRuns) -> None:
    """Take back the runs a snapshot kept: finished ones answer `wait_run` at once, pending ones
    wait for their marks (some may already be in the restored log)."""
    console = console_of(session)
    for result in saved.finished[-FINISHED_KEPT:]:
        console.finished[result.nonce] = result
        console.uncollected.add(result.nonce)
    done = session.console.restore_runs(saved.pending)
    for run in session.console.pending_runs():
        console.pending[run.nonce] = trio.Event()
    console.completed(done)


def forget_run(session: Session, token: str) -> None:
    session.console.forget_run(token)
    if session.waiters is not None:
        session.waiters.pending.pop(token, None)
        session.waiters.finished.pop(token, None)
        session.waiters.uncollected.discard(token)
