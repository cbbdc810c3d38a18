"""The engine's side of a session: its record (the rules), its parking spot, its signals, its link.

A `Session` is a `SessionRecord` (everything a snapshot keeps, changed only
by the rules in `tether.rules._session`) plus what only a running engine
has: the backend, the live link, the cancel scope of the attempt in
progress, the signals other tasks raise (a drop report, a forced reconnect,
a stop) and the one place the session task waits. One object per session,
so a parked session costs as little memory as it can.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..contract._plugin import Backend
from ..rules._console import ConsoleOutput
from ..rules._output import OutputLog
from ..rules._reasons import Disconnect
from ..rules._secret_refs import has_refs, missing_literals
from ..rules._secrets import longest_first
from ..rules._session import SessionRecord
from ..rules._spec import SessionSpec
from ..rules._state import Attempt
from ._secrets import remember
from ._timers import TimerEntry, TimerQueue

if TYPE_CHECKING:
    from ..contract._plugin import Link


@attrs.define(eq=False)
class ForceRequest:
    """A pending `force_reconnect`; every caller waiting on it gets the same attempt."""

    strategy: str | None
    done: trio.Event = attrs.field(factory=trio.Event)
    result: Attempt | None = None
    error: BaseException | None = None

    def resolve(self, attempt: Attempt | None, error: BaseException | None = None) -> None:
        self.result = attempt
        self.error = error
        self.done.set()


class Session(SessionRecord):
    """One supervised session: its record, its parking spot and its signals."""

    __slots__ = (
        "_decoder",
        "_entry",
        "_task",
        "backend",
        "console",
        "current",
        "declared",
        "done",
        "epoch",
        "fence",
        "fenced_out",
        "finished",
        "force",
        "generation",
        "link",
        "pending_drop",
        "scope",
        "secrets",
        "size",
        "stopping",
        "timers",
        "unregistering",
        "waiters",
        "watch_epoch",
        "watch_phase",
        "watch_scope",
        "watch_since",
    )

    def __init__(
        self, spec: SessionSpec, backend: Backend, target: str, timers: TimerQueue, log: OutputLog, wall: float
    ) -> None:
        super().__init__(spec, target, backend.default_strategies, wall)
        self.backend = backend
        self.timers = timers
        self.scope: trio.CancelScope | None = None
        """The cancel scope of the attempt in progress (it also holds the link); None between attempts."""
        self.link: Link | None = None
        self.generation = 0
        """Bumped for every new link: reports from an older link are ignored."""
        self.pending_drop: Disconnect | None = None
        self.force: ForceRequest | None = None
        self.stopping = False
        self.unregistering = False
        self.finished = False
        self.fence: int | None = None
        """The fencing token this process holds for the session in a shared store (None: not shared)."""
        self.fenced_out = False
        """Another process took the session over: nothing more of it is written."""
        self.declared = False
        """Registered from a declaration (the config), not by a register call."""
        self.secrets = has_refs(spec.options) or bool(missing_literals(spec.options))
        """The options name secrets to resolve (or miss) before each connect."""
        remember(self.known_secrets)
        self.done: trio.Event | None = None
        self.epoch = 0
        """Which task drives the session: bumped when a task is abandoned in plugin code that would
        not return, so the abandoned task knows to leave everything alone."""
        self.current: Any = None
        """The attempt in progress (engine._attempt), for recording it if its task is abandoned."""
        self.watch_scope: trio.CancelScope | None = None
        """The scope bounding the plugin call in progress (engine._watch); None outside plugin code."""
        self.watch_phase = ""
        self.watch_since = math.inf
        self.watch_epoch = 0
        self.console = ConsoleOutput(log)
        """Every byte of output at its log position, the shell marks in it, the runs waiting."""
        self.waiters: Any = None
        """Output waiters and finished runs (engine._console), made when first needed."""
        self.size: tuple[int, int] | None = None
        """The terminal size asked for (rows, cols), given to every new link."""
        self._decoder: codecs.IncrementalDecoder | None = None
        self._task: trio.lowlevel.Task | None = None
        self._entry: TimerEntry | None = None

    def learn_secrets(self, values: tuple[str, ...]) -> None:
        """Values its references resolved to: scrubbed from its reasons from now on, like its literals."""
        new = tuple(value for value in values if value and value not in self.known_secrets)
        if new:
            self.known_secrets = longest_first((*self.known_secrets, *new))

    # -- parking: the one place a session waits -------------------------------------------

    @property
    def parked(self) -> bool:
        return self._task is not None

    def has_signal(self) -> bool:
        """A drop, a forced reconnect or a stop is waiting to be handled."""
        return self.stopping or self.force is not None or self.pending_drop is not None

    def park(self, deadline: float) -> Awaitable[None]:
        """Wait until `deadline` (trio time) or a signal; may return early, callers re-check.

        Not a coroutine itself: it arms the wake-up and hands back trio's own
        awaitable, so a parked session holds one frame fewer and no closure.
        """
        if self.stopping or self.force is not None or self.pending_drop is not None:  # has_signal()
            return trio.lowlevel.checkpoint()  # noqa: ASYNC105 -- the caller awaits it
        if deadline != math.inf:
            self._entry = self.timers.schedule(deadline, self.wake)
        self._task = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(self._abort)  # noqa: ASYNC105 -- the caller awaits it

    def _abort(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        self._task = None
        self._drop_timer()
        return trio.lowlevel.Abort.SUCCEEDED

    def wake(self) -> None:
        """Reschedule the parked session task, if it is parked."""
        task = self._task
        if task is not None:
            self._task = None
            self._drop_timer()
            trio.lowlevel.reschedule(task)

    def _drop_timer(self) -> None:
        entry = self._entry
        if entry is not None:
            entry.callback = None  # TimerEntry.cancel, without the call
            self._entry = None

    def take_force(self) -> ForceRequest | None:
        force, self.force = self.force, None
        return force

    # -- output ---------------------------------------------------------------------------

    def recent_output(self, max_bytes: int) -> bytes:
        """Up to the last `max_bytes` bytes of output still kept (losses skipped): the history a
        reconnect hands the backend, and what ``output_history`` shows."""
        return self.console.log.tail(max_bytes)

    def decode(self, data: bytes) -> str:
        """`data` decoded for ``session.output`` events (UTF-8, undecodable bytes replaced; a
        character split across chunks is kept whole)."""
        if self._decoder is None:
            self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return self._decoder.decode(data)
