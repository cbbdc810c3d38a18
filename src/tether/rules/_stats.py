"""Supervisor-wide statistics: the reference's set, per episode, plus percentiles."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping

import attrs

from ._reasons import DisconnectReason
from ._state import SessionStatus


@attrs.frozen(kw_only=True)
class SupervisorStats:
    """A snapshot of the counters. Reconnection = a disconnection episode, not an attempt (flaw 14)."""

    registered_sessions: int
    active_reconnections: int
    """Sessions backing off or reconnecting right now."""
    total_attempts: int
    failed_attempts: int
    successful_reconnections: int
    """Episodes that ended with a live link."""
    failed_reconnections: int
    """Episodes that ended failed (budget spent, auth, host key)."""
    success_rate: float
    """Recovered episodes / ended episodes, in percent; 100 when none ended."""
    average_reconnection_time: float
    """Mean seconds from drop to live link, over recovered episodes."""
    p50_reconnection_time: float
    p99_reconnection_time: float
    """Over the most recent recovered episodes (a bounded sample)."""
    last_reconnection: float | None
    """Wall-clock time of the last recovery."""
    disconnections: int
    network_disconnections: int
    process_restarts: int
    """Successful attempts that restarted the program (process-restart)."""
    disconnections_by_reason: Mapping[str, int] = attrs.field(hash=False)
    sessions_by_status: Mapping[str, int] = attrs.field(hash=False)


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; 0.0 for no data."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


class StatsRecorder:
    """Counters updated on each transition; cheap to update, built into a snapshot on demand."""

    def __init__(self, sample_size: int = 10_000) -> None:
        self.total_attempts = 0
        self.failed_attempts = 0
        self.recovered = 0
        self.failed = 0
        self.recovery_time_sum = 0.0
        self.recovery_samples: deque[float] = deque(maxlen=sample_size)
        self.last_reconnection: float | None = None
        self.by_reason: Counter[DisconnectReason] = Counter()
        self.process_restarts = 0
        self.by_status: Counter[SessionStatus] = Counter()

    def moved(self, old: SessionStatus | None, new: SessionStatus | None) -> None:
        if old is not None:
            self.by_status[old] -= 1
        if new is not None:
            self.by_status[new] += 1

    def recovered_episode(self, recovery_time: float, at: float) -> None:
        self.recovered += 1
        self.recovery_time_sum += recovery_time
        self.recovery_samples.append(recovery_time)
        self.last_reconnection = at

    def reopened_episode(self, recovery_time: float) -> None:
        """A flapping link reopened an episode counted as recovered: take that back."""
        self.recovered -= 1
        self.recovery_time_sum -= recovery_time

    def snapshot(self, registered: int) -> SupervisorStats:
        ended = self.recovered + self.failed
        samples = sorted(self.recovery_samples)
        return SupervisorStats(
            registered_sessions=registered,
            active_reconnections=self.by_status[SessionStatus.BACKING_OFF] + self.by_status[SessionStatus.RECONNECTING],
            total_attempts=self.total_attempts,
            failed_attempts=self.failed_attempts,
            successful_reconnections=self.recovered,
            failed_reconnections=self.failed,
            success_rate=100.0 * self.recovered / ended if ended else 100.0,
            average_reconnection_time=self.recovery_time_sum / self.recovered if self.recovered else 0.0,
            p50_reconnection_time=_percentile(samples, 0.50),
            p99_reconnection_time=_percentile(samples, 0.99),
            last_reconnection=self.last_reconnection,
            disconnections=sum(self.by_reason.values()),
            network_disconnections=self.by_reason[DisconnectReason.NETWORK],
            process_restarts=self.process_restarts,
            disconnections_by_reason={r.value: n for r, n in self.by_reason.items() if n},
            sessions_by_status={s.value: n for s, n in self.by_status.items() if n},
        )
