"""Start a program on a fresh pseudo-terminal, and end it (its whole process group) for sure.

The child gets its own session with the pty as controlling terminal, so job
control works and the whole group can be signalled at once. The parent keeps
only the master side, as a trio `FdStream`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import struct
import termios
from collections.abc import Mapping, Sequence

import attrs
import trio

from tether import DisconnectReason, LinkError

KILL_GRACE = 0.5
"""Seconds a program gets to exit on SIGHUP before the group gets SIGKILL."""


@attrs.define(eq=False)
class PtyProcess:
    """A running program and the master side of its terminal."""

    process: trio.Process
    stream: trio.lowlevel.FdStream

    @property
    def pid(self) -> int:
        return self.process.pid


def set_winsize(fd: int, rows: int, cols: int) -> None:
    """Tell the terminal (and so the program, via SIGWINCH) its size."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_controlling_tty() -> None:  # pragma: no cover - runs in the child
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn_failure(exc: OSError, program: str, cwd: str | None) -> LinkError:
    """A typed SPAWN_FAILED error naming what was missing (never the arguments: they may hold secrets)."""
    what = f"working directory {cwd!r}" if cwd is not None and exc.filename == cwd else f"program {program!r}"
    problem = os.strerror(exc.errno) if exc.errno else str(exc)
    return LinkError(f"cannot start {what}: {problem}", reason=DisconnectReason.SPAWN_FAILED)


async def spawn_on_pty(
    argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str], rows: int, cols: int
) -> PtyProcess:
    """Start `argv` on a new pty; `LinkError(SPAWN_FAILED)` if it cannot start."""
    master, slave = os.openpty()
    try:
        set_winsize(slave, rows, cols)
        process = await trio.lowlevel.open_process(
            list(argv), stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=dict(env),
            start_new_session=True, preexec_fn=_take_controlling_tty,
        )
    except OSError as exc:
        os.close(master)
        raise spawn_failure(exc, argv[0], cwd) from exc
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)  # the child has its copies; ours would hide the EOF when it exits
    return PtyProcess(process, trio.lowlevel.FdStream(master))


def signal_group(pgid: int, signum: int) -> None:
    """Signal a process group; a group that is already gone is fine."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:  # pragma: no cover - the pgid was reused by someone else's process
        pass


async def terminate(child: PtyProcess, *, grace: float = KILL_GRACE) -> None:
    """End the program's whole process group and close the master fd: shielded and bounded.

    SIGHUP first (what a closing terminal sends; shells pass it to their jobs),
    SIGKILL for whatever is left after `grace`. Safe to call twice.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(grace + 2.0):
        pgid = child.pid  # the child leads its own session, so its group id is its pid
        if child.process.returncode is None:
            signal_group(pgid, signal.SIGHUP)
            signal_group(pgid, signal.SIGCONT)
            with trio.move_on_after(grace):
                await child.process.wait()
        signal_group(pgid, signal.SIGKILL)  # stragglers that ignored SIGHUP (nohup, daemons)
        await child.process.wait()
    child.stream.close()


def read_error_is_eof(exc: BaseException) -> bool:
    """True if a read error from the master means the terminal's other side is gone (EIO on Linux)."""
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.EIO, errno.EBADF)
