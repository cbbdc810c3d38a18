"""Resolving secrets named by reference, just before a connect (see `tether.rules._secret_refs`).

``from_env`` reads the daemon's own environment; ``from_file`` reads a file
that only its owner may read (mode 0600 or stricter, like ssh's keys), with
one trailing newline stripped. Anything missing is a `LinkError` with reason
``secret-missing`` naming the option and where the value was looked for,
never the value. A literal that was redacted when a snapshot was written is
refused the same way: a program never receives ``[redacted]``.
"""

from __future__ import annotations

import os
import stat

import attrs

from ..rules._errors import LinkError
from ..rules._reasons import DisconnectReason
from ..rules._secret_refs import SecretRef, map_refs, missing_literals
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


def resolve_spec(spec: SessionSpec) -> SessionSpec:
    """`spec` with every reference replaced by its value; `LinkError(SECRET_MISSING)` if one is missing.

    The resolved spec goes to the backend for one connect and is never stored.
    """
    missing = missing_literals(spec.options)
    if missing:
        raise _missing(", ".join(missing), "was a literal secret and is not kept across restarts")
    return attrs.evolve(spec, options=map_refs(spec.options, _read))
