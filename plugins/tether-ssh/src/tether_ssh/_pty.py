"""Run a program with a pty as stdin/stdout and a pipe as stderr.

The pty carries the remote session (remote stdout and stderr alike); the
pipe carries only the ssh client's own diagnostics, which is all the
classifier may read.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import termios
import tty
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress

import attrs
import trio

KILL_GRACE = 2.0
"""Seconds a terminated client gets to exit before SIGKILL."""


@attrs.frozen
class PtyProcess:
    """A running program, its pty master (read/write) and its stderr pipe."""

    process: trio.Process
    pty: trio.lowlevel.FdStream
    stderr: trio.abc.ReceiveStream


@asynccontextmanager
async def open_pty_process(
    argv: Sequence[str], *, env: Mapping[str, str], rows: int, cols: int
) -> AsyncIterator[PtyProcess]:
    """Start `argv` on a fresh raw pty; leaving the context ends it (shielded, bounded)."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # no local echo or line editing before ssh sets its own modes
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        # start_new_session: no controlling tty of ours, so nothing can ever prompt on it
        process = await trio.lowlevel.open_process(
            list(argv), stdin=slave, stdout=slave, stderr=subprocess.PIPE,
            start_new_session=True, env=dict(env),
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    stream = trio.lowlevel.FdStream(master)
    assert process.stderr is not None
    try:
        yield PtyProcess(process, stream, process.stderr)
    finally:
        with trio.CancelScope(shield=True):
            await _end(process)
            await stream.aclose()
            await process.stderr.aclose()


async def _end(process: trio.Process) -> None:
    if process.returncode is not None:
        return
    _signal(process, signal.SIGTERM)
    with trio.move_on_after(KILL_GRACE):
        await process.wait()
        return
    _signal(process, signal.SIGKILL)
    with trio.move_on_after(KILL_GRACE):
        await process.wait()


def _signal(process: trio.Process, signum: int) -> None:
    with suppress(ProcessLookupError):
        process.send_signal(signum)
