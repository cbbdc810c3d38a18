"""`tether attach SESSION`: an interactive terminal on a supervised session, through ``/attach``.

The user's terminal goes to raw mode, so every key travels as the bytes it
makes, and the console's bytes are written back unchanged. The window size
follows (SIGWINCH becomes a resize). One key detaches (Ctrl-] unless
``--detach-key`` says otherwise); the session keeps running.

Nothing stops attach but the user. When the session's link drops, the daemon
says so on the stream and attach shows a short note; the output after the
reconnect follows (with a note for any output lost). When the daemon goes
away, attach notes it, reconnects with tether's backoff (finding the daemon
anew: it may listen on another port now) and continues from its cursor, so
no byte is shown twice, and every byte the daemon could not keep is said.
Input typed while there is nowhere to send it is not kept for later: a note
says it was not delivered.

Attach needs a terminal on stdin, as tmux does: piped input would be typed
blindly at whatever the session shows, raced against the connection, and
its end would detach. `tether send --data-stdin` and `tether exec` are the
commands for input from a pipe; attach without a terminal says so (exit 1),
after checking that the session exists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import random
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Any

import trio

from ..rules._backoff import retry_delay
from ..rules._classify import single_error
from ..rules._errors import ConfigError, SessionNotFoundError
from ..rules._keys import encode_keys
from ..rules._output import Loss
from ..rules._state import SessionStatus
from ..rules._wire import event_to_dict
from ..server._attach_client import AttachStream, Ended, Output, Refused, StatusChange, open_attach
from ..server._client import (
    AuthRejectedError,
    CannotConnectError,
    ConnectionLostError,
    HandshakeRejectedError,
    open_client,
)
from ._common import EXIT_FAILURE, EXIT_OK, DaemonFinder, UsageError, endpoint_of, err
from ._console import FOLLOW_POLICY
from ._console_text import describe_loss
from ._render import describe, printable

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

DETACH_KEY = "ctrl-]"
REPLAY_BYTES = 4096
NOTED_EVENTS = frozenset({
    "session.disconnected", "reconnect.succeeded", "reconnect.failed", "reconnect.exhausted", "session.failed",
    "session.survivor",
})


def add_parser(sub: Any, common: argparse.ArgumentParser, client: argparse.ArgumentParser) -> None:
    attach = sub.add_parser(
        "attach", parents=[common, client],
        help="an interactive terminal on a session; Ctrl-] detaches",
        description="An interactive terminal on a supervised session, through the daemon. "
        "Detach with Ctrl-] (--detach-key changes it); the session keeps running. Attach stays "
        "open while the session reconnects and while the daemon restarts, and continues from where "
        "it was, showing no byte twice and saying where output was lost.",
    )
    attach.add_argument("session", help="session id")
    attach.add_argument("--detach-key", default=DETACH_KEY, metavar="KEY",
                        help="the key that detaches (default ctrl-]; any one-byte key such as ctrl-q or "
                        "ctrl-\\; 'none': only closing the terminal or SIGTERM ends attach)")
    attach.add_argument("--replay", type=int, default=REPLAY_BYTES, metavar="BYTES",
                        help=f"first show up to this much recent output, from a line start (default "
                        f"{REPLAY_BYTES}; 0: none)")
    attach.add_argument("--since", type=int, metavar="OFFSET", help="first show the output from this log offset")


def detach_byte(name: str) -> int | None:
    """The byte the detach key sends, None for ``none``; `UsageError` for a key that is not one byte."""
    if name.strip().lower() == "none":
        return None
    try:
        data = encode_keys([name], path="--detach-key")
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if len(data) != 1:
        raise UsageError(f"--detach-key: {name!r} sends {len(data)} bytes; pick a one-byte key such as ctrl-]")
    return data[0]


@contextlib.contextmanager
def raw_terminal(fd: int, others: tuple[int, ...] = ()) -> Iterator[bool]:
    """The terminal on `fd` in raw mode (when it is one), put back as it was on the way out; the
    blocking flags of `fd` and `others` (trio's streams set O_NONBLOCK) are put back too."""
    flags = {f: fcntl.fcntl(f, fcntl.F_GETFL) for f in (fd, *others)}
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    try:
        if saved is not None:
            tty.setraw(fd, termios.TCSANOW)
        yield saved is not None
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for f, flag in flags.items():
            with contextlib.suppress(OSError):
                fcntl.fcntl(f, fcntl.F_SETFL, flag)


class _Screen:
    """Writes to the user: the console's bytes as they are, and notes on lines of their own."""

    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal
        self._out: trio.lowlevel.FdStream | None = trio.lowlevel.FdStream(os.dup(1)) if terminal else None
        self._lock = trio.Lock()
        self._at_line_start = True

    async def write(self, data: bytes) -> None:
        if not data:
            return
        async with self._lock:
            await self._write(data)
            self._at_line_start = data.endswith(b"\n")

    async def note(self, message: str) -> None:
        """``[tether: ...]`` on a line of its own (on stderr when stdout is not a terminal)."""
        text = printable(message)
        if not self.terminal:
            print(f"tether: {text}", file=sys.stderr, flush=True)
            await trio.lowlevel.checkpoint()
            return
        async with self._lock:
            lead = b"" if self._at_line_start else b"\r\n"
            await self._write(lead + f"\x1b[7m[tether: {text}]\x1b[27m\r\n".encode("utf-8", "replace"))
            self._at_line_start = True

    async def _write(self, data: bytes) -> None:
        if self._out is not None:
            await self._out.send_all(data)
        else:
            await trio.to_thread.run_sync(_write_stdout, data)

    async def aclose(self) -> None:
        if self._out is not None:
            await self._out.aclose()


def _write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


class _Attacher:
    """One `tether attach`: the keyboard, the window size, the signals and the daemon connection."""

    def __init__(self, args: argparse.Namespace, screen: _Screen, terminal: bool) -> None:
        self.args = args
        self.sid: str = args.session
        self.screen = screen
        self.terminal = terminal
        self.detach = detach_byte(args.detach_key)
        self.stream: AttachStream | None = None
        self.cursor: int | None = args.since
        self.log_id: str | None = None
        self.result = EXIT_OK
        self._refusal_noted = False
        self._offline_noted = False

    async def run(self) -> int:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keyboard, nursery.cancel_scope)
                nursery.start_soon(self._signals, nursery.cancel_scope)
                if self.terminal:
                    nursery.start_soon(self._window)
                self.result = await self._follow()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # one error (no such session, no daemon): itself, said plainly
            single = single_error(group)
            if single is None:
                raise
            raise single from None
        return self.result

    # -- the daemon ------------------------------------------------------------------------------

    async def _follow(self) -> int:
        failures = 0
        attached_once = False
        rng = random.Random()
        finder = DaemonFinder(self.args)
        while True:
            replay = None if self.cursor is not None else self.args.replay
            try:
                endpoint = finder.find()
                async with open_attach(endpoint, session_id=self.sid, since=self.cursor, tail=replay,
                                       log_id=self.log_id) as stream:
                    await self._attached(stream, failures, attached_once)
                    attached_once, failures = True, 0
                    ended = await self._show(stream)
                    await self.screen.note(f"{self.sid} is gone ({ended.reason}); attach ends")
                    return EXIT_FAILURE
            except AuthRejectedError:
                raise
            except HandshakeRejectedError as exc:
                if exc.status == 404 and exc.type == "not-found":
                    raise SessionNotFoundError(self.sid) from None
                if exc.type != "bad-cursor" or self.log_id is None:
                    raise
                await self.screen.note(f"{self.sid} has a new output log (it was registered again); "
                                       "showing it from its end")
                self.cursor, self.log_id = None, None
            except (CannotConnectError, ConnectionLostError) as exc:
                self.stream = None
                if not attached_once:
                    raise
                failures += 1
                if failures == 1:
                    why = "it is stopping" if isinstance(exc, ConnectionLostError) and exc.code == 1001 else str(exc)
                    await self.screen.note(f"lost the daemon ({why}); reconnecting")
                await trio.sleep(retry_delay(FOLLOW_POLICY, failures, rng))

    async def _attached(self, stream: AttachStream, failures: int, attached_once: bool) -> None:
        self.stream, self.log_id = stream, stream.log_id
        self._offline_noted = False
        if failures or attached_once:
            await self.screen.note(f"back with the daemon; continuing at offset {stream.since:,}")
        else:
            key = self.args.detach_key if self.detach is not None else "closing the terminal"
            await self.screen.note(f"attached to {self.sid} ({stream.status.value}); {key} detaches")
        if stream.status is not SessionStatus.CONNECTED:
            await self.screen.note(f"{self.sid} is {stream.status.value}; its output follows when it connects")
        await self._send_size(stream)

    async def _show(self, stream: AttachStream) -> Ended:
        while True:
            item = await stream.receive()
            if isinstance(item, Output):
                await self.screen.write(item.data)
            elif isinstance(item, Loss):
                await self.screen.note(describe_loss(item))
            elif isinstance(item, StatusChange):
                await self._status(item)
            elif isinstance(item, Refused):
                if not self._refusal_noted:
                    self._refusal_noted = True
                    what = f"{item.size} byte{'s' if item.size != 1 else ''} of input" if item.size else "a resize"
                    await self.screen.note(f"{what} not delivered: {item.message}")
            elif isinstance(item, Ended):
                return item
            self.cursor = stream.cursor

    async def _status(self, change: StatusChange) -> None:
        if change.status is SessionStatus.CONNECTED:
            self._refusal_noted = False
        event = change.event
        if event is None or event.type not in NOTED_EVENTS:
            return
        if event.type == "reconnect.succeeded":
            program = "the same program continues" if getattr(event, "same_program", False) else \
                "a new program (what ran before is gone)"
            await self.screen.note(f"{self.sid} reconnected: {program}")
            return
        suffix = "; reconnecting" if event.type == "session.disconnected" else ""
        if event.type in ("session.failed", "reconnect.exhausted"):
            suffix = f"; `tether reconnect {self.sid}` tries again"
        await self.screen.note(f"{self.sid} {describe(event_to_dict(event))}{suffix}")

    # -- the user's side -------------------------------------------------------------------------

    async def _keyboard(self, scope: trio.CancelScope) -> None:
        reader = trio.lowlevel.FdStream(os.dup(0)) if self.terminal else None
        try:
            while True:
                if reader is not None:
                    data = await reader.receive_some(4096)
                else:
                    data = await trio.to_thread.run_sync(os.read, 0, 4096, abandon_on_cancel=True)
                if not data:  # stdin ended (not a terminal): nothing more to type
                    break
                cut = data.find(self.detach) if self.detach is not None else -1
                await self._type(data if cut < 0 else data[:cut])
                if cut >= 0:
                    await self.screen.note(f"detached from {self.sid} (it keeps running)")
                    break
        finally:
            if reader is not None:
                await reader.aclose()
        self.result = EXIT_OK
        scope.cancel()

    async def _type(self, data: bytes) -> None:
        if not data:
            return
        stream = self.stream
        if stream is None:
            if not self._offline_noted:
                self._offline_noted = True
                await self.screen.note("not connected to the daemon: input not sent")
            return
        with contextlib.suppress(ConnectionLostError):  # the daemon loop notices and reconnects
            await stream.send(data)

    async def _window(self) -> None:
        with trio.open_signal_receiver(signal.SIGWINCH) as changes:
            async for _ in changes:
                if self.stream is not None:
                    await self._send_size(self.stream)

    async def _send_size(self, stream: AttachStream) -> None:
        if not self.terminal:
            return
        try:
            size = os.get_terminal_size(0)
        except OSError:
            return
        with contextlib.suppress(ConnectionLostError):
            await stream.resize(size.lines, size.columns)

    async def _signals(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as received:
            async for signum in received:
                await self.screen.note(f"{signal.Signals(signum).name}: detached from {self.sid}")
                self.result = EXIT_OK
                scope.cancel()
                return


def cmd_attach(args: argparse.Namespace) -> int:
    if args.replay < 0 or (args.since is not None and args.since < 0):
        raise UsageError("--replay and --since take numbers >= 0")
    detach_byte(args.detach_key)  # a bad key is a usage error before the terminal changes
    if not os.isatty(0):
        return trio.run(_refuse_without_terminal, args)

    async def main(terminal: bool) -> int:
        screen = _Screen(terminal)
        try:
            return await _Attacher(args, screen, terminal).run()
        finally:
            await screen.aclose()

    with raw_terminal(0, (1,) if os.isatty(1) else ()) as terminal:
        return trio.run(main, terminal and os.isatty(1))


async def _refuse_without_terminal(args: argparse.Namespace) -> int:
    """Attach without a terminal on stdin: the session must exist (else `SessionNotFoundError`), then
    the commands that take input from a pipe are named (exit 1)."""
    async with open_client(endpoint_of(args)) as client:
        await client.read(args.session, None, 1)
    err(f"attach needs a terminal on stdin (it is not one); to type piped input into {args.session} use "
        f"`tether send {args.session} --data-stdin`, to run a command `tether exec {args.session} -- CMD`")
    return EXIT_FAILURE
