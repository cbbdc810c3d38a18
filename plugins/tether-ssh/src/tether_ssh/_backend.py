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

from ._command import Markers, kill_tmux_command, remote_command, ssh_argv
from ._link import SshLink
from ._options import SshOptions, parse_options, tmux_name
from ._pty import open_pty_process

END_GRACE = 2.0
"""Seconds beyond connect_timeout the tmux kill on unregister may take."""


@final
class SshBackend:
    """Backend ``ssh``; see the package docstring for its options.

    `connecting` and `peak_connecting` count connects between spawning ssh
    and the ready marker (the unauthenticated window that sshd's MaxStartups
    limits), so a storm's respect for the connect limit can be measured;
    `remote_kills` counts tmux sessions ended because their session was unregistered.
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
    }

    def __init__(self) -> None:
        self.connecting = 0
        self.peak_connecting = 0
        self.connects_started = 0
        self.remote_kills = 0

    def validate(self, spec: SessionSpec) -> None:
        parse_options(spec.options)

    def target(self, spec: SessionSpec) -> str:
        return parse_options(spec.options).target

    @asynccontextmanager
    async def open_link(self, request: LinkRequest) -> AsyncIterator[SshLink]:
        """Spawn ssh, wait for the ready marker within the deadline, hold the link."""
        opts = parse_options(request.spec.options)
        state = _initial_state(opts, request)
        markers = Markers(secrets.token_hex(8))
        command = remote_command(
            opts, request.mode, markers, handle=state.handle, cwd=state.cwd, env=state.env
        )
        argv = ssh_argv(
            opts, connect_timeout=request.connect_timeout,
            keepalive_interval=request.keepalive_interval, command=command,
        )
        env = {**os.environ, "TERM": opts.term}
        self.connects_started += 1
        self.connecting += 1
        self.peak_connecting = max(self.peak_connecting, self.connecting)
        counted = True
        failure: LinkError | None = None
        try:
            async with open_pty_process(argv, env=env, rows=opts.rows, cols=opts.cols) as proc:
                link = SshLink(proc, request, markers, state)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(link.pump_stderr)
                    nursery.start_soon(link.pump_pty)
                    nursery.start_soon(link.watch_exit)
                    try:
                        failure = await link.wait_ready(request.deadline, request.connect_timeout)
                    finally:
                        self.connecting -= 1
                        counted = False
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
            if opts.persist == "tmux" and request.session_ending():
                await self._end_remote_session(opts, request, state.handle)
        if failure is not None:
            raise failure  # raised outside the nursery, so strategies can catch it by type

    async def _end_remote_session(
        self, opts: SshOptions, request: LinkRequest, handle: str | None
    ) -> None:
        """The session was unregistered: kill its tmux session over a second, short ssh.

        Not through the link's pty (that is the user's program's input). Shielded and
        bounded, so an unreachable host delays the unregister by at most about
        connect_timeout; a shutdown, reconnect or crash never gets here (tmux lives on).
        """
        if handle is None:
            return
        argv = ssh_argv(
            opts, connect_timeout=request.connect_timeout,
            keepalive_interval=request.keepalive_interval,
            command=kill_tmux_command(opts, handle), tty=False,
        )
        self.remote_kills += 1
        with trio.CancelScope(shield=True), trio.move_on_after(request.connect_timeout + END_GRACE):
            await trio.run_process(
                argv, stdin=b"", capture_stdout=True, capture_stderr=True, check=False,
                env={**os.environ, "TERM": opts.term},
            )


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
