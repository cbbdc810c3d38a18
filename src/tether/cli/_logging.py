"""Logging setup: readable lines by default, one JSON object a line with --log-json.

A filter scrubs every line, and the traceback it carries, as the rest of
tether scrubs free text (`tether.rules._secrets.redact_text`: ``token=...``
query values, ``Bearer ...`` and ``Authorization:`` credentials), of the
daemon's own token and of every secret value the engine has seen
(`tether.engine._secrets.known_secrets`: sessions' literal secrets and the
values their references resolved to).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from ..engine._secrets import known_secrets
from ..rules._secrets import REDACTED as REDACTED
from ..rules._secrets import redact_text


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with tokens and the known `secrets` replaced."""
    return redact_text(text, secrets)


class RedactingFilter(logging.Filter):
    """Renders each record's message and traceback once, scrubbed, so no handler can leak a secret."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = (*self.secrets, *known_secrets())
        message = record.getMessage()
        cleaned = redact(message, secrets)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info:  # an exception's text may quote what it was given: a secret
            record.exc_text = redact(self._formatter.formatException(record.exc_info), secrets)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
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
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
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
