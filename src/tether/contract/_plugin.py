"""The plugin contract: what a backend, a link and a strategy must offer.

Kept small on purpose (httpx's transport is one method plus aclose): a
backend opens a link as an async context manager, a link can be probed, and
a strategy is one async callable. A plugin needs nothing from tether but the
names exported by ``tether/__init__.py``.

Cancellation rules, which the contract test kit checks:

* ``open_link`` may be cancelled at any checkpoint, including by the
  supervisor's ``connect_timeout``; it must then release what it opened.
* Leaving the context closes the link. Cleanup that must finish (killing a
  process, closing a socket) shields itself *and* bounds itself with
  ``trio.move_on_after``, so a dead peer can never wedge a session.
* The context is entered and left in the session's own task, so a backend
  may open a nursery inside it for its reader tasks; an exception there
  ends the link and is classified like any other error.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol, final, runtime_checkable

import attrs

from ..rules._output import PeerMark
from ..rules._reasons import Disconnect, DisconnectReason
from ..rules._spec import SessionSpec
from ..rules._state import Attempt, PreservedState

PLUGIN_API_VERSION = 1
"""Bumped when the contract changes incompatibly. A plugin may set
``plugin_api = 1`` on its backend or strategy; a mismatch is reported, not loaded."""


class ConnectMode(str, enum.Enum):
    """What a strategy asks the backend for."""

    FRESH = "fresh"
    """A new link from the spec alone, restoring nothing. `LinkRequest.state`
    may carry what the caller handed to `register` as a hint; ignoring it is fine."""
    REATTACH = "reattach"
    """Re-attach to the program that kept running (tmux, a named terminal);
    raise `ReattachUnavailableError` when it is gone."""
    RESTART = "restart"
    """A new program, restoring the preserved cwd and env (and the last command if asked)."""


class Feature(str, enum.Enum):
    """What a backend can do, so strategies know what they may ask of it."""

    REATTACH = "reattach"
    RESTORE_STATE = "restore-state"
    REMOTE = "remote"
    """The link crosses a network (ssh-reconnect applies)."""


@final
class _PlainOutput:
    """`LinkRequest.report_output_at` for a caller that does not de-duplicate: the numbered chunk
    goes to `report_output` as it is. A class, not a closure over the request: no reference cycle."""

    __slots__ = ("_report",)

    def __init__(self, report: Callable[[bytes], None]) -> None:
        self._report = report

    def __call__(self, mark: PeerMark, data: bytes) -> None:
        self._report(data)


@final
@attrs.frozen(kw_only=True)
class LinkRequest:
    """Everything a backend needs to open one link, and the callbacks it reports through."""

    spec: SessionSpec
    mode: ConnectMode
    state: PreservedState | None
    """Preserved state to restore (RESTART) or the handle to re-attach to (REATTACH)."""
    history: bytes
    """Output seen so far, so a re-attach can de-duplicate what the peer replays."""
    deadline: float
    """Trio time by which the link must be open. Apply it to the connect steps
    (``with trio.fail_at(request.deadline)``) so a hang becomes a timeout the
    strategy can handle; the supervisor cancels the whole attempt a little later."""
    connect_timeout: float
    keepalive_interval: float
    """Map onto the transport's own keepalive (ssh ServerAliveInterval, WebSocket ping)."""
    report_closed: Callable[[Disconnect], None]
    """Call once when the link ends, with the typed reason. Safe to call from any task."""
    report_output: Callable[[bytes], None]
    """Call with every chunk of output, exactly as the program wrote it; tether keeps it in the
    session's output log (at the next positions) and fans it out."""
    report_state: Callable[[PreservedState], None]
    """Call when the program's state changes (an OSC 7 cwd report, a finished command)."""
    resume: PeerMark | None = None
    """For a backend that numbers its output (a tmux pane log): the stream and peer offset of
    the first byte the session's output log does not hold. Re-attaching to that stream, send
    from there (or from the oldest byte still kept, if that is later). None: nothing to resume."""
    report_output_at: Callable[[PeerMark, bytes], None] = attrs.field(
        default=attrs.Factory(lambda self: _PlainOutput(self.report_output), takes_self=True)
    )
    """Like `report_output`, for a chunk the peer numbered: `mark` names the stream (one per
    program) and the peer offset of the chunk's first byte. tether drops bytes it already holds
    and records exactly what the peer skipped as a loss. Default: plain `report_output`."""
    session_ending: Callable[[], bool] = attrs.field(default=lambda: False)
    """True while the link is being closed because its session was unregistered: not on
    shutdown, reconnect or crash. A backend that keeps programs alive (tmux) ends them then."""
    last_state: PreservedState | None = None
    """The session's state as tether last knew it, whatever the mode (after a restart: from
    the snapshot). Lets a backend find a program that outlived tether (a killed daemon), so
    that no program ever runs twice."""
    report_survivor: Callable[[int, bool, str], None] = attrs.field(default=lambda pid, adopted, detail: None)
    """Call ``report_survivor(pid, adopted, detail)`` when a program from before was found
    alive: ``adopted`` True if this link continues it, False if it was ended first."""


@runtime_checkable
class Link(Protocol):
    """A live connection to one console."""

    async def probe(self) -> None:
        """Return if the link is alive; raise if not. Bounded by the supervisor's timeout."""

    def current_state(self) -> PreservedState | None:
        """The program's state now (cwd, env, last command, handle); cheap, no I/O."""

    async def send(self, data: bytes) -> None:
        """Write input to the console."""


@runtime_checkable
class Backend(Protocol):
    """Opens links of one kind (process, ssh, websocket, ...)."""

    name: str
    features: frozenset[Feature]
    default_strategies: Mapping[DisconnectReason, str]
    """Reason -> strategy defaults for this backend; the policy's map wins over it."""

    def validate(self, spec: SessionSpec) -> None:
        """Raise `ConfigError` naming the bad option; called at register time."""

    def target(self, spec: SessionSpec) -> str:
        """The peer this spec connects to (``host:port``, a URL); keys the connect limit."""

    def open_link(self, request: LinkRequest) -> AbstractAsyncContextManager[Link]:
        """Open a link; leaving the context closes it."""


@runtime_checkable
class TargetProbe(Protocol):
    """Optional for a backend: one cheap check that a target answers, for the readiness gate.

    While a target's sessions are parked because it was unreachable, the engine
    calls `probe_target` on its own short, capped schedule: one probe per target
    at a time, never one per session, with the spec of one parked session. A
    backend without it is probed by its sessions' own attempts.
    """

    async def probe_target(self, spec: SessionSpec, deadline: float) -> None:
        """Return once the target answers; raise `LinkError` (``network`` or ``timeout``) if it does not.

        Cheap: a connect plus the protocol's greeting (an SSH identification
        string, an HTTP answer), no login where it can be helped. Finish by
        `deadline` (Trio time). A target that answers but would refuse a login
        (bad credentials, a changed host key) still answers: return, and let the
        released sessions find that out. A backend may keep what it opened for
        the sessions it releases (a shared connection).
        """


class RecoveryContext(Protocol):
    """What a strategy sees for one attempt: the session's facts, and the one way to open a link.

    The engine hands each strategy call an object with exactly these members.
    """

    @property
    def spec(self) -> SessionSpec: ...

    @property
    def backend_name(self) -> str: ...

    @property
    def target(self) -> str:
        """The peer this session connects to (``backend.target(spec)``): what per-target
        strategies (circuit-breaker) key their state by."""

    @property
    def features(self) -> frozenset[Feature]: ...

    @property
    def disconnect(self) -> Disconnect | None:
        """Why this episode began; None for the very first connect."""

    @property
    def attempt(self) -> int:
        """1-based attempt number within the episode (0 for the first connect)."""

    @property
    def preserved(self) -> PreservedState | None: ...

    @property
    def history(self) -> bytes:
        """Output seen so far (bounded)."""

    @property
    def previous_attempts(self) -> tuple[Attempt, ...]:
        """This episode's earlier attempts, oldest first."""

    @property
    def live_link(self) -> Link | None:
        """The link `connect` opened and probed in this attempt, if any."""

    async def connect(self, mode: ConnectMode, *, state: PreservedState | None = None) -> Link:
        """Open, probe and return a link; raise `LinkError` (typed) if that fails.

        `state` defaults to the preserved state for RESTART and REATTACH.
        """

    async def run_strategy(self, name: str, *, announce: bool = True) -> Link:
        """Run another strategy in this attempt (force-reconnect's building block)."""

    def replay_history(self) -> None:
        """Send the output history to subscribers again (state-recovery)."""


@runtime_checkable
class Strategy(Protocol):
    """One way to bring a session back. Returns a link from ``ctx.connect`` or raises."""

    name: str

    async def __call__(self, ctx: RecoveryContext) -> Link: ...
