"""The distribution registers backend ``ssh`` the way a third-party plugin would."""

from __future__ import annotations

import tether
from tether_ssh import SshBackend


def test_entry_point_loads_the_ssh_backend() -> None:
    """discover_plugins finds ``ssh`` from the tether-ssh distribution and it passes the contract check."""
    registry = tether.discover_plugins(allow=["ssh"])
    backend = registry.backend("ssh")
    assert isinstance(backend, SshBackend)
    assert [i.distribution for i in registry.loaded if i.name == "ssh"] == ["tether-ssh"]
    assert tether.check_backend(backend) is backend


def test_features_and_default_strategies() -> None:
    """Remote, restorable, re-attachable; transport losses and a killed ssh go to ssh-reconnect,
    auth/host-key to nothing."""
    backend = SshBackend()
    assert backend.features == {tether.Feature.REATTACH, tether.Feature.RESTORE_STATE, tether.Feature.REMOTE}
    for reason in ("network", "timeout", "health-check", "remote-closed", "forced", "backend-error"):
        assert backend.default_strategies[tether.DisconnectReason(reason)] == "ssh-reconnect"
    assert tether.DisconnectReason.AUTH not in backend.default_strategies
    assert tether.DisconnectReason.HOST_KEY not in backend.default_strategies
