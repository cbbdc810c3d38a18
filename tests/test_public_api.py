"""The public API is what tether/__init__.py exports, sorted and complete."""

from __future__ import annotations

import tether


def test_all_is_sorted_and_resolves() -> None:
    assert tether.__all__ == sorted(tether.__all__)
    for name in tether.__all__:
        assert hasattr(tether, name), name


def test_the_core_names_are_exported() -> None:
    for name in (
        "open_supervisor",
        "Supervisor",
        "SessionSpec",
        "ReconnectPolicy",
        "Backend",
        "Link",
        "Strategy",
        "RecoveryContext",
        "TargetProbe",
        "DisconnectReason",
        "EventBus",
        "discover_plugins",
    ):
        assert name in tether.__all__


def test_no_private_names_leak() -> None:
    assert not [n for n in tether.__all__ if n.startswith("_")]
