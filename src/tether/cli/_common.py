"""What every `tether` command shares: exit codes, the usage error, where the daemon is."""

from __future__ import annotations

import argparse
import sys

from ..server._client import CannotConnectError, DaemonEndpoint, find_daemon
from ._config import load_config
from ._logging import add_secret

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_AUTH = 4
EXIT_TIMEOUT = 124
"""`tether exec`: the command was still running when its --timeout ran out (as GNU timeout says it)."""
EXIT_LOST = 125
"""`tether exec`: the shell ended or was replaced before the command finished; no exit status exists."""


class UsageError(Exception):
    """Bad arguments: exit code 2."""


def err(message: str) -> None:
    print(f"tether: {message}", file=sys.stderr, flush=True)


def endpoint_of(args: argparse.Namespace) -> DaemonEndpoint:
    """Where the daemon is: --url, else daemon.json in the state directory (--state-dir, else the
    config's state_dir, else the default), else the config's [server] address, else the default.

    Asked again before each reconnect: a daemon that restarted on ``--port 0`` listens elsewhere."""
    config = load_config(args.config) if args.config else None
    endpoint = find_daemon(
        url=args.url, token=args.token, state_dir=args.state_dir,
        configured_state_dir=config.state_dir if config is not None else None,
        server=config.server if config is not None else None,
    )
    if endpoint.token:
        add_secret(endpoint.token)
    return endpoint


class DaemonFinder:
    """`endpoint_of` for a client that follows its daemon across restarts (watch, attach, tail -f).

    A daemon that stops removes its daemon.json; until the next one writes it, `endpoint_of`
    would answer with the default address, where another daemon may listen (another user's,
    which refuses our token). Once found through daemon.json, the daemon is awaited there."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._found: DaemonEndpoint | None = None

    def find(self) -> DaemonEndpoint:
        endpoint = endpoint_of(self._args)
        if endpoint.from_daemon_file:
            self._found = endpoint
        elif self._found is not None:
            raise CannotConnectError(f"no daemon runs for {self._found.source} (it has not written it again yet)")
        return endpoint
