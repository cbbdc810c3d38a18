"""The daemon's token and state directory: who may talk to the event server.

The token is made once (``secrets.token_urlsafe``), kept 0600 in a 0700
state directory, and compared with ``hmac.compare_digest`` so timing says
nothing about it. It is never logged.
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

logger = logging.getLogger("tether.auth")

TOKEN_FILE = "token"


def ensure_state_dir(path: Path) -> Path:
    """Create the directory 0700 (and tighten it if it was looser)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("state directory %s was mode %o; setting 0700", path, mode)
        path.chmod(0o700)
    return path


def read_token(directory: Path) -> str | None:
    """The token if one was made, else None."""
    try:
        return (directory / TOKEN_FILE).read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def load_or_create_token(directory: Path) -> str:
    """The daemon's token, made on first use (0600, created exclusively so two starts agree)."""
    ensure_state_dir(directory)
    path = directory / TOKEN_FILE
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning("token file %s was mode %o; setting 0600", path, mode)
            path.chmod(0o600)
        existing = read_token(directory)
        if existing is None:
            raise RuntimeError(f"token file {path} is empty; delete it to make a new token") from None
        return existing
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(token + "\n")
    logger.info("made a new token in %s", path)
    return token


def token_from_request(headers: Iterable[tuple[bytes, bytes]], query: Mapping[str, list[str]]) -> str | None:
    """The token a client sent: ``Authorization: Bearer <token>`` or ``?token=``."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    values = query.get("token")
    return values[-1] if values else None


def token_matches(sent: str, expected: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))
