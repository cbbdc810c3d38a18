"""Which control directories a start sweeps: those whose tether process is gone, a zombie included."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tether_ssh._control_dir import stale_directories


def _state(pid: int) -> bytes:
    return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]


def test_a_killed_process_not_reaped_yet_left_its_directory(tmp_path: Path) -> None:
    """kill -9 leaves a zombie until the parent reaps it (an orphan waits on init, which may take
    seconds); a tether started meanwhile must sweep the dead one's directory, not take it as live."""
    running = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["sleep", "60"])
    try:
        os.kill(dead.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _state(dead.pid) != b"Z":  # a real process on the other side: nothing to await
            assert time.monotonic() < deadline, "the killed child never became a zombie"
            time.sleep(0.01)
        for pid in (running.pid, dead.pid):
            (tmp_path / f"{pid}-abc").mkdir()
        (tmp_path / "not-a-pid").mkdir()
        assert stale_directories(tmp_path) == [tmp_path / f"{dead.pid}-abc"]
    finally:
        running.kill()
        running.wait()
        dead.wait()
