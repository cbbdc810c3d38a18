"""One loopback rule for `tether check`, `tether run` and the event server."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (``127.0.0.1``, ``::1``, ``0:0:0:0:0:0:0:1``).

    Any other hostname is not trusted, however it looks (``127.evil.example``
    resolves wherever its owner likes).
    """
    if host.lower() == "localhost":
        return True
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(literal).is_loopback
    except ValueError:
        return False
