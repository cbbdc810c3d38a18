"""Where an /events subscriber resumes, and what it is told when the daemon restarted (pure).

Sequence numbers start again at 1 with each run of the daemon, so ``since=27``
alone is ambiguous: the 27th event of which run? Every handshake answers with
the run's identity (`BOOT_HEADER`), its last sequence number
(`LAST_SEQ_HEADER`) and where this stream starts (`SINCE_HEADER`), and a
client resumes with ``since=SEQ&boot=BOOT``. When
`boot` names another run, `since` counts in a run that is gone: the client
gets a `Restarted` message first (never silence) and then this run's events
from the oldest one the ring still holds (from #1 when it holds them all).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import attrs

BOOT_HEADER = "Tether-Boot"
"""Response header of every accepted /events handshake: the run's identity."""
LAST_SEQ_HEADER = "Tether-Last-Seq"
"""Response header: the sequence number of the run's last event when the stream began."""
SINCE_HEADER = "Tether-Since"
"""Response header: the stream delivers every (matching) event after this sequence number of this
run: the ``since`` asked for, the ring's start after a restart, else the last event so far."""
BOOT_PATTERN = re.compile(r"[0-9A-Za-z_-]{1,64}")
"""What a boot id may look like in a query (the bus makes 12 hex digits)."""


@attrs.frozen(kw_only=True)
class Restarted:
    """Not an event: this subscriber's resume point (`since` in `previous_boot`) belongs to a run
    of the daemon that has ended. What follows are the events of run `boot` from `replay_from`;
    `missed` of this run's first events were already gone from the ring."""

    type: ClassVar[str] = "restarted"
    boot: str
    previous_boot: str
    since: int
    replay_from: int
    missed: int

    def message(self) -> str:
        lost = f"; its first {self.missed} events are no longer kept" if self.missed else ""
        return (f"the daemon restarted: run {self.previous_boot} ended (its events after #{self.since} that you "
                f"had not received, if any, are lost); run {self.boot} is replayed from #{self.replay_from}{lost}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "boot": self.boot, "previous_boot": self.previous_boot, "since": self.since,
                "replay_from": self.replay_from, "missed": self.missed, "message": self.message()}


def resume_point(
    since: int | None, client_boot: str | None, *, boot: str, oldest_seq: int
) -> tuple[int | None, Restarted | None]:
    """The ``since`` to subscribe with, and the `Restarted` message to send first (or None).

    A resume from this run (or one that names no run) starts where it says; one from another run
    starts at the oldest event the ring holds, after the message saying so.
    """
    if since is None or client_boot is None or client_boot == boot:
        return since, None
    start = oldest_seq - 1
    return start, Restarted(boot=boot, previous_boot=client_boot, since=since, replay_from=oldest_seq,
                            missed=start)


def handshake_headers(boot: str, last_seq: int, since: int) -> list[tuple[bytes, bytes]]:
    """The headers that tell a subscriber which run it is connected to and where its stream starts."""
    return [(BOOT_HEADER.encode(), boot.encode("ascii", "replace")), (LAST_SEQ_HEADER.encode(), str(last_seq).encode()),
            (SINCE_HEADER.encode(), str(since).encode())]
