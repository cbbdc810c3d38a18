"""Shared fixtures for the core tests: a registry with tether's own strategies and a
fresh scripted backend, so other installed plugins never change what the core tests see."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import tether
from tether.store._pg_schema import migrate_url
from tether.testing import ScriptedBackend, require_peer
from tether.testing._postgres import PostgresServer, postgres_missing_reason, running_postgres

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


# -- a real PostgreSQL (Debian's server, started here as an unprivileged user) -------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the whole run; tests get their own database from `pg_url`."""
    reason = postgres_missing_reason()
    require_peer(reason is None, reason or "")
    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database with tether's tables (`tether store migrate`), named after the test."""
    name = "t_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    url = postgres_server.create_database(name)
    migrate_url(url, "tether")
    return url


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, to restart, kill or stop without disturbing the others."""
    reason = postgres_missing_reason()
    require_peer(reason is None, reason or "")
    with running_postgres() as server:
        yield server
