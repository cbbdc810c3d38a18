"""One HTTP request over trio + h11: all the REST a Jupyter terminal needs.

Why not httpx: creating a terminal is one POST, and h11 already comes with
trio-websocket (through wsproto), so the plugin adds no dependency tree.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import attrs
import h11
import trio

_MAX_BODY = 1 << 20


@attrs.frozen
class Response:
    status: int
    body: bytes


async def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] = {},
    body: bytes = b"",
    ssl_context: ssl.SSLContext | None = None,
) -> Response:
    """Send one request on a new connection and read the whole response (bounded to 1 MiB).

    Raises OSError / trio.BrokenResourceError for transport failures and
    h11.RemoteProtocolError for a peer that does not speak HTTP; the caller
    bounds the time.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if secure:
        stream = trio.SSLStream(stream, ssl_context or ssl.create_default_context(), server_hostname=host)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        head = [("Host", parts.netloc.rsplit("@", 1)[-1]), ("Content-Length", str(len(body))),
                ("Connection", "close"), *headers.items()]
        await stream.send_all(conn.send(h11.Request(method=method, target=target, headers=head)) or b"")
        await stream.send_all((conn.send(h11.Data(data=body)) if body else b"") or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        status = 0
        chunks = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(65536)))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks += event.data
                if len(chunks) > _MAX_BODY:
                    break
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        return Response(status, bytes(chunks))
