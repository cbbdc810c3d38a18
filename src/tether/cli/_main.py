"""The ``tether`` command: run, demo, watch, status, plugins, check, token, store, and the console
commands (attach, tail, send, exec, reconnect, add, remove: `tether.cli._console`, `tether.cli._attach`).

Exit codes (docs/cli.md): 0 ok, 1 runtime failure, 2 usage or config error,
3 cannot connect to the daemon, 4 auth rejected. Errors are one readable
message on stderr, never a traceback (``--debug`` shows one).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from .. import __version__
from ..engine._plugins import BACKENDS_GROUP, STRATEGIES_GROUP, PluginRegistry, discover_plugins
from ..rules._addresses import is_loopback
from ..rules._backoff import retry_delay
from ..rules._classify import single_error
from ..rules._errors import ConfigError, CorruptStoreError, InvalidConfigError, TetherError
from ..rules._events import Event
from ..rules._paths import resolve_state_dir
from ..rules._policy import ReconnectPolicy
from ..rules._status import MAX_LIMIT
from ..rules._wire import event_to_dict
from ..server._auth import ensure_state_dir, load_or_create_token
from ..server._client import (
    AuthRejectedError,
    CannotConnectError,
    ConnectionLostError,
    DaemonError,
    EventStream,
    HandshakeRejectedError,
    LagNotice,
    RestartNotice,
    UnknownMessage,
    open_client,
    open_events,
)
from ..server._settings import ServerSettings
from ._attach import add_parser as add_attach_parser
from ._attach import cmd_attach
from ._common import (
    EXIT_AUTH,
    EXIT_CONNECT,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    DaemonFinder,
    UsageError,
    endpoint_of,
    err,
)
from ._config import (
    StoreConfig,
    TetherConfig,
    check_config_file,
    config_notes,
    load_config,
)
from ._console import COMMANDS as CONSOLE_COMMANDS
from ._console import add_parsers as add_console_parsers
from ._console import split_command_line
from ._logging import add_secret, setup_logging
from ._store_file import FILE_ACTIONS, add_file_actions, run_file_action, suggest

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger("tether.cli")

WATCH_POLICY = ReconnectPolicy(base_delay=0.5, max_delay=10.0, multiplier=2.0, max_retries=None)
"""How `tether watch` retries its own connection: tether's backoff, forever by default."""


# -- arguments ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tether", description="Keep console sessions alive.")
    parser.add_argument("--version", action="version", version=f"tether {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", help="where the token, daemon.json and the store live "
                        "(default: $TETHER_STATE_DIR or the platform's user state directory)")
    common.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    common.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--config", metavar="FILE",
                        help="the daemon's config: its state_dir and [server] address say where it is")
    client.add_argument("--url", help="daemon address (default: the running daemon's daemon.json, else the "
                        "config's host and port, else ws://127.0.0.1:8765)")
    client.add_argument("--token", help="token to send (default: the one in the state directory)")
    serve = argparse.ArgumentParser(add_help=False)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (0 = any free port)")
    serve.add_argument("--allow-remote", action="store_true", help="allow listening on a non-loopback address")
    serve.add_argument("--no-auth", action="store_true", help="no token (loopback only)")
    serve.add_argument("--duration", type=float, metavar="SECONDS", help="stop by itself after this long")

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", parents=[common, serve], help="run the daemon with a config file")
    run.add_argument("config", nargs="?", help="TOML config (sessions, server, store)")
    run.add_argument("--no-store", action="store_true", help="do not persist snapshots")
    demo = sub.add_parser("demo", parents=[common, serve], help="watch tether recover sessions, live")
    demo.add_argument("--no-serve", dest="serve", action="store_false",
                      help="do not run the event server (it listens on 127.0.0.1, random port, by default)")
    demo.add_argument("--plain", action="store_true", help="no colours")
    watch = sub.add_parser("watch", parents=[common, client], help="print the daemon's events live")
    watch.add_argument("--session", action="append", default=[], help="only this session (repeatable)")
    watch.add_argument("--type", action="append", default=[], help="only these event types, e.g. 'reconnect.*'")
    watch.add_argument("--since", type=int, help="start from this sequence number (replayed from the ring)")
    watch.add_argument("--boot", help="the daemon run --since counts in (an event's boot): if the daemon has "
                       "restarted since, watch says so and shows the new run from its start")
    watch.add_argument("--json", action="store_true", help="one JSON event per line")
    watch.add_argument("--count", type=int, help="exit after this many events")
    watch.add_argument("--max-retries", type=int, help="give up (exit 3) after this many failed connects")
    status = sub.add_parser("status", parents=[common, client],
                            help="a summary of the sessions (counts, the ones not connected); --detail for each")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--detail", action="store_true", help="one row per session (every page, in id order)")
    status.add_argument("--session", action="append", default=[],
                        help="detail of this session (repeatable; with --cluster: only this session)")
    status.add_argument("--status", action="append", default=[], metavar="STATUS", dest="statuses",
                        help="detail of the sessions in this status, e.g. failed (repeatable)")
    status.add_argument("--limit", type=int, metavar="N",
                        help=f"summary: list at most N sessions that are not connected (default 50); "
                        f"detail: one page of at most N sessions (1-{MAX_LIMIT}), with its next cursor")
    status.add_argument("--cursor", help="detail: the page after this cursor (from a previous --limit page)")
    status.add_argument("--cluster", action="store_true",
                        help="every process sharing the PostgreSQL store, with its lease, and every session's owner")
    status.add_argument("--store-url", help="with --cluster: postgresql://... (default: $TETHER_STORE_URL)")
    plugins = sub.add_parser("plugins", parents=[common], help="discovered backends and strategies")
    plugins.add_argument("--json", action="store_true")
    check = sub.add_parser("check", parents=[common], help="validate a config file")
    check.add_argument("config")
    token = sub.add_parser("token", parents=[common], help="print the daemon's token (made if missing)")
    token.add_argument("--config", metavar="FILE", help="the daemon's config: its state_dir holds the token")
    add_console_parsers(sub, common, client)
    add_attach_parser(sub, common, client)
    store = sub.add_parser("store", parents=[common], help="the snapshot store: check, repair and release rows of "
                           "the SQLite file; migrate PostgreSQL's schema, show the cluster")
    actions = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    add_file_actions(actions, common)
    for action, what in (("migrate", "create or upgrade tether's tables (versioned, idempotent)"),
                         ("status", "every process with its lease, every session with its owner and host")):
        act = actions.add_parser(action, parents=[common], help=what)
        act.add_argument("config", nargs="?", help="TOML config whose [store] url to use")
        act.add_argument("--url", help="postgresql://... (default: [store] url, else $TETHER_STORE_URL)")
        act.add_argument("--schema", default="tether", help="schema holding tether's tables (default tether)")
        act.add_argument("--json", action="store_true", help="machine-readable output")
    for name, entry in plugin_commands().items():  # listed here; `main` hands them their arguments
        dist = entry.dist.name if entry.dist is not None else "a plugin"
        sub.add_parser(name, add_help=False, help=f"from {dist}: see `tether {name} --help`")
    return parser


PLUGIN_COMMANDS_GROUP = "tether.commands"
"""Entry points naming ``tether`` subcommands from other distributions: a callable taking the
arguments after the command's name and returning the exit code (``tether mcp`` is tether-mcp's)."""


KNOWN_PLUGIN_COMMANDS = {"mcp": "tether-mcp"}
"""Commands of this repository's plugins (``plugins/<distribution>``): named when they are not installed."""


def _not_installed(name: str) -> str | None:
    """What to say about ``tether NAME`` when NAME is a well-known plugin's command that is not installed."""
    dist = KNOWN_PLUGIN_COMMANDS.get(name)
    if dist is None:
        return None
    return f"tether {name} comes with {dist}: {sys.executable} -m pip install -e plugins/{dist} " \
           "(from a clone of tether)"


def plugin_commands() -> dict[str, Any]:
    from importlib_metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=PLUGIN_COMMANDS_GROUP) if ep.name not in COMMANDS}


# -- commands -----------------------------------------------------------------------------------


def _server_settings(args: argparse.Namespace, config: TetherConfig | None) -> ServerSettings:
    base = config.server if config is not None else None
    host = args.host or (base.host if base else "127.0.0.1")
    port = args.port if args.port is not None else (base.port if base else 8765)
    allow_remote = args.allow_remote or bool(base and base.allow_remote)
    if not is_loopback(host) and not allow_remote:
        raise UsageError(f"{host!r} is not a loopback address; pass --allow-remote to listen on it")
    if args.no_auth and not is_loopback(host):
        raise UsageError("--no-auth is only allowed on a loopback address")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    return attrs.evolve(base if base is not None else ServerSettings(), host=host, port=port,
                        allow_remote=allow_remote)


def _auth_token(args: argparse.Namespace, state: Path, config: TetherConfig | None) -> str | None:
    if args.no_auth or (config is not None and not config.server.auth):
        return None
    token = load_or_create_token(state)
    add_secret(token)
    return token


def cmd_run(args: argparse.Namespace) -> int:
    from ._daemon import DaemonOptions, run_daemon

    registry = discover_plugins()
    config = check_config_file(args.config, registry) if args.config else TetherConfig()  # as `tether check`
    state = resolve_state_dir(args.state_dir, config.state_dir)
    server = _server_settings(args, config) if config.server.enabled else None
    store = attrs.evolve(config.store, enabled=False) if args.no_store else config.store
    options = DaemonOptions(
        state_dir=state, sessions=config.sessions if args.config else None, server=server,
        token=_auth_token(args, state, config),
        store=store, duration=args.duration, registry=registry,
        progress=sys.stderr.isatty() and len(config.sessions) >= 200, connect_limits=config.connect_limits,
    )
    try:
        try:
            trio.run(run_daemon, options)
        except BaseExceptionGroup as group:  # one error at start (a bad store): itself, not a traceback
            single = single_error(group)
            if single is None:
                raise
            raise single from None
    except CorruptStoreError as exc:  # a way forward, named for this very file
        where = {"config": args.config, "state_dir": args.state_dir, "db": config.store.path or None}
        raise CorruptStoreError(exc.location, f"{exc.problem}. Run `{suggest('check', **where)}` to see what is "
                                f"wrong, then `{suggest('repair', **where)}` (it keeps the old file and copies "
                                "every readable row into a fresh one)") from None
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ._daemon import DaemonOptions, run_daemon
    from ._demo import chaos, demo_sessions, live_log

    registry = discover_plugins()
    sessions, backend = demo_sessions(registry)
    console = Console(highlight=False, no_color=args.plain, soft_wrap=True)
    # its own folder, so it never mixes with a real daemon's sessions; the state directory above it
    # is made private first (mkdir's parents would get the umask's mode)
    state = ensure_state_dir(resolve_state_dir(args.state_dir)) / "demo"
    if args.port is None:
        args.port = 0
    server = _server_settings(args, None) if args.serve else None
    token = _auth_token(args, state, None) if args.serve else None
    console.print(f"[bold]tether demo[/]: {len(sessions)} sessions on the [bold]{backend}[/] backend; "
                  "some fail on purpose. Ctrl-C stops." + (" (install tether-process for real programs)"
                                                           if backend == "scripted" else ""))

    async def on_start(supervisor: Any, nursery: trio.Nursery) -> None:
        nursery.start_soon(live_log, supervisor, lambda line: console.print(line))
        if backend == "scripted":
            nursery.start_soon(chaos, supervisor)

    store = StoreConfig(enabled=True, path=str(state / "demo.sqlite3"), flush_interval=0.2)
    console.print(f"state: {store.path} (run the demo again: its sessions come back from there)")
    if server is not None:
        console.print(f"watch it from another terminal: tether watch --state-dir {state}")
    options = DaemonOptions(state_dir=state, sessions=sessions, server=server, token=token, store=store,
                            duration=args.duration, registry=registry)
    trio.run(lambda: run_daemon(options, on_start=on_start))
    console.print("[bold]demo stopped[/]")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    if args.cluster:
        url = args.store_url or StoreConfig().store_url()
        if not url:
            raise UsageError("--cluster reads the shared store: pass --store-url or set $TETHER_STORE_URL")
        return _cluster_status(url, "tether", as_json=args.json, only=args.session)
    from ._status_view import JsonPages, print_page, print_summary

    endpoint = endpoint_of(args)
    detail = bool(args.detail or args.session or args.statuses or args.cursor)
    if args.limit is not None and not (0 if not detail else 1) <= args.limit <= MAX_LIMIT:
        raise UsageError(f"--limit must be from {0 if not detail else 1} to {MAX_LIMIT}, got {args.limit}")
    console = _console()

    async def summary() -> None:
        async with open_client(endpoint) as client:
            result = await client.status(limit=args.limit)
        print_summary(console, result, as_json=args.json)

    async def pages() -> None:
        one_page = args.limit is not None
        cursor = args.cursor
        first = True
        writer = JsonPages(with_cursor=one_page) if args.json else None
        async with open_client(endpoint) as client:
            while True:
                page = await client.status_page(sessions=args.session, statuses=args.statuses, cursor=cursor,
                                                limit=args.limit)
                last = one_page or page.next_cursor is None
                if writer is not None:
                    writer.add(page)
                    if last:
                        writer.finish(page)
                else:
                    print_page(console, page, header=first, with_cursor=one_page)
                first = False
                if last:
                    return
                cursor = page.next_cursor

    trio.run(pages if detail else summary)
    return EXIT_OK


def _console(**kwargs: Any) -> Any:
    """rich's console; when stdout is not a terminal, wide enough that nothing is cut or wrapped."""
    from rich.console import Console

    width = None if sys.stdout.isatty() else 100_000
    return Console(highlight=False, width=width, **kwargs)


WATCH_BATCH = 100
"""`tether watch` takes up to this many waiting events per frame, so it keeps up with a storm."""


def cmd_watch(args: argparse.Namespace) -> int:
    from ._render import render

    if args.boot is not None and args.since is None:
        raise UsageError("--boot names the run --since counts in: pass --since too")
    console = _console(soft_wrap=True)
    resume = _Resume(args.since, args.boot)
    finder = DaemonFinder(args)
    shown = 0
    failures = 0
    rng = random.Random()

    def show(data: Mapping[str, Any]) -> None:
        nonlocal shown
        shown += 1
        if args.json:
            print(json.dumps(data), flush=True)
        else:
            console.print(render(data))

    async def session() -> None:
        nonlocal failures
        endpoint = finder.find()  # each time: a restarted daemon may listen on another port
        async with open_events(endpoint, session_ids=args.session, types=args.type, since=resume.seq,
                               boot=resume.boot, batch=WATCH_BATCH) as events:
            if failures:
                logger.info("reconnected to %s", endpoint.url)
            failures = 0
            resume.connected(events)
            while args.count is None or shown < args.count:
                item = await events.receive()
                if isinstance(item, UnknownMessage):
                    show(dict(item.data))
                elif isinstance(item, LagNotice):
                    show({"type": "lagged", "missed_from": item.missed_from, "missed": item.missed,
                          "resync": item.resync})
                elif isinstance(item, RestartNotice):
                    resume.restarted(item)
                    show(attrs.asdict(item) | {"type": "restarted"})
                else:
                    resume.seen(item)
                    show(event_to_dict(item))

    async def loop() -> int:
        nonlocal failures
        while True:
            try:
                await session()
                return EXIT_OK
            except HandshakeRejectedError as exc:
                if isinstance(exc, AuthRejectedError) or exc.type != "bad-since" or resume.seq is None:
                    raise
                # only a --since without --boot gets here: which run it counted in is unknown
                logger.warning("since=%d is ahead of the daemon's last event (it restarted?); following from now",
                               resume.seq)
                resume.seq, resume.boot = None, None
            except (CannotConnectError, ConnectionLostError) as exc:
                failures += 1
                if args.max_retries is not None and failures > args.max_retries:
                    raise CannotConnectError(str(exc)) from None
                delay = retry_delay(WATCH_POLICY, failures, rng)
                logger.warning("%s; retrying in %.1fs", _lost(exc), delay)
                await trio.sleep(delay)

    try:
        return trio.run(loop)
    except KeyboardInterrupt:
        return EXIT_OK


@attrs.define
class _Resume:
    """Where `tether watch` resumes after its connection drops: a sequence number and the run it
    counts in, so a daemon that restarted meanwhile is noticed (and said) instead of skipped."""

    seq: int | None
    boot: str | None

    def connected(self, events: EventStream) -> None:
        if self.seq is None and events.since is not None:
            self.seq = events.since  # everything after it comes on this stream
        if self.boot is None:
            self.boot = events.boot

    def seen(self, event: Event) -> None:
        self.seq, self.boot = event.seq, event.boot

    def restarted(self, notice: RestartNotice) -> None:
        self.seq, self.boot = notice.replay_from - 1, notice.boot


def _lost(exc: DaemonError) -> str:
    if isinstance(exc, ConnectionLostError) and exc.code == 1001:
        return "the daemon is stopping (closed 1001)"
    return str(exc)


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = discover_plugins()
    if args.json:
        print(json.dumps(_plugins_dict(registry), indent=2))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title="plugins")
    for column in ("kind", "name", "distribution", "version", "entry point"):
        table.add_column(column)
    for info in sorted(registry.loaded, key=lambda i: (i.group, i.name)):
        table.add_row(_kind(info.group), info.name, info.distribution, info.version,
                      info.value)
    console.print(table)
    if registry.failures:
        failed = Table(title="failed to load", style="red")
        for column in ("kind", "name", "distribution", "version", "error"):
            failed.add_column(column)
        for f in registry.failures:
            failed.add_row(_kind(f.group), f.name, f.distribution, f.version, f.error)
        console.print(failed)
    return EXIT_OK


def _kind(group: str) -> str:
    return {BACKENDS_GROUP: "backend", STRATEGIES_GROUP: "strategy"}.get(group, group)


def _plugins_dict(registry: PluginRegistry) -> dict[str, Any]:
    return {
        "loaded": [{"group": i.group, "name": i.name, "distribution": i.distribution, "version": i.version,
                    "value": i.value} for i in registry.loaded],
        "failed": [{"group": f.group, "name": f.name, "distribution": f.distribution, "version": f.version,
                    "error": f.error} for f in registry.failures],
    }


def cmd_check(args: argparse.Namespace) -> int:
    registry = discover_plugins()
    config = check_config_file(args.config, registry)
    print(f"{args.config}: ok ({len(config.sessions)} session{'' if len(config.sessions) == 1 else 's'})")
    for note in config_notes(config, registry):
        print(f"  note: {note}")
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    configured = load_config(args.config).state_dir if args.config else None
    print(load_or_create_token(resolve_state_dir(args.state_dir, configured)))
    return EXIT_OK


def cmd_store(args: argparse.Namespace) -> int:
    if args.store_command in FILE_ACTIONS:
        return run_file_action(args)
    from ..store._pg_connection import display_url
    from ..store._pg_schema import LATEST_VERSION, migrate_url

    config = load_config(args.config) if args.config else TetherConfig()
    url = args.url or config.store.store_url()
    if not url:
        raise UsageError("no PostgreSQL store: pass --url, set [store] url in the config or $TETHER_STORE_URL")
    if args.store_command == "migrate":
        before, applied = migrate_url(url, args.schema)
        if args.json:
            print(json.dumps({"store": display_url(url), "schema": args.schema, "from": before,
                              "to": LATEST_VERSION, "applied": [m.version for m in applied]}))
        elif applied:
            steps = "; ".join(f"{m.version}: {m.description}" for m in applied)
            print(f"{display_url(url)}: schema {args.schema!r} migrated from version {before} to "
                  f"{LATEST_VERSION} ({steps})")
        else:
            print(f"{display_url(url)}: schema {args.schema!r} is at version {before}, nothing to do")
        return EXIT_OK
    return _cluster_status(url, args.schema, as_json=args.json)


def _cluster_status(url: str, schema: str, *, as_json: bool, only: Sequence[str] = ()) -> int:
    from ..cluster._status import read_status

    status = read_status(url, schema)
    if only:
        status["sessions"] = [row for row in status["sessions"] if row["session"] in only]
    if as_json:
        print(json.dumps(status))
        return EXIT_OK
    print(f"{status['store']} (schema {status['schema']!r})")
    for node in status["nodes"]:
        lease = f"lease {node['lease_left']:+.1f}s" if node["state"] == "live" else f"ended: {node['ended']}"
        print(f"  node {node['node']:>4} {node['state']:<4} {node['host']} pid {node['pid']}  {lease}  "
              f"{node['sessions']} sessions")
    for row in status["sessions"]:
        owner = f"node {row['owner']} on {row['host']}" if row["owner"] is not None else "free"
        pinned = f"  pinned to {row['home']}" if row["home"] else ""
        problem = f"  QUARANTINED: {row['problem']}" if row["problem"] else ""
        print(f"  {row['session']}  {row['backend']}  {owner}  fence {row['fence']}{pinned}{problem}")
    return EXIT_OK


COMMANDS = {
    "run": cmd_run, "demo": cmd_demo, "watch": cmd_watch, "status": cmd_status,
    "plugins": cmd_plugins, "check": cmd_check, "token": cmd_token, "store": cmd_store,
    "attach": cmd_attach, **CONSOLE_COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tether`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = plugin_commands()
    if argv and argv[0] in plugins:  # a plugin's command parses its own arguments
        code: int = plugins[argv[0]].load()(argv[1:])
        return code
    if argv and (missing := _not_installed(argv[0])) is not None:
        err(missing)
        return EXIT_USAGE
    parser = build_parser()
    argv, command_words = split_command_line(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if command_words is not None:
        args.words = command_words
    setup_logging(args.log_level, json_lines=args.log_json)
    try:
        return COMMANDS[args.command](args)
    except InvalidConfigError as exc:
        err(str(exc.problem))
        return EXIT_USAGE
    except (UsageError, ConfigError) as exc:
        err(str(exc))
        return EXIT_USAGE
    except CannotConnectError as exc:
        err(f"{exc} (is `tether run` running?)")
        return EXIT_CONNECT
    except AuthRejectedError as exc:
        err(f"the daemon rejected our token ({exc}); see `tether token`")
        return EXIT_AUTH
    except HandshakeRejectedError as exc:
        err(f"the daemon refused the connection: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # `tether status --detail | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except TetherError as exc:
        if args.debug:
            raise
        err(str(exc) or type(exc).__name__)
        return EXIT_FAILURE
    except OSError as exc:
        if args.debug:
            raise
        err(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILURE
