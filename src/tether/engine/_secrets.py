"""Resolving secrets named by reference, just before a connect (see `tether.rules._secret_refs`).

``from_env`` reads the daemon's own environment; ``from_file`` reads a file
that only its owner may read (mode 0600 or stricter, like ssh's keys), with
one trailing newline stripped. Anything missing is a `LinkError` with reason
``secret-missing`` naming the option and where the value was looked for,
never the value. A literal that was redacted when a snapshot was written is
refused the same way: a program never receives ``[redacted]``.

The process keeps one book of the secret values it has seen (`remember`,
`known_secrets`): literal secrets of every session registered or offered, and
every value a reference resolved to. Logging is process-wide, so the log
filter (``tether.cli._logging``) scrubs every line of them, tracebacks too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

import attrs

from ..rules._errors import LinkError
from ..rules._reasons import DisconnectReason
from ..rules._secret_refs import SecretRef, map_refs, missing_literals
from ..rules._secrets import longest_first
from ..rules._spec import SessionSpec


def _missing(path: str, problem: str) -> LinkError:
    return LinkError(f"secret {path}: {problem}", reason=DisconnectReason.SECRET_MISSING)


def _read(ref: SecretRef, path: str) -> str:
    if ref.kind == "from_env":
        value = os.environ.get(ref.name)
        if value is None:
            raise _missing(path, f"the daemon's environment has no {ref.name}")
        return value
    try:
        fd = os.open(ref.name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise _missing(path, f"cannot open {ref.name}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise _missing(path, f"{ref.name} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); chmod 600")
        if info.st_uid != os.getuid():
            raise _missing(path, f"{ref.name} belongs to uid {info.st_uid}, not to us ({os.getuid()})")
        with os.fdopen(fd, "r", encoding="utf-8", closefd=False) as file:
            text = file.read()
    finally:
        os.close(fd)
    return text[:-1] if text.endswith("\n") else text


def resolve_spec(spec: SessionSpec) -> tuple[SessionSpec, tuple[str, ...]]:
    """`spec` with every reference replaced by its value, and those values (each is a secret);
    `LinkError(SECRET_MISSING)` if one is missing.

    The resolved spec goes to the backend for one connect and is never stored.
    """
    missing = missing_literals(spec.options)
    if missing:
        raise _missing(", ".join(missing), "was a literal secret and is not kept across restarts")
    values: list[str] = []

    def read(ref: SecretRef, path: str) -> str:
        value = _read(ref, path)
        values.append(value)
        return value

    resolved = attrs.evolve(spec, options=map_refs(spec.options, read))
    remember(values)
    return resolved, tuple(values)


_KNOWN: dict[str, None] = {}
_known: tuple[str, ...] = ()


def remember(values: Iterable[str]) -> None:
    """Add secret values to the process's book (never removed: a secret stays one after its session goes)."""
    global _known
    new = [value for value in values if value and value not in _KNOWN]
    if new:
        _KNOWN.update(dict.fromkeys(new))
        _known = longest_first(_KNOWN)


def known_secrets() -> tuple[str, ...]:
    """Every secret value this process has seen, longest first (a longer one may contain a shorter)."""
    return _known
