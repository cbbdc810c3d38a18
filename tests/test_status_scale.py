"""`status` at 10,000 sessions with long attempt records, through a real event server: the
summary is small, every detail page stays under its byte budget, and paging visits every session
once, in id order. (Before paging, 1,000 such sessions made a 9.9 MB reply, over the frame limit.)
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from tether import (
    Attempt,
    Disconnect,
    DisconnectReason,
    Episode,
    EpisodeOutcome,
    SessionSpec,
    SessionState,
    open_supervisor,
)
from tether import SessionStatus as S
from tether.rules._status import PAGE_BUDGET, SUMMARY_LIMIT
from tether.server._client import DaemonEndpoint, open_client
from tether.server._server import serve_events
from tether.server._settings import ServerSettings
from tether.testing import ScriptedBackend

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

SESSIONS = 10_000
DOWN = 300
"""Sessions whose every connect fails: they are the summary's "not connected"."""
EPISODES = 5
ATTEMPTS = 10
"""Past episodes per session and attempts per episode: 50 attempts on record each."""


def _history(now: float) -> tuple[Episode, ...]:
    error = "connection refused by 10.20.30.40:22 after the TCP handshake timed out twice (ECONNREFUSED)"
    episodes = []
    for number in range(1, EPISODES + 1):
        attempts = tuple(
            Attempt(number=i, strategy="simple-reconnect", started_at=now - 1000 + i, duration=0.25,
                    success=i == ATTEMPTS, error=None if i == ATTEMPTS else error,
                    reason=None if i == ATTEMPTS else DisconnectReason.NETWORK)
            for i in range(1, ATTEMPTS + 1)
        )
        episodes.append(Episode(number=number, disconnect=Disconnect(DisconnectReason.NETWORK, error),
                                started_at=now - 1000, outcome=EpisodeOutcome.RECOVERED, attempts_made=ATTEMPTS,
                                attempts=attempts, ended_at=now - 990, recovery_time=10.0))
    return tuple(episodes)


def _record(sid: str, history: tuple[Episode, ...], now: float) -> SessionState:
    return SessionState(id=sid, backend="scripted", target="scripted", status=S.CONNECTED, status_since=now,
                        episode=None, history=history, preserved=None, last_disconnect=history[-1].disconnect,
                        connected_at=now, next_attempt_at=None, episodes_total=EPISODES,
                        episodes_recovered=EPISODES, episodes_failed=0)


async def test_status_of_ten_thousand_sessions_is_bounded_and_pages_through_all(nursery: trio.Nursery) -> None:
    """Summary under 64 KiB; detail pages under PAGE_BUDGET plus a little; every id once, in order."""
    now = time.time()
    history = _history(now)
    step = SESSIONS // DOWN
    async with open_supervisor(backends=[ScriptedBackend()], connect_limit=None) as supervisor:
        with supervisor.subscribe(types=["reconnect.succeeded", "session.connected"], buffer=2 * SESSIONS) as up:
            for i in range(SESSIONS):
                sid = f"s{i:05d}"
                down = i % step == 0 and i < step * DOWN
                options: dict[str, Any] = {"fail_connects": 10**9} if down else {}
                spec = SessionSpec(id=sid, backend="scripted", options=options)
                await supervisor.register(spec, restore=_record(sid, history, now))
            with trio.fail_after(120):
                for _ in range(SESSIONS - DOWN):  # every restored session is back: the counts settle
                    await up.get()
        port = await nursery.start(lambda task_status: serve_events(
            supervisor, ServerSettings(port=0), token=None, task_status=task_status))
        url = f"ws://127.0.0.1:{port}/control"
        with trio.fail_after(120):

            async with open_websocket_url(url, max_message_size=1 << 22, receive_buffer_size=1 << 16) as ws:
                await ws.send_message(json.dumps({"id": 1, "op": "status"}))
                frame = await ws.get_message()
                summary = json.loads(frame)["result"]
                assert len(frame) < 64 * 1024, len(frame)
                assert summary["total"] == SESSIONS and sum(summary["by_status"].values()) == SESSIONS
                assert summary["not_connected_total"] == DOWN
                assert len(summary["not_connected"]) == SUMMARY_LIMIT

                seen: list[str] = []
                largest = 0
                cursor: str | None = None
                pages = 0
                started = time.monotonic()
                while True:
                    request: dict[str, Any] = {"id": 2, "op": "status", "detail": True, "limit": 1000}
                    if cursor is not None:
                        request["cursor"] = cursor
                    await ws.send_message(json.dumps(request))
                    frame = await ws.get_message()
                    largest = max(largest, len(frame.encode()))
                    page = json.loads(frame)["result"]
                    pages += 1
                    assert page["matched"] == SESSIONS
                    assert all(len(s["history"]) == EPISODES for s in page["sessions"])
                    seen += [s["id"] for s in page["sessions"]]
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                elapsed = time.monotonic() - started
            assert seen == sorted(f"s{i:05d}" for i in range(SESSIONS))
            assert largest <= PAGE_BUDGET + 4096, largest
            print(f"\n{SESSIONS} sessions x {EPISODES * ATTEMPTS} attempts: {pages} pages, largest "
                  f"{largest / 1024:.0f} KiB, all pages in {elapsed:.1f}s")

            async with open_client(DaemonEndpoint(f"ws://127.0.0.1:{port}", None)) as client:
                failed = [state.id async for state in client.sessions(statuses=["failed", "backing-off",
                                                                                "reconnecting"])]
                typed = await client.status()
            assert len(failed) == DOWN and typed.not_connected_total == DOWN
