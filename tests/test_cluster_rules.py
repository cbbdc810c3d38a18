"""The cluster's arithmetic (tether.rules._cluster) and the lease as this process sees it, without a database."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tether
from tether.cluster._lease import Lease
from tether.rules._cluster import LeaseTiming, fair_share, plan_claims


def test_the_deadline_comes_from_the_send_time_minus_the_margin() -> None:
    timing = LeaseTiming(ttl=3.0)
    assert timing.renew_every == 1.0 and timing.stop_margin == 0.5 and timing.poll_every == 0.5
    assert timing.deadline(100.0) == 102.5
    assert timing.takeover_bound == 3.5


def test_a_margin_that_leaves_no_room_for_a_renewal_is_refused() -> None:
    with pytest.raises(tether.ConfigError, match="margin: must be < ttl - ttl/3"):
        LeaseTiming(ttl=3.0, margin=2.0)
    with pytest.raises(tether.ConfigError, match="ttl: must be a number > 0"):
        LeaseTiming(ttl=0)


@given(st.integers(0, 100_000), st.integers(1, 50))
def test_fair_shares_cover_every_session(movable: int, nodes: int) -> None:
    share = fair_share(movable, nodes)
    assert (share * nodes >= movable and (share - 1) * nodes < movable) or movable == 0


@given(st.integers(0, 30_000), st.integers(1, 10), st.integers(0, 30_000), st.integers(1, 1000))
def test_a_plan_never_claims_past_the_share_nor_sheds_below_it(movable: int, nodes: int, owned: int,
                                                               batch: int) -> None:
    plan = plan_claims(movable=movable, live_nodes=nodes, owned=owned, batch=batch)
    share = fair_share(movable, nodes)
    assert plan.claim == 0 or plan.shed == 0
    assert owned + plan.claim <= max(share, owned) and plan.claim <= batch
    assert owned - plan.shed >= min(share, owned) and plan.shed <= batch


def test_shedding_waits_for_more_than_the_slack() -> None:
    assert plan_claims(movable=3000, live_nodes=3, owned=1050, batch=500).shed == 0
    assert plan_claims(movable=3000, live_nodes=3, owned=1500, batch=500).shed == 500
    assert plan_claims(movable=3000, live_nodes=2, owned=1000, batch=500).claim == 500


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_lease_is_lost_once_its_deadline_passes_and_never_comes_back() -> None:
    """Whoever looks first after the deadline (watchdog, heartbeat, the store) self-fences, once."""
    clock = Clock()
    losses: list[tuple[int, str]] = []
    lease = Lease(LeaseTiming(ttl=3.0), clock=clock, on_lost=lambda node, why: losses.append((node, why)))
    assert lease.writer() is None  # not joined yet
    lease.joined(7, sent_at=0.0)
    clock.now = 1.0
    assert lease.renewed(7, sent_at=1.0) and lease.deadline == 3.5
    clock.now = 3.49
    assert lease.writer() == 7 and losses == []
    clock.now = 3.5
    assert lease.writer() is None and losses == [(7, "the lease's local deadline passed")]
    assert not lease.renewed(7, sent_at=3.4)  # a late answer to an old renewal counts for nothing
    assert lease.writer() is None and len(losses) == 1


def test_a_renewal_sent_before_a_freeze_cannot_extend_past_it() -> None:
    """A process frozen with a renewal in flight: the deadline counts from the send, not the reply."""
    clock = Clock()
    lease = Lease(LeaseTiming(ttl=3.0), clock=clock, on_lost=lambda node, why: None)
    lease.joined(1, sent_at=0.0)
    clock.now = 10.0  # SIGSTOP for 10 s while the renewal sent at 1.0 was on its way
    assert not lease.renewed(1, sent_at=1.0)
    assert lease.lost_why is not None
