"""Shared helpers: a real Jupyter Server on 127.0.0.1 with a token, and a supervisor with
tether's own strategies and this backend only (other installed plugins never leak in)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

import tether
from tether.testing import require_peer, wait_connected, wait_until
from tether_websocket import WebSocketBackend

TOKEN = "tether-test-token-0123456789"
STARTUP_TIMEOUT = 30.0
BASH = ("/bin/bash", "--norc", "--noprofile")
"""The terminals' shell (the server's ``shell_command``) unless a test names another."""

CORE_STRATEGIES = (
    tether.SimpleReconnect, tether.SessionRestore, tether.ProcessRestart,
    tether.SshReconnect, tether.StateRecovery, tether.ForceReconnect,
)


def jupyter_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("jupyter_server", "terminado"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class JupyterServer:
    """One ``jupyter server`` child: start, stop (SIGTERM), kill (SIGKILL), restart on the same port."""

    def __init__(self, base: Path, token: str = TOKEN, shell: tuple[str, ...] = BASH) -> None:
        self.token = token
        self.port = free_port()
        self.root = base / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        self._home = base / "jupyter"
        (self._home / "config").mkdir(parents=True, exist_ok=True)
        (self._home / "config" / "jupyter_server_config.py").write_text(
            f"c.ServerApp.terminado_settings = {{'shell_command': {list(shell)!r}}}\n"
        )
        self._log = base / "jupyter.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self._home / "config"),
            "JUPYTER_DATA_DIR": str(self._home / "data"),
            "JUPYTER_RUNTIME_DIR": str(self._home / "runtime"),
            "HISTFILE": "/dev/null",
        }
        argv = [
            sys.executable, "-m", "jupyter_server", "--allow-root", "--ip=127.0.0.1",
            f"--port={self.port}", "--port-retries=0", "--no-browser",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
        ]
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, cwd=self.root)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited: {self._log.read_text()[-2000:]}")
            if self.answers():
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"jupyter server did not answer in {STARTUP_TIMEOUT}s")

    def answers(self) -> bool:
        req = urllib.request.Request(
            f"{self.base_url}api/status", headers={"Authorization": f"token {self.token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _end(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM: the server closes its sockets and kills its terminals."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the server vanishes; its shells lose their pty and die."""
        self._end(signal.SIGKILL)

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"base_url": self.base_url, "token": self.token, "ping_interval": 1.0,
                "ping_timeout": 2.0, "close_timeout": 0.5, **extra}


@pytest.fixture
def jupyter(tmp_path: Path) -> Iterator[JupyterServer]:
    """A Jupyter Server of this test's own (tests that stop or kill it need one)."""
    require_peer(jupyter_installed(), "jupyter-server/terminado not installed")
    server = JupyterServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def shared_jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """One server for the tests that leave it running."""
    require_peer(jupyter_installed(), "jupyter-server/terminado not installed")
    server = JupyterServer(tmp_path_factory.mktemp("jupyter"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


def quick_policy(**changes: Any) -> tether.ReconnectPolicy:
    """Small real-time delays so a test runs in seconds."""
    values: dict[str, Any] = {
        "base_delay": 0.2, "max_delay": 1.0, "multiplier": 2.0, "jitter": "none", "connect_timeout": 5.0,
        "health_check_interval": 2.0, "keepalive_interval": 1.0, "stable_after": 0.5, "max_retries": 5,
    }
    values.update(changes)
    return tether.ReconnectPolicy(**values)


def registry() -> tether.PluginRegistry:
    found = tether.PluginRegistry()
    for strategy in CORE_STRATEGIES:
        found.add_strategy(strategy())
    found.add_backend(WebSocketBackend())
    return found


@pytest.fixture
async def supervisor() -> AsyncIterator[tether.Supervisor]:
    async with tether.open_supervisor(registry=registry(), seed=7) as sup:
        yield sup


async def wait_status(
    sup: tether.Supervisor, sid: str, status: tether.SessionStatus, within: float = 15.0
) -> None:
    await wait_until(lambda: sup.state(sid).status is status, timeout=within, step=0.02)


async def wait_output(sup: tether.Supervisor, sid: str, needle: bytes, *, after: int = 0,
                      within: float = 10.0) -> bytes:
    """Wait until `needle` shows in the session's output past offset `after`; return that output."""
    await wait_until(lambda: needle in sup.output_history(sid)[after:], timeout=within, step=0.02)
    return sup.output_history(sid)[after:]


PROMPT_MARK = r"\x1b\]133;A;tether-shell=(bash|zsh)\x07"
"""tether's prompt mark, as a pattern for `Supervisor.wait`: the integration is at a prompt."""
INSTALL_ECHO = b'test -n "$BASH_VERSION"'
"""In the echo of the typed integration line: how often it was typed shows in the output."""


async def wait_for_integration(sup: tether.Supervisor, sid: str, *, since: int = 0, within: float = 20.0) -> str:
    """Wait until tether's integration showed a prompt past `since` and the session is connected
    (`run` works from then on); the shell."""
    found = await sup.wait(sid, pattern=PROMPT_MARK, since=since, budget=within)
    assert found.satisfied, f"no prompt of tether's integration: {sup.output_history(sid)[-600:]!r}"
    await wait_connected(sup, sid, within)  # the mark can come while the connect is finishing
    return found.match.split("=")[-1].rstrip("\x07")


async def run_command(sup: tether.Supervisor, sid: str, command: str, marker: str,
                      *, within: float = 10.0) -> str:
    """Send `command` (which prints ``<marker>=VALUE``) and return VALUE, read from the output."""
    start = len(sup.output_history(sid))
    await sup.send(sid, command.encode() + b"\r")
    pattern = f"{marker}=".encode()
    with trio.fail_after(within):
        while True:
            out = sup.output_history(sid)[start:]
            for line in out.splitlines():
                stripped = line.strip()
                if stripped.startswith(pattern) and stripped != pattern:
                    return stripped[len(pattern):].decode()
            await trio.sleep(0.02)


class NetworkCut:
    """Drop TCP to and from `port` on loopback with an nft table owned by a child ``nft -i``.

    FAULTS.md: the kernel deletes an owned table when its process exits, so
    the cut is undone even if the test dies; both directions are dropped.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.table = f"tether_ws_{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and shutil.which("nft", path=os.environ.get("PATH", "") + ":/usr/sbin") is not None

    def cut(self) -> None:
        self.proc = subprocess.Popen(
            ["nft", "-i"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert self.proc.stdin is not None
        t = self.table
        self.proc.stdin.write(
            f"add table inet {t} {{ flags owner; }}\n"
            f"add chain inet {t} input {{ type filter hook input priority -10; }}\n"
            f"add rule inet {t} input iif lo tcp dport {self.port} drop\n"
            f"add rule inet {t} input iif lo tcp sport {self.port} drop\n".encode()
        )
        self.proc.stdin.flush()
        time.sleep(0.3)  # let nft apply the table before traffic is expected to vanish

    def restore(self) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _harness() -> ModuleType:
    """The core's journey harness (tests/journeys/daemon.py), loaded by path: it is not a package here."""
    path = Path(__file__).resolve().parents[3] / "tests" / "journeys" / "daemon.py"
    spec = importlib.util.spec_from_file_location("tether_journey_daemon", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


daemon_harness = _harness()
"""tests/journeys/daemon.py: drive ``tether run`` as a subprocess (start, stop, kill -9, /control)."""
