"""Close codes and handshake failures map to typed reasons. Pure."""

from __future__ import annotations

import pytest
import trio_websocket

import tether
from tether import ConnectMode, DisconnectReason
from tether_websocket import disconnect_for_close, reason_for_close
from tether_websocket._classify import error_for_close, error_for_connect, error_for_status


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (1000, DisconnectReason.REMOTE_CLOSED),
        (1001, DisconnectReason.REMOTE_CLOSED),
        (1006, DisconnectReason.NETWORK),
        (1008, DisconnectReason.AUTH),
        (1011, DisconnectReason.REMOTE_CLOSED),
        (1002, DisconnectReason.BACKEND_ERROR),
        (4000, DisconnectReason.REMOTE_CLOSED),
        (None, DisconnectReason.NETWORK),
    ],
)
def test_close_codes(code: int | None, reason: DisconnectReason) -> None:
    """Going away is remote-closed, policy violation is auth, abnormal is network."""
    assert reason_for_close(code) is reason


def test_close_detail_is_redacted() -> None:
    """The peer's close text never leaks a token."""
    found = disconnect_for_close(1008, "bad token=abc123", redact=lambda s: s.replace("abc123", "***"))
    assert found == tether.Disconnect(DisconnectReason.AUTH, "websocket closed with code 1008: bad token=***")


def test_policy_violation_is_an_auth_error() -> None:
    """A 1008 close found by an operation raises AuthError, never retried."""
    closed = trio_websocket.ConnectionClosed(trio_websocket.CloseReason(1008, "revoked"))
    error = error_for_close(closed)
    assert isinstance(error, tether.AuthError)
    assert not error.reason.retryable


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_handshake_is_auth(status: int) -> None:
    """401/403 on the handshake is an AuthError in every mode."""
    rejected = trio_websocket.ConnectionRejected(status, (), None)
    for mode in ConnectMode:
        assert isinstance(error_for_connect(rejected, "connecting", mode=mode), tether.AuthError)


def test_404_on_reattach_means_gone() -> None:
    """A named terminal answering 404 during REATTACH cannot be re-attached; otherwise it is remote-closed."""
    assert isinstance(error_for_status(404, "x", mode=ConnectMode.REATTACH), tether.ReattachUnavailableError)
    fresh = error_for_status(404, "x", mode=ConnectMode.FRESH)
    assert not isinstance(fresh, tether.ReattachUnavailableError)
    assert fresh.reason is DisconnectReason.REMOTE_CLOSED


def test_refused_is_network_and_timeout_is_timeout() -> None:
    """trio-websocket wraps a refused connect in HandshakeError; the cause decides."""
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as os_error:
            raise trio_websocket.HandshakeError from os_error
    except trio_websocket.HandshakeError as wrapped:
        refused = error_for_connect(wrapped, "connecting", mode=ConnectMode.FRESH)
    assert refused.reason is DisconnectReason.NETWORK
    assert "Connection refused" in refused.detail
    timed_out = error_for_connect(trio_websocket.ConnectionTimeout(), "connecting", mode=ConnectMode.FRESH)
    assert timed_out.reason is DisconnectReason.TIMEOUT


def test_unexpected_error_is_redacted() -> None:
    """An unclassified failure is a backend error whose text has the secret masked."""
    error = error_for_connect(
        RuntimeError("boom at ws://h/?token=s3cret"), "connecting", mode=ConnectMode.FRESH,
        redact=lambda s: s.replace("s3cret", "***"),
    )
    assert error.reason is DisconnectReason.BACKEND_ERROR
    assert "s3cret" not in str(error)
