"""Run a program with a pty as stdin/stdout and a pipe as stderr.

The pty carries the remote session (remote stdout and stderr alike); the
pipe carries only the ssh client's own diagnostics, which is all the
classifier may read.

The pty starts with a terminal's usual modes, because ssh sends the modes
of its stdin to the remote side when it asks for a remote pty (and then
puts its own end in raw mode): a raw local pty would give the remote shell
a raw pty too, with bare ``\n`` line ends, no echo and no Ctrl-C.

ssh runs as the leader of a process group of its own, and that whole group
is ended: a ``ProxyCommand`` ssh started is in it, and would otherwise be
left running (re-parented to pid 1) when ssh is killed mid-connect.

The pty is ssh's controlling terminal (util-linux ``setsid --ctty``, in a new
session): a window size set on it reaches ssh as SIGWINCH, which ssh passes
on to the remote pty (``window-change``). Without one, a resize changed only
the local pty. Nothing can prompt there: BatchMode is always on.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import struct
import subprocess
import termios
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
    stderr: trio.lowlevel.FdStream


@asynccontextmanager
async def open_pty_process(
    argv: Sequence[str], *, env: Mapping[str, str], rows: int, cols: int
) -> AsyncIterator[PtyProcess]:
    """Start `argv` on a fresh pty in a terminal's usual modes; leaving the context ends it (shielded, bounded)."""
    master, slave = os.openpty()
    try:
        set_terminal_modes(slave)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        # a session of its own (never our terminal), with the pty as its controlling terminal
        setsid = shutil.which("setsid")
        process = await trio.lowlevel.open_process(
            [setsid, "--ctty", *argv] if setsid else list(argv), stdin=slave, stdout=slave,
            stderr=subprocess.PIPE, start_new_session=setsid is None, env=dict(env),
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    stream = trio.lowlevel.FdStream(master)
    stderr = process.stderr
    try:
        assert isinstance(stderr, trio.lowlevel.FdStream)  # a pipe: non-blocking, with a fileno
        yield PtyProcess(process, stream, stderr)
    finally:
        with trio.CancelScope(shield=True):
            await end_process(process)
            await stream.aclose()
            if stderr is not None:
                await stderr.aclose()


def set_terminal_modes(fd: int) -> None:
    """A terminal's usual modes (``stty sane``-like): these are what ssh forwards to the remote pty."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    iflag = (iflag | termios.ICRNL | termios.IXON | termios.BRKINT | getattr(termios, "IUTF8", 0)) & ~(
        termios.INLCR | termios.IGNCR | termios.ISTRIP
    )
    oflag = (oflag | termios.OPOST | termios.ONLCR) & ~(termios.OCRNL | termios.ONLRET)
    cflag = (cflag & ~termios.CSIZE) | termios.CS8 | termios.CREAD
    lflag |= (
        termios.ISIG | termios.ICANON | termios.IEXTEN | termios.ECHO | termios.ECHOE | termios.ECHOK
        | termios.ECHOCTL | termios.ECHOKE
    )
    lflag &= ~(termios.ECHONL | termios.NOFLSH | termios.TOSTOP)
    cc = list(cc)
    for index, value in ((termios.VINTR, 0x03), (termios.VQUIT, 0x1C), (termios.VERASE, 0x7F),
                         (termios.VKILL, 0x15), (termios.VEOF, 0x04), (termios.VSUSP, 0x1A)):
        cc[index] = bytes([value])
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


def parent_death_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM --`` where util-linux has it, else nothing.

    A shared-connection client is only a go-between: its master holds the pty
    and the channel. If tether dies (even by SIGKILL) the client must end too,
    so the master closes the channel and, once idle, exits; without this the
    channel and the remote shell would stay open for good.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


async def end_process(process: trio.Process, *, stragglers: bool = True) -> None:
    """End the process group: TERM, then KILL after a grace.

    With `stragglers`, the group is killed once more after the leader has exited:
    a member may still run (a ProxyCommand ssh spawned and, killed mid-connect,
    could not end). A group id cannot be reused while any member lives, and
    signalling an empty group is ESRCH. Not for a shared connection that went to
    the background: its ProxyCommand is still in that group, carrying it.
    """
    if process.returncode is None:
        _signal_group(process, signal.SIGTERM)
        with trio.move_on_after(KILL_GRACE):
            await process.wait()
        if process.returncode is None:
            _signal_group(process, signal.SIGKILL)
            with trio.move_on_after(KILL_GRACE):
                await process.wait()
    if stragglers:
        _signal_group(process, signal.SIGKILL)


def _signal_group(process: trio.Process, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
