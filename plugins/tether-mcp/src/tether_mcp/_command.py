"""``tether mcp``: serve tether's consoles to an MCP client over stdio, until stdin closes or a signal.

Found by ``tether`` through the ``tether.commands`` entry point (``tether mcp
ARGS`` runs `run_command`); the ``tether-mcp`` script is the same command for
clients that want a single executable. Exit codes follow ``tether``'s: 0 after
a clean stop, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio
from mcp.server.stdio import stdio_server

from tether import ConfigError

from ._access import AccessSettings, TetherAccess
from ._server import DEFAULT_CALL_BUDGET, ServerOptions, ToolServer, build_server
from ._stdio import standard_streams

logger = logging.getLogger("tether.mcp")

EXIT_OK = 0
EXIT_USAGE = 2


def build_parser(prog: str = "tether mcp") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve tether's consoles as MCP tools over stdio. Talks to a running `tether run` (found "
                    "through the state directory's daemon.json and token); when none runs, supervises its "
                    "sessions itself with the same SQLite state, so they persist and come back.",
    )
    parser.add_argument("--state-dir", type=Path, help="tether's state directory (default: $TETHER_STATE_DIR, "
                        "else the user's state directory, as `tether run`)")
    parser.add_argument("--url", help="a daemon's address (default: the state directory's daemon.json)")
    parser.add_argument("--token", help="the daemon's token (default: the state directory's token file)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--embedded", dest="embedded", action="store_const", const=True, default=None,
                      help="never look for a daemon: supervise here")
    mode.add_argument("--daemon-only", dest="embedded", action="store_const", const=False,
                      help="never supervise here: wait for a daemon to answer")
    parser.add_argument("--call-budget", type=float, default=DEFAULT_CALL_BUDGET, metavar="SECONDS",
                        help=f"the most any tool call takes (default {DEFAULT_CALL_BUDGET:g}; MCP clients often "
                        "give up on a call after 60 s)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="what to log on stderr (default warning)")
    return parser


async def serve(access_settings: AccessSettings, options: ServerOptions) -> None:
    """Serve MCP on stdin/stdout until the client closes stdin, or SIGTERM / SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    logger.info("%s: stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            access = TetherAccess(nursery, access_settings)
            nursery.start_soon(access.start)
            server = build_server(ToolServer(access, options))
            async with standard_streams() as (stdin, stdout), stdio_server(stdin, stdout) as (read, write):
                await server.run(read, write, server.create_initialization_options())
            nursery.cancel_scope.cancel()


def run_command(argv: Sequence[str], prog: str = "tether mcp") -> int:
    """Run ``tether mcp`` with `argv` (the arguments after ``mcp``); returns the exit code."""
    args = build_parser(prog).parse_args(list(argv))
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("mcp", "httpx", "httpcore", "trio-websocket"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        options = ServerOptions(call_budget=args.call_budget)
    except ConfigError as exc:
        print(f"{prog}: --call-budget: {exc.problem}", file=sys.stderr)
        return EXIT_USAGE
    settings = AccessSettings(state_dir=args.state_dir, url=args.url, token=args.token, embedded=args.embedded)
    trio.run(serve, settings, options)
    return EXIT_OK


def main() -> int:
    """The ``tether-mcp`` script."""
    return run_command(sys.argv[1:], prog="tether-mcp")
