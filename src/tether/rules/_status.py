"""What ``status`` answers: a bounded summary of the fleet, and pages of per-session detail.

Pure: session states in, values out, and the JSON-ready form both ways (the
server sends it, the client reads it back into the same classes). Whatever
the fleet's size, a reply stays bounded: the summary lists at most `limit`
sessions that are not connected (the most urgent first), and a detail page
holds at most `limit` sessions and at most `PAGE_BUDGET` bytes of them.

Pages are keyset pages over session ids in sorted order: the cursor is the
last id a page held, and the next page starts after it, so sessions that
come and go between two pages never shift the others (docs/control.md).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Collection, Mapping
from typing import Any, final

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn

from ._errors import SessionNotFoundError
from ._reasons import Disconnect
from ._secrets import redact_command, redact_env, redact_mapping, secret_name_matcher
from ._state import PreservedState, SessionState, SessionStatus
from ._stats import SupervisorStats

SUMMARY_LIMIT = 50
"""Sessions that are not connected listed in a summary unless the request says otherwise."""
PAGE_LIMIT = 100
"""Sessions in a detail page unless the request says otherwise."""
MAX_LIMIT = 1000
PAGE_BUDGET = 1 << 20
"""Encoded bytes of session detail one page may carry (the client takes frames up to 4 MiB)."""

URGENCY: Mapping[SessionStatus, int] = {
    SessionStatus.FAILED: 0,
    SessionStatus.DISCONNECTED: 1,
    SessionStatus.WAITING: 2,
    SessionStatus.RECONNECTING: 3,
    SessionStatus.BACKING_OFF: 4,
    SessionStatus.CONNECTING: 5,
    SessionStatus.STOPPED: 6,
    SessionStatus.CONNECTED: 7,
}
"""The order a summary lists sessions in: the ones that need a person first."""


@attrs.frozen(kw_only=True)
class StatusQuery:
    """One ``status`` request: the summary, or one page of detail."""

    detail: bool = False
    session_ids: tuple[str, ...] = ()
    """Only these sessions (detail); each must exist."""
    statuses: tuple[SessionStatus, ...] = ()
    """Only sessions in one of these statuses (detail)."""
    cursor: str | None = None
    """The previous page's `next_cursor`."""
    limit: int | None = None
    """At most this many sessions (default `SUMMARY_LIMIT` or `PAGE_LIMIT`)."""
    history: int | None = None
    """Past episodes per session in detail (the newest); None: all that are kept."""


@final
@attrs.frozen(kw_only=True)
class SessionBrief:
    """One line of the summary: a session that is not connected, and why."""

    id: str
    backend: str
    target: str
    status: SessionStatus
    status_since: float
    attempts: int
    """Attempts in the current episode."""
    last_error: str | None
    """The error of the current episode's last attempt, if one failed."""
    last_disconnect: Disconnect | None
    next_attempt_at: float | None


@final
@attrs.frozen(kw_only=True)
class StatusSummary:
    """The fleet at a glance: counts by status and the sessions that are not connected."""

    total: int
    by_status: Mapping[str, int]
    not_connected: tuple[SessionBrief, ...]
    """The most urgent first (failed, disconnected, waiting for its target, reconnecting, backing off,
    connecting), then by id."""
    not_connected_total: int
    stats: SupervisorStats
    last_seq: int


@final
@attrs.frozen(kw_only=True)
class StatusPage:
    """One page of per-session detail, in id order."""

    sessions: tuple[SessionState, ...]
    matched: int
    """Sessions the query matched, on every page."""
    next_cursor: str | None
    """Pass it back for the next page; None on the last one."""
    history_omitted: tuple[str, ...] = ()
    """Sessions whose past episodes were left out because one of them alone exceeded the page budget."""


def _brief(state: SessionState) -> SessionBrief:
    episode = state.episode
    last = episode.attempts[-1] if episode is not None and episode.attempts else None
    return SessionBrief(
        id=state.id, backend=state.backend, target=state.target, status=state.status,
        status_since=state.status_since, attempts=episode.attempts_made if episode is not None else 0,
        last_error=last.error if last is not None and not last.success else None,
        last_disconnect=state.last_disconnect, next_attempt_at=state.next_attempt_at,
    )


def summarize(
    statuses: Mapping[str, SessionStatus],
    state_of: Callable[[str], SessionState],
    stats: SupervisorStats,
    last_seq: int,
    limit: int = SUMMARY_LIMIT,
) -> StatusSummary:
    """Counts by status and the `limit` most urgent sessions that are not connected.

    Takes every session's status (cheap) and builds the full state only of the ones it shows.
    """
    down = [(URGENCY.get(status, len(URGENCY)), sid) for sid, status in statuses.items()
            if status is not SessionStatus.CONNECTED]
    down.sort()
    by_status: dict[str, int] = {}
    for status in statuses.values():
        by_status[status.value] = by_status.get(status.value, 0) + 1
    return StatusSummary(
        total=len(statuses),
        by_status=dict(sorted(by_status.items(), key=lambda kv: URGENCY.get(SessionStatus(kv[0]), len(URGENCY)))),
        not_connected=tuple(_brief(state_of(sid)) for _, sid in down[:limit]), not_connected_total=len(down),
        stats=stats, last_seq=last_seq,
    )


def _matching(ids: Collection[str], status_of: Callable[[str], SessionStatus], query: StatusQuery) -> list[str]:
    if query.session_ids:
        known = ids if isinstance(ids, (set, frozenset, dict)) else set(ids)
        missing = [sid for sid in query.session_ids if sid not in known]
        if missing:
            raise SessionNotFoundError(missing[0])
        chosen: Collection[str] = set(query.session_ids)
    else:
        chosen = ids
    if query.statuses:
        wanted = frozenset(query.statuses)
        chosen = [sid for sid in chosen if status_of(sid) in wanted]
    return sorted(chosen)


def page(
    ids: Collection[str],
    state_of: Callable[[str], SessionState],
    query: StatusQuery,
    *,
    budget: int = PAGE_BUDGET,
    status_of: Callable[[str], SessionStatus] | None = None,
) -> StatusPage:
    """The page of detail after `query.cursor`: at most `limit` sessions and `budget` encoded bytes.

    `ids` are the registered sessions and `state_of` gives one's state: only the
    page's sessions are looked at (and, with a status filter, each one's status).
    A page always holds at least one session when any is left, so paging
    ends; a session that alone exceeds the budget comes without its past
    episodes (named in `history_omitted`).
    """
    matched = _matching(ids, status_of or (lambda sid: state_of(sid).status), query)
    start = bisect.bisect_right(matched, query.cursor) if query.cursor is not None else 0
    limit = query.limit if query.limit is not None else PAGE_LIMIT
    chosen: list[SessionState] = []
    omitted: list[str] = []
    used = 0
    for sid in matched[start:start + limit]:
        state = state_of(sid)
        if query.history is not None:
            state = attrs.evolve(state, history=state.history[-query.history:] if query.history else ())
        size = encoded_size(to_dict(state))
        if chosen and used + size > budget:
            break
        if not chosen and size > budget and state.history:
            state = attrs.evolve(state, history=())
            omitted.append(sid)
            size = encoded_size(to_dict(state))
        chosen.append(state)
        used += size
    end = start + len(chosen)
    return StatusPage(
        sessions=tuple(chosen), matched=len(matched), next_cursor=chosen[-1].id if end < len(matched) else None,
        history_omitted=tuple(omitted),
    )


# -- the JSON form, both ways -------------------------------------------------------------------


def encoded_size(data: Any) -> int:
    """Bytes of `data` as compact JSON (what a page budget counts)."""
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _redacted_preserved(converter: cattrs.Converter) -> None:
    """Status replies redact as the store does: secret env values, extras and assignments."""
    plain = make_dict_unstructure_fn(PreservedState, converter)
    regex = secret_name_matcher()

    def hook(state: PreservedState) -> dict[str, Any]:
        data: dict[str, Any] = plain(state)
        if regex is not None:
            data["env"] = redact_env(state.env)
            data["extra"] = redact_mapping(state.extra, regex)
            if state.last_command is not None:
                data["last_command"] = redact_command(state.last_command)
        return data

    converter.register_unstructure_hook(PreservedState, hook)


def make_status_converter() -> cattrs.Converter:
    """States, attempts, stats and status replies as JSON-ready dicts (enums as values), and back."""
    converter = cattrs.Converter()
    _redacted_preserved(converter)
    return converter


_STATUS = make_status_converter()


def to_dict(value: Any) -> Any:
    """A state, attempt, stats value, summary or page as JSON-ready data (secrets redacted)."""
    return _STATUS.unstructure(value)


def from_dict(data: Any, cls: type[Any]) -> Any:
    """A reply's value as `cls` (the client's side); cattrs errors when the shape is wrong."""
    return _STATUS.structure(data, cls)
