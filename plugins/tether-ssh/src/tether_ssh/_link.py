"""One live ssh link: pumps for the pty and ssh's stderr, the exit watcher and the probe.

The probe does not write to the remote shell (that would be input to the
user's program): it checks that this ssh client is still running. Transport
liveness is ssh's own job, via ServerAliveInterval/CountMax from the policy:
a black-holed or frozen peer makes ssh (or the shared connection's master)
exit within interval x count, and the exit watcher turns that exit into a
classified drop at once.

What ssh printed before the remote shell was ready (a login banner, which
may say anything, "Permission denied" included) is kept apart from what it
printed after: a drop after connect is classified only from the latter. The
ready marker arrives on the pty, so everything ssh wrote to stderr before it
is already in the pipe when the marker is read; the pipe is drained then,
before the split, with no checkpoint in between.

On a shared connection a client that exits 255 after connect asks its lease
whether the master ended: a master that died is a network drop for every
channel on it; a channel that closed alone is classified like any other end.

With a remote pane log (``persist = "tmux"``, `_panelog`) the connect ends in
the PANE marker instead of READY, and what follows on the pty is the log's
records (`_panestream`): the program's own bytes, each chunk reported with its
peer offset (``report_output_at``), so tether keeps exactly one copy of each.
Records out of step drop the link (``remote-closed``: a re-attach resumes
exactly) rather than misplace a byte.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
from typing import final

import attrs
import trio

from tether import (
    CwdReport,
    Disconnect,
    DisconnectReason,
    LinkError,
    LinkRequest,
    OscScanner,
    PreservedState,
    ReattachUnavailableError,
)

from ._classify import SSH_FAILURE, channel_refused, classify_exit, error_for
from ._command import Markers
from ._panestream import PaneStream, PaneStreamError
from ._pty import PtyProcess
from ._scan import MarkerScanner
from ._shared import Lease

STDERR_KEPT = 8 * 1024
"""Bytes of ssh's stderr kept for classification (the tail is what matters)."""
DRAIN_TIMEOUT = 1.0
"""How long after ssh exits we wait for the last pty and stderr bytes."""
MASTER_GRACE = 1.0
"""How long a shared-connection client that exited waits to learn whether its master ended
(the client sees the socket close a moment before the master's exit is visible)."""


class ChannelRefused(LinkError):
    """The shared connection refused another channel (sshd's MaxSessions): use another one."""

    default_reason = DisconnectReason.NETWORK


@final
class SshLink:
    """A connected ssh client on a pty."""

    def __init__(
        self,
        proc: PtyProcess,
        request: LinkRequest,
        markers: Markers,
        state: PreservedState,
        lease: Lease | None = None,
    ) -> None:
        self._proc = proc
        self._request = request
        self._markers = markers
        self._state = state
        self._lease = lease
        self._scanner = MarkerScanner((markers.ready, markers.pane, markers.gone))
        self._pane: PaneStream | None = None
        """The pane log's records, after a PANE marker; None: the pty is the output itself."""
        self._osc = OscScanner()
        self._stderr_fd = proc.stderr.fileno()  # non-blocking (FdStream)
        self._stderr_before = bytearray()
        """What ssh said before the remote shell was ready (banner, warnings, connect errors)."""
        self._stderr_after = bytearray()
        """What ssh said after it: all a drop of a connected link is classified from."""
        self._stderr_split = False
        self._stderr_done = trio.Event()
        self._pty_done = trio.Event()
        self._settled = trio.Event()
        """Set when the marker arrived or ssh ended: the connect wait is over."""
        self._send_lock = trio.StrictFIFOLock()
        self.ended: Disconnect | None = None
        self.closing = False

    # -- the Link contract ---------------------------------------------------------------------

    async def probe(self) -> None:
        """Alive while the ssh client runs; ServerAlive watches the transport underneath."""
        await trio.lowlevel.checkpoint()
        if self.ended is not None:
            raise error_for(self.ended)
        if self._proc.process.returncode is not None:
            raise LinkError("ssh client has exited", reason=DisconnectReason.REMOTE_CLOSED)

    def current_state(self) -> PreservedState:
        return self._state

    async def send(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self._proc.pty.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise LinkError(
                    "ssh client's pty is closed", reason=DisconnectReason.REMOTE_CLOSED
                ) from exc

    async def resize(self, rows: int, cols: int) -> None:
        """Resize ssh's terminal: ssh sends the remote side a window-change."""
        await trio.lowlevel.checkpoint()
        try:
            fcntl.ioctl(self._proc.pty.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        except OSError as exc:
            raise LinkError(f"cannot resize ssh's terminal: {exc.strerror}",
                            reason=DisconnectReason.REMOTE_CLOSED) from exc

    @property
    def pane(self) -> PaneStream | None:
        """The remote pane log being followed (its stream and position), or None."""
        return self._pane

    @property
    def stderr_text(self) -> str:
        """What ssh itself said so far (never the remote program's output)."""
        return (self._stderr_before + self._stderr_after).decode("utf-8", errors="replace")

    @property
    def stderr_since_ready(self) -> str:
        """What ssh said after the remote shell was ready (never the login banner)."""
        return self._stderr_after.decode("utf-8", errors="replace")

    # -- connect -------------------------------------------------------------------------------

    async def wait_ready(self, deadline: float, connect_timeout: float) -> LinkError | None:
        """None once the remote shell is up; else the typed `LinkError` to raise.

        Returned, not raised, so the caller can raise it outside its nursery
        (where it would be wrapped in an exception group).
        """
        with trio.move_on_at(deadline):
            await self._settled.wait()
        if self.ready:
            return None
        pre = self._scanner.before.decode("utf-8", errors="replace").strip()
        if self._scanner.found == self._markers.gone:
            return ReattachUnavailableError(f"tmux session {self._state.handle!r} is gone")
        if self.ended is not None:
            if self._lease is not None and self.ended.exit_code == SSH_FAILURE:
                if channel_refused(self.stderr_text):
                    return ChannelRefused(f"the shared connection refused a channel: {self.ended.detail}")
                lost = await self._lease.lost(MASTER_GRACE)
                if lost is not None:
                    return error_for(lost)
            remote = f"remote said: {pre[-300:]}" if pre else ""
            return error_for(self.ended, remote)
        stderr = "; ".join(self.stderr_text.split("\n")[-3:]).strip("; \r")
        return LinkError(
            f"remote shell not ready within {connect_timeout}s" + (f" (ssh: {stderr})" if stderr else "")
            + (f" (remote said: {pre[-300:]!r})" if pre else ""),
            reason=DisconnectReason.TIMEOUT,
        )

    # -- tasks ---------------------------------------------------------------------------------

    async def pump_pty(self) -> None:
        """Forward remote output; find the marker first and OSC 7 reports after it."""
        try:
            while True:
                try:
                    data = await self._proc.pty.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return  # EIO: every writer of the pty slave is gone
                if not data:
                    return
                if self._scanner.found is None:
                    data = self._scanner.feed(data)
                    self._settle_on_marker()
                if data and self.ready:
                    if self._pane is None:
                        self._on_output(data)
                    elif not self._on_records(data):
                        return
        finally:
            self._pty_done.set()

    @property
    def ready(self) -> bool:
        """The ready (or pane) marker was seen: the remote shell is up."""
        found = self._scanner.found
        return found is not None and found != self._markers.gone

    def _settle_on_marker(self) -> None:
        if self._scanner.found == self._markers.pane:
            self._pane = PaneStream()
        if self.ready:
            # Everything ssh wrote to stderr before the marker is in the pipe by now: file it
            # as "before" (banner, warnings), and only what comes next as "after".
            self._take_stderr()
            self._stderr_split = True
        if self._scanner.found is not None:
            self._settled.set()

    def _on_output(self, data: bytes) -> None:
        self._request.report_output(data)
        self._learn(data)

    def _on_records(self, data: bytes) -> bool:
        """Report the program's bytes in the pane log's records; False (and the link ends) if out of step."""
        assert self._pane is not None
        try:
            chunks = self._pane.feed(data)
        except PaneStreamError as exc:
            self._report_end(Disconnect(DisconnectReason.REMOTE_CLOSED, f"the remote pane log is out of step: {exc}"))
            return False
        for mark, chunk in chunks:
            self._request.report_output_at(mark, chunk)
            self._learn(chunk)
        return True

    def _learn(self, data: bytes) -> None:
        _, found = self._osc.feed(data)
        for item in found:
            cwd = item.event.path if isinstance(item.event, CwdReport) else None
            if cwd is not None and cwd != self._state.cwd:
                self._state = attrs.evolve(self._state, cwd=cwd)
                self._request.report_state(self._state)

    async def pump_stderr(self) -> None:
        """Read ssh's stderr as it comes; reading and filing happen with no checkpoint between."""
        try:
            while True:
                try:
                    await trio.lowlevel.wait_readable(self._stderr_fd)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return
                if not self._take_stderr():
                    return
        finally:
            self._stderr_done.set()

    def _take_stderr(self) -> bool:
        """Move what the stderr pipe holds now into the before- or after-ready buffer; False at its end."""
        while True:
            try:
                data = os.read(self._stderr_fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            kept = self._stderr_after if self._stderr_split else self._stderr_before
            kept += data
            del kept[:-STDERR_KEPT]

    async def watch_exit(self) -> None:
        """When ssh exits: drain, classify from status + stderr, and report the drop once."""
        returncode = await self._proc.process.wait()
        with trio.move_on_after(DRAIN_TIMEOUT):
            await self._stderr_done.wait()
            await self._pty_done.wait()
        connected = self.ready
        said = self.stderr_since_ready if connected else self.stderr_text
        ended = classify_exit(returncode, said, connected=connected)
        if connected and self._lease is not None and returncode == SSH_FAILURE:
            ended = await self._lease.lost(MASTER_GRACE) or ended
        if connected:
            self._report_end(ended)
        elif self.ended is None:
            self.ended = ended
        self._settled.set()

    def _report_end(self, ended: Disconnect) -> None:
        """The link's end, once: the first cause wins (records out of step, then ssh's exit)."""
        if self.ended is None:
            self.ended = ended
            if not self.closing:
                self._request.report_closed(ended)
