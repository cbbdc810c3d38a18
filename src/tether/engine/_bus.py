"""The event bus: one publisher, many subscribers, bounded memory everywhere.

Publishing never blocks and never allocates per subscriber beyond a bounded
buffer: a subscriber that falls behind stops receiving, and when it catches
up it is handed a `Lagged` marker saying what it missed. A ring of recent
events lets a subscriber resume from a sequence number.

An event is built only when something reads it: a subscriber whose filter
wants it, or a replay from the ring. Until then the ring keeps what it is made
of (a tuple): most events of a reconnect storm are seen by nobody, and
building each one cost more than the rest of its publishing.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, TypeVar, final

import trio

from ..rules._events import Event, Lagged
from ..rules._filters import EventFilter

_E = TypeVar("_E", bound=Event)
_Unbuilt = tuple[int, type[Event], float, Mapping[str, Any]]
"""An event's sequence number, class, time and fields, not yet built."""
_YIELD_EVERY = 64
"""A buffered read yields to the scheduler once per this many items."""


@final
class Subscription:
    """An async iterator of events (and `Lagged` markers) for one subscriber."""

    def __init__(self, bus: EventBus, event_filter: EventFilter, buffer: int) -> None:
        self._bus = bus
        self.filter = event_filter
        self._buffer: deque[Event | Lagged] = deque()
        self._limit = buffer
        self._lot = trio.lowlevel.ParkingLot()
        self._missed_from: int | None = None
        self._missed = 0
        self._closed = False
        self._reads = 0
        self.wants_type: dict[type[Event], bool] = {}
        """Event class -> whether the filter's types take it: asked once per class, not per event."""

    def learn_type(self, cls: type[Event]) -> bool:
        wanted = self.wants_type[cls] = self.filter.wants_type(cls.type)
        return wanted

    def _offer(self, event: Event) -> None:
        if self._missed_from is not None or len(self._buffer) >= self._limit:
            if self._missed_from is None:
                self._missed_from = event.seq
            self._missed += 1
        else:
            self._buffer.append(event)
        if self._lot:
            self._lot.unpark_all()

    def _note_gap(self, missed_from: int, missed: int) -> None:
        self._buffer.append(Lagged(missed_from=missed_from, missed=missed))

    @property
    def pending(self) -> int:
        """Items buffered and not yet read."""
        return len(self._buffer)

    def get_nowait(self) -> Event | Lagged | None:
        """The next item, or None when nothing is buffered."""
        if self._buffer:
            return self._buffer.popleft()
        if self._missed_from is not None:
            marker = Lagged(missed_from=self._missed_from, missed=self._missed)
            self._missed_from = None
            self._missed = 0
            return marker
        return None

    async def get(self) -> Event | Lagged:
        """Wait for the next item.

        Always a cancel point; a schedule point only every few buffered items,
        so a reader keeps up with a storm instead of getting one event per
        scheduler pass over 100,000 tasks.
        """
        while True:
            if self._closed:
                raise trio.EndOfChannel
            item = self.get_nowait()
            if item is not None:
                self._reads += 1
                if self._reads % _YIELD_EVERY:
                    await trio.lowlevel.checkpoint_if_cancelled()
                else:
                    await trio.lowlevel.checkpoint()
                return item
            await self._lot.park()

    def __aiter__(self) -> AsyncIterator[Event | Lagged]:
        return self

    async def __anext__(self) -> Event | Lagged:
        try:
            return await self.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Stop receiving; a waiting reader ends its iteration."""
        if not self._closed:
            self._closed = True
            self._bus._subscribers.discard(self)
            self._lot.unpark_all()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@final
class EventBus:
    """Sequences events, keeps the recent ones, and fans them out."""

    def __init__(self, ring_size: int = 10_000, *, boot: str | None = None) -> None:
        if ring_size < 1:
            raise ValueError(f"ring_size must be >= 1, got {ring_size}")
        self.boot = boot if boot is not None else secrets.token_hex(6)
        """This run's identity, on every event: sequence numbers start again at 1 with each run."""
        self._ring: deque[Event | _Unbuilt] = deque(maxlen=ring_size)
        self._subscribers: set[Subscription] = set()
        self.last_seq = 0

    def publish(self, cls: type[_E], /, **fields: Any) -> _E:
        """Build an event with the next sequence number and deliver it. Never blocks."""
        return self.publish_at(cls, time.time(), fields)

    def publish_live(self, cls: type[_E], at: float, fields: Mapping[str, Any]) -> _E:
        """Deliver to the subscribers listening now, without keeping it in the ring: a resume
        (``since=``) never replays it. For console output, whose exact record is the session's
        output log: a busy console must not push everything else out of the ring."""
        self.last_seq += 1
        event = cls(seq=self.last_seq, at=at, boot=self.boot, **fields)
        for sub in self._subscribers:
            if sub.filter.matches(event):
                sub._offer(event)
        return event

    def publish_at(self, cls: type[_E], at: float, fields: Mapping[str, Any]) -> _E:
        """`publish`, for a caller that has read the clock already (`at`, epoch seconds)."""
        self.last_seq += 1
        event = cls(seq=self.last_seq, at=at, boot=self.boot, **fields)
        self._ring.append(event)
        for sub in self._subscribers:
            if sub.filter.matches(event):
                sub._offer(event)
        return event

    def emit(self, cls: type[Event], at: float, fields: Mapping[str, Any]) -> None:
        """`publish_at` for a caller that does not need the event: it is built only if a
        subscriber wants it now, or later when the ring is read. `fields` must not change."""
        self.last_seq += 1
        seq = self.last_seq
        event: Event | None = None
        if self._subscribers:
            session_id = fields["session_id"]
            for sub in self._subscribers:
                wanted = sub.wants_type.get(cls)
                if wanted is None:
                    wanted = sub.learn_type(cls)
                ids = sub.filter.session_ids
                if wanted and (not ids or session_id in ids):  # EventFilter.wants, its type test cached
                    if event is None:
                        event = cls(seq=seq, at=at, boot=self.boot, **fields)
                    sub._offer(event)
        self._ring.append((seq, cls, at, fields) if event is None else event)

    def _built(self, entry: Event | _Unbuilt) -> Event:
        if type(entry) is not tuple:
            return entry  # type: ignore[return-value]  # an Event (they are attrs classes, never tuples)
        seq, cls, at, fields = entry
        return cls(seq=seq, at=at, boot=self.boot, **fields)

    def subscribe(
        self,
        *,
        session_ids: Iterable[str] = (),
        types: Iterable[str] = (),
        since: int | None = None,
        buffer: int = 1_000,
    ) -> Subscription:
        """Start receiving events; with `since`, first replay what the ring holds after it.

        Use as ``with bus.subscribe(...) as sub: async for item in sub: ...``.
        """
        if buffer < 1:
            raise ValueError(f"buffer must be >= 1, got {buffer}")
        sub = Subscription(self, EventFilter(frozenset(session_ids), tuple(types)), buffer)
        if since is not None:
            self._replay_into(sub, since)
        self._subscribers.add(sub)
        return sub

    @property
    def oldest_seq(self) -> int:
        """Sequence number of the oldest event the ring still holds (last_seq + 1 when empty)."""
        return _seq(self._ring[0]) if self._ring else self.last_seq + 1

    def recent(self, since: int = 0) -> list[Event]:
        """Events in the ring with a sequence number above `since`."""
        return [self._built(e) for e in self._ring if _seq(e) > since]

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def _replay_into(self, sub: Subscription, since: int) -> None:
        if since < 0 or since > self.last_seq:
            raise ValueError(f"since must be between 0 and {self.last_seq}, got {since}")
        oldest = self.oldest_seq
        if since + 1 < oldest:
            sub._note_gap(since + 1, oldest - since - 1)
        for entry in self._ring:
            if _seq(entry) > since:
                event = self._built(entry)
                if sub.filter.matches(event):
                    sub._offer(event)


def _seq(entry: Event | _Unbuilt) -> int:
    return entry[0] if type(entry) is tuple else entry.seq  # type: ignore[union-attr]
