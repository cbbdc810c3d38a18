"""The tmux side of ``persist = "tmux"``: one private tmux server per session.

Each program runs in its own tmux server on a socket in a 0700 directory
(``tmux -S DIR/NAME.sock``), so sessions cannot see or kill each other, and
ending one is ``kill-server``. The handle that `PreservedState.handle` carries
is a small JSON object (socket path and session name): everything a new tether
process needs to re-attach after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
from collections.abc import Mapping, Sequence

import attrs
import trio

from tether import ConfigError, DisconnectReason, LinkError, ReattachUnavailableError

from ._panelog import PaneLog
from ._pty import ProcRef, end_session, get_winsize, proc_ref, session_tree, wait_exited

SESSION_NAME = "tether"
SOCKET_PATH_MAX = 100
"""sun_path holds 108 bytes on Linux; leave room."""
COMMAND_TIMEOUT = 5.0


@attrs.frozen
class TmuxHandle:
    """Where a session's program lives: a private tmux server's socket and its session,
    and the pane log beside it (None for programs started before pane logs existed)."""

    socket: str
    session: str = SESSION_NAME
    log: PaneLog | None = None

    def encode(self) -> str:
        inner: dict[str, object] = {"socket": self.socket, "session": self.session}
        if self.log is not None:
            inner["log"] = self.log.directory
            inner["segment"] = self.log.segment_bytes
        return json.dumps({"tmux": inner}, sort_keys=True)

    @classmethod
    def decode(cls, text: str | None) -> TmuxHandle | None:
        """The handle in `text`, or None if it is not one of ours."""
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        inner = data.get("tmux") if isinstance(data, dict) else None
        if not isinstance(inner, dict):
            return None
        socket, session = inner.get("socket"), inner.get("session")
        if not isinstance(socket, str) or not isinstance(session, str) or not os.path.isabs(socket):
            return None
        directory, segment = inner.get("log"), inner.get("segment")
        log = None
        if isinstance(directory, str) and os.path.isabs(directory) and type(segment) is int and segment > 0:
            log = PaneLog(directory, segment)
        return cls(socket=socket, session=session, log=log)


def tmux_binary() -> str | None:
    return shutil.which("tmux")


def private_dir(path: str) -> str:
    """Create `path` (0700) if needed and refuse it unless only we can use it."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path)
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise LinkError(
            f"{path} must be a directory owned by uid {os.getuid()} with mode 0700",
            reason=DisconnectReason.SPAWN_FAILED,
        )
    return path


def socket_is_private(socket: str) -> bool:
    """True if the socket's directory is ours alone (never attach through someone else's)."""
    try:
        info = os.stat(os.path.dirname(socket))
    except OSError:
        return False
    return info.st_uid == os.getuid() and not stat.S_IMODE(info.st_mode) & 0o077


def new_handle(directory: str, session_id: str, log: PaneLog | None = None) -> TmuxHandle:
    """A fresh, unguessable socket name in `directory` for `session_id`."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", session_id)[:20]
    socket = os.path.join(directory, f"{slug}-{secrets.token_hex(4)}.sock")
    if len(socket.encode()) > SOCKET_PATH_MAX:
        raise ConfigError("persist", f"tmux socket path {socket!r} is too long; use a shorter runtime_dir")
    return TmuxHandle(socket=socket, log=log)


def client_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment for tmux commands: never inherit $TMUX (tmux refuses to nest)."""
    return {k: v for k, v in env.items() if k != "TMUX"}


async def run(handle: TmuxHandle, args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[bytes]:
    """Run one tmux command against the handle's server, bounded."""
    with trio.fail_after(COMMAND_TIMEOUT):
        return await trio.run_process(
            ["tmux", "-u", "-S", handle.socket, *args], env=client_env(env), check=False,
            capture_stdout=True, capture_stderr=True, stdin=subprocess.DEVNULL,
        )


async def new_session(
    handle: TmuxHandle, argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str],
    rows: int, cols: int, history_lines: int,
) -> None:
    """Start a private tmux server running `argv` (exec'd, so the pane's pid is the program's).

    With a pane log, the pane first waits on a ``wait-for`` channel that the same tmux
    command signals once ``pipe-pane`` is in place: the program's first byte is logged.
    """
    command = "exec " + shlex.join(argv)
    gate = f"tether-{secrets.token_hex(4)}"
    if handle.log is not None:
        tmux = shutil.which("tmux") or "tmux"
        command = f"{shlex.quote(tmux)} -S {shlex.quote(handle.socket)} wait-for {gate}; {command}"
    args = [
        "-f", "/dev/null", "start-server", ";",
        "set-option", "-g", "history-limit", str(history_lines), ";",
        "set-option", "-g", "status", "off", ";",
        "set-option", "-g", "allow-passthrough", "on", ";",
        "set-option", "-g", "default-shell", "/bin/sh", ";",
        "new-session", "-d", "-s", handle.session, "-x", str(cols), "-y", str(rows),
    ]
    if cwd is not None:
        args += ["-c", cwd]
    args.append(command)
    if handle.log is not None:
        target = f"={handle.session}:"
        args += [";", "pipe-pane", "-O", "-t", target, handle.log.pipe_command(), ";", "wait-for", "-S", gate]
    result = await run(handle, args, env)
    if result.returncode != 0:
        await kill_server(handle, env)
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise LinkError(
            f"tmux could not start the program: {message[-1] if message else result.returncode}",
            reason=DisconnectReason.SPAWN_FAILED,
        )


def _socket_exists(handle: TmuxHandle) -> bool:
    """A stat on a local (tmpfs) socket: too quick to be worth a thread."""
    return os.path.exists(handle.socket)


async def has_session(handle: TmuxHandle, env: Mapping[str, str]) -> bool:
    if not _socket_exists(handle):
        return False
    result = await run(handle, ["has-session", "-t", f"={handle.session}"], env)
    return result.returncode == 0


RESIZE_SETTLE = 2.0
"""Longest wait for tmux to pass a resize on to the pane (it spaces pane resizes ~200 ms apart)."""


async def resize_window(handle: TmuxHandle, rows: int, cols: int, env: Mapping[str, str]) -> None:
    """Resize the session's window, and return once the pane's terminal has the size.

    tmux applies a window's new size to its pane's terminal later, on a timer of its own; no
    event says when, so the pane's terminal is looked at until it says so (bounded). A window
    sized so keeps its size (tmux stops following its clients), which is what a program that
    is re-attached later wants: the size it was last given."""
    target = f"={handle.session}:"
    await run(handle, ["resize-window", "-t", target, "-x", str(cols), "-y", str(rows)], env)
    shown = await run(handle, ["display-message", "-p", "-t", target, "#{pane_tty}"], env)
    tty = shown.stdout.decode(errors="replace").strip()
    if shown.returncode != 0 or not tty.startswith("/dev/"):
        return
    with trio.move_on_after(RESIZE_SETTLE):
        while get_winsize(tty) not in (None, (rows, cols)):  # noqa: ASYNC110 - tmux has no event for it
            await trio.sleep(0.01)


async def pane_pid(handle: TmuxHandle, env: Mapping[str, str]) -> int | None:
    """The pid of the program in the session's pane."""
    result = await run(handle, ["display-message", "-p", "-t", f"={handle.session}:", "#{pane_pid}"], env)
    text = result.stdout.decode(errors="replace").strip()
    return int(text) if result.returncode == 0 and text.isdigit() else None


async def kill_server(handle: TmuxHandle, env: Mapping[str, str], program_pid: int | None = None) -> None:
    """End the program for good: its private server, the socket, and (if known) the
    program's session, which tmux only sends SIGHUP. Shielded and bounded; returns
    once the program and everything it started in its session have exited."""
    with trio.CancelScope(shield=True), trio.move_on_after(COMMAND_TIMEOUT):
        program = proc_ref(program_pid) if program_pid is not None else None
        # tmux makes the pane's program a session leader; note its tree before kill-server
        # orphans it.
        tree = session_tree(program.pid) if program is not None else []
        if _socket_exists(handle):
            await run(handle, ["kill-server"], env)
        if program is not None:
            await _reap_foreign(program, tree)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(handle.socket)
    if handle.log is not None:
        handle.log.remove()


async def _reap_foreign(program: ProcRef, tree: list[ProcRef], grace: float = 1.0) -> None:
    """Give a program that is not our child (we cannot wait() on it) `grace` to go after
    tmux's SIGHUP, SIGKILL what is left of its session, and wait until all of it has exited."""
    with trio.move_on_after(grace):
        await wait_exited([program, *tree])
    for group in {program.pid} | {ref.pgrp for ref in tree}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)  # tmux made the pane's program a group leader
    await end_session(program.pid, [program, *tree])


def attach_argv(handle: TmuxHandle) -> list[str]:
    return ["tmux", "-u", "-S", handle.socket, "attach-session", "-t", f"={handle.session}"]


def reattach_error(handle: TmuxHandle) -> ReattachUnavailableError:
    return ReattachUnavailableError(f"tmux session {handle.session!r} on {handle.socket} is gone")
