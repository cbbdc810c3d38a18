"""One live ssh link: pumps for the pty and ssh's stderr, the exit watcher and the probe.

The probe does not write to the remote shell (that would be input to the
user's program) and needs no ControlMaster: it checks that this ssh client
is still running. Transport liveness is ssh's own job, via
ServerAliveInterval/CountMax from the policy: a black-holed or frozen peer
makes ssh exit within interval x count, and the exit watcher turns that exit
into a classified drop at once.
"""

from __future__ import annotations

from typing import final

import attrs
import trio

from tether import (
    Disconnect,
    DisconnectReason,
    LinkError,
    LinkRequest,
    PreservedState,
    ReattachUnavailableError,
)

from ._classify import classify_exit, error_for
from ._command import Markers
from ._pty import PtyProcess
from ._scan import MarkerScanner, Osc7Scanner

STDERR_KEPT = 8 * 1024
"""Bytes of ssh's stderr kept for classification (the tail is what matters)."""
DRAIN_TIMEOUT = 1.0
"""How long after ssh exits we wait for the last pty and stderr bytes."""


@final
class SshLink:
    """A connected ssh client on a pty."""

    def __init__(
        self, proc: PtyProcess, request: LinkRequest, markers: Markers, state: PreservedState
    ) -> None:
        self._proc = proc
        self._request = request
        self._markers = markers
        self._state = state
        self._scanner = MarkerScanner((markers.ready, markers.gone))
        self._osc7 = Osc7Scanner()
        self._stderr = bytearray()
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

    @property
    def stderr_text(self) -> str:
        """What ssh itself said so far (never the remote program's output)."""
        return self._stderr.decode("utf-8", errors="replace")

    # -- connect -------------------------------------------------------------------------------

    async def wait_ready(self, deadline: float, connect_timeout: float) -> LinkError | None:
        """None once the remote shell is up; else the typed `LinkError` to raise.

        Returned, not raised, so the caller can raise it outside its nursery
        (where it would be wrapped in an exception group).
        """
        with trio.move_on_at(deadline):
            await self._settled.wait()
        if self._scanner.found == self._markers.ready:
            return None
        pre = self._scanner.before.decode("utf-8", errors="replace").strip()
        if self._scanner.found == self._markers.gone:
            return ReattachUnavailableError(f"tmux session {self._state.handle!r} is gone")
        if self.ended is not None:
            remote = f"remote said: {pre[-300:]}" if pre else ""
            return error_for(self.ended, remote)
        stderr = "; ".join(self.stderr_text.split("\n")[-3:]).strip("; \r")
        return LinkError(
            f"remote shell not ready within {connect_timeout}s" + (f" (ssh: {stderr})" if stderr else ""),
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
                if data and self._scanner.found == self._markers.ready:
                    self._on_output(data)
        finally:
            self._pty_done.set()

    def _settle_on_marker(self) -> None:
        if self._scanner.found is not None:
            self._settled.set()

    def _on_output(self, data: bytes) -> None:
        self._request.report_output(data)
        for cwd in self._osc7.feed(data):
            if cwd != self._state.cwd:
                self._state = attrs.evolve(self._state, cwd=cwd)
                self._request.report_state(self._state)

    async def pump_stderr(self) -> None:
        try:
            while True:
                try:
                    data = await self._proc.stderr.receive_some(4096)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                self._stderr += data
                del self._stderr[:-STDERR_KEPT]
        finally:
            self._stderr_done.set()

    async def watch_exit(self) -> None:
        """When ssh exits: drain, classify from status + stderr, and report the drop once."""
        returncode = await self._proc.process.wait()
        with trio.move_on_after(DRAIN_TIMEOUT):
            await self._stderr_done.wait()
            await self._pty_done.wait()
        connected = self._scanner.found == self._markers.ready
        self.ended = classify_exit(returncode, self.stderr_text, connected=connected)
        self._settled.set()
        if connected and not self.closing:
            self._request.report_closed(self.ended)
