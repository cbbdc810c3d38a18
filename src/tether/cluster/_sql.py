"""The cluster's statements, one function each, run in a `PgConnection` worker thread.

Every time here is the database's (``now()``): a node's own clock never
stamps a lease. Every claim takes its fence from the ``fences`` sequence.
The layout is in `tether.store._pg_schema`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import psycopg

    Conn = psycopg.Connection[Any]


# -- membership --------------------------------------------------------------------------------


def register_node(conn: Conn, host: str, pid: int, ttl: float) -> int:
    """A fresh node id with a lease of `ttl` seconds from the database's now."""
    row = conn.execute(
        "INSERT INTO nodes (host, pid, ttl, expires_at) VALUES (%s, %s, %s, now() + make_interval(secs => %s))"
        " RETURNING node_id",
        (host, pid, ttl, ttl),
    ).fetchone()
    assert row is not None
    return int(row[0])


def renew(conn: Conn, node_id: int, ttl: float) -> bool:
    """Extend the lease; False when it has already expired or the node was reaped (never revived)."""
    cur = conn.execute(
        "UPDATE nodes SET expires_at = now() + make_interval(secs => %s), renewed_at = now()"
        " WHERE node_id = %s AND state = 'live' AND expires_at > now()",
        (ttl, node_id),
    )
    return cur.rowcount == 1


def end_node(conn: Conn, node_id: int, why: str) -> None:
    """Mark a node dead now (clean stop, or self-fenced): its sessions may be claimed at once."""
    conn.execute(
        "UPDATE nodes SET state = 'dead', ended_at = now(), ended = %s WHERE node_id = %s AND state = 'live'",
        (why, node_id),
    )


def reap(conn: Conn) -> list[int]:
    """Every live node whose lease ran out by the database's clock becomes dead (final)."""
    cur = conn.execute(
        "UPDATE nodes SET state = 'dead', ended_at = now(), ended = 'expired'"
        " WHERE state = 'live' AND expires_at < now() RETURNING node_id"
    )
    return [int(row[0]) for row in cur]


@attrs.frozen
class Counts:
    movable: int
    """Sessions any node may claim (not pinned, not quarantined)."""
    live_nodes: int
    owned_movable: int
    owned: int


def counts(conn: Conn, node_id: int) -> Counts:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM sessions WHERE home IS NULL AND problem IS NULL),"
        " (SELECT count(*) FROM nodes WHERE state = 'live' AND expires_at > now()),"
        " count(*) FILTER (WHERE home IS NULL), count(*)"
        " FROM sessions WHERE owner = %s",
        (node_id,),
    ).fetchone()
    assert row is not None
    return Counts(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


# -- sessions ----------------------------------------------------------------------------------


@attrs.frozen
class Declared:
    session_id: str
    backend: str
    spec: str
    home: str | None


def declare(conn: Conn, rows: Sequence[Declared]) -> int:
    """Add sessions (or update their spec); an existing row keeps its owner, fence, home and snapshot."""
    if not rows:
        return 0
    cur = conn.execute(
        "INSERT INTO sessions AS s (session_id, backend, spec, home)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])"
        " ON CONFLICT (session_id) DO UPDATE SET spec = excluded.spec, backend = excluded.backend"
        " WHERE s.spec IS DISTINCT FROM excluded.spec OR s.backend IS DISTINCT FROM excluded.backend",
        (
            [r.session_id for r in rows],
            [r.backend for r in rows],
            [r.spec for r in rows],
            [r.home for r in rows],
        ),
    )
    return cur.rowcount


@attrs.frozen
class Claimed:
    session_id: str
    fence: int
    previous_owner: int | None
    spec: str | None
    body: str | None


_CLAIM = """
WITH me AS (
    SELECT 1 FROM nodes WHERE node_id = %(node)s AND state = 'live' AND expires_at > now()
), picked AS (
    SELECT s.session_id, coalesce(s.owner, s.last_owner) AS previous
    FROM sessions s
    WHERE (s.owner IS NULL OR s.owner IN (SELECT node_id FROM nodes WHERE state = 'dead'))
      AND s.problem IS NULL
      AND (CASE WHEN %(pinned)s THEN s.home = %(host)s ELSE s.home IS NULL END)
      AND s.session_id <> ALL(%(skip)s::text[])
      AND EXISTS (SELECT 1 FROM me)
    ORDER BY s.session_id
    LIMIT %(limit)s
    FOR UPDATE OF s SKIP LOCKED
)
UPDATE sessions s SET owner = %(node)s, last_owner = NULL, fence = nextval('fences'), claimed_at = now()
FROM picked
WHERE s.session_id = picked.session_id
RETURNING s.session_id, s.fence, picked.previous, s.spec, s.body
"""


def claim(conn: Conn, node_id: int, host: str, *, limit: int, pinned: bool, skip: Sequence[str]) -> list[Claimed]:
    """Claim up to `limit` free sessions (unowned, or owned by a dead node), each with a new fence.

    Only while our own lease is live by the database's clock; rows another
    claimer has locked are skipped, never waited for, never shared.
    """
    if limit <= 0:
        return []
    cur = conn.execute(
        _CLAIM,
        {"node": node_id, "host": host, "pinned": pinned, "limit": limit, "skip": list(skip)},
    )
    return [Claimed(str(r[0]), int(r[1]), r[2], r[3], r[4]) for r in cur]


def release(conn: Conn, node_id: int, fences: Mapping[str, int]) -> set[str]:
    """Hand sessions back (owner NULL) where we still hold them with these fences."""
    if not fences:
        return set()
    cur = conn.execute(
        "UPDATE sessions s SET owner = NULL, last_owner = s.owner, claimed_at = NULL"
        " FROM unnest(%s::text[], %s::int8[]) AS d(session_id, fence)"
        " WHERE s.session_id = d.session_id AND s.fence = d.fence AND s.owner = %s RETURNING s.session_id",
        (list(fences), list(fences.values()), node_id),
    )
    return {str(r[0]) for r in cur}


def owned(conn: Conn, node_id: int) -> dict[str, int]:
    """Session id -> fence of every session the database says this node owns."""
    return {str(r[0]): int(r[1]) for r in conn.execute("SELECT session_id, fence FROM sessions WHERE owner = %s",
                                                        (node_id,))}


def still_held(conn: Conn, node_id: int, fences: Mapping[str, int]) -> set[str]:
    """Those of `fences` whose rows still carry that fence and this owner."""
    if not fences:
        return set()
    cur = conn.execute(
        "SELECT s.session_id FROM sessions s JOIN unnest(%s::text[], %s::int8[]) AS d(session_id, fence)"
        " ON s.session_id = d.session_id WHERE s.fence = d.fence AND s.owner = %s",
        (list(fences), list(fences.values()), node_id),
    )
    return {str(r[0]) for r in cur}


def quarantine(conn: Conn, session_id: str, fence: int, problem: str) -> None:
    """A claimed row this tether cannot read: hand it back, marked so no node claims it again."""
    conn.execute(
        "UPDATE sessions SET owner = NULL, claimed_at = NULL, problem = %s WHERE session_id = %s AND fence = %s",
        (problem, session_id, fence),
    )
