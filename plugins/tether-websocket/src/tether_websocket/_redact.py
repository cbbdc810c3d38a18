"""Keep secrets out of everything we report: error text, URLs, handles, logs."""

from __future__ import annotations

import re
from collections.abc import Iterable

_QUERY_SECRET = re.compile(r"(?i)\b((?:token|access_token|auth|password|key)=)[^&#\s'\"]+")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization:\s*(?:token|bearer|basic)\s+)\S+")

REDACTED = "***"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret, ``token=...`` query value and auth header value masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)
    return _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
