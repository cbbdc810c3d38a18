"""Jupyter Server's terminal REST API: create a terminal, and where its WebSocket lives."""

from __future__ import annotations

import json
from urllib.parse import quote, urlsplit, urlunsplit

import trio

from tether import ConnectMode, DisconnectReason, LinkError

from ._classify import error_for_connect, error_for_status
from ._http import request
from ._options import WebSocketOptions


def api_url(options: WebSocketOptions, path: str) -> str:
    """``base_url`` joined with `path` (the base may carry a prefix like ``/jupyter/``)."""
    assert options.base_url is not None
    base = options.base_url if options.base_url.endswith("/") else options.base_url + "/"
    return base + path


def websocket_url(options: WebSocketOptions, name: str) -> str:
    """The terminado WebSocket of terminal `name`: ``ws(s)://.../terminals/websocket/NAME``."""
    parts = urlsplit(api_url(options, f"terminals/websocket/{quote(name, safe='')}"))
    return urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, parts.path, "", ""))


def auth_headers(options: WebSocketOptions) -> dict[str, str]:
    """The spec's headers plus ``Authorization: token ...`` (kept out of URLs and server logs)."""
    headers = dict(options.headers)
    if options.token:
        headers["Authorization"] = f"token {options.token}"
    return headers


async def create_terminal(options: WebSocketOptions, *, mode: ConnectMode, name: str | None = None) -> str:
    """``POST /api/terminals``; returns the new terminal's name. Errors are typed `LinkError`s."""
    what = "creating a Jupyter terminal"
    body = json.dumps({"name": name} if name else {}).encode()
    headers = {**auth_headers(options), "Content-Type": "application/json", "Accept": "application/json"}
    try:
        response = await request("POST", api_url(options, "api/terminals"), headers=headers, body=body)
    except (OSError, trio.BrokenResourceError) as exc:
        raise error_for_connect(exc, what, mode=mode, redact=options.redact) from exc
    except Exception as exc:  # h11 protocol errors: the peer is not an HTTP server
        raise LinkError(f"{what}: {type(exc).__name__}", reason=DisconnectReason.BACKEND_ERROR) from exc
    if response.status != 200:
        raise error_for_status(response.status, what, mode=mode)
    try:
        created = json.loads(response.body)
        new_name = created["name"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LinkError(f"{what}: unexpected answer", reason=DisconnectReason.BACKEND_ERROR) from exc
    if not isinstance(new_name, str) or not new_name:
        raise LinkError(f"{what}: the answer has no terminal name", reason=DisconnectReason.BACKEND_ERROR)
    return new_name


async def terminal_exists(options: WebSocketOptions, name: str, *, mode: ConnectMode) -> bool:
    """``GET /api/terminals/NAME``: True on 200, False on 404; other answers are typed errors."""
    what = "looking up a Jupyter terminal"
    url = api_url(options, f"api/terminals/{quote(name, safe='')}")
    try:
        response = await request("GET", url, headers={**auth_headers(options), "Accept": "application/json"})
    except (OSError, trio.BrokenResourceError) as exc:
        raise error_for_connect(exc, what, mode=mode, redact=options.redact) from exc
    except Exception as exc:
        raise LinkError(f"{what}: {type(exc).__name__}", reason=DisconnectReason.BACKEND_ERROR) from exc
    if response.status == 404:
        return False
    if response.status != 200:
        raise error_for_status(response.status, what, mode=mode)
    return True


DELETE_TIMEOUT = 5.0


async def delete_terminal(options: WebSocketOptions, name: str, *, bound: float = DELETE_TIMEOUT) -> bool:
    """``DELETE /api/terminals/NAME``: end the shell on the server. Best effort, shielded and
    bounded (cleanup must never wedge a session); True if the server confirmed (204) or had
    already lost it (404)."""
    url = api_url(options, f"api/terminals/{quote(name, safe='')}")
    with trio.CancelScope(shield=True), trio.move_on_after(bound):
        try:
            response = await request("DELETE", url, headers=auth_headers(options))
        except Exception:  # a server that is down or gone has nothing left to delete
            return False
        return response.status in (200, 204, 404)
    return False
