"""Open a client WebSocket on a stream we own, so the socket is always closed.

``trio_websocket.open_websocket_url`` leaks the TCP socket when the server
closes first (its ``aclose`` returns early once a close reason is set, and a
client waits for the server's TCP close), which ``filterwarnings = error``
turns into a ResourceWarning failure. Owning the stream fixes that, and lets
us bound both handshakes with our own deadline and ``close_timeout``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
import trio_websocket


@asynccontextmanager
async def open_socket(
    url: str,
    *,
    deadline: float,
    close_timeout: float,
    headers: list[tuple[bytes, bytes]],
    subprotocols: Iterable[str] | None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """Connect and handshake by `deadline` (`trio.TooSlowError` after it); close within `close_timeout`.

    A rejected handshake raises `trio_websocket.ConnectionRejected` (possibly
    inside an exception group from the reader's nursery).
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = host if port in (80, 443) else f"{host}:{port}"
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
    with trio.fail_at(deadline):
        if secure:
            stream = await trio.open_ssl_over_tcp_stream(
                host, port, ssl_context=ssl_context or ssl.create_default_context(), https_compatible=True
            )
        else:
            stream = await trio.open_tcp_stream(host, port)
    async with stream, trio.open_nursery() as nursery:
        with trio.fail_at(deadline):
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, host_header, resource, subprotocols=subprotocols, extra_headers=headers
            )
        try:
            yield ws
        finally:
            with trio.CancelScope(shield=True) as closing:
                closing.deadline = trio.current_time() + close_timeout  # a dead peer never answers
                await ws.aclose()
            nursery.cancel_scope.cancel()
