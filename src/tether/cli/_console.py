"""`tether tail`, `send`, `exec`, `reconnect`, `add` and `remove`: drive the daemon's sessions.

Every command talks to the daemon through the typed client
(`tether.server._client`), never through JSON of its own. `tail -f` follows
a session's output log with server-side waits (``read`` with ``wait``) and,
when the daemon goes away, reconnects and continues from its cursor: no byte
twice, every loss said (docs/cli.md).
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from ..rules._backoff import retry_delay
from ..rules._console import RunOutcome
from ..rules._errors import (
    ConfigError,
    CursorError,
    InvalidConfigError,
    SessionNotFoundError,
    SupervisorClosedError,
    UnknownBackendError,
)
from ..rules._keys import encode_keys
from ..rules._output import LogRead, Loss
from ..rules._policy import ReconnectPolicy
from ..server._client import CannotConnectError, ConnectionLostError, DaemonClient, DaemonEndpoint, open_client
from ._common import EXIT_FAILURE, EXIT_LOST, EXIT_OK, EXIT_TIMEOUT, DaemonFinder, UsageError, endpoint_of
from ._console_text import TextView, describe_loss

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

logger = logging.getLogger("tether.cli")

READ_BYTES = 1 << 20
"""Bytes one read asks for."""
SEND_BYTES = 32 * 1024
"""Bytes one send carries (base64 in a /control frame of at most 64 KiB)."""
FOLLOW_WAIT = 25.0
"""Seconds one server-side wait of `tail -f` may take before it asks again."""
FOLLOW_POLICY = ReconnectPolicy(base_delay=0.2, max_delay=5.0, multiplier=2.0, max_retries=None)
"""How `tail -f` and `attach` retry their connection to the daemon: tether's own backoff."""
MAX_TIMEOUT = 3600.0


def add_parsers(sub: Any, common: argparse.ArgumentParser, client: argparse.ArgumentParser) -> None:
    """The commands of this module, on the `tether` parser."""
    parents = [common, client]
    tail = sub.add_parser("tail", parents=parents, help="print a session's output; -f follows it")
    tail.add_argument("session", help="session id")
    tail.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new output (across daemon restarts, from where it was)")
    tail.add_argument("--since", type=int, metavar="OFFSET", help="from this log offset (default: the last lines)")
    tail.add_argument("-n", "--lines", type=int, default=10, metavar="N",
                      help="without --since: start N lines before the end (default 10)")
    tail.add_argument("--raw", action="store_true",
                      help="the exact bytes (terminal sequences and all); losses are said on stderr")
    tail.add_argument("--show-offset", action="store_true",
                      help="end with the offset to continue from (on stderr): tether tail --since OFFSET")
    send = sub.add_parser("send", parents=parents, help="type into a session")
    send.add_argument("session", help="session id")
    send.add_argument("text", nargs="?", help="text to type (as UTF-8)")
    send.add_argument("--enter", action="store_true", help="press Enter after the text")
    send.add_argument("--keys", nargs="+", metavar="KEY",
                      help="named keys instead of text: enter, ctrl-c, up, tab, f1, C-x ...")
    send.add_argument("--data-stdin", action="store_true", help="send the bytes read from stdin, exactly")
    exec_ = sub.add_parser("exec", parents=parents,
                           help="run a command in a session's shell; print its output, exit with its status")
    exec_.add_argument("session", help="session id")
    exec_.add_argument("words", nargs="*", metavar="CMD",
                       help="the command line, after -- (its words are joined by spaces, as ssh does)")
    exec_.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                       help="wait at most this long (default 30); then exit 124 with a token for --resume")
    exec_.add_argument("--resume", metavar="TOKEN", help="wait for a command an earlier exec left running")
    reconnect = sub.add_parser("reconnect", parents=parents, help="reconnect a session now (also a failed one)")
    reconnect.add_argument("session", help="session id")
    reconnect.add_argument("--strategy", help="the strategy to use (default: the session's own choice)")
    reconnect.add_argument("--no-wait", action="store_true", help="ask, and do not wait for the attempt")
    add = sub.add_parser("add", parents=parents, help="register a session with the running daemon")
    add.add_argument("session", nargs="?", help="the new session's id (or give --file)")
    add.add_argument("--backend", help="process, ssh, websocket, ...")
    add.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                     help="a backend option; VALUE is read as TOML when it can be (30, true, [\"bash\"]), "
                     "else as text (repeatable)")
    add.add_argument("-p", "--policy", action="append", default=[], metavar="KEY=VALUE",
                     help="a policy setting, e.g. max_retries=5 (repeatable; dotted keys nest)")
    add.add_argument("--file", metavar="TOML",
                     help="the session(s) from a TOML file: one table (id, backend, options, policy) "
                     "or [[sessions]] entries like a config's")
    remove = sub.add_parser("remove", parents=parents, help="unregister sessions (their programs end)")
    remove.add_argument("sessions", nargs="+", metavar="SESSION", help="session ids")


# -- tail -----------------------------------------------------------------------------------------


class _Sink:
    """Where `tail` writes: exact bytes (losses on stderr), or text with losses as lines of their own."""

    def __init__(self, raw: bool) -> None:
        self.raw = raw
        self.text = None if raw else TextView()

    def data(self, data: bytes) -> None:
        if self.text is None:
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(self.text.feed(data))

    def loss(self, loss: Loss) -> None:
        if self.text is None:
            sys.stdout.buffer.flush()
            print(f"tether: {describe_loss(loss)}", file=sys.stderr, flush=True)
        else:
            sys.stdout.write(self.text.note(describe_loss(loss)))

    def note(self, message: str) -> None:
        if self.text is None:
            print(f"tether: {message}", file=sys.stderr, flush=True)
        else:
            sys.stdout.write(self.text.note(message))
            sys.stdout.flush()

    def put(self, read: LogRead) -> None:
        for piece in read.pieces():
            if isinstance(piece, Loss):
                self.loss(piece)
            else:
                self.data(piece[1])
        sys.stdout.flush()

    def finish(self) -> None:
        if self.text is not None:
            sys.stdout.write(self.text.finish())
        sys.stdout.flush()


async def last_lines_start(client: DaemonClient, session_id: str, lines: int) -> tuple[int, str]:
    """The log offset `lines` lines before the end of what the session keeps, and the log's id."""
    first = await client.read(session_id, None, 1)
    log_id, end = first.log_id, first.end
    if lines <= 0:
        return end, log_id
    starts: collections.deque[int] = collections.deque(maxlen=lines)
    cursor = first.since
    starts.append(cursor)
    while cursor < end:
        read = await client.read(session_id, cursor, min(READ_BYTES, end - cursor), log_id=log_id)
        for piece in read.pieces():
            if isinstance(piece, Loss):
                continue
            position, data = piece
            at = data.find(b"\n")
            while at >= 0:
                if position + at + 1 < end:
                    starts.append(position + at + 1)
                at = data.find(b"\n", at + 1)
        if read.next <= cursor:
            break
        cursor = read.next
    return starts[0], log_id


def cmd_tail(args: argparse.Namespace) -> int:
    if args.since is not None and args.since < 0:
        raise UsageError(f"--since must be an offset >= 0, got {args.since}")
    sink = _Sink(args.raw)
    cursor: int | None = args.since
    log_id: str | None = None

    async def once(client: DaemonClient) -> None:
        nonlocal cursor, log_id
        if cursor is None:
            cursor, log_id = await last_lines_start(client, args.session, args.lines)
        while True:
            try:
                read = await client.read(args.session, cursor, READ_BYTES, log_id=log_id,
                                         wait=FOLLOW_WAIT if args.follow else 0.0)
            except CursorError:
                if not args.follow or log_id is None:
                    raise
                sink.note(f"{args.session} has a new output log (registered again); following it from its start")
                cursor, log_id = None, None
                cursor = (await client.read(args.session, None, 1)).since
                continue
            log_id = read.log_id
            sink.put(read)
            cursor = read.next
            if not args.follow and read.next >= read.end:
                return

    trio.run(_with_reconnects, args, once, sink.note if args.follow else None)
    sink.finish()
    if args.show_offset:
        print(f"tether: next offset {cursor}", file=sys.stderr)
    return EXIT_OK


async def _with_reconnects(
    args: argparse.Namespace,
    body: Callable[[DaemonClient], Any],
    note: Callable[[str], None] | None,
) -> None:
    """Run `body` on a client; with `note` (following), reconnect when the daemon goes away,
    with tether's backoff, finding the daemon anew each time (it may listen elsewhere now)."""
    failures = 0
    connected_once = False
    rng = random.Random()
    finder = DaemonFinder(args)
    while True:
        try:
            endpoint: DaemonEndpoint = finder.find()
            async with open_client(endpoint) as client:
                if failures and note is not None:
                    note(f"reconnected to the daemon at {endpoint.url}; continuing")
                failures = 0
                connected_once = True
                await body(client)
                return
        except (CannotConnectError, ConnectionLostError, SupervisorClosedError) as exc:
            # SupervisorClosedError: the daemon cut a request short because it is stopping
            if note is None or not connected_once:  # no daemon to begin with: say so (exit 3)
                raise
            failures += 1
            if failures == 1:
                note(f"lost the daemon ({_why(exc)}); reconnecting")
            await trio.sleep(retry_delay(FOLLOW_POLICY, failures, rng))


def _why(exc: Exception) -> str:
    if isinstance(exc, SupervisorClosedError) or (isinstance(exc, ConnectionLostError) and exc.code == 1001):
        return "it is stopping"
    return str(exc)


# -- send ------------------------------------------------------------------------------------------


def cmd_send(args: argparse.Namespace) -> int:
    given = [name for name, on in (("TEXT", args.text is not None), ("--keys", bool(args.keys)),
                                   ("--data-stdin", args.data_stdin)) if on]
    if len(given) != 1:
        raise UsageError(f"give exactly one of TEXT, --keys or --data-stdin (got {', '.join(given) or 'none'})")
    if args.enter and args.text is None:
        raise UsageError("--enter goes with TEXT")
    if args.keys:
        encode_keys(args.keys, path="--keys")  # an unknown key is a usage error, said before connecting
        data = None
    elif args.data_stdin:
        data = sys.stdin.buffer.read()
    else:
        data = args.text.encode("utf-8", "surrogateescape") + (b"\r" if args.enter else b"")

    async def main() -> None:
        async with open_client(endpoint_of(args)) as client:
            if data is None:
                await client.send(args.session, keys=args.keys)
                return
            for start in range(0, len(data), SEND_BYTES):
                await client.send(args.session, data[start : start + SEND_BYTES])

    trio.run(main)
    return EXIT_OK


# -- exec ------------------------------------------------------------------------------------------


def split_command_line(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """``tether exec SESSION [OPTIONS] -- CMD...``: the arguments before ``--`` and the command's
    words after it (argparse alone cannot take options between the session and ``--``)."""
    args = list(argv)
    command = next((i for i, word in enumerate(args) if not word.startswith("-")), None)
    if command is None or args[command] != "exec" or "--" not in args[command:]:
        return args, None
    cut = args.index("--", command)
    return args[:cut], args[cut + 1 :]



def resume_command(args: argparse.Namespace, token: str) -> str:
    """The line that waits for a run later, naming the daemon the way this exec found it
    (``--state-dir``, ``--config``, ``--url``; never ``--token``: a secret), so it works as printed."""
    words = ["tether", "exec"]
    for flag, value in (("--state-dir", args.state_dir), ("--config", args.config), ("--url", args.url)):
        if value:
            words += [flag, value]
    return shlex.join([*words, args.session, "--resume", token])


def cmd_exec(args: argparse.Namespace) -> int:
    words = list(args.words)
    if bool(words) == bool(args.resume):
        raise UsageError("give the command after -- (tether exec SESSION -- CMD...), or --resume TOKEN")
    if not 0 < args.timeout <= MAX_TIMEOUT:
        raise UsageError(f"--timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, got {args.timeout:g}")
    command = " ".join(words)

    async def main() -> int:
        async with open_client(endpoint_of(args)) as client:
            if args.resume:
                outcome = await client.wait_run(args.session, args.resume, budget=args.timeout)
            else:
                outcome = await client.run(args.session, command, budget=args.timeout)
            if not outcome.done:
                shown = f"`{command}`" if command else "the command"
                print(f"tether: {shown} is still running after {args.timeout:g}s; wait for it with: "
                      f"{resume_command(args, outcome.token)}", file=sys.stderr, flush=True)
                return EXIT_TIMEOUT
            try:
                await _print_output(client, args.session, outcome)
            except SessionNotFoundError:
                if outcome.lost is None:
                    raise
                print(f"tether: {outcome.lost}", file=sys.stderr, flush=True)  # its output went with it
                return EXIT_LOST
            if outcome.lost is not None:
                print(f"tether: {outcome.lost}; its output is above", file=sys.stderr, flush=True)
                return EXIT_LOST
            if outcome.exit_status is None:
                print("tether: the command ended without an exit status", file=sys.stderr)
                return EXIT_FAILURE
            return outcome.exit_status

    return trio.run(main)


async def _print_output(client: DaemonClient, session_id: str, outcome: RunOutcome) -> None:
    """The run's output range on stdout, each loss in it on stderr."""
    cursor = outcome.output_start
    while cursor < outcome.output_stop:
        # the daemon answers a run once its output is readable (engine/_console.py `wait_run`)
        read = await client.read(session_id, cursor, min(READ_BYTES, outcome.output_stop - cursor))
        for piece in read.pieces():
            if isinstance(piece, Loss):
                sys.stdout.buffer.flush()
                print(f"tether: {describe_loss(piece)}", file=sys.stderr, flush=True)
            else:
                sys.stdout.buffer.write(piece[1])
        if read.next <= cursor:
            break
        cursor = read.next
    sys.stdout.buffer.flush()


# -- reconnect, add, remove ------------------------------------------------------------------------


def cmd_reconnect(args: argparse.Namespace) -> int:
    async def main() -> int:
        async with open_client(endpoint_of(args)) as client:
            attempt = await client.force_reconnect(args.session, args.strategy, wait=not args.no_wait)
        if attempt is None:
            print(f"{args.session}: reconnect requested")
            return EXIT_OK
        used = f" (via {attempt.used_strategy})" if attempt.used_strategy else ""
        if not attempt.success:
            print(f"tether: {args.session}: {attempt.strategy}{used} failed: {attempt.error}", file=sys.stderr)
            return EXIT_FAILURE
        program = "the same program" if attempt.same_program else "a new program"
        print(f"{args.session}: reconnected by {attempt.strategy}{used} in {attempt.duration:.2f}s ({program})")
        return EXIT_OK

    return trio.run(main)


def toml_value(text: str) -> Any:
    """A command-line value: TOML when it reads as one (``30``, ``true``, ``["bash"]``), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _assignments(pairs: list[str], flag: str) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} takes KEY=VALUE, got {pair!r}")
        *parents, leaf = key.strip().split(".")
        node = table
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"{flag} {key}: {part} is already a value, not a table")
            node = child
        node[leaf] = toml_value(value)
    return table


def sessions_to_add(args: argparse.Namespace) -> tuple[str, list[Mapping[str, Any]]]:
    """The session tables `tether add` registers, and where they came from (for error messages)."""
    if args.file:
        if args.session or args.backend or args.option or args.policy:
            raise UsageError("--file takes the whole session from the file: leave out SESSION, --backend, -o and -p")
        try:
            data = tomllib.loads(Path(args.file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"{args.file}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidConfigError(args.file, [ConfigError("", f"not TOML: {exc}")]) from None
        if "sessions" in data:
            extra = sorted(set(data) - {"sessions"})
            if extra or not isinstance(data["sessions"], list):
                raise InvalidConfigError(args.file, [ConfigError(
                    ", ".join(extra) or "sessions", "a file of [[sessions]] entries holds nothing else")])
            return args.file, list(data["sessions"])
        return args.file, [data]
    if not args.session or not args.backend:
        raise UsageError("give SESSION and --backend (tether add ID --backend process -o command=bash), or --file")
    table: dict[str, Any] = {"id": args.session, "backend": args.backend}
    if args.option:
        table["options"] = _assignments(args.option, "-o")
    if args.policy:
        table["policy"] = _assignments(args.policy, "-p")
    return "tether add", [table]


def cmd_add(args: argparse.Namespace) -> int:
    source, tables = sessions_to_add(args)

    async def main() -> None:
        async with open_client(endpoint_of(args)) as client:
            for index, table in enumerate(tables):
                try:
                    state = await client.register(table)
                except (InvalidConfigError, UnknownBackendError) as exc:  # a config error (exit 2): whose table
                    where = f"{source} sessions[{index}]" if len(tables) > 1 else source
                    errors = exc.errors if isinstance(exc, InvalidConfigError) else [ConfigError("backend", str(exc))]
                    raise InvalidConfigError(where, errors) from None
                print(f"{state.id}: registered ({state.backend} -> {state.target}), {state.status.value}")

    trio.run(main)
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    async def main() -> None:
        async with open_client(endpoint_of(args)) as client:
            for session_id in args.sessions:
                await client.unregister(session_id)
                print(f"{session_id}: unregistered")

    trio.run(main)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "tail": cmd_tail, "send": cmd_send, "exec": cmd_exec, "reconnect": cmd_reconnect, "add": cmd_add,
    "remove": cmd_remove,
}
