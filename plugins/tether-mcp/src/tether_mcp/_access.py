"""How the MCP server reaches tether: a running daemon, or a supervisor of its own.

At start, `TetherAccess` looks for a running ``tether run`` the way every
client does (`tether.find_daemon`: ``--url``, else the state directory's
``daemon.json`` and token). When none runs it starts an *embedded* one in
this process: the SQLite store in the same state directory (so its sessions
persist and come back on the next start, exactly as the daemon's do), a
supervisor with every installed plugin, and tether's own /control server on a
free loopback port with a token only this process knows. Either way every
tool talks to tether through the typed client (`tether.DaemonClient`), so
both modes validate, redact and answer alike.

Calls never wait on each other: /control runs up to `max_inflight` requests
per connection, so the pool opens another connection when those it has are
busy (a dozen long waits never hold up a quick read). When the daemon's
connection drops (it restarted), the next call finds it again (it may listen
on a new port) and retries what is safe to retry; the caller's deadline
bounds all of it.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar, final

import attrs
import trio

import tether
from tether import (
    CannotConnectError,
    ConnectionLostError,
    DaemonClient,
    DaemonEndpoint,
    ServerSettings,
    TetherError,
    open_client,
)

logger = logging.getLogger("tether.mcp")

T = TypeVar("T")

PER_CONNECTION = 12
"""Requests one /control connection carries at once before the pool opens another (the
server's default `max_inflight` is 16: a margin for the pool's own short requests)."""
MAX_CONNECTIONS = 32
RETRY_FIRST = 0.1
RETRY_MAX = 1.0


class UnavailableError(TetherError):
    """tether cannot be reached, and the message says why (no daemon answers, the store is in use)."""


class RefusedError(UnavailableError):
    """tether cannot be supervised here, for a reason waiting within one call will not change (another
    process holds the store): the call fails at once, and the next call looks again (a daemon started
    meanwhile is found)."""


class LostDuringCallError(TetherError):
    """The connection to the daemon broke after a request that changes something was sent."""


@attrs.frozen(kw_only=True)
class AccessSettings:
    state_dir: Path | None = None
    """None: ``$TETHER_STATE_DIR``, else the user's state directory (as ``tether run``)."""
    url: str | None = None
    token: str | None = None
    embedded: bool | None = None
    """True: never look for a daemon; False: never start one here; None: a daemon if one runs."""

    def resolved_state_dir(self) -> Path:
        return self.state_dir if self.state_dir is not None else tether.default_state_dir()


@attrs.define
class _Held:
    client: DaemonClient
    done: trio.Event = attrs.field(factory=trio.Event)
    busy: int = 0
    broken: bool = False


@final
class ClientPool:
    """/control connections to one endpoint, opened as calls need them."""

    def __init__(self, nursery: trio.Nursery, endpoint: DaemonEndpoint) -> None:
        self.endpoint = endpoint
        self._nursery = nursery
        self._held: list[_Held] = []
        self._opening = trio.Lock()

    async def _hold(self, *, task_status: trio.TaskStatus[_Held]) -> None:
        """Keep one connection open until it breaks or the pool closes it."""
        started = False
        try:
            async with open_client(self.endpoint) as client:
                held = _Held(client)
                task_status.started(held)
                started = True
                await held.done.wait()
        except Exception as exc:
            if not started:
                raise
            logger.debug("a /control connection ended: %s", exc)  # its callers were told

    def _pick(self) -> _Held | None:
        live = [h for h in self._held if not h.broken]
        self._held = live
        free = [h for h in live if h.busy < PER_CONNECTION]
        return min(free, key=lambda h: h.busy) if free else None

    @asynccontextmanager
    async def borrow(self) -> AsyncIterator[DaemonClient]:
        held = self._pick()
        if held is None:
            async with self._opening:
                held = self._pick()
                if held is None:
                    if len(self._held) >= MAX_CONNECTIONS:
                        raise UnavailableError(f"{MAX_CONNECTIONS * PER_CONNECTION} calls are already waiting on "
                                               "tether: let some finish first")
                    held = await self._nursery.start(self._hold)
                    self._held.append(held)
        held.busy += 1
        try:
            yield held.client
        except ConnectionLostError:
            held.broken = True
            held.done.set()
            raise
        finally:
            held.busy -= 1

    def close(self) -> None:
        for held in self._held:
            held.broken = True
            held.done.set()
        self._held = []


@final
class TetherAccess:
    """The MCP server's one way to tether; see the module docstring."""

    def __init__(self, nursery: trio.Nursery, settings: AccessSettings) -> None:
        self.settings = settings
        self._nursery = nursery
        self._pool: ClientPool | None = None
        self._finding = trio.Lock()
        self.mode: str | None = None
        """``daemon`` or ``embedded`` once decided (a daemon found at start keeps it ``daemon``)."""
        self.where = ""
        """The daemon's address, or the embedded supervisor's state directory."""
        self.last_problem = ""
        """Why the last attempt to reach tether failed (said when a call runs out of time)."""

    async def start(self) -> None:
        """Find tether now (a daemon, else an embedded supervisor), so its sessions come back at once.
        A failure is kept for the calls to report; tools/list works regardless."""
        try:
            await self._ensure_pool()
        except TetherError as exc:
            logger.warning("%s", exc)

    async def _ensure_pool(self) -> ClientPool:
        if self._pool is not None:
            return self._pool
        async with self._finding:
            if self._pool is None:
                self._pool = ClientPool(self._nursery, await self._find())
            return self._pool

    async def _find(self) -> DaemonEndpoint:
        settings = self.settings
        if settings.embedded is not True:
            endpoint = tether.find_daemon(url=settings.url, token=settings.token, state_dir=settings.state_dir)
            found = settings.url is not None or endpoint.from_daemon_file
            if found or self.mode == "daemon" or settings.embedded is False:
                self.mode, self.where = "daemon", endpoint.url
                return endpoint
        embedded: DaemonEndpoint = await self._nursery.start(self._run_embedded)
        self.mode = "embedded"
        return embedded

    async def _run_embedded(self, *, task_status: trio.TaskStatus[DaemonEndpoint]) -> None:
        """A supervisor of this process's own, with the daemon's store, served on loopback."""
        state = self.settings.resolved_state_dir()
        try:
            state.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise RefusedError(f"cannot create the state directory {state}: {exc.strerror or exc}") from None
        database = state / tether.default_store_path().name
        token = secrets.token_urlsafe(32)
        try:
            async with (tether.open_sqlite_store(database) as store, tether.open_supervisor(store=store) as supervisor,
                        trio.open_nursery() as nursery):
                port: int = await nursery.start(
                    lambda task_status: tether.serve_events(
                        supervisor, ServerSettings(port=0), token=token, task_status=task_status)
                )
                self.where = str(state)
                logger.info("%s: supervising here, state in %s (%d sessions restored)",
                            "--embedded" if self.settings.embedded else "no tether daemon runs", state,
                            len(supervisor.session_ids))
                task_status.started(DaemonEndpoint(f"ws://127.0.0.1:{port}", token, "embedded"))
        except tether.StoreError as exc:
            raise RefusedError(self._why_not_here(state, exc)) from None

    def _why_not_here(self, state: Path, exc: tether.StoreError) -> str:
        """Why the store cannot be opened here, and what to do instead."""
        holder = _holder(exc.problem)
        if holder is None:
            return f"the store in {state} cannot be opened: {exc}"
        if self.settings.embedded is not True:
            return (f"no tether daemon runs for {state}, and its store cannot be opened here: {exc}. Run "
                    "`tether run` once for this state directory and every `tether mcp` will share it")
        running = tether.find_daemon(state_dir=state)
        if running.from_daemon_file:
            return (f"--embedded cannot open the state in {state}: the tether daemon running there ({holder}, "
                    f"{running.url}) holds its store. Drop --embedded to use that daemon's sessions, or give "
                    "--state-dir another directory for sessions of this server's own")
        return (f"--embedded cannot open the state in {state}: {holder} holds its store ({exc}). Stop it, give "
                "--state-dir another directory, or run `tether run` for this state directory and start every "
                "`tether mcp` without --embedded to share its sessions")

    def _reset(self, broken: ClientPool) -> None:
        """The connection behind `broken` is gone: find tether afresh on the next call."""
        if self._pool is broken:
            broken.close()
            self._pool = None

    async def call(self, fn: Callable[[DaemonClient], Awaitable[T]], *, retry: bool, what: str) -> T:
        """`fn` with a connected client; bounded by the caller's cancel scope (its deadline).

        A connect that fails is retried with backoff (nothing was sent). A connection lost with
        the request in flight is retried when `retry` (reads, waits) and raises
        `LostDuringCallError` otherwise (it may have happened: `what` says what).
        """
        delay = RETRY_FIRST
        while True:
            pool: ClientPool | None = None
            try:
                pool = await self._ensure_pool()
                async with pool.borrow() as client:
                    return await fn(client)
            except CannotConnectError as exc:
                if pool is not None:
                    self._reset(pool)
                last: TetherError = exc
            except ConnectionLostError as exc:
                if pool is not None:
                    self._reset(pool)
                if not retry:
                    raise LostDuringCallError(
                        f"the connection to tether broke while it was asked to {what} ({exc}); it may or may not "
                        "have happened: look (list_sessions, read_output) before trying again"
                    ) from None
                last = exc
            except RefusedError:
                raise
            except UnavailableError as exc:
                last = exc
            logger.debug("tether not reachable (%s); retrying in %.1fs", last, delay)
            await trio.sleep(delay)
            delay = min(RETRY_MAX, delay * 2)
            self.last_problem = str(last)


def _holder(problem: str) -> str | None:
    """Who holds the store, from its "in use by process N" problem (`tether.open_sqlite_store`); None
    when the problem is another one (a damaged file)."""
    found = re.search(r"in use by (process \d+|another process)", problem)
    return found.group(1) if found else None
