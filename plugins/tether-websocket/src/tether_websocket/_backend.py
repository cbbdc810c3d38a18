"""`WebSocketBackend`: tether's ``websocket`` backend.

Options (``spec.options``)::

    url = "ws://host:port/path"        # a terminal WebSocket, used as it is, or
    base_url = "http://host:8888/"     # a Jupyter Server: terminals made over REST
    terminal = "build"                 # Jupyter: use (or create) this terminal name
    token = "..."                      # sent as "Authorization: token ..."; never reported
    headers = {}                       # extra handshake headers
    subprotocols = []
    adapter = "terminado"              # or "raw", or one added by a plugin
    ping_interval = 1.0                # default: the policy's keepalive_interval; 0 = off
    ping_timeout = 2.0                 # default: min(connect_timeout, 10)
    close_timeout = 1.0                # bound on the close handshake
    shell_integration = true           # install tether's shell integration in each new shell
                                       # (default: on with base_url, off with url;
                                       # track_cwd is its old name)
    env = {}                           # exported in every new shell
    rows = 24, cols = 80               # initial size, if the protocol has one

Modes. FRESH makes a new Jupyter terminal (or attaches to ``terminal``,
creating it if missing). REATTACH connects to the preserved terminal name:
the shell kept running, and the server's replay is de-duplicated against
tether's history; a 404 means the server lost it (`ReattachUnavailableError`).
RESTART makes a new terminal and restores cwd and env by typing
``export ...; cd ...`` into it. Unregistering a session (``LinkRequest.session_ending``)
deletes the Jupyter terminal tether made for it; one named by ``terminal`` is left alone.

Shell integration (``shell_integration``). Into a new shell (FRESH,
RESTART), once it printed something, tether types one line: the restore
(exports, ``cd``) and `tether.typed_integration` with no shell named. A
Jupyter terminal runs the server's ``shell_command``, so the shell picks
bash's or zsh's body itself; any other POSIX shell (sh, dash) ignores the line:
its cwd is then not tracked and `run` is refused with the engine's error
(after waiting a little for a first prompt that never comes). The line's
echo (about 3.8 KB of base64) is in the session's output once per new shell.
A REATTACH types nothing: the shell still has its integration, and the
link's state says which shell it is (``extra["shell"]``, from its prompt
marks), so `run` works at once, across a daemon restart too.

Default strategies. A dropped WebSocket (network, timeout, failed ping,
orderly close) usually leaves the terminal running, but not after a server
restart, where every name answers 404. ``ssh-reconnect`` does exactly what
both cases need in one connect each: re-attach if the name still exists,
else restart with the preserved state (it applies to any REMOTE backend,
despite its name). ``session-restore`` alone would fail for good after a
server restart; ``force-reconnect`` would spend up to five connects per
attempt against a server that is down. A forced reconnect maps to it too: the
core default (``simple-reconnect``, a FRESH connect) would make a new terminal
and leave the old shell running on the server, unreachable. A dead shell
(``["disconnect", 1]``) maps to ``process-restart``.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import final
from urllib.parse import urlsplit, urlunsplit

import trio

from tether import (
    ConnectMode,
    DisconnectReason,
    Feature,
    LinkRequest,
    PreservedState,
    ReattachUnavailableError,
    SessionSpec,
    typed_integration,
)

from . import _jupyter
from ._adapters import AdapterRegistry
from ._classify import error_for_connect
from ._link import WebSocketLink
from ._options import WebSocketOptions, parse_options
from ._probe import probe
from ._shell import restore_line, setup_lines
from ._socket import open_socket

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

SHELL_START_WAIT = 2.0
"""Seconds a new shell may take to print anything before tether types into it anyway."""

DEFAULT_STRATEGIES: Mapping[DisconnectReason, str] = {
    DisconnectReason.NETWORK: "ssh-reconnect",
    DisconnectReason.TIMEOUT: "ssh-reconnect",
    DisconnectReason.HEALTH_CHECK: "ssh-reconnect",
    DisconnectReason.REMOTE_CLOSED: "ssh-reconnect",
    DisconnectReason.BACKEND_ERROR: "ssh-reconnect",
    DisconnectReason.FORCED: "ssh-reconnect",
    DisconnectReason.PROCESS_EXIT: "process-restart",
}


@final
class WebSocketBackend:
    """Backend ``websocket``: terminals behind a WebSocket (see the module docstring)."""

    name = "websocket"
    plugin_api = 1
    features = frozenset({Feature.REATTACH, Feature.RESTORE_STATE, Feature.REMOTE})
    default_strategies = DEFAULT_STRATEGIES

    def __init__(self, adapters: AdapterRegistry | None = None) -> None:
        self.adapters = adapters if adapters is not None else AdapterRegistry.discover()

    def validate(self, spec: SessionSpec) -> None:
        options = parse_options(spec.options)
        self.adapters.check(options.adapter)

    def notes(self, spec: SessionSpec) -> list[tuple[str, str]]:
        """What works, but not as a user may expect (`tether check` prints these)."""
        if "track_cwd" in spec.options:
            return [("track_cwd", "is the old name of shell_integration (now the full integration: cwd, "
                     "finished commands and run); rename it")]
        return []

    def target(self, spec: SessionSpec) -> str:
        options = parse_options(spec.options)
        parts = urlsplit(options.url or options.base_url or "")
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme in ('wss', 'https') else 80)}"

    async def probe_target(self, spec: SessionSpec, deadline: float) -> None:
        """The readiness probe: any HTTP answer from the server (see `_probe`); `LinkError` if none."""
        await probe(parse_options(spec.options), deadline)

    @asynccontextmanager
    async def open_link(self, request: LinkRequest) -> AsyncIterator[WebSocketLink]:
        options = parse_options(request.spec.options)
        adapter = self.adapters.create(options.adapter)
        ping_timeout = options.ping_timeout or min(request.connect_timeout, 10.0)
        ping_interval = options.ping_interval
        if ping_interval is None:
            ping_interval = request.keepalive_interval
        what = "connecting to the terminal"
        connected = ending = False
        handle = ""
        try:
            with trio.fail_at(request.deadline):
                url, handle, fresh_shell = await self._locate(options, request)
            async with open_socket(
                url,
                deadline=request.deadline,
                close_timeout=options.close_timeout,
                headers=[(k.encode(), v.encode()) for k, v in _jupyter.auth_headers(options).items()],
                subprotocols=options.subprotocols or None,
            ) as ws:
                link = WebSocketLink(
                    ws, adapter, request, options, state=self._initial_state(options, request, handle),
                    ping_timeout=ping_timeout, dedup_replay=request.mode is ConnectMode.REATTACH,
                )
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(link.read_messages)
                    with trio.fail_at(request.deadline):
                        await self._prepare(link, options, request, fresh_shell)
                    if ping_interval:
                        nursery.start_soon(link.ping_forever, ping_interval)
                    connected = True
                    try:
                        yield link
                        ending = request.session_ending()
                    finally:
                        nursery.cancel_scope.cancel()
        except Exception as exc:
            if connected:
                raise
            raise error_for_connect(_leaf(exc), what, mode=request.mode, redact=options.redact) from None
        if ending and options.jupyter and options.terminal is None:
            # Unregistered: end the shell tether made, or it runs on the server forever. A
            # terminal the spec names may be the user's own and is left alone.
            await _jupyter.delete_terminal(options, handle, bound=min(request.connect_timeout, 5.0))

    async def _locate(self, options: WebSocketOptions, request: LinkRequest) -> tuple[str, str, bool]:
        """The WebSocket URL, the handle to preserve, and whether the shell there is new."""
        if not options.jupyter:
            assert options.url is not None
            parts = urlsplit(options.url)
            return options.url, urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), (
                request.mode is not ConnectMode.REATTACH
            )
        if request.mode is ConnectMode.REATTACH:
            name = request.state.handle if request.state is not None else None
            if not name:
                raise ReattachUnavailableError("no terminal name was preserved")
            return _jupyter.websocket_url(options, name), name, False
        name = options.terminal
        if name is None:
            name = await _jupyter.create_terminal(options, mode=request.mode, name=_unique_name(request))
        elif not await _jupyter.terminal_exists(options, name, mode=request.mode):
            name = await _jupyter.create_terminal(options, mode=request.mode, name=name)
        return _jupyter.websocket_url(options, name), name, True

    @staticmethod
    def _initial_state(options: WebSocketOptions, request: LinkRequest, handle: str) -> PreservedState:
        old = request.state
        if request.mode is ConnectMode.FRESH or old is None:
            return PreservedState(env=dict(options.env), handle=handle)
        # a new shell (RESTART) has no integration until its own prompt says so
        extra = dict(old.extra)
        if request.mode is not ConnectMode.REATTACH:
            extra.pop("shell", None)
        return PreservedState(
            cwd=old.cwd, env={**options.env, **old.env}, last_command=old.last_command,
            handle=handle, extra=extra,
        )

    @staticmethod
    async def _prepare(
        link: WebSocketLink, options: WebSocketOptions, request: LinkRequest, fresh_shell: bool
    ) -> None:
        """Size the terminal; in a new shell restore env and cwd and install the integration."""
        if options.rows and options.cols:
            await link.resize(options.rows, options.cols)
        if not fresh_shell:
            return  # re-attached: the shell kept its state and its integration
        state = link.current_state()
        restore = restore_line(cwd=state.cwd if request.mode is ConnectMode.RESTART else None, env=state.env)
        lines = setup_lines(restore, typed_integration() if options.installs_integration else None)
        if lines:
            with trio.move_on_at(_within(request, SHELL_START_WAIT)):
                await link.first_output.wait()  # typed any sooner, a starting shell would echo it twice
        for line in lines:
            await link.send_text(line)


def _within(request: LinkRequest, seconds: float) -> float:
    """A deadline `seconds` away, but never past half the time the connect has left: waiting for
    the shell may make a connect slower, never fail it."""
    now = trio.current_time()
    return now + min(seconds, max(0.0, request.deadline - now) / 2)


def _unique_name(request: LinkRequest) -> str:
    """A terminal name no one else will get: Jupyter numbers terminals 1, 2, ... and reuses
    freed numbers (and restarts from 1 after a server restart), so re-attaching by a
    server-chosen name could land in someone else's shell. Names are ``\\w+`` in its routes."""
    readable = re.sub(r"\W", "_", request.spec.id)[:40]
    return f"tether_{readable}_{secrets.token_hex(6)}"


def _leaf(exc: BaseException) -> BaseException:
    """The one real error inside nursery exception groups (the reader raises the rejection)."""
    while isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if not isinstance(e, trio.Cancelled)]
        if len(leaves) != 1:
            return exc
        exc = leaves[0]
    return exc
