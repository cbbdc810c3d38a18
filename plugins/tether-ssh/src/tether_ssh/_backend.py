"""`SshBackend`: backend ``ssh``, the system OpenSSH client as a subprocess on a pty.

Using the real client means ~/.ssh/config, the agent, keys and known_hosts
all apply exactly as they do for the user; tether only adds the policy's
knobs (BatchMode, ConnectTimeout, ServerAlive*) and never turns host key
checking off. Passwords are never asked for (BatchMode) nor stored.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import final

import trio

from tether import (
    ConnectMode,
    DisconnectReason,
    Feature,
    LinkError,
    LinkRequest,
    PreservedState,
    ReattachUnavailableError,
    SessionSpec,
)

from ._command import Markers, PaneLogPlan, kill_tmux_command, remote_command, ssh_argv
from ._link import ChannelRefused, SshLink
from ._options import SshOptions, parse_options, tmux_name
from ._panelog import stream_name
from ._probe import read_greeting, resolve_route
from ._pty import open_pty_process, parent_death_prefix
from ._shared import Lease, LoginCounter, SharedConnections

END_GRACE = 2.0
"""Seconds beyond connect_timeout the tmux kill on unregister may take."""
MAX_REFUSALS = 3
"""Shared connections one connect may find full (sshd's MaxSessions below our figure) before it gives up."""
UNREACHABLE = frozenset({DisconnectReason.NETWORK, DisconnectReason.TIMEOUT})
"""The reasons that mean the target did not answer: what a readiness probe raises."""


@final
class SshBackend:
    """Backend ``ssh``; see the package docstring for its options.

    `connecting` and `peak_connecting` count link connects between spawning ssh
    and the ready marker; `logins` counts the connections that authenticate (the
    unauthenticated window that sshd's MaxStartups limits): one per unshared
    connect, one per shared connection, none for a channel on a shared one. So
    a storm's respect for the connect limit, and what sharing saves, can be
    measured. `remote_kills` counts tmux sessions ended because their session
    was unregistered.
    """

    name = "ssh"
    plugin_api = 1
    features = frozenset({Feature.REATTACH, Feature.RESTORE_STATE, Feature.REMOTE})
    default_strategies: Mapping[DisconnectReason, str] = {
        DisconnectReason.NETWORK: "ssh-reconnect",
        DisconnectReason.TIMEOUT: "ssh-reconnect",
        DisconnectReason.HEALTH_CHECK: "ssh-reconnect",
        DisconnectReason.REMOTE_CLOSED: "ssh-reconnect",
        DisconnectReason.FORCED: "ssh-reconnect",
        # ssh itself died (a signal: an OOM kill, someone's kill -9): the remote side may
        # live on (tmux), so re-attach, or restart in the kept cwd; a FRESH connect would
        # drop the cwd and report a kept tmux program as a new one.
        DisconnectReason.BACKEND_ERROR: "ssh-reconnect",
    }

    def __init__(self) -> None:
        self.connecting = 0
        self.peak_connecting = 0
        self.connects_started = 0
        self.remote_kills = 0
        self.channels_refused = 0
        self.logins = LoginCounter()
        self._shared_var: trio.lowlevel.RunVar[SharedConnections] = trio.lowlevel.RunVar("tether_ssh_shared")

    def validate(self, spec: SessionSpec) -> None:
        parse_options(spec.options)

    def target(self, spec: SessionSpec) -> str:
        return parse_options(spec.options).target

    async def probe_target(self, spec: SessionSpec, deadline: float) -> None:
        """The readiness probe: return once the target answers; `LinkError` (network, timeout) if not.

        A TCP connect and sshd's identification line where ssh connects directly
        (cheap: no key exchange, no login). With connection sharing on, the first
        shared connection is then brought up as well (if none is up), so the
        sessions released next open channels at once; if it is still logging in at
        the deadline, they wait for it. Through a ProxyCommand or ProxyJump a direct
        probe would test the wrong host, so the probe is that login itself. A login
        that fails for other reasons (a refused key, a changed host key) still means
        the target answered: the sessions find that out themselves and end.
        """
        opts = parse_options(spec.options)
        timeout = max(0.0, deadline - trio.current_time())
        with trio.move_on_at(deadline) as scope:
            route = await resolve_route(opts)
            if not route.proxied:
                await read_greeting(route.hostname, route.port)
        if scope.cancelled_caught:
            raise LinkError(f"no SSH identification from {opts.target} within {timeout:.1f}s",
                            reason=DisconnectReason.TIMEOUT)
        if opts.share_connection or route.proxied:
            pool = await self._shared().pool(opts, opts.target, spec.policy.keepalive_interval)
            failure = await pool.ensure_live(connect_timeout=spec.policy.connect_timeout, deadline=deadline)
            if failure is not None and failure.reason in UNREACHABLE:
                raise failure

    @asynccontextmanager
    async def open_link(self, request: LinkRequest) -> AsyncIterator[SshLink]:
        """Spawn ssh (on a shared connection or a login of its own), wait for the ready marker, hold the link."""
        opts = parse_options(request.spec.options)
        state = _initial_state(opts, request)
        shared = self._shared()
        if not opts.share_connection:
            async with self._connect(opts, request, state, None, shared) as link:
                yield link
            return
        pool = await shared.pool(opts, opts.target, request.keepalive_interval)
        for refusals in range(MAX_REFUSALS + 1):
            lease = await pool.lease(
                request.spec.id, connect_timeout=request.connect_timeout, deadline=request.deadline
            )
            try:
                async with self._connect(opts, request, state, lease, shared) as link:
                    yield link
                return
            except ChannelRefused as refused:
                self.channels_refused += 1
                lease.refused()
                if refusals == MAX_REFUSALS:
                    raise LinkError(
                        f"{MAX_REFUSALS + 1} shared connections refused a channel: {refused.detail}",
                        reason=DisconnectReason.REMOTE_CLOSED,
                    ) from None
            finally:
                lease.release(request.spec.id, ending=request.session_ending())

    @asynccontextmanager
    async def _connect(
        self,
        opts: SshOptions,
        request: LinkRequest,
        state: PreservedState,
        lease: Lease | None,
        shared: SharedConnections,
    ) -> AsyncIterator[SshLink]:
        """One ssh client on a pty: a login of its own, or a channel on `lease`'s connection."""
        markers = Markers(secrets.token_hex(8))
        pane = None
        if opts.persist == "tmux":
            pane = PaneLogPlan(stream_name(request.spec.id), opts.pane_log_bytes, request.resume)
        command = remote_command(
            opts, request.mode, markers, handle=state.handle, cwd=state.cwd, env=state.env, pane=pane
        )
        argv = ssh_argv(
            opts, connect_timeout=request.connect_timeout,
            keepalive_interval=request.keepalive_interval, command=command,
            control_path=lease.control_path if lease is not None else None,
        )
        if lease is not None:
            argv = parent_death_prefix() + argv
        env = {**os.environ, "TERM": opts.term}
        failure: LinkError | None = None
        login = _Login(self.logins, shared.login_slot(opts.target)) if lease is None else None
        if login is not None:  # a login of its own: under the per-target login limit, counted
            await login.begin()
        self.connects_started += 1
        self.connecting += 1
        self.peak_connecting = max(self.peak_connecting, self.connecting)
        counted = True
        try:
            async with open_pty_process(argv, env=env, rows=opts.rows, cols=opts.cols) as proc:
                link = SshLink(proc, request, markers, state, lease)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(link.pump_stderr)
                    nursery.start_soon(link.pump_pty)
                    nursery.start_soon(link.watch_exit)
                    try:
                        failure = await link.wait_ready(request.deadline, request.connect_timeout)
                    finally:
                        self.connecting -= 1
                        counted = False
                        if login is not None:
                            login.end(ok=failure is None)
                    if failure is None:
                        request.report_state(state)
                        try:
                            yield link
                        finally:
                            link.closing = True
                            nursery.cancel_scope.cancel()
                    else:
                        nursery.cancel_scope.cancel()
        finally:
            if counted:
                self.connecting -= 1
            if login is not None:
                login.end(ok=False)
            if opts.persist == "tmux" and request.session_ending():
                await self._end_remote_session(opts, request, state.handle, lease)
        if failure is not None:
            raise failure  # raised outside the nursery, so strategies can catch it by type

    async def _end_remote_session(
        self, opts: SshOptions, request: LinkRequest, handle: str | None, lease: Lease | None
    ) -> None:
        """The session was unregistered: kill its tmux session over a second, short ssh.

        Not through the link's pty (that is the user's program's input): a channel
        on the shared connection if it still lives, else a connection of its own.
        Shielded and bounded, so an unreachable host delays the unregister by at
        most about connect_timeout; a shutdown, reconnect or crash never gets here
        (tmux lives on).
        """
        if handle is None:
            return
        path = lease.pool.live_path() if lease is not None else None
        argv = ssh_argv(
            opts, connect_timeout=request.connect_timeout,
            keepalive_interval=request.keepalive_interval,
            command=kill_tmux_command(opts, handle), tty=False, control_path=path,
        )
        self.remote_kills += 1
        with trio.CancelScope(shield=True), trio.move_on_after(request.connect_timeout + END_GRACE):
            await trio.run_process(
                argv, stdin=b"", capture_stdout=True, capture_stderr=True, check=False,
                env={**os.environ, "TERM": opts.term},
            )

    def _shared(self) -> SharedConnections:
        """This Trio run's shared connections, started (as a system task) on first use."""
        try:
            return self._shared_var.get()
        except LookupError:
            shared = SharedConnections(self.logins)
            self._shared_var.set(shared)
            trio.lowlevel.spawn_system_task(shared.serve, name="tether-ssh shared connections")
            return shared


class _Login:
    """One unshared connect's login: a slot of the per-target login limit, counted once, given back once."""

    def __init__(self, counter: LoginCounter, limiter: trio.CapacityLimiter) -> None:
        self._counter = counter
        self._limiter = limiter
        self._held = False

    async def begin(self) -> None:
        await self._limiter.acquire()
        self._held = True
        self._counter.begin()

    def end(self, *, ok: bool) -> None:
        if self._held:
            self._held = False
            self._limiter.release()
            self._counter.end(ok=ok)


def _initial_state(opts: SshOptions, request: LinkRequest) -> PreservedState:
    """The state this connect starts from: the spec's for FRESH, the preserved one otherwise."""
    handle = (opts.tmux_session or tmux_name(request.spec.id)) if opts.persist == "tmux" else None
    saved = request.state if request.mode is not ConnectMode.FRESH else None
    if request.mode is ConnectMode.REATTACH and handle is None:
        raise ReattachUnavailableError("persist = 'none': no remote program survives a drop")
    if saved is None:
        return PreservedState(cwd=opts.cwd, env=dict(opts.env), handle=handle)
    return PreservedState(
        cwd=saved.cwd or opts.cwd,
        env={**opts.env, **saved.env},
        last_command=saved.last_command,
        handle=saved.handle if request.mode is ConnectMode.REATTACH and saved.handle else handle,
        extra=saved.extra,
    )
