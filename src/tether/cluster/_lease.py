"""One node's lease as this process sees it: its id, its local deadline, and the moment it is lost.

The database decides when a lease ends (``tether.cluster._sql``); this object
decides when *we* stop trusting it, which is always earlier: the deadline is
computed from the local time taken before the renewal was sent
(`tether.rules._cluster.LeaseTiming.deadline`). Whoever first observes the
deadline passed - the watchdog, the heartbeat, the store about to write -
declares the lease lost, and losing it runs the self-fence callback at once,
synchronously, so no other task of ours gets a turn in between.

Lost is final for a node id: a renewal that comes back after the loss is
ignored, and the process joins again under a new id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import final

from ..rules._cluster import LeaseTiming

logger = logging.getLogger("tether.cluster")

Clock = Callable[[], float]


def boot_clock() -> float:
    """Seconds on CLOCK_BOOTTIME where there is one (Linux): it keeps counting while the machine
    is suspended, as the database's clock does; CLOCK_MONOTONIC would not, and a laptop
    waking from sleep would believe a long-expired lease still valid."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


DEFAULT_CLOCK: Clock = boot_clock if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic


@final
class Lease:
    """The current node id and its local deadline; a `WriteGuard` for the store."""

    def __init__(
        self,
        timing: LeaseTiming,
        *,
        clock: Clock = DEFAULT_CLOCK,
        on_lost: Callable[[int, str], None],
        enforce: bool = True,
    ) -> None:
        self.timing = timing
        self.clock = clock
        self._on_lost = on_lost
        self.enforce = enforce
        """False only in tests that show the database's fence alone rejecting a stale writer."""
        self.node_id: int | None = None
        self.deadline = float("-inf")
        self.lost_why: str | None = None
        self.renewals = 0
        self.losses = 0

    @property
    def live(self) -> bool:
        """True while we hold a node id and its deadline has not passed (checks the clock)."""
        if self.node_id is None or self.lost_why is not None:
            return False
        if self.enforce and self.clock() >= self.deadline:
            self.lose("the lease's local deadline passed")
            return False
        return True

    def joined(self, node_id: int, sent_at: float) -> None:
        """A fresh node id, registered by a statement sent at `sent_at`."""
        self.node_id = node_id
        self.lost_why = None
        self.deadline = self.timing.deadline(sent_at)

    def renewed(self, node_id: int, sent_at: float) -> bool:
        """A renewal of `node_id` sent at `sent_at` succeeded; False if it came too late to count."""
        if node_id != self.node_id or not self.live:
            return False
        self.deadline = max(self.deadline, self.timing.deadline(sent_at))
        self.renewals += 1
        return True

    def lose(self, why: str) -> None:
        """The lease is gone (deadline passed, renewal refused, fence lost): self-fence now, once."""
        if self.node_id is None or self.lost_why is not None:
            return
        self.lost_why = why
        self.losses += 1
        if why == "stopped":
            logger.info("node %s left the cluster", self.node_id)
        else:
            logger.warning("node %s lost its lease: %s", self.node_id, why)
        self._on_lost(self.node_id, why)

    # -- WriteGuard (tether.store._postgres) -------------------------------------------------

    def writer(self) -> int | None:
        """Our node id while the lease holds; None (and the lease lost) once its deadline passed."""
        if not self.enforce:
            return self.node_id
        return self.node_id if self.live else None

    def remaining(self) -> float:
        """Seconds left before the local deadline (negative once passed)."""
        return self.deadline - self.clock()
