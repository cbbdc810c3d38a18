"""Plugin discovery through entry points: tether's own strategies and the scripted backend."""

from __future__ import annotations

import pytest
import trio

import tether
from tether import PluginError, check_backend, check_strategy, discover_plugins
from tether.testing import ScriptedBackend

SIX = {"simple-reconnect", "session-restore", "process-restart", "ssh-reconnect", "state-recovery", "force-reconnect"}


def test_the_six_reference_strategies_come_from_entry_points() -> None:
    registry = discover_plugins()
    assert set(registry.strategies) >= SIX
    assert "scripted" in registry.backends
    origins = {(p.group, p.name): p.distribution for p in registry.loaded}
    assert all(origins[(tether.STRATEGIES_GROUP, name)] == "tether" for name in SIX)


def test_allow_list_loads_only_what_it_names() -> None:
    registry = discover_plugins(allow=["simple-reconnect"])
    assert set(registry.strategies) == {"simple-reconnect"}
    assert registry.backends == {}


def test_contract_checks_say_what_is_missing() -> None:
    with pytest.raises(PluginError, match="is not a backend: missing features, default_strategies"):
        check_backend(type("Half", (), {"name": "half", "validate": None, "target": None, "open_link": None})())
    with pytest.raises(PluginError, match="must be an async callable"):
        check_strategy(type("Sync", (), {"name": "sync", "__call__": lambda self, ctx: None})())
    old = ScriptedBackend()
    old.plugin_api = 99  # type: ignore[misc]
    with pytest.raises(PluginError, match="targets tether plugin API 99; this tether speaks 1"):
        check_backend(old)


async def test_unknown_backend_lists_the_known_ones() -> None:
    async with tether.open_supervisor(registry=discover_plugins(allow=["scripted"])) as sup:
        with pytest.raises(tether.UnknownBackendError, match="known backends: scripted"):
            await sup.register(tether.SessionSpec(id="a", backend="nope"))
        await trio.lowlevel.checkpoint()
