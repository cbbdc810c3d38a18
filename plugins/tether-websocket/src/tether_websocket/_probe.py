"""The readiness probe for a WebSocket target: does the server answer HTTP at all?

A WebSocket starts as an HTTP request, so an HTTP answer of any status says
the server is up and serving (a ``400 Can "Upgrade" only to "WebSocket"``
or a ``403`` is still an answer; credentials are the sessions' business).
Only a gateway's 502/503/504 means the server behind it is not there. For a
Jupyter Server the probe asks ``<base_url>api/``, which needs no token; for
a plain ``ws://`` URL, the same path over HTTP, without its query (where a
token may be). No credentials are sent and nothing is created.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import h11
import trio

from tether import DisconnectReason, LinkError

from ._http import request
from ._options import WebSocketOptions

GATEWAY_DOWN = frozenset({502, 503, 504})


def probe_url(options: WebSocketOptions) -> str:
    """The HTTP URL the probe asks: Jupyter's ``api/``, or the WebSocket's path over http(s)."""
    if options.base_url is not None:
        base = options.base_url if options.base_url.endswith("/") else options.base_url + "/"
        parts = urlsplit(base)
        return urlunsplit((parts.scheme, parts.netloc, parts.path + "api/", "", ""))
    assert options.url is not None
    parts = urlsplit(options.url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, parts.path or "/", "", ""))


async def probe(options: WebSocketOptions, deadline: float) -> None:
    """Return once the server answers HTTP; `LinkError` (network, timeout) if it does not by `deadline`."""
    url = probe_url(options)
    shown = options.redact(url)
    with trio.move_on_at(deadline) as scope:
        try:
            response = await request("GET", url, headers={"Accept": "application/json"})
        except (OSError, trio.BrokenResourceError) as exc:
            raise LinkError(f"{shown}: {options.redact(str(exc)) or type(exc).__name__}",
                            reason=DisconnectReason.NETWORK) from exc
        except h11.ProtocolError as exc:
            raise LinkError(f"{shown} did not answer HTTP: {exc}", reason=DisconnectReason.NETWORK) from exc
        if response.status in GATEWAY_DOWN:
            raise LinkError(f"{shown} answered HTTP {response.status}: the server behind it is down",
                            reason=DisconnectReason.NETWORK)
        if response.status == 0:
            raise LinkError(f"{shown} closed without an HTTP answer", reason=DisconnectReason.NETWORK)
    if scope.cancelled_caught:
        raise LinkError(f"{shown} did not answer in time", reason=DisconnectReason.TIMEOUT)
