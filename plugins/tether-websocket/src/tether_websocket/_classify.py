"""Typed reasons for WebSocket closes and failed handshakes. Pure: no I/O, no clock.

Close codes (RFC 6455 section 7.4) map onto tether's reasons so recovery is
chosen by type: 1006 (no close frame: the TCP link died) is a network fault,
1008 (policy violation: a server revoking our credentials) is auth and never
retried, 1000/1001 are an orderly close by the peer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import trio
import trio_websocket

from tether import AuthError, ConnectMode, Disconnect, DisconnectReason, LinkError, ReattachUnavailableError

CLOSE_REASONS: Mapping[int, DisconnectReason] = {
    1000: DisconnectReason.REMOTE_CLOSED,  # normal closure
    1001: DisconnectReason.REMOTE_CLOSED,  # going away (server shutting down)
    1002: DisconnectReason.BACKEND_ERROR,  # protocol error
    1003: DisconnectReason.BACKEND_ERROR,  # unsupported data
    1005: DisconnectReason.REMOTE_CLOSED,  # close frame without a code
    1006: DisconnectReason.NETWORK,  # abnormal: the connection dropped without a close frame
    1007: DisconnectReason.BACKEND_ERROR,  # invalid payload data
    1008: DisconnectReason.AUTH,  # policy violation
    1009: DisconnectReason.BACKEND_ERROR,  # message too big
    1010: DisconnectReason.BACKEND_ERROR,  # mandatory extension
    1011: DisconnectReason.REMOTE_CLOSED,  # internal server error
    1012: DisconnectReason.REMOTE_CLOSED,  # service restart
    1013: DisconnectReason.REMOTE_CLOSED,  # try again later
    1014: DisconnectReason.NETWORK,  # bad gateway
    1015: DisconnectReason.NETWORK,  # TLS handshake failure
}


def reason_for_close(code: int | None) -> DisconnectReason:
    """The typed reason for a close code; no code at all means the link just died."""
    if code is None:
        return DisconnectReason.NETWORK
    return CLOSE_REASONS.get(code, DisconnectReason.REMOTE_CLOSED)


def disconnect_for_close(code: int | None, text: str | None, *, redact: Callable[[str], str] = str) -> Disconnect:
    """A `Disconnect` for a close with `code` and the peer's reason `text`."""
    detail = f"websocket closed with code {code}" if code is not None else "websocket closed without a code"
    if text:
        detail += f": {redact(text)}"
    return Disconnect(reason_for_close(code), detail)


def error_for_close(exc: trio_websocket.ConnectionClosed, *, redact: Callable[[str], str] = str) -> LinkError:
    """The `LinkError` to raise when an operation finds the link closed."""
    code = exc.reason.code if exc.reason is not None else None
    found = disconnect_for_close(code, exc.reason.reason if exc.reason else None, redact=redact)
    if found.reason is DisconnectReason.AUTH:
        return AuthError(found.detail)
    return LinkError(found.detail, reason=found.reason)


def error_for_status(status: int, what: str, *, mode: ConnectMode) -> LinkError:
    """The `LinkError` for an HTTP status refusing `what` (a handshake or a REST call)."""
    if status in (401, 403):
        return AuthError(f"{what} refused with HTTP {status}: check the token")
    if status in (404, 410):
        if mode is ConnectMode.REATTACH:
            return ReattachUnavailableError(f"{what} answered HTTP {status}: the terminal is gone")
        return LinkError(f"{what} answered HTTP {status}", reason=DisconnectReason.REMOTE_CLOSED)
    if status in (502, 503, 504):
        return LinkError(f"{what} answered HTTP {status}", reason=DisconnectReason.NETWORK)
    return LinkError(f"{what} answered HTTP {status}", reason=DisconnectReason.REMOTE_CLOSED)


def error_for_connect(
    exc: BaseException, what: str, *, mode: ConnectMode, redact: Callable[[str], str] = str
) -> LinkError:
    """The most specific `LinkError` for a failed connect (httpx's ``map_exceptions`` idea)."""
    if isinstance(exc, LinkError):
        return exc
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return error_for_status(exc.status_code, what, mode=mode)
    if isinstance(exc, (trio_websocket.ConnectionTimeout, trio.TooSlowError, TimeoutError)):
        return LinkError(f"{what} timed out", reason=DisconnectReason.TIMEOUT)
    if isinstance(exc, trio_websocket.ConnectionClosed):
        return error_for_close(exc, redact=redact)
    cause = exc.__cause__ if isinstance(exc, trio_websocket.HandshakeError) and exc.__cause__ else exc
    if isinstance(cause, (OSError, trio.BrokenResourceError, trio_websocket.HandshakeError)):
        text = redact(str(cause)) or type(cause).__name__
        return LinkError(f"{what} failed: {text}", reason=DisconnectReason.NETWORK)
    return LinkError(f"{what} failed: {type(exc).__name__}: {redact(str(exc))}", reason=DisconnectReason.BACKEND_ERROR)
