"""`ProcessLink`: one live program on a pty, its output stream and the state it reports.

Two tasks run beside the session while the link is up: a reader (pty output
-> ``report_output``, and the escape scanner -> ``report_state``) and a waiter
(the process exit -> ``report_closed``). With tmux and a pane log, a third
task follows the pane log and reports the program's own bytes with their
offsets (``report_output_at``); the tmux client's pty (what tmux draws) is
then only drained. The link ends exactly once, with a typed reason: the
program exited (code or signal), the terminal closed, or, with tmux, the
client dropped while the program kept running.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
from collections.abc import Mapping
from typing import final

import trio

from tether import (
    CommandMark,
    CwdReport,
    Disconnect,
    DisconnectReason,
    LinkError,
    LinkRequest,
    OscScanner,
    PeerMark,
    PreservedState,
    ShellMark,
)

from ._panelog import PaneLogReader
from ._pty import PtyProcess, proc_ref, set_winsize
from ._survivor import identity
from ._tmux import TmuxHandle, has_session, resize_window

READ_SIZE = 65536
DRAIN_TIME = 0.2
"""After the program exits, how long the reader gets to pass on its last output."""
LINGER_TIME = 1.0
"""After the terminal closes, how long the program gets to exit before we call it a closed pty."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def exit_disconnect(returncode: int, what: str = "the program") -> Disconnect:
    """The typed reason for a process that ended with `returncode` (negative: a signal)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return Disconnect(DisconnectReason.PROCESS_EXIT, f"{what} was killed by {name}", signal=-returncode)
    return Disconnect(DisconnectReason.PROCESS_EXIT, f"{what} exited", exit_code=returncode)


def _proc_cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


@final
class ProcessLink:
    """A program on a pseudo-terminal (with tmux: a tmux client attached to the program)."""

    def __init__(
        self,
        *,
        child: PtyProcess,
        request: LinkRequest,
        program_pid: int,
        cwd: str | None,
        env: Mapping[str, str],
        last_command: str | None,
        tmux: TmuxHandle | None = None,
        tool_env: Mapping[str, str] | None = None,
        pane_from: int | None = None,
    ) -> None:
        self._child = child
        self._request = request
        self._pid = program_pid
        self._cwd = cwd
        self._env = dict(env)
        self._last_command = last_command
        self._tmux = tmux
        self._tool_env = dict(tool_env or {})
        self._identity = {**identity(proc_ref(program_pid)), "persist": "tmux" if tmux is not None else "none"}
        self._scanner = OscScanner()
        self._reported_cwd = False
        self._shell: str | None = None
        """The shell whose tether integration reported a prompt (`run` needs one)."""
        self._last_state: PreservedState | None = None
        self._closed: Disconnect | None = None
        self._broken = False
        self._reported = False
        self._send_lock = trio.Lock()
        self._eof = trio.Event()
        self._pane: PaneLogReader | None = None
        if tmux is not None and tmux.log is not None and pane_from is not None:
            self._pane = PaneLogReader(tmux.log, pane_from, self._take_numbered)

    # -- the contract -------------------------------------------------------------------------

    async def probe(self) -> None:
        """Alive while the process on the pty runs and the link has not ended."""
        await trio.lowlevel.checkpoint()
        if self._closed is None:
            code = self._child.process.poll()
            if code is None:
                return
            self._closed = exit_disconnect(code, self._what)
        self._broken = self._reported = True  # the supervisor learns of the end from this error
        closed = self._closed
        raise LinkError(closed.detail, reason=closed.reason, exit_code=closed.exit_code, signal=closed.signal)

    def current_state(self) -> PreservedState:
        """cwd (shell report, else /proc), env set through tether, last command, tmux handle."""
        cwd = self._cwd if self._reported_cwd else (_proc_cwd(self._pid) or self._cwd)
        extra = dict(self._identity)
        if self._shell is not None:
            extra["shell"] = self._shell
        return PreservedState(
            cwd=cwd, env=dict(self._env), last_command=self._last_command,
            handle=self._tmux.encode() if self._tmux is not None else None, extra=extra,
        )

    async def send(self, data: bytes) -> None:
        """Type `data` into the terminal."""
        async with self._send_lock:
            try:
                await self._child.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise LinkError("the terminal is closed", reason=DisconnectReason.REMOTE_CLOSED) from exc

    async def resize(self, rows: int, cols: int) -> None:
        """Resize the terminal: the program (with tmux: the client, and so the window) gets SIGWINCH.

        With tmux the window follows its client only once the client has told the server, so
        the window is resized by a tmux command too: when this returns, the program's terminal
        has the new size (a ``stty size`` typed next says so).
        """
        await trio.lowlevel.checkpoint()
        try:
            set_winsize(self._child.stream.fileno(), rows, cols)
        except OSError as exc:
            raise LinkError(f"cannot resize the terminal: {exc.strerror}",
                            reason=DisconnectReason.REMOTE_CLOSED) from exc
        if self._tmux is not None:
            await resize_window(self._tmux, rows, cols, self._tool_env)

    async def interrupt(self) -> None:
        """Ctrl-C that cannot queue behind input: SIGINT to the terminal's foreground process group
        at once (with tmux, the interrupt character goes to tmux, which passes it on)."""
        if self._tmux is not None:
            await self.send(b"\x03")
            return
        await trio.lowlevel.checkpoint()
        try:
            group = os.tcgetpgrp(self._child.stream.fileno())
            os.killpg(group, signal.SIGINT)
        except OSError:
            await self.send(b"\x03")  # no foreground group to find: the terminal's own way

    # -- extras --------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The program's pid (with tmux: the pane's program, not the client)."""
        return self._pid

    @property
    def tmux(self) -> TmuxHandle | None:
        return self._tmux

    @property
    def pane_log_position(self) -> int | None:
        """The peer offset the pane log has been read to (None without a pane log)."""
        return self._pane.position if self._pane is not None else None

    @property
    def healthy(self) -> bool:
        """False once the link reported its end or failed a probe."""
        return self._closed is None and not self._broken

    async def set_env(self, name: str, value: str) -> None:
        """Export a variable in the shell and keep it for restarts (a shell must be running).

        The command starts with a space, so shells with ``HISTCONTROL=ignorespace``
        keep it (and any secret in it) out of their history and out of ``last_command``.
        """
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"not a variable name: {name!r}")
        await self.send(f" export {name}={shlex.quote(value)}\r".encode())
        self._env[name] = value
        self._report_state()

    # -- the tasks -----------------------------------------------------------------------------

    async def run_reader(self) -> None:
        """Pass output on until the terminal closes; report a pty closed under a live program."""
        try:
            while True:
                try:
                    data = await self._child.stream.receive_some(READ_SIZE)
                except trio.BrokenResourceError:
                    break  # EIO: every holder of the pty's other side has gone
                except trio.ClosedResourceError:
                    return
                if not data:
                    break
                if self._pane is None:
                    self._take(data)
        finally:
            self._eof.set()
        with trio.move_on_after(LINGER_TIME):
            await self._child.process.wait()
            return  # the waiter reports the exit
        self._close(Disconnect(DisconnectReason.REMOTE_CLOSED, "the program closed its terminal"))

    async def run_pane_reader(self) -> None:
        """Follow the pane log (tmux): the program's own bytes, each chunk with its offset."""
        if self._pane is not None:
            await self._pane.run()

    async def run_waiter(self) -> None:
        """Report the process's exit once its last output has been passed on."""
        code = await self._child.process.wait()
        with trio.move_on_after(DRAIN_TIME):
            await self._eof.wait()
        if self._pane is not None:
            self._pane.read_available()  # what the program wrote last
        if self._tmux is None:
            self._close(exit_disconnect(code))
            return
        alive = False
        with contextlib.suppress(OSError, trio.TooSlowError):
            alive = await has_session(self._tmux, self._tool_env)
        if alive:
            self._close(Disconnect(DisconnectReason.REMOTE_CLOSED, "the tmux client exited; the program still runs"))
        else:
            self._close(Disconnect(DisconnectReason.PROCESS_EXIT, "the program in tmux ended"))

    # -- internals -----------------------------------------------------------------------------

    @property
    def _what(self) -> str:
        return "the tmux client" if self._tmux is not None else "the program"

    def _close(self, disconnect: Disconnect) -> None:
        if self._closed is None:
            self._closed = disconnect
        if not self._reported:
            self._reported = True
            self._request.report_closed(self._closed)

    def _take(self, data: bytes) -> None:
        """Pass the exact bytes on, and learn the program's state from the marks among them."""
        self._request.report_output(data)
        self._learn(data)

    def _take_numbered(self, mark: PeerMark, data: bytes) -> None:
        self._request.report_output_at(mark, data)
        self._learn(data)

    def _learn(self, data: bytes) -> None:
        _, found = self._scanner.feed(data)
        for item in found:
            event = item.event
            if isinstance(event, CwdReport):
                self._cwd = event.path
                self._reported_cwd = True
            elif isinstance(event, CommandMark) and event.command:
                self._last_command = event.command
            elif isinstance(event, ShellMark) and event.kind == "A" and event.shell:
                self._shell = event.shell
        self._report_state()

    def _report_state(self) -> None:
        state = self.current_state()
        if state != self._last_state:
            self._last_state = state
            self._request.report_state(state)
