"""Drive `tether mcp` as an MCP client does: the SDK's own client starts it as a subprocess over stdio.

Real parts only: the server is the real command (``python -m tether mcp``),
its sessions are real shells on real ptys (and real tmux), the daemon in the
daemon tests is a real ``tether run``. Real processes and MockClock do not
mix, so these tests wait in real time, each bounded by ``fail_after``; they
never sleep to let something happen, they wait on what the server says.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from mcp import ClientSession, StdioServerParameters, stdio_client

from tether.testing import require_peer

BASH = {"backend": "process", "options": {"command": "bash"}}


@attrs.define
class Mcp:
    """One `tether mcp` subprocess and the SDK client session talking to it."""

    session: ClientSession
    log: Path

    async def call(self, name: str, **arguments: Any) -> dict[str, Any]:
        """A tool's structured result; fails the test on a tool error."""
        result = await self.session.call_tool(name, arguments)
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        assert not result.is_error, f"{name} failed: {text}"
        assert result.structured_content is not None
        assert json.loads(text) == result.structured_content  # the text block says the same, as JSON
        return dict(result.structured_content)

    async def error(self, name: str, **arguments: Any) -> str:
        """A tool error's message (fails the test if the call succeeded)."""
        result = await self.session.call_tool(name, arguments)
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        assert result.is_error, f"{name} should have failed, got {text}"
        assert "Traceback" not in text and 'File "' not in text
        return text

    async def run(self, session_id: str, command: str, **arguments: Any) -> dict[str, Any]:
        return await self.call("run_command", session_id=session_id, command=command, **arguments)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    """A short private runtime dir (tmux socket paths must fit in 108 bytes); tmux leftovers are killed."""
    path = tempfile.mkdtemp(prefix="tm-", dir="/tmp")
    yield path
    sockets = Path(path) / "tether-process" / "tmux"
    for socket in sockets.glob("*.sock") if sockets.is_dir() else ():
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def env(state: Path, tmp_path: Path, runtime_dir: str) -> dict[str, str]:
    """What the MCP client hands the server: its state directory, a home without the developer's
    ~/.bashrc (slow, stateful), a private runtime dir for tmux sockets."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "TETHER_STATE_DIR": str(state),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": runtime_dir,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
    }


@asynccontextmanager
async def open_mcp(env: dict[str, str], *args: str, log: Path) -> AsyncIterator[Mcp]:
    """Start ``tether mcp`` (with `args`) as the SDK's stdio client does, and initialize it."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "tether", "mcp", "--log-level", "info", *args],
                                   env=env)
    with log.open("a") as errlog:
        errlog.write(f"--- tether mcp {' '.join(args)} ---\n")
        errlog.flush()
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield Mcp(session, log)


def need_tmux() -> None:
    require_peer(shutil.which("tmux") is not None, "tmux is not installed")


# -- a real daemon ---------------------------------------------------------------------------------


@attrs.define
class Daemon:
    """A `tether run` child process on a state directory."""

    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def state(self) -> Path:
        return Path(self.env["TETHER_STATE_DIR"])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Daemon:
        (self.state / "daemon.json").unlink(missing_ok=True)
        with self.log.open("a") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "tether", "run", "--port", "0"], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (self.state / "daemon.json").exists():
            if self.process.poll() is not None:
                raise AssertionError(f"tether run exited {self.process.returncode}: {self.log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"tether run did not start: {self.log.read_text()}")
            time.sleep(0.05)
        return self

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(how)
        self.process.wait(timeout=30)

    def signal(self, how: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(how)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def daemon(env: dict[str, str], tmp_path: Path) -> Iterator[Daemon]:
    started = Daemon(env, tmp_path / "daemon.log")
    try:
        yield started
    finally:
        started.kill()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_pid_gone(pid: int) -> None:
    """A real process on the other side: nothing to await but its exit (the caller bounds the wait)."""
    while pid_alive(pid):  # noqa: ASYNC110
        await trio.sleep(0.05)


def kill_hard(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
