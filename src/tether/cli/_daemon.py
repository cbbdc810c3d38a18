"""The daemon's main job, shared by `tether run` and `tether demo`.

Open the store (when there is one), open the supervisor with the configured
sessions (restoring stored ones, with progress when there are many), serve events, and wait for
Ctrl-C, SIGTERM or the end of ``--duration``; then leave every context in
order, so sessions stop and the store flushes, within about a second.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from ..contract._plugin import Backend
from ..engine._plugins import PluginRegistry
from ..engine._supervisor import Supervisor, open_supervisor
from ..rules._limits import ConnectLimits
from ..rules._spec import SessionSpec
from ..server._auth import ensure_state_dir
from ..server._client import DAEMON_FILE, write_daemon_file
from ..server._server import serve_events
from ..server._settings import ServerSettings
from ._config import StoreConfig

logger = logging.getLogger("tether.daemon")

REGISTER_CHUNK = 500
"""Sessions registered per checkpoint at start: big enough to be quick, small enough to show progress."""


@attrs.frozen(kw_only=True)
class DaemonOptions:
    state_dir: Path
    sessions: Sequence[SessionSpec] | None = None
    """The config's sessions (None: no config file, so no declaration: every stored session stays)."""
    server: ServerSettings | None = None
    """None: no event server (the demo's default)."""
    token: str | None = None
    store: StoreConfig = attrs.field(factory=lambda: StoreConfig(enabled=False))
    duration: float | None = None
    registry: PluginRegistry | None = None
    backends: Sequence[Backend] = ()
    progress: bool = False
    """Show a progress bar while registering (a terminal and many sessions)."""
    connect_limits: ConnectLimits = attrs.field(factory=ConnectLimits)
    """Connects in flight per target: the config's ``connect_limit`` and ``[connect_limits]``."""


@asynccontextmanager
async def _open_store(options: DaemonOptions) -> AsyncIterator[Any]:
    if not options.store.enabled:
        yield None
        return
    from ..store._sqlite import open_sqlite_store

    path = options.store.sqlite_path(options.state_dir)
    async with open_sqlite_store(path, durable=options.store.durable) as store:
        logger.info("snapshot store: %s", path)
        yield store


class _RestoreProgress:
    """A progress bar while thousands of sessions are registered or restored at start."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._enabled = enabled

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled or total < REGISTER_CHUNK:
            return
        if self._bar is None:
            from rich.progress import Progress

            self._bar = Progress(transient=True, console=_stderr_console())
            self._bar.start()
            self._task = self._bar.add_task("restoring sessions", total=total)
        self._bar.update(self._task, completed=done)
        if done >= total:
            self._bar.stop()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


STOP_BOUND = 2.0
"""Seconds from a stop request (SIGTERM, Ctrl-C, the end of --duration) to the process's exit,
whatever a plugin does: a call stuck in a thread that cannot be cancelled would otherwise hold
the exit forever."""
FINAL_FLUSH_BOUND = 1.0
STALL_THRESHOLD = 1.0
"""Plugin code holding the event loop longer than this is reported (plugin.misbehaved)."""


@attrs.define
class _Stopper:
    """Stops the daemon on a signal, and makes sure it has stopped within `STOP_BOUND`."""

    main: trio.CancelScope
    bound: float = STOP_BOUND
    daemon_file: Path | None = None
    supervisor: Supervisor | None = None
    stopping: trio.Event = attrs.field(factory=trio.Event)
    stopped: trio.Event = attrs.field(factory=trio.Event)

    def stop(self, why: str) -> None:
        if not self.stopping.is_set():
            logger.info("%s: stopping", why)
            self.stopping.set()
        self.main.cancel()

    async def run(self) -> None:
        """Runs outside the daemon's cancel scope, so it still runs while the daemon unwinds."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            first = await _next_signal(signals, self.stopping)
            if first is not None:
                self.stop(signal.Signals(first).name)
            second: int | None = None
            with trio.move_on_after(self.bound):
                second = await _next_signal(signals, self.stopped)
                if second is None:
                    return  # stopped in time
            await self._force_exit(f"a second {signal.Signals(second).name}" if second else
                                   f"still not stopped {self.bound:g}s after the stop request")

    async def _force_exit(self, why: str) -> None:
        stuck = self.supervisor.stuck_report() if self.supervisor is not None else ""
        logger.error("%s: exiting now after a final flush%s", why, f"; {stuck}" if stuck else "")
        if self.supervisor is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(FINAL_FLUSH_BOUND):
                await self.supervisor.flush()
        if self.daemon_file is not None:
            self.daemon_file.unlink(missing_ok=True)
        logging.shutdown()
        os._exit(0)


async def _next_signal(signals: Any, done: trio.Event) -> int | None:
    """The next signal, or None once `done` is set."""
    result: int | None = None
    async with trio.open_nursery() as nursery:

        async def watch_done() -> None:
            await done.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch_done)
        async for signum in signals:
            result = signum
            break
        nursery.cancel_scope.cancel()
    return result


async def run_daemon(
    options: DaemonOptions,
    *,
    on_start: Callable[[Supervisor, trio.Nursery], Awaitable[None]] | None = None,
) -> None:
    """Run until a signal or `duration`; returns after a clean stop, at most `STOP_BOUND` seconds later."""
    ensure_state_dir(options.state_dir)
    async with trio.open_nursery() as outer:
        stopper = _Stopper(trio.CancelScope())
        outer.start_soon(stopper.run)
        try:
            with stopper.main:
                await _serve(options, stopper, on_start)
        finally:
            stopper.stopped.set()
            outer.cancel_scope.cancel()
    if stopper.daemon_file is not None:
        stopper.daemon_file.unlink(missing_ok=True)
    logger.info("stopped")


async def _serve(
    options: DaemonOptions,
    stopper: _Stopper,
    on_start: Callable[[Supervisor, trio.Nursery], Awaitable[None]] | None,
) -> None:
    url = options.store.store_url() if options.store.enabled else None
    async with AsyncExitStack() as stack:
        if url is not None:  # one member of a cluster sharing PostgreSQL (docs/cluster.md)
            from ._cluster import open_cluster_member

            # Handing thousands of sessions over takes longer than a lone daemon's stop; past the
            # lease's ttl the others would take them anyway.
            stopper.bound = max(STOP_BOUND, options.store.lease_ttl)

            supervisor, _coordinator = await stack.enter_async_context(
                open_cluster_member(
                    url, sessions=options.sessions or (), registry=options.registry, backends=options.backends,
                    flush_interval=options.store.flush_interval, lease_ttl=options.store.lease_ttl,
                    durable=options.store.durable, gc_policy="managed", stall_threshold=STALL_THRESHOLD,
                    connect_limits=options.connect_limits,
                )
            )
        else:
            store = await stack.enter_async_context(_open_store(options))
            supervisor = await stack.enter_async_context(
                open_supervisor(
                    registry=options.registry, backends=options.backends, store=store,
                    durable=options.store.durable, flush_interval=options.store.flush_interval,
                    sessions=options.sessions, on_restore=_RestoreProgress(options.progress),
                    gc_policy="managed", stall_threshold=STALL_THRESHOLD, connect_limits=options.connect_limits,
                )
            )
        stopper.supervisor = supervisor
        logger.info("supervising %d sessions", len(supervisor.session_ids))
        supervisor.freeze_gc()  # start-up objects live as long as their sessions: keep them out of GC walks
        for problem in supervisor.restore_errors:
            logger.error("not restored: %s", problem)
        for sid in supervisor.removed_from_config:
            logger.warning("unregistered %s: no longer in the config", sid)
        nursery = await stack.enter_async_context(trio.open_nursery())
        if on_start is not None:
            await on_start(supervisor, nursery)
        settings = options.server
        if settings is not None:
            port = await nursery.start(
                lambda task_status: serve_events(supervisor, settings, token=options.token, task_status=task_status)
            )
            stopper.daemon_file = write_daemon_file(options.state_dir, host=settings.host, port=port)
            print(f"tether: listening on ws://{settings.host}:{port}", file=sys.stderr, flush=True)
        if options.duration is not None:
            await trio.sleep(options.duration)
            stopper.stop(f"--duration {options.duration:g}s")
        await trio.sleep_forever()


__all__ = ["DAEMON_FILE", "DaemonOptions", "run_daemon"]
