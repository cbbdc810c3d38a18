"""Start a program on a fresh pseudo-terminal, and end it (its whole process group) for sure.

The child gets its own session with the pty as controlling terminal, so job
control works and the whole group can be signalled at once. The parent keeps
only the master side, as a trio `FdStream`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import struct
import termios
from collections.abc import Iterable, Mapping, Sequence

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


def get_winsize(path: str) -> tuple[int, int] | None:
    """The size (rows, cols) of the terminal at `path`, None if it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return rows, cols
    except OSError:
        return None
    finally:
        os.close(fd)


def _take_controlling_tty() -> None:  # pragma: no cover - runs in the child
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn_failure(exc: OSError, program: str, cwd: str | None) -> LinkError:
    """A typed SPAWN_FAILED error naming what was missing (never the arguments: they may hold secrets)."""
    what = f"working directory {cwd!r}" if cwd is not None and exc.filename == cwd else f"program {program!r}"
    problem = os.strerror(exc.errno) if exc.errno else str(exc)
    return LinkError(f"cannot start {what}: {problem}", reason=DisconnectReason.SPAWN_FAILED)


def check_startable(argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str]) -> None:
    """Raise `LinkError(SPAWN_FAILED)` as `spawn_on_pty` would, without starting anything.

    For programs another process starts (tmux runs them through ``sh -c exec``,
    where a missing program is only an exit status 127 after the connect).
    """
    program = argv[0]
    if cwd is not None and not os.path.isdir(cwd):
        raise spawn_failure(FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), cwd), program, cwd)
    if "/" in program:
        path: str | None = program
    else:
        path = shutil.which(program, mode=os.F_OK, path=env.get("PATH", os.defpath))
    if path is None or not os.path.isfile(path):
        raise spawn_failure(FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program), program, cwd)
    if not os.access(path, os.X_OK):
        raise spawn_failure(PermissionError(errno.EACCES, os.strerror(errno.EACCES), program), program, cwd)


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
    """End the program's whole session and close the master fd: shielded and bounded.

    SIGHUP first, to every process group of the session (what a closing
    terminal amounts to; exit traps get to run), SIGKILL for whatever is left
    after `grace`, then wait until every process of the session has really
    exited: a SIGKILL only marks a process for death, and one that has not been
    scheduled since still runs (and may hold the terminal). Safe to call twice.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(grace + 2.0):
        sid = child.pid  # the child leads its own session and group, so both ids are its pid
        tree = session_tree(sid)  # before the leader dies and its children are orphaned
        groups = {sid} | {ref.pgrp for ref in tree}
        if child.process.returncode is None or tree:
            for group in groups:
                signal_group(group, signal.SIGHUP)
                signal_group(group, signal.SIGCONT)
            with trio.move_on_after(grace):
                await child.process.wait()
                await wait_exited(tree)
        for group in groups:
            signal_group(group, signal.SIGKILL)  # stragglers that ignored SIGHUP (nohup, daemons)
        await child.process.wait()
        await end_session(sid, tree)
    child.stream.close()


@attrs.frozen
class ProcRef:
    """One process as /proc showed it; `start` tells it apart from a later one with its pid."""

    pid: int
    start: bytes
    pgrp: int
    session: int


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            return stat_file.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def proc_ref(pid: int) -> ProcRef | None:
    """`pid` if it is a live (not zombie) process, else None."""
    fields = _stat(pid)
    if fields is None or len(fields) < 20 or fields[0] in (b"Z", b"X", b"x"):
        return None
    return ProcRef(pid=pid, start=fields[19], pgrp=int(fields[2]), session=int(fields[3]))


def is_live(ref: ProcRef) -> bool:
    """True while the process `ref` names exists and has not exited (a zombie has)."""
    now = proc_ref(ref.pid)
    return now is not None and now.start == ref.start


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as children_file:
                kids.extend(int(k) for k in children_file.read().split())
        except (OSError, ValueError):
            continue
    return kids


def session_tree(sid: int) -> list[ProcRef]:
    """The live descendants of `sid` that are still in its session (cheap: no full /proc scan)."""
    found: list[ProcRef] = []
    todo = _children(sid)
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        ref = proc_ref(pid)
        if ref is not None and ref.session == sid:
            found.append(ref)
            todo.extend(_children(pid))
    return found


def session_members(sid: int) -> list[ProcRef]:
    """Every live process in session `sid`, found by scanning /proc (slow with many processes)."""
    found: list[ProcRef] = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != sid:
            ref = proc_ref(int(name))
            if ref is not None and ref.session == sid:
                found.append(ref)
    return found


def _group_exists(pgid: int) -> bool:
    """True if any process (a zombie too) is still in group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - the pgid was reused by someone else's process
        return False
    return True


async def wait_exited(refs: Iterable[ProcRef], *, poll: float = 0.005) -> None:
    """Return once none of `refs` is running (we cannot wait() on processes that are not our children)."""
    left = set(refs)
    while True:
        left = {ref for ref in left if is_live(ref)}
        if not left:
            return
        await trio.sleep(poll)


async def end_session(sid: int, tree: Iterable[ProcRef], *, poll: float = 0.005) -> None:
    """SIGKILL what is left of session `sid` and return once all of it has exited.

    `tree` is the session as seen before it was signalled (orphans keep their
    session but leave the tree). /proc is scanned only if a group the session
    used still has members (zombies too), so the usual case (a lone program)
    costs no scan. The caller bounds this: a process stuck in the kernel can
    outlast SIGKILL.
    """
    tree = list(tree)
    refs = {ref for ref in tree if is_live(ref)}
    if any(_group_exists(group) for group in {sid} | {ref.pgrp for ref in tree}):
        refs.update(session_members(sid))
    for ref in refs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(ref.pid, signal.SIGKILL)
    await wait_exited(refs, poll=poll)


def read_error_is_eof(exc: BaseException) -> bool:
    """True if a read error from the master means the terminal's other side is gone (EIO on Linux)."""
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.EIO, errno.EBADF)
