"""A real PostgreSQL for tests and benchmarks: Debian's server, in a temporary directory.

`PostgresServer` runs ``initdb`` and ``postgres`` from the system's PostgreSQL
(``/usr/lib/postgresql/<version>/bin``, Debian's layout) as an unprivileged
user: PostgreSQL refuses to run as root, and tests here run as root, so a
system user ``tether-pg`` is made if it is missing (``nobody`` if that
fails). The server listens on 127.0.0.1 at a free port and on a unix socket
in its own directory, with durability traded for speed (``fsync=off``) unless
asked otherwise. It is a direct child of this process (never daemonised by
``pg_ctl``), it gets SIGKILL if this process dies (``PR_SET_PDEATHSIG``), and
`stop` ends it for sure: a fast shutdown, then SIGKILL.

    with running_postgres() as pg:        # or the ``postgres_server`` fixture
        url = pg.create_database("t1")    # postgresql://tether@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import final

SUPERUSER = "tether"
"""The database superuser `initdb` creates (trust authentication: loopback and the socket only)."""
SYSTEM_USER = "tether-pg"
_PR_SET_PDEATHSIG = 1
_FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``postgres`` (newest Debian version first), or None."""
    env = os.environ.get("TETHER_PG_BIN")
    if env:
        return Path(env) if (Path(env) / "postgres").exists() else None
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        for version in versions:
            if (version / "bin" / "postgres").exists() and (version / "bin" / "initdb").exists():
                return version / "bin"
    initdb = shutil.which("initdb")
    if initdb is not None:
        bindir = Path(os.path.realpath(initdb)).parent
        if (bindir / "postgres").exists():
            return bindir
    return None


def psycopg_available() -> bool:
    """True when psycopg 3 (the ``tether[postgres]`` extra) can be imported."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


def postgres_missing_reason() -> str | None:
    """Why a PostgreSQL test cannot run here, or None when it can."""
    if find_postgres_bin() is None:
        return "PostgreSQL server not installed (apt-get install postgresql)"
    if not psycopg_available():
        return "psycopg 3 not installed (pip install 'tether[postgres]')"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run as when we are root (made if missing); None when not root."""
    if os.geteuid() != 0:
        return None
    for name in (SYSTEM_USER, "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
        if name == SYSTEM_USER and shutil.which("useradd"):
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                capture_output=True,
                check=False,
            )
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
    raise RuntimeError("running as root and found no unprivileged account (tether-pg, nobody) for PostgreSQL")


def _die_with_parent() -> None:
    """In the child, after the uid change: SIGKILL when the process that started us dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@final
class PostgresServer:
    """One PostgreSQL server of our own. `start` it, use `url`, `stop` it (also on any error)."""

    def __init__(self, *, bindir: Path | None = None, fast: bool = True, settings: Mapping[str, str] = {}) -> None:
        found = bindir if bindir is not None else find_postgres_bin()
        if found is None:
            raise RuntimeError("PostgreSQL server not installed (apt-get install postgresql)")
        self.bindir = found
        self.settings = {**(_FAST_SETTINGS if fast else {}), **settings}
        self.account = _server_account()
        self.root = Path(tempfile.mkdtemp(prefix="tether-pg-"))
        self.datadir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._initialised = False
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)

    # -- what a test uses ---------------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        """A libpq URL for `database` over TCP on 127.0.0.1."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def socket_url(self, database: str = "postgres") -> str:
        """A libpq URL for `database` over the unix socket."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def create_database(self, name: str) -> str:
        """Create an empty database (dropping one of that name) and return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> PostgresServer:
        """initdb (first time only), start the server and wait until it accepts connections."""
        if self.running:
            return self
        if not self._initialised:
            self._initdb()
        args = [
            str(self.bindir / "postgres"),
            "-D", str(self.datadir),
            "-p", str(self.port),
            "-k", str(self.socket_dir),
            "-c", f"listen_addresses={self.host}",
            "-c", "max_connections=200",
        ]
        for key, value in self.settings.items():
            args += ["-c", f"{key}={value}"]
        log = open(self.log_path, "ab")  # noqa: SIM115 -- the child keeps it; we close our copy below
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the test's terminal is ours to handle, not its
                preexec_fn=_die_with_parent,
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
                env=self._env,
            )
        finally:
            log.close()
        self._wait_ready(timeout)
        return self

    def stop(self, *, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT), then SIGKILL if it is still there. Idempotent."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL the server (a crash): it recovers from its WAL on the next `start`."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, *, timeout: float = 60.0) -> None:
        """Stop and start again on the same port and data (clients see their connections drop)."""
        self.stop()
        self.start(timeout=timeout)

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- inside -------------------------------------------------------------------------------

    @property
    def _uid(self) -> int | None:
        return self.account.pw_uid if self.account is not None else None

    @property
    def _gid(self) -> int | None:
        return self.account.pw_gid if self.account is not None else None

    @property
    def _groups(self) -> list[int] | None:
        return [] if self.account is not None else None

    @property
    def _env(self) -> dict[str, str] | None:
        """A small environment for the server's account (not ours: it may name root's files)."""
        if self.account is None:
            return None
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": str(self.root)}

    def _initdb(self) -> None:
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self.account is not None:
            os.chown(self.socket_dir, self.account.pw_uid, self.account.pw_gid)
        result = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D", str(self.datadir),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            capture_output=True,
            check=False,
            preexec_fn=_die_with_parent,
            user=self._uid,
            group=self._gid,
            extra_groups=self._groups,
            env=self._env,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr.decode(errors='replace')}")
        self._initialised = True

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    pass
            except OSError:
                pass
            else:
                if self._accepts_queries():
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres did not accept connections within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _accepts_queries(self) -> bool:
        try:
            import psycopg
        except ImportError:  # the server is up; a test without psycopg only needs the port
            return True
        try:
            with psycopg.connect(self.url(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True


@contextlib.contextmanager
def running_postgres(*, fast: bool = True, settings: Mapping[str, str] = {}) -> Iterator[PostgresServer]:
    """A started `PostgresServer`, stopped and removed on exit (also when the block raises)."""
    server = PostgresServer(fast=fast, settings=settings)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
