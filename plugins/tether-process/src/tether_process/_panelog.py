"""The pane log of ``persist = "tmux"``: every byte the program wrote, numbered, kept beside it.

tmux's ``pipe-pane -O`` hands the pane's raw output to GNU ``split``, which
writes it into segment files of a fixed size (``seg.000000000``,
``seg.000000001``, ...), so the byte at peer offset X is in segment
``X // segment_bytes`` at ``X % segment_bytes``: offsets need no index. Each
new segment's filter removes the one `SEGMENTS_KEPT` back, so the log is
bounded (at most ``SEGMENTS_KEPT * segment_bytes`` on disk) even while no
tether is reading, and it lives exactly as long as the program: it belongs to
the tmux server, not to tether.

A link reads the log from the offset the session's output log asks for
(`tether.LinkRequest.resume`) and reports each chunk with its offset
(``report_output_at``), so a re-attach delivers exactly the bytes tether has
not seen, and bytes the log trimmed meanwhile become an exact loss. New bytes
are noticed through inotify on the log's directory: no polling.

The program starts only once the pipe is in place (the pane first waits on a
``tmux wait-for`` channel that tether signals in the same tmux command that
sets up the pipe), so its first byte is at offset 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shlex
import shutil
from collections.abc import Callable

import attrs
import trio

from tether import PeerMark

SEGMENTS_KEPT = 4
DEFAULT_PANE_LOG_BYTES = 256 * 1024
"""Disk (usually tmpfs: memory) per tmux session: 1,000 sessions that fill it hold 256 MB."""
READ_SIZE = 65536
_SEGMENT = re.compile(r"seg\.(\d{9})")

_FILTER = """\
# tether pane log: write one segment, and remove the one SEGMENTS_KEPT back (split sets $FILE).
n=${FILE##*.}
n=${n#"${n%%[!0]*}"}
old=$((${n:-0} - @KEPT@))
if [ "$old" -ge 0 ]; then rm -f "$(printf '%s.%09d' "${FILE%.*}" "$old")"; fi
exec cat > "$FILE"
"""
_PIPE = """\
# tether pane log: the pane's output, cut into numbered segments of @BYTES@ bytes.
exec split -b @BYTES@ -d -a 9 --filter=". @FILTER@" - @PREFIX@
"""


@attrs.frozen
class PaneLog:
    """One program's pane log: its directory and segment size."""

    directory: str
    segment_bytes: int

    @property
    def stream(self) -> str:
        """The log's name in peer marks: one per program, never reused."""
        return "tmux-pane:" + os.path.basename(self.directory)

    def segment_path(self, index: int) -> str:
        return os.path.join(self.directory, f"seg.{index:09d}")

    def segments(self) -> list[int]:
        """Indices of the segments on disk, oldest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(_SEGMENT.fullmatch, names) if m)

    def end(self) -> int:
        """The peer offset after the last byte written so far."""
        present = self.segments()
        if not present:
            return 0
        last = present[-1]
        try:
            size = os.stat(self.segment_path(last)).st_size
        except FileNotFoundError:
            size = 0
        return last * self.segment_bytes + size

    def oldest(self) -> int:
        """The peer offset of the oldest byte still kept."""
        present = self.segments()
        return present[0] * self.segment_bytes if present else 0

    def pipe_command(self) -> str:
        """The ``pipe-pane`` command. tmux expands ``#`` formats and ``%`` time sequences in it,
        so it only names a script, with those characters doubled."""
        command = "exec /bin/sh " + shlex.quote(os.path.join(self.directory, "pipe.sh"))
        return command.replace("#", "##").replace("%", "%%")

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def create(parent: str, session_id: str, total_bytes: int) -> PaneLog:
    """A fresh pane log directory (0700) under `parent`, with its two scripts written."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", session_id)[:20]
    directory = os.path.join(parent, f"{slug}-{secrets.token_hex(6)}")
    os.mkdir(directory, 0o700)
    log = PaneLog(directory, max(1, total_bytes // SEGMENTS_KEPT))
    filter_path = os.path.join(directory, "filter.sh")
    with open(filter_path, "w", encoding="utf-8") as handle:
        handle.write(_FILTER.replace("@KEPT@", str(SEGMENTS_KEPT)))
    with open(os.path.join(directory, "pipe.sh"), "w", encoding="utf-8") as handle:
        handle.write(
            _PIPE.replace("@BYTES@", str(log.segment_bytes)).replace("@FILTER@", shlex.quote(filter_path))
            .replace("@PREFIX@", shlex.quote(os.path.join(directory, "seg.")))
        )
    return log


# -- following the log ----------------------------------------------------------------------------

_IN_MODIFY = 0x002
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _watch(directory: str) -> int:
    """An inotify descriptor (non-blocking) that becomes readable when `directory` changes."""
    libc = _libc()
    fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
    if int(libc.inotify_add_watch(fd, os.fsencode(directory), mask)) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"cannot watch {directory}: {os.strerror(err)}")
    return fd


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 65536):
            pass


class PaneLogReader:
    """Follows one pane log from a peer offset and hands each chunk on with its offset."""

    def __init__(self, log: PaneLog, start: int, emit: Callable[[PeerMark, bytes], None]) -> None:
        self.log = log
        self.position = start
        """The peer offset of the next byte to read."""
        self._emit = emit
        self._fd: int | None = None
        self._fd_index = -1

    async def run(self) -> None:
        """Read whatever is there, then wait for the directory to change; forever (cancel to stop)."""
        watch = _watch(self.log.directory)
        try:
            while True:
                self.read_available()
                await trio.lowlevel.wait_readable(watch)
                _drain(watch)
        finally:
            trio.lowlevel.notify_closing(watch)
            os.close(watch)
            self._close_segment()

    def read_available(self) -> int:
        """Hand on every byte on disk past `position` now; how many."""
        total = 0
        while True:
            index, offset = divmod(self.position, self.log.segment_bytes)
            fd = self._segment(index)
            if fd is None:
                later = [i for i in self.log.segments() if i > index]
                if not later:
                    return total  # not written yet
                # trimmed before we read it: go on from the oldest kept (an exact loss downstream)
                self.position = later[0] * self.log.segment_bytes
                continue
            data = os.pread(fd, min(READ_SIZE, self.log.segment_bytes - offset), offset)
            if not data:
                return total  # the end so far; a full segment moved `position` to the next one
            self._emit(PeerMark(self.log.stream, self.position), data)
            self.position += len(data)
            total += len(data)

    def _segment(self, index: int) -> int | None:
        if self._fd_index == index and self._fd is not None:
            return self._fd
        self._close_segment()
        try:
            self._fd = os.open(self.log.segment_path(index), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            return None
        self._fd_index = index
        return self._fd

    def _close_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._fd_index = -1
