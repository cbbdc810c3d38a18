"""tether's backend conformance suite (`tether.testing.BackendContract`) against a real sshd."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

import tether
from tether.testing import BackendContract
from tether_ssh import SshBackend

from .conftest import Sshd, fast_policy, free_port, ssh_spec


def _frozen(sshd: Sshd, **options: Any) -> Iterator[tether.SessionSpec]:
    """A spec for this sshd while its listener is SIGSTOPped (continued afterwards)."""
    assert sshd.process is not None
    sshd.process.send_signal(signal.SIGSTOP)
    try:
        yield ssh_spec(sshd, policy=fast_policy(connect_timeout=1.5), **options)
    finally:
        sshd.process.send_signal(signal.SIGCONT)


class TestSshBackendContract(BackendContract):
    """Connect, probe, close, cancel and leak checks; failing = refused port, hanging = frozen sshd.

    No closing spec: the backend runs the user's login shell (or tmux), never a
    command of the spec's choosing, so there is no honest "link that ends by itself"
    to ask for; the live fault tests cover links the peer ends.
    """

    @pytest.fixture
    def tether_backend_factory(self) -> type[SshBackend]:
        return SshBackend

    @pytest.fixture
    def tether_backend_spec(self, sshd: Sshd) -> tether.SessionSpec:
        return ssh_spec(sshd, session_id="contract", policy=fast_policy(connect_timeout=4.0))

    @pytest.fixture
    def tether_backend_failing_spec(self, sshd: Sshd) -> tether.SessionSpec:
        """Nothing listens on this port of 127.0.0.1: ssh says Connection refused."""
        return ssh_spec(sshd, session_id="contract-refused", port=free_port(),
                        policy=fast_policy(connect_timeout=4.0))

    @pytest.fixture
    def tether_backend_hanging_spec(self, sshd: Sshd) -> Iterator[tether.SessionSpec]:
        """The listening sshd is SIGSTOPped: the kernel accepts, nobody ever sends a banner."""
        yield from _frozen(sshd, session_id="contract-frozen")


class TestSshTmuxBackendContract(BackendContract):
    """The same suite with persist = "tmux": REATTACH really re-attaches, or answers GONE, typed."""

    @pytest.fixture
    def tether_backend_factory(self) -> type[SshBackend]:
        return SshBackend

    @pytest.fixture
    def tether_backend_spec(self, sshd: Sshd, tmux_socket: str) -> tether.SessionSpec:
        return ssh_spec(sshd, session_id="contract-tmux", persist="tmux", tmux_socket=tmux_socket,
                        policy=fast_policy(connect_timeout=4.0))

    @pytest.fixture
    def tether_backend_failing_spec(self, sshd: Sshd, tmux_socket: str) -> tether.SessionSpec:
        """A refused port, with persist = "tmux": the failure is typed before any tmux is asked."""
        return ssh_spec(sshd, session_id="contract-tmux-refused", port=free_port(), persist="tmux",
                        tmux_socket=tmux_socket, policy=fast_policy(connect_timeout=4.0))

    @pytest.fixture
    def tether_backend_hanging_spec(self, sshd: Sshd, tmux_socket: str) -> Iterator[tether.SessionSpec]:
        """The frozen listener again, with persist = "tmux"."""
        yield from _frozen(sshd, session_id="contract-tmux-frozen", persist="tmux", tmux_socket=tmux_socket)
