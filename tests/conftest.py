"""Shared fixtures for the core tests: a registry with tether's own strategies and a
fresh scripted backend, so other installed plugins never change what the core tests see."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import tether
from tether.testing import ScriptedBackend

CORE_STRATEGIES = (
    tether.SimpleReconnect,
    tether.SessionRestore,
    tether.ProcessRestart,
    tether.SshReconnect,
    tether.StateRecovery,
    tether.ForceReconnect,
)


def core_registry(backend: ScriptedBackend) -> tether.PluginRegistry:
    registry = tether.PluginRegistry()
    for strategy in CORE_STRATEGIES:
        registry.add_strategy(strategy())
    registry.add_backend(backend)
    return registry


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
async def sup(backend: ScriptedBackend) -> AsyncIterator[tether.Supervisor]:
    async with tether.open_supervisor(registry=core_registry(backend), seed=1234) as supervisor:
        yield supervisor


@pytest.fixture
def spec() -> Callable[..., tether.SessionSpec]:
    """Build a scripted spec: ``spec("a", max_retries=3, options={...})``."""

    def make(session_id: str = "s1", *, options: dict[str, Any] | None = None, **policy: Any) -> tether.SessionSpec:
        policy.setdefault("jitter", "none")
        policy.setdefault("base_delay", 1.0)
        policy.setdefault("max_delay", 8.0)
        policy.setdefault("multiplier", 2.0)
        return tether.SessionSpec(
            id=session_id,
            backend="scripted",
            options=options or {},
            policy=tether.ReconnectPolicy(**policy),
        )

    return make


def drain(sub: tether.Subscription) -> list[tether.Event | tether.Lagged]:
    """Everything buffered in a subscription right now."""
    items = []
    while (item := sub.get_nowait()) is not None:
        items.append(item)
    return items
