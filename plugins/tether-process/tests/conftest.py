"""Shared helpers for the process backend's tests: real programs, real ptys, real time.

Real subprocesses and MockClock do not mix, so these tests wait in real time,
kept short (policy delays of 0.05-0.2 s) and bounded by ``fail_after``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import tether
from tether.testing import wait_until
from tether_process import ProcessBackend, TmuxHandle

CORE_STRATEGIES = (
    tether.SimpleReconnect, tether.SessionRestore, tether.ProcessRestart,
    tether.SshReconnect, tether.StateRecovery, tether.ForceReconnect,
)
Spec = Callable[..., tether.SessionSpec]


def registry_with(backend: ProcessBackend) -> tether.PluginRegistry:
    """tether's own strategies plus this backend, whatever else is installed."""
    registry = tether.PluginRegistry()
    for strategy in CORE_STRATEGIES:
        registry.add_strategy(strategy())
    registry.add_backend(backend)
    return registry


def tmux_sockets(runtime_dir: str) -> list[str]:
    directory = os.path.join(runtime_dir, "tmux")
    if not os.path.isdir(directory):
        return []
    return [os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".sock")]


@pytest.fixture(autouse=True)
def _hermetic_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shells started here must not run the developer's ~/.bashrc: it may do slow, stateful
    things (``pyenv rehash`` takes a lock file), and these tests kill shells mid-startup."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    """A short private dir (tmux socket paths must fit in 108 bytes); tmux leftovers are killed."""
    path = tempfile.mkdtemp(prefix="tp-", dir="/tmp")
    yield path
    for socket in tmux_sockets(path):
        subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def backend(runtime_dir: str) -> ProcessBackend:
    return ProcessBackend(runtime_dir=runtime_dir)


@pytest.fixture
async def sup(backend: ProcessBackend) -> AsyncIterator[tether.Supervisor]:
    async with tether.open_supervisor(registry=registry_with(backend), seed=7) as supervisor:
        yield supervisor


@pytest.fixture
def spec() -> Spec:
    """``spec("id", argv=[...], max_retries=2)``: backend options as keywords, policy via ``policy=``."""

    def make(session_id: str = "p1", *, policy: dict[str, Any] | None = None, **options: Any) -> tether.SessionSpec:
        knobs: dict[str, Any] = {
            "jitter": "none", "base_delay": 0.05, "multiplier": 2.0, "max_delay": 0.2,
            "connect_timeout": 10.0, "health_check_interval": 0.0,
        }
        knobs.update(policy or {})
        return tether.SessionSpec(
            id=session_id, backend="process", options=options, policy=tether.ReconnectPolicy(**knobs)
        )

    return make


async def wait_for(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Poll in real time until `predicate` holds; fail after `within` seconds."""
    await wait_until(predicate, timeout=within, step=0.02)


async def connected(sup: tether.Supervisor, session_id: str, within: float = 10.0) -> None:
    await wait_for(lambda: sup.state(session_id).status is tether.SessionStatus.CONNECTED, within)


def children() -> set[int]:
    """Pids whose parent is this process (zombies included: they would be leaks too)."""
    me = os.getpid()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.add(int(name))
    return found


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def tmux_has(handle: TmuxHandle) -> bool:
    result = subprocess.run(
        ["tmux", "-S", handle.socket, "has-session", "-t", f"={handle.session}"],
        capture_output=True, check=False,
    )
    return result.returncode == 0
