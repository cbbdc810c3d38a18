"""The callbacks each link an attempt opens reports through (`LinkRequest`'s ``report_*``).

A slotted object with bound methods rather than closures: an attempt used to
allocate six functions and their cells, and a held link kept four of them
alive for as long as it lived (benchmarks/FINDINGS.md). A link's reporter
carries the generation it was opened in, so a late report from a link that
has since been replaced is ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from ..rules._events import SessionSurvivor
from ..rules._output import PeerMark
from ..rules._reasons import Disconnect
from ..rules._state import PreservedState

if TYPE_CHECKING:
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
