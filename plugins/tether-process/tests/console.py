"""Drive one process link the way the engine will: its output into an output log, its marks into runs.

`open_console` opens a real `ProcessBackend` link on a real pty and wires its
reports into a `tether.ConsoleOutput`, exactly as the supervisor is meant to
(see the module docstring of tether.rules._console). Tests then type, run
commands and read the log with positions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

import tether
from tether import ConnectMode, ConsoleOutput, LinkRequest, OutputLog, PeerMark, PreservedState, RunResult
from tether_process import ProcessBackend, ProcessLink


@attrs.define(eq=False)
class Console:
    """One link and its output as the engine keeps it."""

    output: ConsoleOutput
    link: ProcessLink | None = None
    changed: trio.Event = attrs.field(factory=trio.Event)
    results: dict[str, RunResult] = attrs.field(factory=dict)
    closed: tether.Disconnect | None = None
    states: list[PreservedState] = attrs.field(factory=list)

    @property
    def log(self) -> OutputLog:
        return self.output.log

    def take(self, data: bytes) -> None:
        _, done = self.output.output(data)
        self._note(done)

    def take_at(self, mark: PeerMark, data: bytes) -> None:
        _, _, done = self.output.output_at(mark, data)
        self._note(done)

    def _note(self, done: list[RunResult]) -> None:
        for result in done:
            self.results[result.nonce] = result
        self.changed.set()
        self.changed = trio.Event()

    async def until(self, predicate: Any, within: float = 15.0) -> None:
        with trio.fail_after(within):
            while not predicate():
                await self.changed.wait()

    async def prompt(self) -> str:
        """Wait until tether's integration reported a prompt; the shell's name."""
        await self.until(lambda: self.output.shell is not None)
        assert self.output.shell is not None
        return self.output.shell

    async def send(self, data: bytes) -> None:
        assert self.link is not None
        await self.link.send(data)

    async def run(self, command: str, within: float = 15.0) -> tuple[RunResult, bytes]:
        """Type `command` as `run` does; its result and the exact bytes of its output."""
        line, tracker = self.output.start_run(command)
        await self.send(line)
        await self.until(lambda: tracker.nonce in self.results, within)
        result = self.results[tracker.nonce]
        return result, self.between(result.output_start, result.output_stop)

    def between(self, start: int, stop: int) -> bytes:
        read = self.log.read(start, stop - start) if stop > start else None
        return read.data if read is not None else b""

    def everything(self) -> bytes:
        return self.log.read(0, 1 << 30).data


def request_for(console: Console, spec: tether.SessionSpec, mode: ConnectMode = ConnectMode.FRESH,
                state: PreservedState | None = None) -> LinkRequest:
    def closed(disconnect: tether.Disconnect) -> None:
        console.closed = disconnect
        console.output.link_ended()
        console._note([])

    return LinkRequest(
        spec=spec, mode=mode, state=state, history=b"", deadline=trio.current_time() + 20, connect_timeout=20,
        keepalive_interval=0, report_closed=closed, report_output=console.take,
        report_state=console.states.append, report_output_at=console.take_at, resume=console.log.resume,
    )


@asynccontextmanager
async def open_console(backend: ProcessBackend, spec: tether.SessionSpec, console: Console | None = None,
                       mode: ConnectMode = ConnectMode.FRESH, state: PreservedState | None = None,
                       ) -> AsyncIterator[Console]:
    """A live link for `spec`; pass an earlier console to re-attach into the same log."""
    console = console if console is not None else Console(ConsoleOutput(OutputLog()))
    console.closed = None
    async with backend.open_link(request_for(console, spec, mode, state)) as link:
        console.link = link
        yield console
