"""The remote pane log's shell pieces, run by a real sh with GNU coreutils, without ssh or tmux.

The bytes a pane would write go into ``pipe.sh`` (as pipe-pane would run it);
the follower (``tether_follow``) then reads the log from an offset, and its
records, parsed by `PaneStream`, must give exactly the bytes written at their
offsets: the trimmed part skipped (so the jump says how much), the live
segment followed as it grows, the end of the program noticed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether import PeerMark
from tether_ssh._panelog import SEGMENTS_KEPT, create_log, follow_function
from tether_ssh._panestream import PaneStream

TOTAL = 4096
SEGMENT = TOTAL // SEGMENTS_KEPT

pytestmark = pytest.mark.skipif(shutil.which("split") is None or shutil.which("tail") is None,
                                reason="needs GNU coreutils")


def source(size: int, start: int = 0) -> bytes:
    """Bytes that say where they are: line k holds its own number."""
    out = b"".join(b"%07d\n" % k for k in range(start // 8, (start + size) // 8 + 2))
    return out[start % 8 : start % 8 + size]


class Pane:
    """A log directory made by `create_log` and fed through its ``pipe.sh``, as tmux would."""

    def __init__(self, tmp: Path) -> None:
        env = {**os.environ, "TMPDIR": str(tmp)}
        made = subprocess.run(["sh", "-c", create_log("s1-abc", TOTAL, linger=0) + '; echo "$L"'], env=env,
                              capture_output=True, text=True, check=True)
        self.dir = Path(made.stdout.strip())
        self.pipe = subprocess.Popen(["sh", str(self.dir / "pipe.sh")], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, start_new_session=True)
        self.written = 0

    def write(self, size: int) -> None:
        assert self.pipe.stdin is not None
        self.pipe.stdin.write(source(size, self.written))
        self.pipe.stdin.flush()
        self.written += size
        wait(lambda: self.on_disk() == self.written, "the log to hold what was written")

    def on_disk(self) -> int:
        segments = sorted(self.dir.glob("seg.?????????"))
        if not segments:
            return 0
        return int(segments[-1].name[4:]) * SEGMENT + segments[-1].stat().st_size

    def end(self) -> None:
        assert self.pipe.stdin is not None
        self.pipe.stdin.close()
        wait(lambda: (self.dir / "ended").exists() or not self.dir.exists(), "the pipe to record the end")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pipe.pid, signal.SIGKILL)  # its input cat too
        self.pipe.wait()
        if self.pipe.stdin is not None:
            self.pipe.stdin.close()


def wait(predicate: object, what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    made = Pane(tmp_path)
    try:
        yield made
    finally:
        made.close()


class Follower:
    """``tether_follow DIR START`` as a child; its records parsed as they come."""

    def __init__(self, directory: Path, start: str) -> None:
        script = follow_function() + '\ntether_follow "$1" "$2"'
        self.process = subprocess.Popen(["sh", "-c", script, "sh", str(directory), start], stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        self.stream = PaneStream()
        self.chunks: list[tuple[PeerMark, bytes]] = []

    def read_until(self, predicate: object, within: float = 10.0) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + within
        while not predicate():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"follower stuck: {self.chunks[-3:]}"
            data = self.process.stdout.read(65536)
            if data:
                self.chunks += self.stream.feed(data)
            else:
                time.sleep(0.01)

    @property
    def received(self) -> int:
        return self.stream.position

    def placed(self) -> dict[int, bytes]:
        return {mark.offset: data for mark, data in self.chunks}

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def exact(chunks: list[tuple[PeerMark, bytes]]) -> tuple[int, bytes]:
    """The first offset and the bytes from there, checking the chunks are contiguous."""
    first = chunks[0][0].offset
    data = b""
    for mark, chunk in chunks:
        assert mark.offset == first + len(data), "a gap inside what the follower sent"
        data += chunk
    return first, data


def test_the_log_directory_is_private(pane: Pane) -> None:
    """0700, in a 0700 directory of the user's under $TMPDIR."""
    assert pane.dir.parent.name == f"tether-ssh-{os.getuid()}"
    for directory in (pane.dir, pane.dir.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_someone_elses_directory_is_refused(tmp_path: Path) -> None:
    """A per-user directory that is not private (a planted one) fails the connect, loudly."""
    (tmp_path / f"tether-ssh-{os.getuid()}").mkdir(mode=0o755)
    os.chmod(tmp_path / f"tether-ssh-{os.getuid()}", 0o755)
    made = subprocess.run(["sh", "-c", create_log("s1-abc", TOTAL)], env={**os.environ, "TMPDIR": str(tmp_path)},
                          capture_output=True, text=True)
    assert made.returncode == 1 and "must be a directory of ours with mode 0700" in made.stderr


def test_from_zero_after_a_trim_the_follower_jumps_to_the_oldest_kept_byte(pane: Pane) -> None:
    """10,000 bytes with 4,096 kept: from 0 the follower starts at the oldest kept segment, then follows."""
    pane.write(10_000)
    assert len(list(pane.dir.glob("seg.?????????"))) == SEGMENTS_KEPT  # the bound held with no reader
    follower = Follower(pane.dir, "0")
    try:
        follower.read_until(lambda: follower.received == 10_000)
        oldest = (10_000 // SEGMENT - SEGMENTS_KEPT + 1) * SEGMENT
        first, data = exact(follower.chunks)
        assert (first, data) == (oldest, source(10_000 - oldest, oldest))
        pane.write(3_000)  # live: the last segment grows, then new ones come
        follower.read_until(lambda: follower.received == 13_000)
        assert exact(follower.chunks) == (oldest, source(13_000 - oldest, oldest))
        assert follower.stream.stream == "ssh-pane:s1-abc"
    finally:
        follower.close()


def test_from_an_offset_it_sends_exactly_from_there_and_ends_with_the_program(pane: Pane) -> None:
    """Resume inside the kept range: the first byte sent is that offset's; the end of input ends it."""
    pane.write(5_000)
    follower = Follower(pane.dir, "4321")
    try:
        follower.read_until(lambda: follower.received == 5_000)
        assert exact(follower.chunks) == (4321, source(5_000 - 4321, 4321))
        pane.write(100)
        pane.end()
        follower.read_until(lambda: follower.process.poll() is not None and follower.received == 5_100)
        assert follower.process.returncode == 0, "the follower returns once the program's output is all sent"
        assert exact(follower.chunks) == (4321, source(5_100 - 4321, 4321))
        wait(lambda: not pane.dir.exists(), "the log to go with its program")
    finally:
        follower.close()


def test_from_the_end_only_new_bytes_come(pane: Pane) -> None:
    """A re-attach with no offset to resume from starts at the log's end (nothing replayed twice)."""
    pane.write(2_500)
    follower = Follower(pane.dir, "end")
    try:
        follower.read_until(lambda: follower.stream.stream is not None)
        pane.write(1_000)
        follower.read_until(lambda: follower.received == 3_500)
        assert exact(follower.chunks) == (2_500, source(1_000, 2_500))
    finally:
        follower.close()


def test_an_offset_past_the_end_starts_at_the_end(pane: Pane) -> None:
    pane.write(700)
    follower = Follower(pane.dir, "99999")
    try:
        follower.read_until(lambda: follower.stream.stream is not None)
        pane.write(10)
        follower.read_until(lambda: follower.received == 710)
        assert exact(follower.chunks) == (700, source(10, 700))
    finally:
        follower.close()


def test_the_pipe_feeds_the_input_fifo_into_the_pane(pane: Pane, tmp_path: Path) -> None:
    """Whatever is written into ``input`` comes out of pipe.sh's stdout (the pane's input), unchanged."""
    pane.close()
    out = tmp_path / "typed"
    with out.open("wb") as typed:
        pipe = subprocess.Popen(["sh", str(pane.dir / "pipe.sh")], stdin=subprocess.PIPE, stdout=typed,
                                start_new_session=True)
        try:
            typed_bytes = b"ls\r\x03\x04\x1b[A"
            for _ in range(2):  # a writer that comes and goes, as channels do
                with (pane.dir / "input").open("wb") as fifo:
                    fifo.write(typed_bytes)
            wait(lambda: out.stat().st_size >= 2 * len(typed_bytes), "the typed bytes")
            assert out.read_bytes() == typed_bytes * 2  # a writer's close types nothing
        finally:
            os.killpg(pipe.pid, signal.SIGKILL)
            pipe.wait()
            assert pipe.stdin is not None
            pipe.stdin.close()
