"""Output logs as table rows, the same for every SQL store: a head row per session, piece rows.

Pure conversions between `tether.rules._output` values and the tuples a
database driver takes and gives (SQLite, PostgreSQL), and the one check a
store runs on load: a log whose rows do not restore is reported, not used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..rules._errors import SnapshotError
from ..rules._output import LogHead, LogRow, RowKind, StoredLog, check_stored

HEAD_COLUMNS = (
    "session_id", "log_id", "start_at", "end_at", "reserved_to", "peer_stream", "peer_base", "interrupted",
    "trimmed_unknown_before",
)
ROW_COLUMNS = ("session_id", "log_id", "start_at", "stop_at", "kind", "size", "data")


def head_row(session_id: str, head: LogHead) -> tuple[object, ...]:
    """A head as a row, in `HEAD_COLUMNS` order."""
    return (
        session_id, head.log_id, head.start, head.end, head.reserved, head.peer_stream, head.peer_base,
        int(head.interrupted), head.trimmed_unknown_before,
    )


def log_row(session_id: str, log_id: str, row: LogRow) -> tuple[object, ...]:
    """A piece as a row, in `ROW_COLUMNS` order."""
    return (session_id, log_id, row.start, row.stop, row.kind.value, row.size, row.data)


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} is {type(value).__name__}, not an integer")
    return value


def head_of(values: Sequence[object]) -> LogHead:
    """The head in a row's values after its session id (`HEAD_COLUMNS[1:]`)."""
    log_id, start, end, reserved, stream, base, interrupted, trimmed = values
    if not isinstance(log_id, str) or (stream is not None and not isinstance(stream, str)):
        raise TypeError("log_id and peer_stream must be text")
    return LogHead(
        log_id=log_id, start=_int(start, "start_at"), end=_int(end, "end_at"), reserved=_int(reserved, "reserved_to"),
        peer_stream=stream, peer_base=_int(base, "peer_base"), interrupted=bool(_int(interrupted, "interrupted")),
        trimmed_unknown_before=_int(trimmed, "trimmed_unknown_before"),
    )


def row_of(values: Sequence[object]) -> LogRow:
    """The piece in a row's values ``start_at, stop_at, kind, size, data``."""
    start, stop, kind, size, data = values
    if isinstance(data, memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"row data is {type(data).__name__}, not a blob")
    return LogRow(_int(start, "start_at"), _int(stop, "stop_at"), RowKind(kind), data,
                  None if size is None else _int(size, "size"))


def stored_logs(
    heads: Iterable[Sequence[object]], rows: Iterable[Sequence[object]]
) -> tuple[dict[str, StoredLog], list[SnapshotError]]:
    """Logs from head rows (all of `HEAD_COLUMNS`) and piece rows (session id, then the piece),
    the pieces in position order; each log that does not restore is an error naming its session."""
    pieces: dict[str, list[Sequence[object]]] = {}
    for row in rows:
        pieces.setdefault(str(row[0]), []).append(row[1:])
    logs: dict[str, StoredLog] = {}
    errors: list[SnapshotError] = []
    for head in heads:
        sid = str(head[0])
        try:
            stored = StoredLog(head_of(head[1:]), tuple(row_of(r) for r in pieces.get(sid, ())))
            check_stored(stored)
        except (TypeError, ValueError) as exc:
            errors.append(SnapshotError(sid, f"output log: {exc}"))
            continue
        logs[sid] = stored
    return logs, errors
