"""The backend is found through its entry point and satisfies tether's contract."""

from __future__ import annotations

import pytest

import tether
from tether import ConnectMode, DisconnectReason, Feature, SessionSpec
from tether_websocket import WebSocketBackend


def test_entry_point_loads() -> None:
    """``tether.backends`` / ``websocket`` names this distribution's backend, and it loads cleanly."""
    registry = tether.discover_plugins(allow=["websocket"])
    assert isinstance(registry.backends["websocket"], WebSocketBackend)
    info = next(p for p in registry.loaded if p.name == "websocket")
    assert info.distribution == "tether-websocket"
    assert not [f for f in registry.failures if f.name == "websocket"]


def test_contract_and_defaults() -> None:
    """Features and the documented default strategies; auth is never mapped (never retried)."""
    backend = tether.check_backend(WebSocketBackend())
    assert backend.features == {Feature.REATTACH, Feature.RESTORE_STATE, Feature.REMOTE}
    assert backend.default_strategies[DisconnectReason.NETWORK] == "ssh-reconnect"
    assert backend.default_strategies[DisconnectReason.PROCESS_EXIT] == "process-restart"
    assert DisconnectReason.AUTH not in backend.default_strategies
    assert ConnectMode.REATTACH  # the mode ssh-reconnect tries first


def test_validate_and_target() -> None:
    """validate rejects an unknown adapter; target is host:port for the connect limit."""
    backend = WebSocketBackend()
    good = SessionSpec(id="a", backend="websocket", options={"base_url": "https://h.example/jp/"})
    backend.validate(good)
    assert backend.target(good) == "h.example:443"
    assert backend.target(SessionSpec(id="b", backend="websocket", options={"url": "ws://h:81/x"})) == "h:81"
    bad = SessionSpec(id="c", backend="websocket", options={"url": "ws://h/", "adapter": "morse"})
    with pytest.raises(tether.ConfigError, match="unknown adapter 'morse'"):
        backend.validate(bad)
