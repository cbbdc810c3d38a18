"""stdin and stdout as Trio streams for the SDK's stdio transport, so a stop is never stuck in a thread.

The SDK's `mcp.server.stdio.stdio_server` reads stdin in a worker thread,
which no cancellation reaches: on SIGTERM the server would hang until the
client wrote another line. It takes explicit streams instead; these are the
process's standard descriptors as Trio `FdStream`s, which cancel at once.
Like the SDK's own claim, fd 0 then reads the null device and fd 1 writes to
stderr, so a child process or a stray print can never corrupt the protocol
stream. Only pipes and sockets (what MCP clients give) are used so: a
regular file cannot be polled, and a terminal shared with the shell must not
be left non-blocking; those get the SDK's threaded streams.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, final

import trio

MAX_LINE = 16 * 1024 * 1024
"""Longest message taken from the client; a longer line ends the connection."""


@final
class LineReader:
    """Newline-delimited messages from a stream, as text."""

    def __init__(self, stream: trio.lowlevel.FdStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> str:
        while True:
            cut = self._buffer.find(b"\n")
            if cut >= 0:
                line = bytes(self._buffer[: cut + 1])
                del self._buffer[: cut + 1]
                return line.decode("utf-8", "replace")
            if len(self._buffer) > MAX_LINE:
                raise StopAsyncIteration
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                if self._buffer:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line.decode("utf-8", "replace")
                raise StopAsyncIteration
            self._buffer += chunk


@final
class LineWriter:
    """What the SDK's writer calls: ``write`` a message, then ``flush``."""

    def __init__(self, stream: trio.lowlevel.FdStream) -> None:
        self._stream = stream

    async def write(self, text: str) -> None:
        await self._stream.send_all(text.encode("utf-8"))

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()


def _pollable(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


@asynccontextmanager
async def standard_streams() -> AsyncIterator[tuple[Any, Any]]:
    """``(stdin, stdout)`` for `stdio_server`: Trio streams over private copies of fds 0 and 1,
    or ``(None, None)`` (the SDK's own) when either is not a pipe or socket."""
    if not (_pollable(0) and _pollable(1)):
        yield None, None
        return
    wire_in, wire_out = os.dup(0), os.dup(1)
    saved_in, saved_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    reader = trio.lowlevel.FdStream(wire_in)
    writer = trio.lowlevel.FdStream(wire_out)
    try:
        yield LineReader(reader), LineWriter(writer)
    finally:
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)
        with trio.CancelScope(shield=True):
            await reader.aclose()
            await writer.aclose()
