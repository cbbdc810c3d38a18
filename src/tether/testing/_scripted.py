"""A scripted, fault-injecting backend for unit tests, benchmarks and plugin authors.

It opens no real connection: each session has a script (fail the next N
connects, hang, raise, drop after T seconds, fail or hang probes) set from
the spec's options or changed at run time through methods on the backend.
It keeps a ledger of what tether asked of it (modes, restored state) so a
test can prove a strategy really did the work (docs/reference-design.md, lesson 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, final

import attrs
import trio

from ..contract._plugin import ConnectMode, Feature, LinkRequest
from ..rules._errors import ConfigError, LinkError, ReattachUnavailableError
from ..rules._reasons import Disconnect, DisconnectReason
from ..rules._spec import SessionSpec
from ..rules._state import PreservedState

_ALL_FEATURES = frozenset(Feature)
_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "fail_connects": int,
    "fail_reason": str,
    "hang_connects": int,
    "raise_connects": int,
    "connect_delay": (int, float),
    "drop_after": (int, float),
    "drop_reason": str,
    "probe": str,
    "features": list,
    "target": str,
    "cwd": str,
}


@attrs.define
class Script:
    """What one session's next connects and probes will do. Mutable on purpose."""

    fail_connects: int = 0
    fail_reason: DisconnectReason = DisconnectReason.NETWORK
    hang_connects: int = 0
    """Connects that hang forever, ignoring their deadline (the supervisor must cut them)."""
    raise_connects: int = 0
    """Connects that raise an unclassified RuntimeError (a buggy backend)."""
    connect_delay: float = 0.0
    drop_after: float | None = None
    drop_reason: DisconnectReason = DisconnectReason.NETWORK
    probe: str = "ok"
    """"ok", "fail" or "hang"."""


@attrs.define
class Ledger:
    """What happened to one session, for assertions."""

    connects: int = 0
    modes: list[ConnectMode] = attrs.field(factory=list)
    states: list[PreservedState | None] = attrs.field(factory=list)
    program: int = 0
    """Id of the program currently running; re-attach keeps it, restart replaces it."""
    program_alive: bool = False
    open_links: int = 0
    probes: int = 0
    keepalives: int = 0
    sent: bytearray = attrs.field(factory=bytearray)
    deadlines: list[float] = attrs.field(factory=list)
    keepalive_intervals: list[float] = attrs.field(factory=list)


@final
class ScriptedLink:
    """The link a `ScriptedBackend` hands out."""

    def __init__(self, backend: ScriptedBackend, request: LinkRequest) -> None:
        self._backend = backend
        self._request = request
        self._sid = request.spec.id
        program = backend.ledger(self._sid).program
        base = request.state or PreservedState(cwd=request.spec.options.get("cwd"))
        self.state = attrs.evolve(base, handle=f"{self._sid}#{program}")

    async def probe(self) -> None:
        ledger = self._backend.ledger(self._sid)
        ledger.probes += 1
        mode = self._backend.script(self._sid).probe
        if mode == "hang":
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        if mode == "fail":
            raise LinkError("scripted probe failure", reason=DisconnectReason.HEALTH_CHECK)

    def current_state(self) -> PreservedState | None:
        return self.state

    async def send(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self._backend.ledger(self._sid).sent += data
        self._request.report_output(data)

    async def keepalive(self) -> None:
        await trio.lowlevel.checkpoint()
        self._backend.ledger(self._sid).keepalives += 1

    def set_state(self, state: PreservedState) -> None:
        """Pretend the program changed (a ``cd``): tether should pick it up while connected."""
        self.state = state

    def report_state(self, state: PreservedState) -> None:
        """Pretend the program pushed a state report (an OSC 7 sequence)."""
        self.state = state
        self._request.report_state(state)

    def close(self, disconnect: Disconnect) -> None:
        """Drop this link as its peer would."""
        self._request.report_closed(disconnect)


@final
class ScriptedBackend:
    """Backend ``scripted``: every fault on demand, no I/O.

    Options (all optional): fail_connects, fail_reason, hang_connects,
    raise_connects, connect_delay, drop_after, drop_reason, probe
    ("ok" | "fail" | "hang"), features (list of Feature values), target, cwd.
    """

    name = "scripted"
    plugin_api = 1

    def __init__(self, features: frozenset[Feature] = _ALL_FEATURES) -> None:
        self.features = features
        self.default_strategies: Mapping[DisconnectReason, str] = {}
        self._scripts: dict[str, Script] = {}
        self._ledgers: dict[str, Ledger] = {}
        self.links: dict[str, ScriptedLink] = {}
        self.total_connects = 0

    # -- the contract -------------------------------------------------------------------

    def validate(self, spec: SessionSpec) -> None:
        for key, value in spec.options.items():
            expected = _OPTIONS.get(key)
            if expected is None:
                raise ConfigError(key, f"unknown option; known: {', '.join(sorted(_OPTIONS))}")
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ConfigError(key, f"has the wrong type {type(value).__name__}")
        if spec.options.get("probe", "ok") not in ("ok", "fail", "hang"):
            raise ConfigError("probe", "must be ok, fail or hang")

    def target(self, spec: SessionSpec) -> str:
        return str(spec.options.get("target", "scripted"))

    def open_link(self, request: LinkRequest) -> AbstractAsyncContextManager[ScriptedLink]:
        return _ScriptedOpening(self, request)

    async def _connect(self, request: LinkRequest) -> ScriptedLink:
        """Run the session's script for one connect: fail, hang, raise, or hand out a link."""
        sid = request.spec.id
        script = self.script(sid, request.spec.options)
        ledger = self.ledger(sid)
        ledger.connects += 1
        self.total_connects += 1
        ledger.modes.append(request.mode)
        ledger.states.append(request.state)
        ledger.deadlines.append(request.deadline)
        ledger.keepalive_intervals.append(request.keepalive_interval)
        if script.hang_connects > 0:
            script.hang_connects -= 1
            with trio.CancelScope(deadline=math.inf):
                await trio.sleep_forever()
        if script.connect_delay:
            with trio.fail_at(request.deadline):
                await trio.sleep(script.connect_delay)
        if script.raise_connects > 0:
            script.raise_connects -= 1
            raise RuntimeError("scripted backend bug")
        if script.fail_connects > 0:
            script.fail_connects -= 1
            raise LinkError("scripted connect failure", reason=script.fail_reason)
        if request.mode is ConnectMode.REATTACH:
            if not ledger.program_alive:
                raise ReattachUnavailableError("scripted program is gone")
        else:
            ledger.program += 1
            ledger.program_alive = True
        link = ScriptedLink(self, request)
        self.links[sid] = link
        ledger.open_links += 1
        return link

    def _closed(self, link: ScriptedLink) -> None:
        self.ledger(link._sid).open_links -= 1
        if self.links.get(link._sid) is link:
            del self.links[link._sid]

    async def _drop_later(self, link: ScriptedLink, after: float, reason: DisconnectReason) -> None:
        await trio.sleep(after)
        self.drop(link._sid, reason)

    # -- scripting at run time ----------------------------------------------------------------

    def script(self, session_id: str, options: Mapping[str, Any] | None = None) -> Script:
        """The session's script, created from its options on first use."""
        script = self._scripts.get(session_id)
        if script is None:
            opts = dict(options or {})
            script = Script(
                fail_connects=opts.get("fail_connects", 0),
                fail_reason=DisconnectReason(opts.get("fail_reason", "network")),
                hang_connects=opts.get("hang_connects", 0),
                raise_connects=opts.get("raise_connects", 0),
                connect_delay=float(opts.get("connect_delay", 0.0)),
                drop_after=opts.get("drop_after"),
                drop_reason=DisconnectReason(opts.get("drop_reason", "network")),
                probe=opts.get("probe", "ok"),
            )
            self._scripts[session_id] = script
        return script

    def ledger(self, session_id: str) -> Ledger:
        """What tether asked of this session so far."""
        ledger = self._ledgers.get(session_id)
        if ledger is None:
            ledger = self._ledgers[session_id] = Ledger()
        return ledger

    def drop(
        self,
        session_id: str,
        reason: DisconnectReason = DisconnectReason.NETWORK,
        *,
        detail: str = "scripted drop",
        exit_code: int | None = None,
        kill_program: bool | None = None,
    ) -> bool:
        """Drop the session's live link; False if it has none. A process-exit also ends the program."""
        link = self.links.get(session_id)
        if kill_program or (kill_program is None and reason is DisconnectReason.PROCESS_EXIT):
            self.ledger(session_id).program_alive = False
        if link is None:
            return False
        link.close(Disconnect(reason, detail, exit_code))
        return True

    def fail_next(self, session_id: str, count: int, reason: DisconnectReason = DisconnectReason.NETWORK) -> None:
        """Make the next `count` connects of this session fail with `reason`."""
        script = self.script(session_id)
        script.fail_connects = count
        script.fail_reason = reason


@final
class _ScriptedOpening:
    """What `ScriptedBackend.open_link` returns. A class rather than ``@asynccontextmanager``:
    the benchmarks hold 100,000 scripted links, and an async generator per link cost
    about 600 bytes and trio's first-iteration hook on every connect."""

    __slots__ = ("_backend", "_link", "_nursery", "_nursery_cm", "_request")

    def __init__(self, backend: ScriptedBackend, request: LinkRequest) -> None:
        self._backend = backend
        self._request = request
        self._link: ScriptedLink | None = None
        self._nursery_cm: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> ScriptedLink:
        link = self._link = await self._backend._connect(self._request)
        script = self._backend.script(link._sid)
        if script.drop_after is not None:  # a reader-like task, as real backends have
            try:
                self._nursery_cm = trio.open_nursery()
                self._nursery = await self._nursery_cm.__aenter__()
            except BaseException:
                self._backend._closed(link)
                raise
            self._nursery.start_soon(self._backend._drop_later, link, script.drop_after, script.drop_reason)
        return link

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            if self._nursery_cm is not None and self._nursery is not None:
                if exc is None:
                    self._nursery.cancel_scope.cancel()
                return bool(await self._nursery_cm.__aexit__(exc_type, exc, tb))
            return False
        finally:
            if self._link is not None:
                self._backend._closed(self._link)
