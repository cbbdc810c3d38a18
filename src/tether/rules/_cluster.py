"""The arithmetic of sharing sessions between processes: lease timing, deadlines, fair shares.

Pure: no clock, no database. The I/O lives in ``tether.cluster``; the proofs
of these bounds live in tests/test_cluster_rules.py.

Why the deadline is safe. A node sends a renewal at local time ``t_send``
(read *before* the statement goes out); the database stamps
``expires_at = now_db + ttl`` with ``now_db`` no earlier than the moment the
statement arrived, so in real time the database lease ends no sooner than
``t_send + ttl``. The node's own deadline is ``t_send + ttl - margin``: it
stops its sessions (self-fences) at least `margin` seconds before any other
node can see the lease expire, reap the node and claim its sessions. The
margin pays for clock-rate differences and for the time stopping takes.

Why a kill is taken over in bounded time. A node killed at ``k`` renewed at
some ``r <= k``, so its lease ends at ``r + ttl <= k + ttl`` by the database's
clock; every other node reaps and claims every `poll` seconds, so the
sessions are claimed by ``k + ttl + poll`` plus the time one claim takes.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from ._errors import ConfigError


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or value <= 0:
        raise ConfigError(attribute.name, f"must be a number > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class LeaseTiming:
    """How long a lease lasts, how often it is renewed, and how early a node stops on its own."""

    ttl: float = attrs.field(default=15.0, validator=_positive)
    """Seconds a renewal keeps the lease, by the database's clock."""
    margin: float | None = None
    """Seconds before the lease's end at which the node self-fences; default ttl/6."""
    poll: float | None = None
    """Seconds between reap-and-claim rounds; default ttl/6, at least 0.1 s."""

    def __attrs_post_init__(self) -> None:
        if self.margin is not None:
            _positive(self, attrs.fields(LeaseTiming).margin, self.margin)
            if self.margin >= self.ttl - self.renew_every:
                raise ConfigError(
                    "margin",
                    f"must be < ttl - ttl/3 ({self.ttl - self.renew_every:g}) so a renewal lands before the "
                    f"deadline, got {self.margin:g}",
                )
        if self.poll is not None:
            _positive(self, attrs.fields(LeaseTiming).poll, self.poll)

    @property
    def renew_every(self) -> float:
        """Seconds between renewals: a third of the lease, so two may fail before it runs out."""
        return self.ttl / 3

    @property
    def stop_margin(self) -> float:
        return self.margin if self.margin is not None else self.ttl / 6

    @property
    def poll_every(self) -> float:
        return self.poll if self.poll is not None else max(0.1, self.ttl / 6)

    def deadline(self, sent_at: float) -> float:
        """The local deadline of a renewal sent at `sent_at` (monotonic time taken before sending)."""
        return sent_at + self.ttl - self.stop_margin

    @property
    def takeover_bound(self) -> float:
        """Seconds from a node's death until its sessions are claimed, before the claim's own time."""
        return self.ttl + self.poll_every


def fair_share(movable: int, live_nodes: int) -> int:
    """Sessions one node should hold of `movable` ones shared by `live_nodes` (rounded up)."""
    if movable <= 0:
        return 0
    return math.ceil(movable / max(1, live_nodes))


@attrs.frozen
class ClaimPlan:
    claim: int
    """Movable sessions to claim this round."""
    shed: int
    """Movable sessions to hand back this round (this node holds more than its share)."""


def plan_claims(*, movable: int, live_nodes: int, owned: int, batch: int, slack: float = 0.1) -> ClaimPlan:
    """How many movable sessions to claim or shed in one round.

    Claim up to the fair share, `batch` at most per round. Shed only past the
    share plus `slack` (a tenth by default, at least one session), and only
    down to the share: without the slack two nodes would pass sessions back
    and forth on every change of the count.
    """
    share = fair_share(movable, live_nodes)
    if owned < share:
        return ClaimPlan(claim=min(batch, share - owned), shed=0)
    tolerance = max(1, math.ceil(share * slack))
    if owned > share + tolerance:
        return ClaimPlan(claim=0, shed=min(batch, owned - share))
    return ClaimPlan(claim=0, shed=0)
