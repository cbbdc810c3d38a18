"""What `tether store status` shows of a cluster: every node with its lease, every session's owner.

Read straight from the database (synchronously: the command runs no Trio loop),
so it works while the daemons are running, stopped or dead.
"""

from __future__ import annotations

from typing import Any

from ..rules._errors import StoreError
from ..store._pg_connection import display_url, import_psycopg
from ..store._pg_schema import check_schema


def read_status(url: str, schema: str, *, sessions: bool = True) -> dict[str, Any]:
    """Nodes (live first, then the 20 most recently ended) and sessions with owner, host and home."""
    psycopg = import_psycopg()
    from psycopg import sql

    where = display_url(url)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="tether status") as conn:
            check_schema(conn, schema, where)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            nodes = [
                {"node": r[0], "host": r[1], "pid": r[2], "state": r[3], "ended": r[4],
                 "lease_left": r[5], "sessions": r[6]}
                for r in conn.execute(
                    "SELECT n.node_id, n.host, n.pid, n.state, n.ended,"
                    " round(extract(epoch FROM n.expires_at - now())::numeric, 1)::float8,"
                    " (SELECT count(*) FROM sessions s WHERE s.owner = n.node_id)"
                    " FROM nodes n WHERE n.state = 'live' OR n.node_id IN"
                    " (SELECT node_id FROM nodes WHERE state = 'dead' ORDER BY ended_at DESC NULLS LAST LIMIT 20)"
                    " ORDER BY n.state DESC, n.node_id"
                )
            ]
            rows = []
            if sessions:
                rows = [
                    {"session": r[0], "backend": r[1], "owner": r[2], "host": r[3], "home": r[4],
                     "fence": r[5], "problem": r[6]}
                    for r in conn.execute(
                        "SELECT s.session_id, s.backend, s.owner, n.host, s.home, s.fence, s.problem"
                        " FROM sessions s LEFT JOIN nodes n ON n.node_id = s.owner ORDER BY s.session_id"
                    )
                ]
    except psycopg.Error as exc:
        raise StoreError(where, " ".join(str(exc).split())) from exc
    return {"store": where, "schema": schema, "nodes": nodes, "sessions": rows}
