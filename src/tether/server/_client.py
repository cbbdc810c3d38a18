"""Talking to a running daemon: where it is, how to authenticate, what a failure means."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import attrs
from trio_websocket import ConnectionRejected, HandshakeError, WebSocketConnection, open_websocket_url

DAEMON_FILE = "daemon.json"
DEFAULT_URL = "ws://127.0.0.1:8765"


class CannotConnectError(Exception):
    """No daemon answered at the address (exit code 3)."""


class AuthRejectedError(Exception):
    """The daemon refused our token (exit code 4)."""


def write_daemon_file(state: Path, *, host: str, port: int) -> Path:
    """Tell clients where this daemon listens (0600; removed when the daemon stops)."""
    path = state / DAEMON_FILE
    shown = f"[{host}]" if ":" in host else host
    data = {"pid": os.getpid(), "host": host, "port": port, "url": f"ws://{shown}:{port}"}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(data, file)
    tmp.replace(path)
    return path


def daemon_url(state: Path, explicit: str | None) -> str:
    """--url, else the running daemon's daemon.json, else the default address."""
    if explicit:
        return explicit.rstrip("/")
    try:
        data = json.loads((state / DAEMON_FILE).read_text(encoding="utf-8"))
        return str(data["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_URL


@attrs.frozen
class Endpoint:
    url: str
    token: str | None

    def address(self, path: str, query: Mapping[str, Sequence[str] | str] | None = None) -> str:
        q = urlencode({k: v for k, v in (query or {}).items()}, doseq=True)
        return f"{self.url}{path}" + (f"?{q}" if q else "")


@asynccontextmanager
async def connect(
    endpoint: Endpoint, path: str, query: Mapping[str, Any] | None = None, *, max_message_size: int = 1 << 22
) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket to the daemon; failures become `CannotConnectError` or `AuthRejectedError`.

    A rejected handshake other than 401/403 comes out as `ConnectionRejected`.
    """
    headers = [(b"Authorization", f"Bearer {endpoint.token}".encode())] if endpoint.token else []
    try:
        async with open_websocket_url(
            endpoint.address(path, query), extra_headers=headers, connect_timeout=5, disconnect_timeout=1,
            max_message_size=max_message_size,
        ) as ws:
            yield ws
    except ConnectionRejected as exc:
        if exc.status_code in (401, 403):
            raise AuthRejectedError(_reason(exc)) from None
        raise
    except (OSError, HandshakeError) as exc:
        raise CannotConnectError(f"cannot connect to the daemon at {endpoint.url}: {exc}") from None


def _reason(exc: ConnectionRejected) -> str:
    try:
        message = json.loads(exc.body or b"{}")["error"]["message"]
        return f"{exc.status_code}: {message}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.status_code}"


def rejection_type(exc: ConnectionRejected) -> str | None:
    """The error type in a rejected handshake's JSON body (``bad-since``), if any."""
    try:
        kind = json.loads(exc.body or b"{}")["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return None
    return kind if isinstance(kind, str) else None
