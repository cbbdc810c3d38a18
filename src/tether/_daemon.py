"""The daemon's main job, shared by `tether run` and `tether demo`.

Open the store (when there is one), open the supervisor, register the
sessions (with progress when there are many), serve events, and wait for
Ctrl-C, SIGTERM or the end of ``--duration``; then leave every context in
order, so sessions stop and the store flushes, within about a second.
"""

from __future__ import annotations

import inspect
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from ._auth import ensure_state_dir
from ._client import DAEMON_FILE, write_daemon_file
from ._config import StoreConfig
from ._contract import Backend
from ._plugins import PluginRegistry
from ._server import ServerSettings, serve_events
from ._spec import SessionSpec
from ._supervisor import Supervisor, open_supervisor

logger = logging.getLogger("tether.daemon")

REGISTER_CHUNK = 500
"""Sessions registered per checkpoint at start: big enough to be quick, small enough to show progress."""


@attrs.frozen(kw_only=True)
class DaemonOptions:
    state_dir: Path
    sessions: Sequence[SessionSpec] = ()
    server: ServerSettings | None = None
    """None: no event server (the demo's default)."""
    token: str | None = None
    store: StoreConfig = attrs.field(factory=lambda: StoreConfig(enabled=False))
    duration: float | None = None
    registry: PluginRegistry | None = None
    backends: Sequence[Backend] = ()
    progress: bool = False
    """Show a progress bar while registering (a terminal and many sessions)."""


def _supports_store() -> bool:
    """The core wires `open_supervisor(store=...)` separately; until then the daemon runs without one."""
    return "store" in inspect.signature(open_supervisor).parameters


@asynccontextmanager
async def _open_store(options: DaemonOptions) -> AsyncIterator[Any]:
    if not options.store.enabled:
        yield None
        return
    if not _supports_store():
        logger.warning("this tether's supervisor cannot persist sessions yet; running without the store")
        yield None
        return
    from ._sqlite_store import DB_FILENAME, open_sqlite_store

    path = Path(options.store.path) if options.store.path else options.state_dir / DB_FILENAME
    async with open_sqlite_store(path, durable=options.store.durable) as store:
        logger.info("snapshot store: %s", path)
        yield store


async def register_all(
    supervisor: Supervisor, specs: Sequence[SessionSpec], *, progress: bool
) -> None:
    """Register in chunks, one checkpoint each, with a progress bar for big configs."""
    if not specs:
        return
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True, console=_stderr_console())
        bar.start()
        task = bar.add_task("registering sessions", total=len(specs))
    try:
        for start in range(0, len(specs), REGISTER_CHUNK):
            await supervisor.register_many(specs[start:start + REGISTER_CHUNK])
            if bar is not None:
                bar.update(task, completed=min(len(specs), start + REGISTER_CHUNK))
    finally:
        if bar is not None:
            bar.stop()
    logger.info("registered %d session%s", len(specs), "" if len(specs) == 1 else "s")


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


async def _until_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("%s: stopping", signal.Signals(signum).name)
            scope.cancel()
            return


async def run_daemon(
    options: DaemonOptions,
    *,
    on_start: Callable[[Supervisor, trio.Nursery], Awaitable[None]] | None = None,
) -> None:
    """Run until a signal or `duration`; returns after a clean stop."""
    ensure_state_dir(options.state_dir)
    daemon_file: Path | None = None
    with trio.CancelScope() as main:
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(_open_store(options))
            kwargs: dict[str, Any] = {"registry": options.registry, "backends": options.backends}
            if store is not None:
                kwargs.update(store=store, durable=options.store.durable,
                              flush_interval=options.store.flush_interval)
            supervisor = await stack.enter_async_context(open_supervisor(**kwargs))
            nursery = await stack.enter_async_context(trio.open_nursery())
            nursery.start_soon(_until_signal, main)
            if on_start is not None:
                await on_start(supervisor, nursery)
            settings = options.server
            if settings is not None:
                port = await nursery.start(
                    lambda task_status: serve_events(
                        supervisor, settings, token=options.token, task_status=task_status
                    )
                )
                daemon_file = write_daemon_file(options.state_dir, host=settings.host, port=port)
                print(f"tether: listening on ws://{settings.host}:{port}", file=sys.stderr, flush=True)
            await register_all(supervisor, options.sessions, progress=options.progress)
            if options.duration is not None:
                await trio.sleep(options.duration)
                main.cancel()
            await trio.sleep_forever()
    if daemon_file is not None:
        daemon_file.unlink(missing_ok=True)
    logger.info("stopped")


__all__ = ["DAEMON_FILE", "DaemonOptions", "register_all", "run_daemon"]
