"""A broken plugin costs its own sessions only: it is reported, and everything else runs.

Plugins here are real entry points of a real (temporary) distribution: a
``broken_plugin-0.1.dist-info`` directory with METADATA and entry_points.txt,
plus its modules, on ``sys.path``, which is where importlib_metadata looks.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import trio
import trio.testing

from tether import (
    BACKENDS_GROUP,
    STRATEGIES_GROUP,
    ConfigError,
    DisconnectReason,
    Jitter,
    PluginError,
    PluginFailed,
    PluginRegistry,
    ReconnectFailed,
    ReconnectPolicy,
    SessionSpec,
    SessionStatus,
    UnknownBackendError,
    discover_plugins,
    open_supervisor,
)
from tether.testing import wait_for_status

# A backend with the whole contract; each broken plugin below changes one thing.
_GOOD_BACKEND = '''
from contextlib import asynccontextmanager
import trio
from tether import Feature

class Link:
    async def probe(self):
        await trio.lowlevel.checkpoint()
    def current_state(self):
        return None
    async def send(self, data):
        await trio.lowlevel.checkpoint()

class Backend:
    name = NAME
    plugin_api = 1
    features = frozenset()
    default_strategies = {}
    def validate(self, spec):
        pass
    def target(self, spec):
        return NAME
    @asynccontextmanager
    async def open_link(self, request):
        await self.connect(request)
        yield Link()
    async def connect(self, request):
        await trio.lowlevel.checkpoint()  # CONNECT
'''

_MODULES = {
    "tiso_noimport": 'raise ImportError("libfoo.so.1: cannot open shared object file")',
    "tiso_wrongtype": "class NotABackend:\n    name = 'wrongtype'\n",
    "tiso_future": _GOOD_BACKEND.replace("NAME", "'future'").replace("plugin_api = 1", "plugin_api = 99"),
    "tiso_future_shape": _GOOD_BACKEND.replace("NAME", "'future-shape'")
    .replace("plugin_api = 1", "plugin_api = 99\n    def __init__(self, config):\n        pass"),
    "tiso_raising": _GOOD_BACKEND.replace("NAME", "'raising'").replace(
        "await trio.lowlevel.checkpoint()  # CONNECT", "raise RuntimeError('plugin bug in connect')"
    ),
    "tiso_hanging": _GOOD_BACKEND.replace("NAME", "'hanging'").replace(
        "await trio.lowlevel.checkpoint()  # CONNECT",
        "with trio.CancelScope(deadline=float('inf')):  # ignores request.deadline\n"
        "            await trio.sleep_forever()",
    ),
    "tiso_strategies": textwrap.dedent("""\
        class SyncStrategy:
            name = "sync-strategy"
            def __call__(self, ctx):
                return None

        class FutureStrategy:
            name = "future-strategy"
            plugin_api = 99
            async def __call__(self, ctx):
                return await ctx.connect("fresh")
        """),
}

_ENTRY_POINTS = {
    BACKENDS_GROUP: {
        "noimport": "tiso_noimport:Backend",
        "wrongtype": "tiso_wrongtype:NotABackend",
        "future": "tiso_future:Backend",
        "future-shape": "tiso_future_shape:Backend",
        "raising": "tiso_raising:Backend",
        "hanging": "tiso_hanging:Backend",
    },
    STRATEGIES_GROUP: {
        "sync-strategy": "tiso_strategies:SyncStrategy",
        "future-strategy": "tiso_strategies:FutureStrategy",
    },
}

_REFERENCE = ["simple-reconnect", "process-restart", "force-reconnect", "session-restore", "scripted"]
_OURS = [name for group in _ENTRY_POINTS.values() for name in group]


def install_distribution(
    root: Path,
    name: str,
    version: str,
    entry_points: Mapping[str, Mapping[str, str]],
    modules: Mapping[str, str],
) -> None:
    """Write a distribution importlib_metadata will find once `root` is on sys.path."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{ep} = {value}" for ep, value in eps.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The broken-plugin 0.1 distribution, visible to entry-point discovery for one test."""
    install_distribution(tmp_path, "broken-plugin", "0.1", _ENTRY_POINTS, _MODULES)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for module in _MODULES:
        sys.modules.pop(module, None)


def _registry() -> PluginRegistry:
    return discover_plugins(allow=[*_REFERENCE, *_OURS])


def _error(registry: PluginRegistry, group: str, name: str) -> str:
    failure = registry.failure(group, name)
    assert failure is not None, f"{name} should have failed to load"
    assert (failure.distribution, failure.version) == ("broken-plugin", "0.1")
    return failure.error


@pytest.mark.usefixtures("broken_plugin")
def test_temporary_distribution_is_discovered() -> None:
    """The sys.path trick really exercises entry points: the good plugins in it load."""
    registry = _registry()
    loaded = {(p.name, p.distribution) for p in registry.loaded}
    assert {("raising", "broken-plugin"), ("hanging", "broken-plugin")} <= loaded
    assert "scripted" in registry.backends


@pytest.mark.usefixtures("broken_plugin")
def test_each_broken_plugin_is_recorded_and_the_rest_load() -> None:
    """Import errors, wrong types and foreign API versions are recorded with distribution and why."""
    registry = _registry()
    assert "ImportError: libfoo.so.1" in _error(registry, BACKENDS_GROUP, "noimport")
    assert "NotABackend is not a backend: missing features" in _error(registry, BACKENDS_GROUP, "wrongtype")
    assert "targets tether plugin API 99; this tether speaks 1" in _error(registry, BACKENDS_GROUP, "future")
    assert "must be an async callable" in _error(registry, STRATEGIES_GROUP, "sync-strategy")
    assert "plugin API 99" in _error(registry, STRATEGIES_GROUP, "future-strategy")
    assert {"raising", "hanging", "scripted"} <= set(registry.backends)
    assert {"simple-reconnect", "force-reconnect"} <= set(registry.strategies)


@pytest.mark.usefixtures("broken_plugin")
def test_api_mismatch_is_reported_before_the_plugin_is_built() -> None:
    """A plugin for API 99 whose constructor changed still gets the version error, not a TypeError."""
    error = _error(_registry(), BACKENDS_GROUP, "future-shape")
    assert "targets tether plugin API 99" in error


@pytest.mark.usefixtures("broken_plugin")
def test_strict_mode_refuses_to_start() -> None:
    """strict=True turns the first broken plugin into an error naming it and its distribution."""
    with pytest.raises(PluginError, match=r"from broken-plugin 0\.1 failed"):
        discover_plugins(allow=_OURS, strict=True)


@pytest.mark.usefixtures("broken_plugin")
async def test_failures_are_events_and_their_sessions_fail_clearly() -> None:
    """open_supervisor publishes PluginFailed; a session or policy naming a broken plugin is refused."""
    registry = _registry()
    async with open_supervisor(registry=registry) as sup:
        failed = {e.name: e for e in sup.bus.recent() if isinstance(e, PluginFailed)}
        assert {"noimport", "wrongtype", "future", "sync-strategy", "future-strategy"} <= set(failed)
        assert failed["noimport"].distribution == "broken-plugin"
        with pytest.raises(UnknownBackendError) as caught:
            await sup.register(SessionSpec(id="s1", backend="noimport"))
        assert "from broken-plugin failed to load: ImportError: libfoo.so.1" in str(caught.value.__cause__)
        policy = ReconnectPolicy(strategies={"network": "future-strategy"})
        with pytest.raises(ConfigError, match=r"plugin failed to load: PluginError: .*plugin API 99"):
            await sup.register(SessionSpec(id="s2", backend="scripted", policy=policy))
        assert sup.session_ids == []


@pytest.mark.usefixtures("broken_plugin")
async def test_raising_and_hanging_backends_cost_only_their_own_sessions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A backend that raises or hangs past its deadline fails its sessions; others stay up."""
    policy = ReconnectPolicy(
        max_retries=2, base_delay=1.0, max_delay=1.0, jitter=Jitter.NONE, connect_timeout=2.0,
        health_check_interval=0.0,
    )
    async with open_supervisor(registry=_registry()) as sup:
        good = SessionSpec(id="good", backend="scripted", policy=policy)
        await sup.register(good)
        await sup.register(SessionSpec(id="raises", backend="raising", policy=policy))
        await sup.register(SessionSpec(id="hangs", backend="hanging", policy=policy))
        await wait_for_status(sup, "raises", SessionStatus.FAILED)
        await wait_for_status(sup, "hangs", SessionStatus.FAILED)
        assert sup.state("good").status is SessionStatus.CONNECTED

        reasons: dict[str, set[DisconnectReason]] = {"raises": set(), "hangs": set()}
        errors: dict[str, set[str]] = {"raises": set(), "hangs": set()}
        for e in sup.bus.recent():
            if isinstance(e, ReconnectFailed) and e.session_id in reasons:
                reasons[e.session_id].add(e.reason)
                errors[e.session_id].add(e.error)
        assert reasons == {"raises": {DisconnectReason.BACKEND_ERROR}, "hangs": {DisconnectReason.TIMEOUT}}
        assert errors["raises"] == {"RuntimeError: plugin bug in connect"}
        assert all("connect_timeout (2.0s)" in e for e in errors["hangs"])

        # the supervisor still works: the good session recovers, a new one connects
        sup.registry.backends["scripted"].drop("good")  # type: ignore[attr-defined]
        await wait_for_status(sup, "good", SessionStatus.CONNECTED)
        await sup.register(SessionSpec(id="late", backend="scripted", policy=policy))
        await wait_for_status(sup, "late", SessionStatus.CONNECTED)
        with trio.fail_after(1):
            await sup.unregister("hangs")
