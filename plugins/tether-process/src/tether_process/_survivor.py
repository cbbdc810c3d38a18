"""Programs that outlived tether: find them, so a session's program never runs twice.

A program on a pty gets SIGHUP when the daemon holding the pty dies; one that
ignores it keeps running, orphaned, with a terminal nobody reads. Its pid,
its start time (so a reused pid is never mistaken for it) and the boot it
started in are recorded in the session's preserved state; before a new
program starts, a survivor is looked up and its whole session (every process
group the program led) is ended, and the engine is told. A tmux-kept program
is not a survivor to end: re-attaching adopts it.
"""

from __future__ import annotations

import contextlib
import os
import signal

import trio

from tether import PreservedState

from ._pty import ProcRef, end_session, proc_ref, session_tree, wait_exited

PID = "pid"
PID_START = "pid_start"
BOOT = "boot"

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str:
    try:
        with open(_BOOT_ID, encoding="ascii") as file:
            return file.read().strip()
    except OSError:
        return ""


def identity(ref: ProcRef | None) -> dict[str, str]:
    """What `PreservedState.extra` records of a program, to find it again after a restart."""
    if ref is None:
        return {}
    return {PID: str(ref.pid), PID_START: ref.start.decode("ascii", "replace"), BOOT: boot_id()}


def find_survivor(state: PreservedState | None) -> ProcRef | None:
    """The recorded program if it still runs (same pid, same start time, same boot)."""
    if state is None:
        return None
    extra = state.extra
    pid, start, boot = extra.get(PID, ""), extra.get(PID_START), extra.get(BOOT)
    if not pid.isdigit() or not start or boot != boot_id():
        return None
    ref = proc_ref(int(pid))
    if ref is None or ref.start.decode("ascii", "replace") != start:
        return None
    return ref


async def end_survivor(ref: ProcRef, *, grace: float = 0.5) -> None:
    """End the survivor's whole session: SIGHUP and SIGCONT to each group, SIGKILL after `grace`."""
    with trio.CancelScope(shield=True), trio.move_on_after(grace + 2.0):
        tree = session_tree(ref.session) if ref.session == ref.pid else []
        groups = {ref.pgrp} | {member.pgrp for member in tree}
        for group in groups:
            for signum in (signal.SIGHUP, signal.SIGCONT):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signum)
        with trio.move_on_after(grace):
            await wait_exited([ref, *tree])
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        await end_session(ref.session, [ref, *tree])
