"""Every event sequence docs/events.md shows is exactly what a real supervisor emits."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.lowlevel

import tether
from tether import DisconnectReason, SessionStatus
from tether.testing import ScriptedBackend, wait_for_status, wait_until

from .conftest import core_registry, drain

DOC = Path(__file__).parent.parent / "docs" / "events.md"
BLOCK = re.compile(r"^```events (?P<name>[\w-]+)\n(?P<body>.*?)^```", re.M | re.S)


def documented() -> dict[str, list[str]]:
    return {m["name"]: m["body"].split() for m in BLOCK.finditer(DOC.read_text())}


def spec(**policy: object) -> tether.SessionSpec:
    policy.setdefault("jitter", "none")
    policy.setdefault("base_delay", 1.0)
    return tether.SessionSpec(id="s1", backend="scripted", policy=tether.ReconnectPolicy(**policy))  # type: ignore[arg-type]


async def _episodes(sup: tether.Supervisor, n: int) -> None:
    await wait_until(lambda: sup.state("s1").episodes_total >= n)


async def connect(sup: tether.Supervisor, backend: ScriptedBackend) -> None:
    await sup.register(spec())
    await wait_for_status(sup, "s1", SessionStatus.CONNECTED)


async def drop_and_recover(sup: tether.Supervisor, backend: ScriptedBackend) -> None:
    backend.fail_next("s1", 1)
    backend.drop("s1")
    await _episodes(sup, 1)
    await wait_until(lambda: sup.state("s1").episode.outcome is tether.EpisodeOutcome.RECOVERED)  # type: ignore[union-attr]


async def give_up(sup: tether.Supervisor, backend: ScriptedBackend) -> None:
    backend.fail_next("s1", 100)
    backend.drop("s1")
    await _episodes(sup, 1)
    await wait_for_status(sup, "s1", SessionStatus.FAILED)


async def auth_failure(sup: tether.Supervisor, backend: ScriptedBackend) -> None:
    backend.fail_next("s1", 100, DisconnectReason.AUTH)
    backend.drop("s1")
    await _episodes(sup, 1)
    await wait_for_status(sup, "s1", SessionStatus.FAILED)


async def unregister(sup: tether.Supervisor, backend: ScriptedBackend) -> None:
    await sup.unregister("s1")


SCENARIOS: dict[str, tuple[Callable[[tether.Supervisor, ScriptedBackend], Awaitable[None]], dict[str, object]]] = {
    "drop-and-recover": (drop_and_recover, {}),
    "give-up": (give_up, {"max_retries": 2}),
    "auth-failure": (auth_failure, {"max_retries": None}),
    "unregister": (unregister, {}),
}


def test_every_documented_sequence_is_tested() -> None:
    assert set(documented()) == {"connect", "restore-after-restart", *SCENARIOS}


async def test_connect_sequence(autojump_clock: object) -> None:
    backend = ScriptedBackend()
    async with tether.open_supervisor(registry=core_registry(backend), seed=1) as sup:
        with sup.subscribe() as sub:
            await connect(sup, backend)
            assert [e.type for e in drain(sub)] == documented()["connect"]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_documented_sequence(name: str, autojump_clock: object) -> None:
    scenario, policy = SCENARIOS[name]
    backend = ScriptedBackend()
    async with tether.open_supervisor(registry=core_registry(backend), seed=1) as sup:
        await sup.register(spec(**policy))
        await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
        with sup.subscribe() as sub:
            await scenario(sup, backend)
            await trio.lowlevel.checkpoint()
            assert [e.type for e in drain(sub)] == documented()[name]


async def test_restore_after_restart_sequence(autojump_clock: object) -> None:
    """A restart with the program still alive: the episode continues and the program is re-attached."""
    store = tether.MemoryStore()
    backend = ScriptedBackend()
    async with tether.open_supervisor(registry=core_registry(backend), store=store, flush_interval=0.01) as sup:
        await sup.register(spec())
        await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
        backend.links["s1"].report_state(tether.PreservedState(cwd="/srv", handle="tmux-1"))
    async with tether.open_supervisor(registry=core_registry(backend), store=store, flush_interval=0.01) as sup:
        with sup.subscribe(since=0) as sub:
            await wait_for_status(sup, "s1", SessionStatus.CONNECTED)
            events = [e for e in drain(sub) if isinstance(e, tether.Event) and e.session_id == "s1"]
    assert [e.type for e in events] == documented()["restore-after-restart"]
    registered, disconnected, started, strategy, succeeded = events
    assert isinstance(registered, tether.SessionRegistered) and registered.restored
    assert isinstance(disconnected, tether.SessionDisconnected)
    assert disconnected.reason is DisconnectReason.SUPERVISOR_RESTART
    assert isinstance(started, tether.ReconnectStarted) and started.strategy == "force-reconnect"
    assert isinstance(strategy, tether.StrategyAttempted) and strategy.strategy == "session-restore"
    assert isinstance(succeeded, tether.ReconnectSucceeded)
    assert succeeded.used_strategy == "session-restore" and succeeded.same_program
