"""force-reconnect announces only the strategies it really tries (a process session is never told
`trying ssh-reconnect`), with a real program on a pty and with the scripted backend."""

from __future__ import annotations

import pytest
import trio

import tether
from tether import Feature, SessionSpec, open_supervisor
from tether.testing import ScriptedBackend

from .conftest import core_registry


async def _tried(supervisor: tether.Supervisor, session_id: str) -> list[str]:
    with supervisor.subscribe(session_ids=[session_id], types=["reconnect.strategy"]) as events:
        attempt = await supervisor.force_reconnect(session_id, "force-reconnect")
        assert attempt is not None and attempt.success
        tried = []
        while (item := events.get_nowait()) is not None:
            tried.append(item.strategy)  # type: ignore[union-attr]
    return tried


async def test_a_local_session_is_not_tried_with_ssh_reconnect(autojump_clock: object) -> None:
    """The features of a local program (re-attach, restore-state): its kept program is re-attached."""
    backend = ScriptedBackend(features=frozenset({Feature.REATTACH, Feature.RESTORE_STATE}))
    async with open_supervisor(registry=core_registry(backend)) as supervisor:
        await supervisor.register(SessionSpec(id="local", backend="scripted"))
        await trio.sleep(1)
        assert await _tried(supervisor, "local") == ["session-restore"]


async def test_without_a_handle_or_a_feature_nothing_is_announced_in_vain(autojump_clock: object) -> None:
    """Restore-state only: session-restore and ssh-reconnect cannot apply and are not announced."""
    backend = ScriptedBackend(features=frozenset({Feature.RESTORE_STATE}))
    async with open_supervisor(registry=core_registry(backend)) as supervisor:
        await supervisor.register(SessionSpec(id="local", backend="scripted"))
        await trio.sleep(1)
        assert await _tried(supervisor, "local") == ["process-restart"]


async def test_a_remote_session_is_tried_with_ssh_reconnect(autojump_clock: object) -> None:
    backend = ScriptedBackend(features=frozenset({Feature.REMOTE}))
    async with open_supervisor(registry=core_registry(backend)) as supervisor:
        await supervisor.register(SessionSpec(id="remote", backend="scripted"))
        await trio.sleep(1)
        assert await _tried(supervisor, "remote") == ["ssh-reconnect"]


async def test_a_real_process_session_is_never_told_trying_ssh_reconnect() -> None:
    """tether-process on a real pty: force-reconnect names what it tried, and ssh-reconnect is not one."""
    pytest.importorskip("tether_process")
    async with open_supervisor() as supervisor:
        await supervisor.register(SessionSpec(id="sh", backend="process", options={"argv": ["sh", "-c", "sleep 60"]}))
        with trio.fail_after(20):
            with supervisor.subscribe(session_ids=["sh"], types=["session.connected"], since=0) as up:
                await up.get()
            tried = await _tried(supervisor, "sh")
    assert tried and "ssh-reconnect" not in tried
