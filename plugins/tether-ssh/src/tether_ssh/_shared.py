"""Shared SSH connections: sessions to one host are channels on a few authenticated connections.

A login costs real CPU on both ends (key exchange, signatures): 100 sessions
that each log in after an outage are 100 logins against a host that just came
back. OpenSSH's own connection sharing (``ControlMaster``) lets one
authenticated connection carry many session channels, so tether keeps a
*pool* of shared connections ("masters") per set of connection options:

* A master is ``ssh -N`` as ControlMaster with ``ControlPersist``: it goes to
  the background once it has authenticated and listens on its control socket
  (in a private 0700 directory, `_control_dir`), and ends by itself some seconds
  after its last channel closes, so even a crashed tether leaves nothing
  running for good.
* Each master carries up to the server's ``MaxSessions`` channels
  (`SshOptions.max_sessions_per_connection`, 10 by default); a server that
  refuses a channel sooner lowers the pool's figure, and another master is opened.
* When no master is up, one is started at a time: it is also the probe that
  the host answers. Its failure answers for every session waiting on it, and
  for those that ask again within `FAILURE_MEMORY`. Once one is up, the pool starts at once as many more as its
  sessions need (all of them at the same time, bounded by the per-target login
  limit), so a host that returns sees ceil(sessions / MaxSessions) logins, not
  one per session, and not one after another.
* A master that dies is a network drop for every channel on it; the link asks
  the pool (`Lease.lost`) before it classifies its own end.

The pool's tasks (a master's bring-up, its watch, its end) run in one system
task per Trio run (`SharedConnections.serve`), not in any session's task: a
session that is cancelled mid-connect must not take down a connection other
sessions are waiting for. When the run ends, every master is ended and the
directory removed.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Literal, final

import attrs
import trio

from tether import Disconnect, DisconnectReason, LinkError

from ._classify import classify_exit, error_for, meaningful_lines
from ._command import control_argv, master_argv
from ._control_dir import base_directory, make_process_directory, sockets_in, stale_directories
from ._options import SshOptions
from ._pty import end_process

MASTER_LINGER = 15
"""Seconds an idle master stays up (``ControlPersist``): a session that just lost its
channel (its shell exited) and comes back soon finds it; a crashed tether's masters go."""
LOGIN_LIMIT = 10
"""Logins in flight per target, shared by the pool's masters and unshared connects:
sshd's default ``MaxStartups 10:30:100`` starts refusing at random past 10."""
CONTROL_TIMEOUT = 5.0
"""Bound on one ``ssh -O check|exit`` against a local control socket."""
FAILURE_MEMORY = 0.25
"""Seconds a failed bring-up (with no master up) answers for the pool: a session that asks
again that soon gets the same error at once. 100 sessions retrying on their own against a
host that is down then knock at most four times a second, not 100 times."""
LOG_KEPT = 8 * 1024
"""Bytes of a master's log read to explain why it ended."""

State = Literal["starting", "live", "ended"]


@attrs.define(eq=False)
class LoginCounter:
    """Logins (authenticating connections) of one backend: how many now, at most, and in all."""

    in_flight: int = 0
    peak: int = 0
    started: int = 0
    succeeded: int = 0

    def begin(self) -> None:
        self.started += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def end(self, *, ok: bool) -> None:
        self.in_flight -= 1
        self.succeeded += ok


@attrs.define(eq=False)
class Master:
    """One shared connection: its control socket, log, channel count and fate."""

    path: str
    log: Path
    capacity: int
    state: State = "starting"
    channels: int = 0
    pidfd: int | None = None
    pid: int | None = None
    death: Disconnect | None = None
    """Why it ended by itself (a network drop for its channels); None while it lives."""
    done: trio.Event = attrs.Factory(trio.Event)

    @property
    def room(self) -> int:
        return max(0, self.capacity - self.channels) if self.state == "live" else 0

    def terminate(self) -> None:
        """Ask the background master to end (SIGTERM: ssh closes its channels and socket)."""
        if self.state != "live" or self.pid is None:
            return
        with suppress(ProcessLookupError, PermissionError, OSError):
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGTERM)
            else:
                os.kill(self.pid, signal.SIGTERM)


@final
class Lease:
    """One session's channel slot on one master; given back exactly once."""

    def __init__(self, pool: Pool, master: Master) -> None:
        self.pool = pool
        self.master = master
        self._released = False

    @property
    def control_path(self) -> str:
        return self.master.path

    async def lost(self, within: float) -> Disconnect | None:
        """Why the master ended, if it did (waiting up to `within`: its clients may notice first)."""
        with trio.move_on_after(within):
            await self.master.done.wait()
        return self.master.death

    def refused(self) -> None:
        """The server refused this channel: fewer channels fit a connection than assumed."""
        self.pool.learn_capacity(self.master)

    def release(self, session_id: str, *, ending: bool) -> None:
        if not self._released:
            self._released = True
            self.pool.release(self.master, session_id, ending=ending)


@final
class Pool:
    """The shared connections for one set of connection options (host, user, keys, config)."""

    def __init__(self, service: SharedConnections, opts: SshOptions, target: str, keepalive_interval: float) -> None:
        self.service = service
        self.opts = opts
        self.target = target
        self.keepalive_interval = keepalive_interval
        self.capacity = opts.max_sessions_per_connection
        self.masters: list[Master] = []
        self.members: set[str] = set()
        """Sessions that use this pool and were not unregistered: the demand to plan for."""
        self.waiting = 0
        self.failures = 0
        self.last_failure: LinkError | None = None
        self._failed_at = -math.inf
        self._changed = trio.Event()

    # -- what sessions call ----------------------------------------------------------------

    async def lease(self, session_id: str, *, connect_timeout: float, deadline: float) -> Lease:
        """A channel slot on a live master, starting masters as needed; `LinkError` if none comes up.

        Waiters share bring-ups: if the one they waited for failed and no other is
        starting, they all get its error (one refused connect, not one per session).
        """
        self.members.add(session_id)
        seen_failures = self.failures
        while True:
            master = next((m for m in self.masters if m.room > 0), None)
            if master is not None:
                master.channels += 1
                return Lease(self, master)
            if self.failures > seen_failures and self.starting == 0 and self.last_failure is not None:
                raise self.last_failure
            if self._recently_failed():
                assert self.last_failure is not None
                raise self.last_failure
            self._plan(connect_timeout)
            changed = self._changed
            self.waiting += 1
            try:
                with trio.move_on_at(deadline) as scope:
                    await changed.wait()
            finally:
                self.waiting -= 1
            if scope.cancelled_caught:
                raise LinkError(
                    f"no shared connection to {self.target} came up within {connect_timeout}s",
                    reason=DisconnectReason.TIMEOUT,
                )

    async def ensure_live(self, *, connect_timeout: float, deadline: float) -> LinkError | None:
        """Bring one master up if none is (the readiness probe's second half); its error, if any."""
        seen_failures = self.failures
        while not any(m.state == "live" for m in self.masters):
            if self.failures > seen_failures and self.starting == 0:
                return self.last_failure
            self._plan(connect_timeout, demand=1)
            changed = self._changed
            with trio.move_on_at(deadline):
                await changed.wait()
            if trio.current_time() >= deadline:
                return None  # still coming up: the sessions released next will wait for it
        return None

    def live_path(self) -> str | None:
        """The control path of some live master, for a one-off command (the tmux kill)."""
        return next((m.path for m in self.masters if m.state == "live"), None)

    @property
    def starting(self) -> int:
        return sum(1 for m in self.masters if m.state == "starting")

    # -- bookkeeping -----------------------------------------------------------------------

    def learn_capacity(self, master: Master) -> None:
        """A refusal at `master.channels` channels: no connection of this pool holds more than the others did."""
        fits = max(1, master.channels - 1)
        master.capacity = min(master.capacity, fits)
        self.capacity = min(self.capacity, fits)
        for other in self.masters:
            other.capacity = min(other.capacity, self.capacity)

    def release(self, master: Master, session_id: str, *, ending: bool) -> None:
        master.channels -= 1
        if ending:
            self.members.discard(session_id)
        if not self.members:  # nobody will come back: end idle masters now, not after the linger
            for idle in self.masters:
                if idle.channels == 0:
                    idle.terminate()
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    def _plan(self, connect_timeout: float, demand: int | None = None) -> None:
        """Start the masters the pool's sessions need, so they log in side by side.

        With none up, one at a time: it doubles as the probe that the host answers,
        and a host that is down costs one refused connect per round, not one per
        session. With one up, as many as the members without a channel need.
        """
        live = [m for m in self.masters if m.state == "live"]
        if not live:
            wanted = 0 if self.starting else 1
        else:
            room = sum(m.room for m in live) + self.starting * self.capacity
            without = len(self.members) - sum(m.channels for m in live)
            need = max(without, self.waiting + 1) if demand is None else demand
            wanted = math.ceil(max(0, need - room) / self.capacity)
        for _ in range(wanted):
            self._start(connect_timeout)

    def _start(self, connect_timeout: float) -> None:
        path, log = self.service.new_master_paths()
        master = Master(path=path, log=log, capacity=self.capacity)
        self.masters.append(master)
        self.service.start_soon(self._run_master, master, connect_timeout)

    async def _run_master(self, master: Master, connect_timeout: float) -> None:
        """Bring one master up, watch it until it ends, and end it when the run does."""
        try:
            failure = await self._bring_up(master, connect_timeout)
            if failure is not None:
                self._failed(failure)
                return
            pid = await self._master_pid(master)
            if pid is None:
                self._failed(LinkError(f"shared connection to {self.target} ended at once",
                                       reason=DisconnectReason.NETWORK))
                return
            master.pid = pid
            with suppress(OSError, AttributeError):
                master.pidfd = os.pidfd_open(pid)
            master.state = "live"
            self._notify()
            await _wait_gone(master)
            master.death = _death(master, self.target)
        except Exception as exc:  # a bug here must end this master, never the run
            self._failed(LinkError(f"shared connection to {self.target} failed: {exc!r}"))
        finally:
            if master.death is None:
                master.terminate()  # still up: the run is ending, or this task broke
            master.state = "ended"
            with suppress(ValueError):
                self.masters.remove(master)
            with suppress(OSError):
                if master.pidfd is not None:
                    os.close(master.pidfd)
                master.log.unlink(missing_ok=True)
            master.pidfd = None
            master.done.set()
            self._notify()

    def _failed(self, failure: LinkError) -> None:
        self.failures += 1
        self.last_failure = failure
        self._failed_at = trio.current_time()

    def _recently_failed(self) -> bool:
        """No master is up or starting, and the last bring-up failed a moment ago (see FAILURE_MEMORY)."""
        return (
            self.last_failure is not None
            and self.starting == 0
            and not any(m.state == "live" for m in self.masters)
            and trio.current_time() - self._failed_at < FAILURE_MEMORY
        )

    async def _bring_up(self, master: Master, connect_timeout: float) -> LinkError | None:
        """Run the foreground ssh until it has backgrounded the master (0) or failed (255)."""
        argv = master_argv(
            self.opts, connect_timeout=connect_timeout, keepalive_interval=self.keepalive_interval,
            control_path=master.path, log_path=str(master.log), linger=MASTER_LINGER,
        )
        async with self.service.login_slot(self.target):
            logins = self.service.logins
            logins.begin()
            ok = False
            try:
                master.log.write_bytes(b"")
                with trio.move_on_after(connect_timeout) as scope:
                    process = await trio.lowlevel.open_process(
                        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                    code: int | None = None
                    try:
                        code = await process.wait()
                    finally:
                        with trio.CancelScope(shield=True):
                            await end_process(process, stragglers=code != 0)
                if scope.cancelled_caught:
                    return LinkError(
                        f"shared connection to {self.target} not up within {connect_timeout}s",
                        reason=DisconnectReason.TIMEOUT,
                    )
                if code == 0:
                    ok = True
                    return None
                return error_for(classify_exit(code if code is not None else -1, _tail(master.log), connected=False))
            finally:
                logins.end(ok=ok)

    async def _master_pid(self, master: Master) -> int | None:
        """The background master's pid, from ``ssh -O check`` (it is no child of ours)."""
        with trio.move_on_after(CONTROL_TIMEOUT):
            result = await trio.run_process(
                control_argv(self.opts, master.path, "check"), stdin=b"", capture_stdout=True,
                capture_stderr=True, check=False,
            )
            found = re.search(rb"pid=(\d+)", result.stderr)
            return int(found.group(1)) if result.returncode == 0 and found else None
        return None


@final
class SharedConnections:
    """Every pool of one backend in one Trio run, the private directory, and the task that runs them."""

    def __init__(self, logins: LoginCounter) -> None:
        self.logins = logins
        self.pools: dict[tuple[str, ...], Pool] = {}
        self._limiters: dict[str, trio.CapacityLimiter] = {}
        self._directory: Path | None = None
        self._count = 0
        self._nursery: trio.Nursery | None = None
        self._ready = trio.Event()
        self._closed = False

    async def serve(self) -> None:
        """The system task: a nursery for the pools' tasks; on the run's end, end them and clean up."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._ready.set()
                await trio.sleep_forever()
        finally:
            self._closed = True
            self._ready.set()
            if self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)

    async def pool(self, opts: SshOptions, target: str, keepalive_interval: float) -> Pool:
        await self._ready.wait()
        if self._closed:
            raise LinkError("tether-ssh's shared connections are closed (the Trio run is ending)")
        key = (
            *master_argv(opts, connect_timeout=1, keepalive_interval=keepalive_interval, control_path="",
                         log_path="", linger=0),
            str(opts.max_sessions_per_connection),
        )
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(self, opts, target, keepalive_interval)
        return pool

    def login_slot(self, target: str) -> trio.CapacityLimiter:
        """The per-target limit on logins in flight (masters and unshared connects alike)."""
        limiter = self._limiters.get(target)
        if limiter is None:
            limiter = self._limiters[target] = trio.CapacityLimiter(LOGIN_LIMIT)
        return limiter

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    def new_master_paths(self) -> tuple[str, Path]:
        """A fresh control socket path and log file in this process's private directory."""
        if self._directory is None:
            base = base_directory()
            self._directory = make_process_directory(base)
            self.start_soon(_sweep, base)
        self._count += 1
        stem = self._directory / f"m{self._count}"
        return str(stem), stem.with_suffix(".log")


async def _sweep(base: Path) -> None:
    """End the masters a crashed tether left (their process is gone) and remove their directories."""
    for directory in stale_directories(base):
        for socket_path in sockets_in(directory):
            with trio.move_on_after(CONTROL_TIMEOUT), suppress(OSError):
                await trio.run_process(
                    ["ssh", "-F", "/dev/null", "-o", f"ControlPath={socket_path}", "-O", "exit", "--", "tether"],
                    stdin=b"", capture_stdout=True, capture_stderr=True, check=False,
                )
        shutil.rmtree(directory, ignore_errors=True)


async def _wait_gone(master: Master) -> None:
    """Until the (non-child) master process has exited: its pidfd turns readable."""
    if master.pidfd is not None:
        await trio.lowlevel.wait_readable(master.pidfd)
        return
    assert master.pid is not None
    while _alive(master.pid):  # noqa: ASYNC110  # no pidfd (not Linux >= 5.3): nothing to wait on but time
        await trio.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(log: Path) -> str:
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_KEPT))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _death(master: Master, target: str) -> Disconnect:
    """A master that ended by itself: its channels dropped for a network reason (what it logged, if anything)."""
    said = "; ".join(meaningful_lines(_tail(master.log))[-3:])
    return Disconnect(
        DisconnectReason.NETWORK,
        f"shared connection to {target} ended" + (f": {said}" if said else ""),
    )
