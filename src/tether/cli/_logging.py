"""Logging setup: readable lines by default, one JSON object a line with --log-json.

A filter scrubs anything that looks like a token (``token=...``,
``Bearer ...``) and the daemon's own token, wherever it appears.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_SECRET_PATTERNS = re.compile(r"((?:token=)|(?:Bearer\s+))[A-Za-z0-9_\-.~%]+", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with tokens replaced."""
    text = _SECRET_PATTERNS.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Renders each record's message once, scrubbed, so no handler can leak a secret."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


_FILTER = RedactingFilter()


def add_secret(secret: str) -> None:
    """Never log this value."""
    _FILTER.secrets = (*_FILTER.secrets, secret)


def setup_logging(level: str = "info", *, json_lines: bool = False) -> None:
    """Send tether's logs to stderr, human-readable or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_FILTER)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
