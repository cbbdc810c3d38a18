"""`WebSocketLink`: one open WebSocket to a terminal, its reader and its pinger."""

from __future__ import annotations

from typing import final

import attrs
import trio
import trio_websocket

from tether import (
    CommandMark,
    CwdReport,
    Disconnect,
    DisconnectReason,
    Found,
    LinkError,
    LinkRequest,
    OscScanner,
    PreservedState,
    ShellMark,
)

from ._adapters import Adapter
from ._classify import disconnect_for_close, error_for_close
from ._options import WebSocketOptions
from ._replay import new_part

_MAX_LINE = 4096


def newest_cwd(found: list[Found]) -> str | None:
    """The last working directory among the sequences found, if any."""
    paths = [item.event.path for item in found if isinstance(item.event, CwdReport)]
    return paths[-1] if paths else None


@final
class WebSocketLink:
    """A live terminal behind a WebSocket. Made by `WebSocketBackend.open_link`."""

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        adapter: Adapter,
        request: LinkRequest,
        options: WebSocketOptions,
        *,
        state: PreservedState,
        ping_timeout: float,
        dedup_replay: bool,
    ) -> None:
        self._ws = ws
        self._adapter = adapter
        self._request = request
        self._options = options
        self._ping_timeout = ping_timeout
        self._state = state
        self._osc = OscScanner()
        self._replay_pending = dedup_replay
        """Re-attached: the first output is the server's replay, to de-duplicate."""
        self._line = bytearray()
        self._shell_reports = bool(state.extra.get("shell"))
        """The shell's integration reports its commands (OSC 6973): typed lines are not guessed at."""
        self.first_output = trio.Event()
        """Set once the peer sent any output."""

    # -- the Link contract ------------------------------------------------------------

    async def probe(self) -> None:
        """A WebSocket ping answered within ``ping_timeout``."""
        try:
            with trio.fail_after(self._ping_timeout):
                await self._ws.ping()
        except trio.TooSlowError:
            raise LinkError(
                f"no pong within {self._ping_timeout}s", reason=DisconnectReason.HEALTH_CHECK
            ) from None
        except trio_websocket.ConnectionClosed as exc:
            raise error_for_close(exc, redact=self._options.redact) from None

    def current_state(self) -> PreservedState:
        return self._state

    async def send(self, data: bytes) -> None:
        """Write input; a completed line becomes the preserved ``last_command``."""
        try:
            await self._ws.send_message(self._adapter.encode_input(data))
        except trio_websocket.ConnectionClosed as exc:
            raise error_for_close(exc, redact=self._options.redact) from None
        self._note_input(data)

    # -- extras ----------------------------------------------------------------------------

    async def resize(self, rows: int, cols: int) -> None:
        """Resize the terminal, if the protocol can."""
        message = self._adapter.encode_resize(rows, cols)
        if message is not None:
            try:
                await self._ws.send_message(message)
            except trio_websocket.ConnectionClosed as exc:
                raise error_for_close(exc, redact=self._options.redact) from None

    async def send_text(self, text: str) -> None:
        """Write a line we composed ourselves (state restore); not a user command."""
        try:
            await self._ws.send_message(self._adapter.encode_input(text.encode()))
        except trio_websocket.ConnectionClosed as exc:
            raise error_for_close(exc, redact=self._options.redact) from None

    # -- background tasks, run in the link's nursery -------------------------------------------

    async def read_messages(self) -> None:
        """Report output and state until the socket closes, then report why, once."""
        try:
            while True:
                message = await self._ws.get_message()
                frame = self._adapter.decode(message)
                if frame.output:
                    self._on_output(frame.output)
                if frame.exited:
                    self._request.report_closed(Disconnect(DisconnectReason.PROCESS_EXIT, frame.detail))
                    return
        except trio_websocket.ConnectionClosed as exc:
            code = exc.reason.code if exc.reason is not None else None
            text = exc.reason.reason if exc.reason is not None else None
            self._request.report_closed(disconnect_for_close(code, text, redact=self._options.redact))

    async def ping_forever(self, interval: float) -> None:
        """Ping every `interval`; no pong within ``ping_timeout`` ends the link as a network fault.

        A black hole shows no close at all: only a missing pong reveals it.
        """
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(self._ping_timeout) as scope:
                try:
                    await self._ws.ping()
                except trio_websocket.ConnectionClosed:
                    return  # the reader reports the close with its code
            if scope.cancelled_caught:
                self._request.report_closed(
                    Disconnect(DisconnectReason.NETWORK, f"no pong within {self._ping_timeout}s")
                )
                return

    # -- helpers -------------------------------------------------------------------------------

    def _on_output(self, data: bytes) -> None:
        if self._replay_pending:
            self._replay_pending = False
            data = new_part(self._request.history, data)
        self.first_output.set()
        if data:
            self._request.report_output(data)
        self._learn(self._osc.feed(data)[1])

    def _learn(self, found: list[Found]) -> None:
        """The cwd, the last finished command and the shell, from the marks the shell sent."""
        cwd = newest_cwd(found)
        command: str | None = None
        shell: str | None = None
        for item in found:
            event = item.event
            if isinstance(event, CommandMark):
                command = event.command or command
            elif isinstance(event, ShellMark) and event.kind == "A" and event.shell:
                shell = event.shell
        if command or shell:
            self._shell_reports = True
        self._update(cwd=cwd, last_command=command or None, shell=shell)

    def _note_input(self, data: bytes) -> None:
        """Without an integration reporting commands, a typed line is the best guess at one."""
        if self._shell_reports:
            return
        for byte in data:
            if byte in (0x0D, 0x0A):
                line = self._line.decode("utf-8", errors="replace").strip()
                self._line.clear()
                if line:
                    self._update(last_command=line)
            elif len(self._line) < _MAX_LINE:
                self._line.append(byte)

    def _update(self, *, cwd: str | None = None, last_command: str | None = None, shell: str | None = None) -> None:
        """Report what changed. The shell goes into ``extra``, so that after a restart tether knows
        a re-attached terminal still runs its integration (it shows no new prompt by itself)."""
        state = self._state
        new = attrs.evolve(
            state,
            cwd=cwd if cwd is not None else state.cwd,
            last_command=last_command if last_command is not None else state.last_command,
            extra=state.extra if shell is None else {**state.extra, "shell": shell},
        )
        if new != state:
            self._state = new
            self._request.report_state(new)
