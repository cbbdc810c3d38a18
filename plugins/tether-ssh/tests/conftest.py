"""Shared helpers: a real OpenSSH server on 127.0.0.1, a traffic cutter, a supervisor.

The server is ours alone: its own host key, authorized_keys, config and a
free unprivileged port; it runs as a child (``sshd -D -e``) and is ended by
PID, with its per-connection children. Faults are real: killed children, a
stopped server, a black hole made by an nft table owned by a live ``nft -i``
(the kernel removes the table when that process exits, however it dies).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
import trio

import tether
from tether.testing import require_peer, wait_until
from tether_ssh import SshBackend

SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def which(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def free_port() -> int:
    """An unprivileged port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tether-test", "-f", str(path)],
        check=True,
    )


def processes_matching(needle: str) -> list[int]:
    """Pids of live processes whose command line contains `needle` (how a test finds leftovers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle.encode() in cmdline and state not in (b"Z", b"X"):
            found.append(int(entry))
    return found


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@attrs.define
class Sshd:
    """A real sshd on 127.0.0.1:port; start, stop, kill its children, change its host key."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        return self.root / "host_ed25519"

    @property
    def client_key(self) -> Path:
        return self.root / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def home(self) -> Path:
        """HOME of the remote shells: empty, so no dotfiles of the machine's root run."""
        return self.root / "home"

    @property
    def config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    def prepare(self) -> None:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        _keygen(self.host_key)
        _keygen(self.client_key)
        (self.root / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        self.trust_current_key()
        self.home.mkdir(exist_ok=True)
        self.config.write_text(
            f"ListenAddress 127.0.0.1:{self.port}\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "ClientAliveInterval 1\nPrintMotd no\nPrintLastLog no\n"
            # Remote shells get an empty HOME: root's real dotfiles (pyenv init runs
            # `pyenv rehash`, which takes a lock file) must not run in every login. Tests
            # kill shells mid-startup; a shell killed inside rehash left the lock behind
            # and every later login then waited 60 s on it (all live tests timed out).
            f"SetEnv HOME={self.home}\n"
        )

    def configure(self, extra: str) -> None:
        """Add sshd_config lines (``MaxSessions 3``, ``Banner FILE``); they apply from the next start."""
        with self.config.open("a") as config:
            config.write(extra.rstrip("\n") + "\n")

    def logins(self, since: int = 0) -> int:
        """Successful logins sshd logged after byte `since` of its log (``Accepted publickey``)."""
        return self.log.read_bytes()[since:].count(b"Accepted publickey")

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def trust_current_key(self) -> None:
        pub = Path(f"{self.host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")

    def new_host_key(self) -> None:
        """Replace the host key (takes effect at the next start): an impostor, to the client."""
        _keygen(self.host_key)

    def start(self) -> None:
        sshd = which("sshd")
        assert sshd is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock, suppress(OSError):
                sock.connect(("127.0.0.1", self.port))
                return
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(0.02)
        raise AssertionError(f"sshd did not listen on {self.port}: {self.log.read_text()}")

    def children(self) -> list[int]:
        return children_of(self.process.pid) if self.process is not None else []

    def kill_children(self) -> list[int]:
        """kill -9 the per-connection sshd processes: the peer dies, the listener lives."""
        pids = self.children()
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def stop(self) -> None:
        """The server goes down: the listener AND every per-connection child."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGSTOP)  # no new children while we kill the old
        self.kill_children()
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def options(self, **overrides: Any) -> dict[str, Any]:
        """Backend options that reach this server and nothing on the host's own config."""
        options: dict[str, Any] = {
            "host": "127.0.0.1", "port": self.port, "user": "root",
            "identity_file": str(self.client_key), "known_hosts_file": str(self.known_hosts),
            "config_file": "/dev/null", "server_alive_count_max": 2,
            "extra_options": ["IdentitiesOnly=yes", "GlobalKnownHostsFile=/dev/null"],
        }
        options.update(overrides)
        return options


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A running sshd of our own; stopped (with its children) after the test."""
    require_peer(which("sshd") is not None and which("ssh") is not None, "openssh-server not installed")
    require_peer(os.geteuid() == 0, "the sshd tests log in as root on 127.0.0.1")
    server = Sshd(tmp_path, free_port())
    server.prepare()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tmux_socket(sshd: Sshd) -> Iterator[str]:
    """A tmux server socket of this test's own; its server is killed afterwards."""
    require_peer(which("tmux") is not None, "tmux not installed")
    name = f"tether-ssh-test-{sshd.port}"
    try:
        yield name
    finally:
        subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True, check=False)
        Path(f"/tmp/tmux-{os.geteuid()}/{name}").unlink(missing_ok=True)  # tmux leaves it behind


@contextmanager
def black_hole(port: int) -> Iterator[None]:
    """Drop every packet to or from `port` on lo, both ways, until the block ends.

    The table is owned by a live ``nft -i``: closing its stdin (or the test
    dying, even by SIGKILL) ends nft and the kernel deletes the table.
    """
    nft = which("nft")
    require_peer(nft is not None, "nftables not installed")
    assert nft is not None
    table = f"tether_ssh_test_{port}"
    proc = subprocess.Popen(
        [nft, "-i"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdin is not None
    rules = (
        f"add table inet {table} {{ flags owner; }}\n"
        f"add chain inet {table} input {{ type filter hook input priority -10; policy accept; }}\n"
        f'add rule inet {table} input iifname "lo" tcp dport {port} drop\n'
        f'add rule inet {table} input iifname "lo" tcp sport {port} drop\n'
    )
    try:
        proc.stdin.write(rules)
        proc.stdin.flush()
        _wait_for_table(table)
        yield
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_table(table: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        if re.search(rf"\b{table}\b", listed):
            return
        time.sleep(0.02)
    raise AssertionError(f"nft table {table} never appeared")


def fast_policy(**overrides: Any) -> tether.ReconnectPolicy:
    """Short real-time knobs: keepalive 1 s, small delays, probes every second."""
    values: dict[str, Any] = {
        "base_delay": 0.2, "max_delay": 0.5, "jitter": "none", "connect_timeout": 4.0,
        "keepalive_interval": 1.0, "health_check_interval": 1.0, "stable_after": 0.5,
        "max_retries": 40,
    }
    values.update(overrides)
    return tether.ReconnectPolicy(**values)


def ssh_spec(sshd: Sshd, session_id: str = "s1", policy: tether.ReconnectPolicy | None = None,
             **options: Any) -> tether.SessionSpec:
    return tether.SessionSpec(
        id=session_id, backend="ssh", options=sshd.options(**options), policy=policy or fast_policy()
    )


@pytest.fixture(params=["plain", "tmux"])
def persist(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Backend options for a plain ssh shell, or one kept in tmux on a tmux server of the test's own."""
    if request.param == "plain":
        return {}
    return {"persist": "tmux", "tmux_socket": request.getfixturevalue("tmux_socket")}


@asynccontextmanager
async def stored_ssh_supervisor(path: Path) -> AsyncIterator[tether.Supervisor]:
    """`ssh_supervisor` on the SQLite file `path`, writing behind quickly: one life of a supervisor
    that a test stops and starts again on the same file."""
    async with tether.open_sqlite_store(path) as store, ssh_supervisor(SshBackend(), store=store,
                                                                        flush_interval=0.05) as sup:
        yield sup


@asynccontextmanager
async def ssh_supervisor(backend: SshBackend, **kwargs: Any) -> AsyncIterator[tether.Supervisor]:
    """A supervisor with tether's strategies and this (instrumented) ssh backend."""
    registry = tether.PluginRegistry()
    for strategy in (tether.SimpleReconnect(), tether.SessionRestore(), tether.ProcessRestart(),
                     tether.SshReconnect(), tether.StateRecovery(), tether.ForceReconnect()):
        registry.add_strategy(strategy)
    async with tether.open_supervisor(registry=registry, backends=[backend], **kwargs) as supervisor:
        yield supervisor


async def wait_status(supervisor: tether.Supervisor, sid: str, status: tether.SessionStatus,
                      within: float = 15.0) -> None:
    """Wait (real time) for a status, failing with the session's state for context."""
    try:
        await wait_until(lambda: supervisor.state(sid).status is status, timeout=within, step=0.02)
    except trio.TooSlowError:
        raise AssertionError(f"not {status.value}: {supervisor.state(sid)}") from None


async def run_and_expect(supervisor: tether.Supervisor, sid: str, command: str, expected: bytes,
                         within: float = 10.0) -> None:
    """Type `command` into the remote shell and wait for `expected` in the output.

    Write commands so `expected` is not in their own echo (``printf 'C%sD' ...``).
    """
    start = len(supervisor.output_history(sid))
    await supervisor.send(sid, command.encode() + b"\n")
    try:
        await wait_until(lambda: expected in supervisor.output_history(sid)[start:],
                         timeout=within, step=0.02)
    except trio.TooSlowError:
        tail = supervisor.output_history(sid)[-600:]
        raise AssertionError(f"{expected!r} not seen after {command!r}; output tail: {tail!r}") from None


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


def toml_options(options: dict[str, object]) -> str:
    """A backend options table as an inline TOML table (for a daemon's config file)."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{ " + ", ".join(f"{k} = {value(v)}" for k, v in options.items()) + " }"
