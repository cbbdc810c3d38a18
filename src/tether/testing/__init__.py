"""What a test of tether, or of a tether plugin, needs: a scripted backend, the contract suites
(`BackendContract`, `StrategyContract`, the console checks of `tether.testing.console`) and
helpers that wait on conditions, never on luck."""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

from ..engine._supervisor import Supervisor
from ..rules._state import SessionState, SessionStatus
from ._scripted import Ledger, Script, ScriptedBackend, ScriptedLink
from .console import (
    Marked,
    Span,
    check_continues,
    check_resize,
    check_runs,
    check_wait_pattern,
    count_markers,
    print_marker,
    read_span,
    wait_connected,
    wait_for_prompt,
)
from .contract import (
    BackendContract,
    LinkRecorder,
    StrategyContract,
    count_open_fds,
    count_tasks,
    make_link_request,
)


def require_peer(available: bool, reason: str) -> None:
    """Skip a test whose real peer (sshd, tmux, Jupyter) is missing, except under CI.

    On a laptop without the peer the test skips with `reason`; with ``CI=true``
    a missing peer is a failure, so CI can never pass by skipping real tests.
    """
    if available:
        return
    import pytest  # only tests call this; tether itself does not depend on pytest

    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but the real peer is missing: {reason}")
    pytest.skip(reason)


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 600.0, step: float = 0.01) -> None:
    """Poll `predicate` every `step` seconds of trio time; fail after `timeout`.

    Under ``autojump_clock`` the waiting costs no real time, so tests stay fast
    without sleeping real seconds.
    """
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state that has no event of its own
            await trio.sleep(step)


async def wait_reconnected(
    supervisor: Supervisor, session_id: str, before: SessionState, *, timeout: float = 600.0
) -> SessionState:
    """Wait until the session is connected again after a drop seen since `before` (its state then).

    Counts successful reconnect attempts, so it never mistakes the link that was
    up before the drop for the one after it (no sleep-and-hope).
    """

    def reconnected() -> bool:
        now = supervisor.state(session_id)
        return now.status is SessionStatus.CONNECTED and (
            now.attempts_total - now.attempts_failed > before.attempts_total - before.attempts_failed
        )

    await wait_until(reconnected, timeout=timeout)
    return supervisor.state(session_id)


async def wait_for_status(
    supervisor: Supervisor, session_id: str, status: SessionStatus, *, timeout: float = 600.0
) -> None:
    """Wait until the session reaches `status` (trio time; use with MockClock)."""
    await wait_until(lambda: supervisor.state(session_id).status is status, timeout=timeout)


__all__ = [
    "BackendContract",
    "Ledger",
    "LinkRecorder",
    "Marked",
    "Script",
    "ScriptedBackend",
    "ScriptedLink",
    "Span",
    "StrategyContract",
    "check_continues",
    "check_resize",
    "check_runs",
    "check_wait_pattern",
    "count_markers",
    "count_open_fds",
    "count_tasks",
    "make_link_request",
    "print_marker",
    "read_span",
    "require_peer",
    "wait_connected",
    "wait_for_prompt",
    "wait_for_status",
    "wait_reconnected",
    "wait_until",
]
