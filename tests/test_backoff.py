"""The backoff schedule is pure: bounds, cap, jitter range and determinism, proven by hypothesis."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from tether import Jitter, ReconnectPolicy, backoff_schedule, ideal_delay, retry_delay

policies = st.builds(
    lambda base, extra, mult, jitter, retries: ReconnectPolicy(
        base_delay=base, max_delay=base + extra, multiplier=mult, jitter=jitter, max_retries=retries
    ),
    st.floats(0, 100, allow_nan=False),
    st.floats(0, 1000, allow_nan=False),
    st.floats(1, 10, allow_nan=False),
    st.sampled_from(list(Jitter)),
    st.integers(0, 30),
)


def test_reference_schedule_without_jitter() -> None:
    """Waits after failures 1..4 are 2, 3, 4.5, 6.75 s (x1.5), 4 waits for 5 attempts."""
    p = ReconnectPolicy(jitter="none")
    assert list(backoff_schedule(p, random.Random(0))) == [2.0, 3.0, 4.5, 6.75]


def test_storm_schedule_sums_to_70ms() -> None:
    p = ReconnectPolicy(base_delay=0.01, multiplier=2, max_delay=0.1, jitter="none", max_retries=4)
    assert sum(backoff_schedule(p, random.Random(0))) == 0.07


def test_cap_applies_and_huge_exponents_do_not_overflow() -> None:
    p = ReconnectPolicy(base_delay=1, max_delay=30, multiplier=10, jitter="none")
    assert ideal_delay(p, 3) == 30.0
    assert ideal_delay(p, 100_000) == 30.0


@given(policies, st.integers(1, 200), st.integers(0, 2**32))
def test_every_delay_is_within_its_promised_bounds(p: ReconnectPolicy, failures: int, seed: int) -> None:
    rng = random.Random(seed)
    ideal = ideal_delay(p, failures)
    assert 0 <= ideal <= p.max_delay
    delay = retry_delay(p, failures, rng, previous=ideal)
    if p.jitter is Jitter.NONE:
        assert delay == ideal
    elif p.jitter is Jitter.FULL:
        assert 0 <= delay <= ideal
    elif p.jitter is Jitter.EQUAL:
        assert ideal / 2 <= delay <= ideal
    else:
        assert min(p.base_delay, p.max_delay) <= delay <= p.max_delay


@given(policies, st.integers(0, 2**32))
def test_schedule_is_deterministic_with_a_seeded_rng(p: ReconnectPolicy, seed: int) -> None:
    first = list(backoff_schedule(p, random.Random(seed)))
    assert first == list(backoff_schedule(p, random.Random(seed)))
    assert len(first) == max(0, (p.max_retries or 0) - 1)
    assert all(d <= p.max_delay for d in first)


def test_flaw_7_full_jitter_spreads_a_herd() -> None:
    """10,000 sessions failing together do not all wait the same time."""
    p = ReconnectPolicy()
    rng = random.Random(7)
    delays = {round(retry_delay(p, 1, rng), 3) for _ in range(10_000)}
    assert len(delays) > 1_000
