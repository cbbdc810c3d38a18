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


@pytest.mark.parametrize(("features", "tried"), [
    ({Feature.REATTACH, Feature.RESTORE_STATE}, ["session-restore"]),  # a local program: re-attached
    ({Feature.RESTORE_STATE}, ["process-restart"]),  # nothing to re-attach to, and not remote
    ({Feature.REMOTE}, ["ssh-reconnect"]),
])
async def test_only_what_can_apply_is_announced(
    autojump_clock: object, features: set[Feature], tried: list[str]
) -> None:
    """The strategies a backend's features rule out are never announced, let alone run."""
    backend = ScriptedBackend(features=frozenset(features))
    async with open_supervisor(registry=core_registry(backend)) as supervisor:
        await supervisor.register(SessionSpec(id="s", backend="scripted"))
        await trio.sleep(1)
        assert await _tried(supervisor, "s") == tried


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
