"""tether's tables in PostgreSQL and the versioned migrations that make them (`tether store migrate`).

Everything lives in one schema (``tether`` by default), so a database can
hold other things, or several tether clusters under different schema names.
``migrations`` records every step applied; `migrate` applies the missing
ones in order, in ONE transaction, under an advisory lock, so several
processes migrating at once do it exactly once. A store or a cluster member
only checks the version (`check_schema`) and refuses to run on an older or
newer layout: changing tables is an explicit step (docs/cluster.md).

The layout (version 1):

``nodes``: one row per tether process start (a fresh ``node_id`` each time).
    ``expires_at`` is stamped with the database's clock only; a node renews
    it while ``state = 'live' AND expires_at > now()``; once expired, it is
    reaped to ``state = 'dead'``, which is final (a process that lost its
    lease starts again under a new id). ``ended`` says why it died.

``sessions``: one row per session.
    ``spec`` is the declared spec (JSON, redacted) and ``body`` the last
    snapshot (JSON, NULL until the first write); ``owner`` is the node that
    supervises it and ``fence`` the fencing token of that claim, drawn from the
    ``fences`` sequence on every claim: a write lands only while the row's fence
    is the writer's (checked in the same statement), and ``written_fence``
    keeps the fence of the write that produced ``body``.
    ``last_owner`` is the node that last handed the session back (a clean
    stop, or shedding), so the next claim can say where it moved from.
    ``home`` pins a session to one machine: NULL means any node may claim it
    (remote backends: ssh, websocket), a host name means only nodes on that
    host may (local backends: a program on that machine's pty).
    ``problem`` quarantines a row whose spec or body this tether cannot read:
    no node claims it until the text is cleared.

Version 2 adds each session's output log (`tether.rules._output`), written in
the same transaction as its snapshot and under the same fence:

``output_heads``: one row per session: the log's identity, window, reservation
    and peer numbering.
``output_rows``: the log's pieces (data rows of at most ``row_bytes`` bytes, and
    losses), keyed by session, log and start position; rows that left the
    window or belong to an older log are deleted by the flush that supersedes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..rules._errors import StoreError

if TYPE_CHECKING:
    import psycopg


@attrs.frozen
class Migration:
    version: int
    description: str
    statements: Sequence[str]


MIGRATIONS: Sequence[Migration] = (
    Migration(
        1,
        "nodes with leases, sessions with owner, fence, home and snapshot",
        (
            """CREATE TABLE migrations (
                version integer PRIMARY KEY,
                description text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )""",
            "CREATE SEQUENCE node_ids AS bigint",
            "CREATE SEQUENCE fences AS bigint",
            """CREATE TABLE nodes (
                node_id bigint PRIMARY KEY DEFAULT nextval('node_ids'),
                host text NOT NULL,
                pid integer NOT NULL,
                ttl double precision NOT NULL CHECK (ttl > 0),
                started_at timestamptz NOT NULL DEFAULT now(),
                renewed_at timestamptz NOT NULL DEFAULT now(),
                expires_at timestamptz NOT NULL,
                state text NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'dead')),
                ended_at timestamptz,
                ended text CHECK (ended IN ('stopped', 'expired', 'fenced'))
            )""",
            "CREATE INDEX nodes_live ON nodes (expires_at) WHERE state = 'live'",
            """CREATE TABLE sessions (
                session_id text PRIMARY KEY,
                backend text NOT NULL,
                spec text,
                home text,
                owner bigint REFERENCES nodes (node_id),
                last_owner bigint,
                fence bigint NOT NULL DEFAULT 0,
                claimed_at timestamptz,
                schema integer,
                body text,
                saved_at double precision,
                written_fence bigint,
                written_at timestamptz,
                problem text,
                CHECK (spec IS NOT NULL OR body IS NOT NULL)
            )""",
            "CREATE INDEX sessions_owner ON sessions (owner)",
        ),
    ),
    Migration(
        2,
        "output logs: a head per session and its pieces",
        (
            """CREATE TABLE output_heads (
                session_id text PRIMARY KEY,
                log_id text NOT NULL,
                start_at bigint NOT NULL,
                end_at bigint NOT NULL,
                reserved_to bigint NOT NULL,
                peer_stream text,
                peer_base bigint NOT NULL,
                interrupted integer NOT NULL,
                trimmed_unknown_before bigint NOT NULL
            )""",
            """CREATE TABLE output_rows (
                session_id text NOT NULL,
                log_id text NOT NULL,
                start_at bigint NOT NULL,
                stop_at bigint NOT NULL,
                kind text NOT NULL,
                size bigint,
                data bytea NOT NULL,
                PRIMARY KEY (session_id, log_id, start_at)
            )""",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def _schema_version(conn: psycopg.Connection[Any], schema: str) -> int:
    """The highest migration applied in `schema`, 0 when there is none."""
    row = conn.execute("SELECT to_regclass(%s)", (f"{_quoted(schema)}.migrations",)).fetchone()
    if row is None or row[0] is None:
        return 0
    from psycopg import sql

    query = sql.SQL("SELECT coalesce(max(version), 0) FROM {}.migrations").format(sql.Identifier(schema))
    found = conn.execute(query).fetchone()
    return int(found[0]) if found is not None else 0


def _quoted(schema: str) -> str:
    return '"' + schema.replace('"', '""') + '"'


def schema_version(conn: psycopg.Connection[Any], schema: str) -> int:
    """The layout version of `schema` in this database (0: no tether tables yet)."""
    return _schema_version(conn, schema)


def check_schema(conn: psycopg.Connection[Any], schema: str, where: str) -> None:
    """Refuse to run on a layout this tether does not write: missing, older or newer."""
    version = _schema_version(conn, schema)
    if version == LATEST_VERSION:
        return
    if version == 0:
        raise StoreError(where, f"has no tether tables in schema {schema!r}: run `tether store migrate`")
    if version < LATEST_VERSION:
        raise StoreError(
            where, f"schema {schema!r} is at version {version}, this tether needs {LATEST_VERSION}: "
            "run `tether store migrate`"
        )
    raise StoreError(
        where, f"schema {schema!r} is at version {version}, newer than this tether's {LATEST_VERSION}: upgrade tether"
    )


def migrate(conn: psycopg.Connection[Any], schema: str, where: str) -> list[Migration]:
    """Apply every missing migration to `schema` in one transaction; returns those applied.

    `conn` must be in autocommit mode (the transaction is opened here).
    Concurrent callers serialise on an advisory lock keyed by the schema name.
    """
    from psycopg import sql

    applied: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"tether.migrate:{schema}",))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        version = _schema_version(conn, schema)
        if version > LATEST_VERSION:
            raise StoreError(
                where, f"schema {schema!r} is at version {version}, newer than this tether's {LATEST_VERSION}"
            )
        for step in MIGRATIONS:
            if step.version <= version:
                continue
            for statement in step.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO migrations (version, description) VALUES (%s, %s)", (step.version, step.description)
            )
            applied.append(step)
    return applied


def migrate_url(url: str, schema: str) -> tuple[int, list[Migration]]:
    """Connect to `url` and `migrate` it; returns (version before, migrations applied).

    Synchronous on purpose: `tether store migrate` runs it before any Trio loop.
    """
    from ._pg_connection import display_url, import_psycopg

    psycopg = import_psycopg()
    where = display_url(url)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="tether migrate") as conn:
            before = _schema_version(conn, schema)
            return before, migrate(conn, schema, where)
    except psycopg.Error as exc:
        raise StoreError(where, f"migration failed: {' '.join(str(exc).split())}") from exc
