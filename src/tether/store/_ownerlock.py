"""An exclusive, advisory lock on a file, naming the process that holds it.

Two daemons writing one snapshot database would each overwrite the other's
sessions with their own view of them. `flock` is released by the kernel when
its holder dies, even by SIGKILL, so a crashed daemon never leaves a stale
lock behind; the pid written into the file only makes the refusal readable.
On systems without `fcntl` (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import final

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class LockHeldError(Exception):
    """Another process holds the lock."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(f"{path} is held by {holder}")


@final
class OwnerLock:
    """``acquire`` once (non-blocking), ``release`` when done; the file itself is left in place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None or self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            os.close(fd)
            raise LockHeldError(self.path, f"process {holder}" if holder else "another process") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock
