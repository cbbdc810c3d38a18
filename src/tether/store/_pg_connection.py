"""One PostgreSQL connection driven from Trio: psycopg 3's sync API in a worker thread of its own.

Why this shape:

- psycopg 3's async API needs asyncio and does not run under Trio; its sync
  API does, in a worker thread (`trio.to_thread.run_sync`, never abandoned,
  so a transaction is never left half-way). Each `PgConnection` has its own
  `trio.CapacityLimiter`, so the store's big write batches and the cluster's
  lease renewals never wait behind each other or behind a plugin's threads.
- A lost connection (server restarted, network cut) is closed and reported as
  `StoreError`; the next call reconnects, but never sooner than a jittered,
  capped backoff after the last failed connect, so a down database is not
  hammered and a caller is told at once instead of blocking.
- The URL may carry a password: every message shows `display_url`, never the URL.
- Every connection sets its ``search_path`` to tether's schema, so the SQL
  never spells the schema and one database can hold several clusters.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, final

import trio

from ..rules._backoff import retry_delay
from ..rules._errors import ConfigError, StoreError
from ..rules._policy import Jitter, ReconnectPolicy

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger("tether.store")

T = TypeVar("T")

DEFAULT_SCHEMA = "tether"
RECONNECT_POLICY = ReconnectPolicy(base_delay=0.2, max_delay=5.0, multiplier=2.0, jitter=Jitter.EQUAL, max_retries=None)
"""How soon a connection is tried again after a failed connect (tether's own backoff)."""


def import_psycopg() -> Any:
    """psycopg, or a `StoreError` saying which extra to install."""
    try:
        import psycopg
    except ImportError as exc:
        raise StoreError("postgresql", f"psycopg 3 is not installed: pip install 'tether[postgres]' ({exc})") from None
    return psycopg


def display_url(url: str) -> str:
    """`url` without its password, for messages and logs."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return "postgresql://..."
    try:
        params = conninfo_to_dict(url)
    except Exception:
        return "postgresql://(unparsable URL)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    user = params.get("user")
    dbname = params.get("dbname") or user or ""
    who = f"{user}@" if user else ""
    return f"postgresql://{who}{host}:{port}/{dbname}"


def check_url(url: str, where: str = "store.url") -> str:
    """`url` if libpq can parse it and it names PostgreSQL; else a `ConfigError` at `where`."""
    if not url.startswith(("postgresql://", "postgres://")) and "=" not in url:
        raise ConfigError(where, "must be a postgresql:// URL or a libpq connection string")
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return url
    try:
        conninfo_to_dict(url)
    except Exception as exc:
        raise ConfigError(where, f"is not a valid PostgreSQL URL: {str(exc).strip()}") from None
    return url


@final
class PgConnection:
    """One connection, one worker thread at a time, reconnected on demand after a loss.

    `run(fn)` calls ``fn(conn)`` in the worker thread inside one transaction
    (committed when `fn` returns, rolled back when it raises). Connection
    failures come out as `StoreError`; errors of `fn` itself come out as they are.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        application_name: str = "tether",
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.where = display_url(url)
        self.schema = schema
        self.application_name = application_name
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._rng = rng if rng is not None else random.Random()
        self._threads = trio.CapacityLimiter(1)
        self._lock = trio.Lock()
        self._conn: Any = None
        """The psycopg connection, or None (typed Any: psycopg is imported only when used)."""
        self._closed = False
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = ""
        self.connects = 0
        """Successful connects so far (1 + reconnects)."""
        self.losses = 0
        """Connections lost or refused so far."""

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    async def run(self, fn: Callable[[psycopg.Connection[Any]], T], *, autocommit: bool = False) -> T:
        """``fn(conn)`` in the worker thread, in a transaction unless `autocommit`."""
        async with self._lock:
            if self._closed:
                raise trio.ClosedResourceError("the PostgreSQL connection is closed")
            return await trio.to_thread.run_sync(self._call, fn, autocommit, limiter=self._threads)

    async def aclose(self) -> None:
        """Close the connection (after the call in progress). Idempotent."""
        async with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                await trio.to_thread.run_sync(conn.close, limiter=self._threads)
            else:
                await trio.lowlevel.checkpoint()

    # -- worker-thread side -------------------------------------------------------------------

    def _call(self, fn: Callable[[psycopg.Connection[Any]], T], autocommit: bool) -> T:
        psycopg = import_psycopg()
        conn = self._ensure()
        try:
            if autocommit:
                return fn(conn)
            with conn.transaction():
                return fn(conn)
        except psycopg.OperationalError as exc:
            if conn.closed or conn.broken:
                self._lost(f"connection lost: {_one_line(exc)}")
                raise StoreError(self.where, f"connection lost: {_one_line(exc)}") from exc
            raise StoreError(self.where, _one_line(exc)) from exc
        except psycopg.InterfaceError as exc:
            self._lost(f"connection unusable: {_one_line(exc)}")
            raise StoreError(self.where, f"connection unusable: {_one_line(exc)}") from exc

    def _ensure(self) -> Any:
        current = self._conn
        if current is not None and not current.closed and not current.broken:
            return current
        if current is not None:
            self._conn = None
            current.close()
        now = time.monotonic()
        if now < self._retry_at:
            raise StoreError(
                self.where, f"unreachable, next connect in {self._retry_at - now:.1f}s (last error: {self._last_error})"
            )
        psycopg = import_psycopg()
        from psycopg import sql

        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, round(self.connect_timeout)),
                application_name=self.application_name,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                tcp_user_timeout=int(self.statement_timeout * 1000),
            )
        except psycopg.Error as exc:
            self._failed_connect(_one_line(exc))
            raise StoreError(self.where, f"cannot connect: {_one_line(exc)}") from exc
        try:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(int(self.statement_timeout * 1000))))
        except psycopg.Error as exc:
            conn.close()
            self._failed_connect(_one_line(exc))
            raise StoreError(self.where, f"cannot set up the session: {_one_line(exc)}") from exc
        if self._failures or self.connects:
            logger.info("%s: connected again", self.where)
        self._failures = 0
        self._retry_at = 0.0
        self.connects += 1
        self._conn = conn
        return self._conn

    def _failed_connect(self, error: str) -> None:
        self._failures += 1
        self.losses += 1
        self._last_error = error
        self._retry_at = time.monotonic() + retry_delay(RECONNECT_POLICY, self._failures, self._rng)
        logger.warning("%s: cannot connect (%s); retrying with backoff", self.where, error)

    def _lost(self, error: str) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self.losses += 1
        self._last_error = error
        logger.warning("%s: %s; will reconnect", self.where, error)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
