"""The callbacks one attempt hands out: to its `AttemptContext` and to each link it opens.

Slotted objects with bound methods rather than closures: an attempt used to
allocate six functions and their cells, and a held link kept four of them
alive for as long as it lived (benchmarks/FINDINGS.md). A link's reporter
carries the generation it was opened in, so a late report from a link that
has since been replaced is ignored.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, final

from ..contract._plugin import ConnectMode, LinkRequest
from ..rules._events import SessionOutput, SessionSurvivor, StrategyAttempted
from ..rules._output import PeerMark
from ..rules._reasons import Disconnect
from ..rules._state import Attempt, PreservedState
from ._secrets import resolve_spec

if TYPE_CHECKING:
    from ..rules._session import EpisodeRecord
    from ._outbox import Outbox
    from ._session import Session


HISTORY_BYTES = 64 * 1024
"""Output handed to a reconnect (`LinkRequest.history`, `RecoveryContext.history`) at most."""


@final
class LinkReporter:
    """What one link reports through: its drop, its output and its state changes."""

    __slots__ = ("_generation", "_outbox", "_session")

    def __init__(self, outbox: Outbox, session: Session, generation: int) -> None:
        self._outbox = outbox
        self._session = session
        self._generation = generation

    def closed(self, disconnect: Disconnect) -> None:
        session = self._session
        if session.generation == self._generation and session.pending_drop is None:
            session.pending_drop = disconnect
            session.wake()

    def output(self, data: bytes) -> None:
        session = self._session
        if session.generation == self._generation and data:
            position, runs = session.console.output(data)
            self._outbox.output(session, position, data, runs)

    def output_at(self, mark: PeerMark, data: bytes) -> None:
        session = self._session
        if session.generation == self._generation and data:
            position, new, runs = session.console.output_at(mark, data)
            if new:
                self._outbox.output(session, position, new, runs)

    def state(self, new_state: PreservedState) -> None:
        session = self._session
        if session.generation == self._generation and session.spec.policy.preserve_state:
            session.preserved_changed(self._outbox, new_state)

    def session_ending(self) -> bool:
        return self._session.unregistering

    def survivor(self, pid: int, adopted: bool, detail: str) -> None:
        action = "adopted" if adopted else "ended"
        self._outbox.publish(SessionSurvivor, session_id=self._session.sid, pid=pid, action=action, detail=detail)


@final
class AttemptHooks:
    """What a `RecoveryContext` calls back into the supervisor for, during one attempt."""

    __slots__ = ("_episode", "_history", "_number", "_outbox", "_session")

    def __init__(self, outbox: Outbox, session: Session, episode: EpisodeRecord | None, number: int) -> None:
        self._outbox = outbox
        self._session = session
        self._episode = episode
        self._number = number
        self._history: bytes | None = None

    def history(self) -> bytes:
        """The output history, copied on first use and shared by the context and its requests
        (a full 64 KiB history copied on every attempt would cost more than the attempt)."""
        if self._history is None:
            self._history = self._session.recent_output(HISTORY_BYTES)
        return self._history

    def previous_attempts(self) -> tuple[Attempt, ...]:
        return tuple(self._episode.attempts) if self._episode is not None else ()

    def make_request(self, mode: ConnectMode, state: PreservedState | None, deadline: float) -> LinkRequest:
        """A request for a new link; from here on, reports from the previous link are ignored."""
        session = self._session
        session.generation += 1
        session.pending_drop = None
        reporter = LinkReporter(self._outbox, session, session.generation)
        policy = session.spec.policy
        spec = session.spec
        if session.secrets:
            spec, values = resolve_spec(spec)
            session.learn_secrets(values)
        return LinkRequest(
            spec=spec,
            mode=mode,
            state=state,
            history=self.history(),
            deadline=deadline,
            connect_timeout=policy.connect_timeout,
            keepalive_interval=policy.keepalive_interval,
            report_closed=reporter.closed,
            report_output=reporter.output,
            report_state=reporter.state,
            session_ending=reporter.session_ending,
            last_state=session.preserved,
            report_survivor=reporter.survivor,
            resume=session.console.log.resume,
            report_output_at=reporter.output_at,
        )

    def strategy_started(self, name: str) -> None:
        episode = self._episode
        if episode is not None and self._number > 0:
            self._outbox.publish(
                StrategyAttempted,
                session_id=self._session.sid,
                episode=episode.number,
                attempt=self._number,
                strategy=name,
            )

    def replay(self, history: bytes) -> None:
        text = history.decode("utf-8", errors="replace")
        self._outbox.bus.publish_live(SessionOutput, time.time(), {
            "session_id": self._session.sid, "data": text, "replay": True, "offset": -1,
        })


@final
class SpentHooks:
    """Stands in for `AttemptHooks` once the attempt is over, so a held link keeps nothing else alive."""

    __slots__ = ()

    def history(self) -> bytes:
        return b""

    def previous_attempts(self) -> tuple[Attempt, ...]:
        return ()

    def make_request(self, mode: ConnectMode, state: PreservedState | None, deadline: float) -> LinkRequest:
        raise RuntimeError("this recovery context's attempt is over")

    def strategy_started(self, name: str) -> None:
        raise RuntimeError("this recovery context's attempt is over")

    def replay(self, history: bytes) -> None:
        raise RuntimeError("this recovery context's attempt is over")


SPENT = SpentHooks()
