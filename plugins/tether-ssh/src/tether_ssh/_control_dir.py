"""The private directory that holds shared connections' control sockets and logs.

A control socket is a door into an authenticated session: whoever can connect
to it runs commands as the user on the remote host. So the sockets live in a
directory only the user can enter: ``<runtime dir>/tether-ssh-<uid>/`` (mode
0700, owned by the user, checked, never trusted blindly), with one 0700
subdirectory per tether process (``<pid>-<random>``), removed when the process
is done with it. A subdirectory whose process is gone was left by a crash: its
masters are asked to exit and it is removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from tether import LinkError

MAX_SOCKET_PATH = 90
"""sun_path holds 108 bytes on Linux (104 on BSDs); ssh appends a 17-byte suffix while it
binds, so our names stay well below."""


def base_directory() -> Path:
    """``$XDG_RUNTIME_DIR`` (per user, on tmpfs) when set, else the system temp directory."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    root = Path(runtime) if runtime and os.path.isdir(runtime) else Path(tempfile.gettempdir())
    return root / f"tether-ssh-{os.geteuid()}"


def ensure_private(path: Path) -> None:
    """Create `path` as 0700, or accept it only if it is a real directory of ours that nobody else can enter."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise LinkError(f"cannot create the control directory {path}: {exc}") from exc
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise LinkError(f"refusing the control directory {path}: not a directory owned by uid {os.geteuid()}")
    if info.st_mode & 0o077:
        raise LinkError(
            f"refusing the control directory {path}: mode {stat.S_IMODE(info.st_mode):o} lets others in (want 700)"
        )


def make_process_directory(base: Path) -> Path:
    """A fresh 0700 directory for this process's sockets, inside the checked `base`."""
    ensure_private(base)
    made = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))
    if any(c in str(made) for c in '%"\'\\ \n') or len(str(made)) > MAX_SOCKET_PATH - 16:
        shutil.rmtree(made, ignore_errors=True)
        raise LinkError(f"the control directory {made} is too long or has characters ssh would expand")
    return made


def stale_directories(base: Path) -> list[Path]:
    """Subdirectories of `base` whose tether process no longer exists (left by a crash)."""
    stale: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return stale
    for entry in entries:
        pid_text = entry.name.split("-", 1)[0]
        if not pid_text.isdigit() or not entry.is_dir() or entry.is_symlink():
            continue
        if int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        stale.append(entry)
    return stale


def sockets_in(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if p.is_socket()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Whether `pid` still runs. A zombie does not: a tether killed with -9 stays one until its
    parent reaps it (an orphan waits on init, which may take seconds), and a start meanwhile
    must still sweep what it left."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc to ask: os.kill said it exists
    return state not in (b"Z", b"X")
