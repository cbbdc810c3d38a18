"""Drive the real `tether` command and daemon as a user would: subprocesses, signals, /proc.

Journey tests start ``tether run`` as a child process with its own state
directory, talk to it only through the ``tether`` command line (and the files a
user could look at: the SQLite database, /proc), and stop it the ways people
do: SIGTERM, Ctrl-C (SIGINT), ``--duration``, kill -9.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

DB_NAME = "tether.sqlite3"


def tether_command(*args: str, state: Path, timeout: float = 60, env: dict[str, str] | None = None,
                   check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run one `tether` command (``python -m tether``) against `state`."""
    full_env = {**os.environ, "TETHER_STATE_DIR": str(state), **(env or {})}
    result = subprocess.run([sys.executable, "-m", "tether", *args], capture_output=True, text=True,
                            env=full_env, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"tether {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition",
             interval: float = 0.1) -> Any:
    """Poll `predicate` (a real process is on the other side: nothing to await) until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@attrs.define
class Daemon:
    """One `tether run` child: start it, ask it things, stop it."""

    state: Path
    config: Path | None
    extra_args: Sequence[str] = ()
    env: dict[str, str] = attrs.field(factory=dict)
    port: int | None = 0
    """``--port`` for `tether run`; None leaves the port to the config file."""
    process: subprocess.Popen[str] | None = None
    stderr_path: Path | None = None
    runs: int = 0
    _log: Any = None

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> Daemon:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        self.stderr_path = self.state.parent / f"daemon-{self.state.name}-{self.runs}.log"
        if self.state.exists():
            (self.state / "daemon.json").unlink(missing_ok=True)
        args = [sys.executable, "-m", "tether", "run"]
        if self.config is not None:
            args.append(str(self.config))
        args += [*(["--port", str(self.port)] if self.port is not None else []), *self.extra_args]
        env = {**os.environ, "TETHER_STATE_DIR": str(self.state), **self.env}
        self._log = open(self.stderr_path, "w")  # noqa: SIM115 -- closed when the daemon ends
        self.process = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT, text=True,
                                        stdin=subprocess.DEVNULL)
        if wait_ready:
            wait_for(self._ready, timeout=timeout, what=f"the daemon to listen (log: {self.stderr_path})")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the daemon exited {self.process.returncode}:\n{self.log()}")
        return (self.state / "daemon.json").exists()

    def log(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path is not None and self.stderr_path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return tether_command(*args, state=self.state, check=check, timeout=timeout, env=self.env)

    def status(self) -> dict[str, Any]:
        """``tether status --json``: the summary (counts, the sessions not connected, statistics)."""
        result = self.cli("status", "--json")
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def sessions(self) -> dict[str, dict[str, Any]]:
        """``tether status --detail --json``: every session's detail, by id (every page)."""
        result = self.cli("status", "--detail", "--json")
        data: dict[str, Any] = json.loads(result.stdout)
        return {s["id"]: s for s in data["sessions"]}

    def stop(self, how: str = "SIGTERM", *, timeout: float = 10.0) -> float:
        """Stop the daemon (SIGTERM, SIGINT or SIGKILL); returns the seconds it took to exit."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(getattr(signal, how))
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the daemon did not stop within {timeout}s of {how}:\n{self.log()}") from None
        self._log.close()
        return time.monotonic() - started

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
            self._log.close()


@contextmanager
def running(state: Path, config: Path | None, **kwargs: Any) -> Iterator[Daemon]:
    daemon = Daemon(state, config, **kwargs)
    try:
        yield daemon
    finally:
        daemon.kill()


def stored_rows(state: Path) -> dict[str, dict[str, Any]]:
    """Session id -> decoded snapshot body, read straight from the daemon's SQLite file."""
    path = state / DB_NAME
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, body FROM sessions").fetchall()
    finally:
        conn.close()
    return {sid: json.loads(body) for sid, body in rows}


def proc_cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def proc_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def processes_with_env(name: str, value: str, *, comm: str | None = None) -> list[int]:
    """Pids of live programs whose environment has NAME=value (and whose command is `comm`), not
    counting their own children (which inherit it): how a test counts the copies of its program."""
    needle = f"{name}={value}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            if comm is not None:
                with open(f"/proc/{entry}/comm", encoding="utf-8", errors="replace") as f:
                    if f.read().strip() != comm:
                        continue
        except OSError:
            continue
        if needle in env and proc_alive(int(entry)):
            found.add(int(entry))
    return sorted(pid for pid in found if _parent(pid) not in found)


def processes_by_mark(name: str, prefix: str) -> dict[str, list[int]]:
    """Live programs whose NAME starts with `prefix`, by NAME's value, not counting their children:
    one pass over /proc for many sessions at once (see `processes_with_env`)."""
    needle = f"{name}={prefix}".encode()
    marks: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                found = next((item for item in f.read().split(b"\0") if item.startswith(needle)), None)
        except OSError:
            continue
        if found is not None and proc_alive(int(entry)):
            marks[int(entry)] = found.decode().partition("=")[2]
    by_mark: dict[str, list[int]] = {}
    for pid, mark in sorted(marks.items()):
        if marks.get(_parent(pid) or -1) != mark:
            by_mark.setdefault(mark, []).append(pid)
    return by_mark


def kill_marked(name: str, prefix: str) -> None:
    """SIGKILL every process whose NAME starts with `prefix` (a test's cleanup of SIGHUP-proof programs)."""
    needle = f"{name}={prefix}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                marked = any(item.startswith(needle) for item in f.read().split(b"\0"))
            if marked:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def control(state: Path, request: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
    """One /control request to the daemon of `state`, as any client would send it."""
    import trio
    from trio_websocket import open_websocket_url

    daemon = json.loads((state / "daemon.json").read_text())
    token = (state / "token").read_text().strip()

    async def ask() -> dict[str, Any]:
        with trio.fail_after(timeout):
            async with open_websocket_url(
                f"{daemon['url']}/control", extra_headers=[(b"Authorization", f"Bearer {token}".encode())]
            ) as ws:
                await ws.send_message(json.dumps(request))
                reply: dict[str, Any] = json.loads(await ws.get_message())
                return reply

    return trio.run(ask)


def install_plugin(site: Path, distribution: str, version: str, module: str, source: str,
                   backends: dict[str, str]) -> Path:
    """Install a plugin distribution into `site` the way pip leaves one: the module and a
    ``.dist-info`` with METADATA and entry_points.txt. Put `site` on PYTHONPATH to use it."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    points = "\n".join(f"{name} = {module}:{target}" for name, target in backends.items())
    (info / "entry_points.txt").write_text(f"[tether.backends]\n{points}\n")
    (info / "top_level.txt").write_text(f"{module}\n")
    (info / "RECORD").write_text("")
    return site


def register_over_control(state: Path, tables: Sequence[dict[str, Any]], *, timeout: float = 60.0) -> None:
    """Register sessions with the running daemon of `state` through the typed client (`tether.open_client`),
    as a program driving tether would: these sessions exist only in the daemon and its store."""
    import trio

    from tether import open_client

    async def register() -> None:
        with trio.fail_after(timeout):
            async with open_client(state_dir=state) as client:
                for table in tables:
                    await client.register(table)

    trio.run(register)
