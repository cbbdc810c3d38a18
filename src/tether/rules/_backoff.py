"""The backoff schedule, as pure functions of the policy and an RNG.

No clock and no I/O here, so the bounds are proven by hypothesis tests.
The first reconnect attempt of an episode runs at once; ``retry_delay(n)`` is
the wait after the n-th failed attempt (reference: base x multiplier^(n-1),
capped at max_delay), then jittered.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from ._policy import Jitter, ReconnectPolicy


def ideal_delay(policy: ReconnectPolicy, failures: int) -> float:
    """The un-jittered wait after `failures` failed attempts (>= 1), capped at max_delay."""
    if failures < 1:
        raise ValueError(f"failures must be >= 1, got {failures}")
    if policy.base_delay == 0:
        return 0.0
    try:
        delay = policy.base_delay * policy.multiplier ** (failures - 1)
    except OverflowError:
        return policy.max_delay
    return min(delay, policy.max_delay)


def retry_delay(policy: ReconnectPolicy, failures: int, rng: random.Random, previous: float | None = None) -> float:
    """The jittered wait after `failures` failed attempts.

    Bounds, by jitter mode: none = ideal; full = [0, ideal];
    equal = [ideal/2, ideal]; decorrelated = [base, max_delay], drawn from
    [base, 3 x previous] (`previous` is the last delay, base when absent).
    """
    mode = policy.jitter
    if mode is Jitter.DECORRELATED:
        low = policy.base_delay
        last = policy.base_delay if previous is None else previous
        high = max(low, last * 3)
        return min(policy.max_delay, rng.uniform(low, high))
    ideal = ideal_delay(policy, failures)
    if mode is Jitter.NONE:
        return ideal
    if mode is Jitter.FULL:
        return rng.uniform(0.0, ideal)
    return ideal / 2 + rng.uniform(0.0, ideal / 2)


def backoff_schedule(policy: ReconnectPolicy, rng: random.Random) -> Iterator[float]:
    """The successive waits of one episode, for as long as the policy allows retries."""
    previous: float | None = None
    failures = 1
    while policy.max_retries is None or failures < policy.max_retries:
        previous = retry_delay(policy, failures, rng, previous)
        yield previous
        failures += 1
