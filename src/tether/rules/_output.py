"""The output log of one session: every byte at its own offset, every loss said out loud. Pure, no I/O.

Offsets. Every byte a session outputs gets the next *position* of a counter
that belongs to the session and only grows: across reconnects, re-attaches,
new programs and daemon restarts (the counter is persisted with the log, see
`LogHead`). A reader keeps one integer, its cursor, and asks
``read(since=cursor)``; the answer (`LogRead`) holds the exact bytes, the
cursor to ask with next time, and every range it cannot deliver as a `Loss`.
Nothing is lost silently and nothing is delivered twice: a sequence of reads,
each from the previous one's ``next``, covers every position exactly once,
either as a byte or inside exactly one loss range.

Losses take positions too, so the order of events stays readable:

* ``unseen``: output the session produced while nobody was looking (the link
  was down and the peer kept nothing). When the peer can say how much it lost
  (a pane log trimmed at peer offset X), the range is exactly that many
  positions wide and `Loss.size` says so. When nobody can say, the loss is a
  *gap of unknown size*: it occupies exactly one position and its
  `Loss.size` is None. One position, not zero, so that a cursor can stand
  before or after it, a read reports it exactly once, and an empty log that
  ends in a gap still tells a reader at its end that something happened.
* ``trimmed``: bytes that were seen but have left the bounded buffer.
  Everything before the buffer's first position reads as trimmed; its size is
  exact unless an unknown-size gap was trimmed with it.
* ``unsaved``: positions a tether process may have handed out and then lost
  when it was killed (kill -9) before writing them down. Their size is
  unknown; see "Restarts" below.

Peer offsets. A peer that numbers its own bytes (a tmux pane log) reports
chunks with a `PeerMark` (its stream's name and the byte offset the chunk
starts at). Within one stream the log keeps ``position = base + peer
offset``, so a re-attach that replays bytes already held is cut exactly (no
duplicate), a peer that trimmed what we missed yields an ``unseen`` loss of
exactly the trimmed size, and after a crash the same bytes land on the same
positions a reader may already have seen. Plain chunks and recorded losses in
between move the base past themselves, so the stream still lines up after
them. A chunk from a new stream starts at the current end.

Link drops. `mark_interrupted` says "the link ended; bytes may be lost
unless the next link proves otherwise". The next chunk decides: one that
continues the same peer stream needs no gap; any other chunk is preceded by
an unknown-size ``unseen`` gap. `mark_lost` records a loss at once, when the
engine knows it (N bytes, or unknown).

Restarts. The log is written behind (`take_flush`, then `flushed` once the
write committed; batched with snapshots). Each flush reserves positions ahead
(``LogHead.reserved``) and reads never go past the last reservation written
down, so no reader holds a cursor a restarted tether does not know about;
likewise, positions after a change of the peer numbering (a new stream, or
plain positions moving it) stay unreadable until the change is written down.
`wants_flush` says when readers are waiting for such a write. After a clean stop (``take_flush(final=True)``)
nothing is reserved ahead and the log continues exactly. After kill -9 the
restored log holds the pending range ``[end, reserved)``: a chunk continuing
the same peer stream fills it exactly (the same bytes on the same positions),
anything else turns it into one ``unsaved`` loss; every cursor up to
``reserved`` stays valid. Going forward from its cursor a reader never sees a
position twice; re-reading old positions across a kill -9 may find an
``unsaved`` loss where bytes were shown, or bytes where it was told of one.
A log never written down gets a new `log_id` when the session is registered
again; readers pass the id they hold (``expect_log``) to be told so instead
of reading another log's positions.

Cost. ``append`` is the hot path (every output chunk): one bytearray
extend, two integer updates and a length test while nothing unusual is
pending. Memory per session is the kept bytes (at most
`LogLimits.max_bytes`) plus about 360 bytes of bookkeeping (measured in
benchmarks/output.py).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterator
from typing import Final, final

import attrs

from ._errors import ConfigError, CursorError

DEFAULT_MAX_BYTES: Final = 64 * 1024
"""Bytes kept per session: 10,000 sessions that fill it hold about 650 MB; idle ones next to nothing."""
DEFAULT_MAX_GAPS: Final = 64
"""Loss records kept inside the buffer; an older one leaves with everything before it."""
DEFAULT_RESERVE: Final = 64 * 1024 * 1024
"""Positions reserved ahead by each flush: reads lag only for a session writing faster than
this per flush interval (128 MB/s at the default 0.5 s)."""
DEFAULT_ROW_BYTES: Final = 1024
"""Largest stored data row; the last, partial one is rewritten while it grows."""


class LossKind(str, enum.Enum):
    """Why a range of positions has no bytes."""

    UNSEEN = "unseen"
    """Never seen: the session produced it while the link was down and the peer kept nothing."""
    TRIMMED = "trimmed"
    """Seen, but left the bounded buffer."""
    UNSAVED = "unsaved"
    """Seen by a tether process that was killed before it wrote them down."""


@final
@attrs.frozen
class Loss:
    """Positions ``[start, stop)`` that hold no bytes, and why."""

    start: int
    stop: int
    kind: LossKind
    size: int | None
    """Bytes of output the range stood for (``stop - start``) when known; None when nobody can say."""

    def clip(self, low: int, high: int) -> Loss:
        """The part of this loss inside ``[low, high)`` (the caller makes sure they overlap)."""
        start, stop = max(self.start, low), min(self.stop, high)
        if (start, stop) == (self.start, self.stop):
            return self
        return Loss(start, stop, self.kind, stop - start if self.size is not None else None)


@final
@attrs.frozen
class PeerMark:
    """Where a chunk starts in a peer's own numbering: its stream and byte offset."""

    stream: str
    """Names one peer-side log for its whole life (a new program gets a new stream)."""
    offset: int


@final
@attrs.frozen
class LogRead:
    """One answer of `OutputLog.read`: bytes and losses covering ``[since, next)`` in order."""

    log_id: str
    since: int
    next: int
    """The cursor to read from next time."""
    end: int
    """How far the log could be read at the time: ``next < end`` means more is waiting."""
    data: bytes
    """Every byte in ``[since, next)`` outside `losses`, in order."""
    losses: tuple[Loss, ...] = ()

    def pieces(self) -> Iterator[tuple[int, bytes] | Loss]:
        """``(position, bytes)`` runs and losses in position order: where each byte belongs."""
        pos, taken = self.since, 0
        for loss in self.losses:
            if loss.start > pos:
                run = loss.start - pos
                yield pos, self.data[taken : taken + run]
                taken += run
            yield loss
            pos = loss.stop
        if pos < self.next:
            yield pos, self.data[taken:]


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ConfigError(f"output.{attribute.name}", f"must be >= 1, got {value}")


def _not_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ConfigError(f"output.{attribute.name}", f"must be >= 0, got {value}")


@final
@attrs.frozen(kw_only=True)
class LogLimits:
    """The bounds of every session's log (one instance shared by all of them)."""

    max_bytes: int = attrs.field(default=DEFAULT_MAX_BYTES, validator=_not_negative)
    """Output bytes kept in memory and on disk (disk adds at most one row, `row_bytes`)."""
    max_gaps: int = attrs.field(default=DEFAULT_MAX_GAPS, validator=_positive)
    reserve: int = attrs.field(default=DEFAULT_RESERVE, validator=_positive)
    row_bytes: int = attrs.field(default=DEFAULT_ROW_BYTES, validator=_positive)


DEFAULT_LIMITS: Final = LogLimits()


class RowKind(str, enum.Enum):
    """What a stored row holds."""

    DATA = "data"
    UNSEEN = "unseen"
    UNSAVED = "unsaved"


@attrs.frozen
class LogRow:
    """One stored piece of a log: data bytes at ``[start, stop)``, or one loss."""

    start: int
    stop: int
    kind: RowKind
    data: bytes = b""
    size: int | None = None
    """For a loss row: `Loss.size`."""


@attrs.frozen(kw_only=True)
class LogHead:
    """Everything about a log except its bytes: what a store keeps beside the rows."""

    log_id: str
    start: int
    """First position still kept; rows that end at or before it are deleted."""
    end: int
    """Next position to hand out."""
    reserved: int
    """Readers may have seen positions up to here. Past `end` only after a crash (or before
    the next flush): a restored log treats ``[end, reserved)`` as pending, see the module doc."""
    peer_stream: str | None = None
    peer_base: int = 0
    """``position = peer_base + peer offset`` within `peer_stream`."""
    interrupted: bool = False
    trimmed_unknown_before: int = 0
    """Positions before this may include a trimmed loss of unknown size."""


@attrs.frozen
class LogFlush:
    """What one flush writes for one session: upsert `rows` (by start) and `head`, then delete
    every row whose stop is at or before ``head.start``. Idempotent, so a failed flush is retried as is."""

    session_id: str
    head: LogHead
    rows: tuple[LogRow, ...] = ()


@attrs.frozen
class StoredLog:
    """A log as a store loads it: its head and its rows in position order."""

    head: LogHead
    rows: tuple[LogRow, ...] = ()


def new_log_id() -> str:
    """A fresh, unguessable log identity."""
    return secrets.token_hex(8)


@final
class OutputLog:
    """The bounded, offset-addressed output of one session (see the module docstring).

    Mutable and synchronous: the engine owns one per session and calls it
    from the session's reporter (`append`, `append_at`), its link lifecycle
    (`mark_interrupted`, `mark_lost`), its readers (`read`) and its flusher
    (`take_flush`, then `flushed` once the write committed).
    """

    __slots__ = (
        "_buf",
        "_ceiling",
        "_end",
        "_floor",
        "_gap_width",
        "_gaps",
        "_interrupted",
        "_open_row",
        "_peer_base",
        "_peer_stream",
        "_saved",
        "_saved_end",
        "_special",
        "_start",
        "_trimmed_unknown_before",
        "_unsaved_to",
        "limits",
        "log_id",
    )

    def __init__(self, limits: LogLimits = DEFAULT_LIMITS, *, log_id: str | None = None, start: int = 0) -> None:
        if start < 0:
            raise ValueError(f"a log starts at a position >= 0, got {start}")
        self.limits = limits
        self.log_id = log_id if log_id is not None else new_log_id()
        self._buf = bytearray()
        self._start = start
        self._end = start
        self._gaps: list[Loss] = []
        """Losses inside the window, in order (kinds unseen and unsaved)."""
        self._gap_width = 0
        self._peer_stream: str | None = None
        self._peer_base = 0
        self._interrupted = False
        self._unsaved_to: int | None = None
        self._special = False
        """True while a peer stream, an interruption or an unsaved range needs the slow path."""
        self._trimmed_unknown_before = start
        self._ceiling: int | None = None
        """Reads stop here; None while no head was ever handed to a store (see `take_flush`)."""
        self._floor = start
        """Cursors up to here are valid even past the end: an earlier incarnation of this log
        may have handed them out before it was killed (the restored head's reservation)."""
        self._saved: tuple[object, ...] | None = None
        """The facts of the last committed head, to tell whether a flush is needed."""
        self._saved_end = start
        self._open_row: int | None = None
        """Start of the last stored data row while it is short enough to be rewritten longer."""

    # -- facts ------------------------------------------------------------------------------

    @property
    def start(self) -> int:
        """First position still held."""
        return self._start

    @property
    def end(self) -> int:
        """Next position to hand out."""
        return self._end

    @property
    def readable_end(self) -> int:
        """How far `read` can go now: the end, or the last reservation written down."""
        return self._end if self._ceiling is None else min(self._end, self._ceiling)

    @property
    def kept_bytes(self) -> int:
        return len(self._buf)

    def tail(self, max_bytes: int) -> bytes:
        """Up to the last `max_bytes` readable bytes (losses skipped): the history a reconnect is
        handed. One call: every attempt asks, and most logs have nothing to give."""
        end = self._end if self._ceiling is None else min(self._end, self._ceiling)
        since = max(self._start, end - max_bytes)
        return self.read(since, max(1, max_bytes)).data if end > since else b""

    @property
    def resume(self) -> PeerMark | None:
        """Where the current peer stream should continue: the peer offset of the first byte
        this log does not hold. None when the output does not come from a numbered stream."""
        if self._peer_stream is None:
            return None
        return PeerMark(self._peer_stream, self._end - self._peer_base)

    @property
    def needs_flush(self) -> bool:
        """True when `take_flush` has something new to write."""
        return self._saved != self._facts()

    @property
    def reserved_ahead(self) -> bool:
        """True when the head last handed to a store reserves positions past the end: a clean stop
        must write this log's head again (`take_flush(final=True)`), or the next start would count
        those positions as lost (``unsaved``)."""
        return self._ceiling is not None and self._ceiling > self._end

    @property
    def wants_flush(self) -> bool:
        """True when readers wait (or soon will) for a write-down: output past the last
        reservation, or a change of peer numbering not yet stored. Flush soon."""
        return self._ceiling is not None and self._end + self.limits.reserve // 2 > self._ceiling

    # -- writing ----------------------------------------------------------------------------

    def append(self, data: bytes) -> int:
        """Add a chunk of output at the end (the hot path); returns the position it starts at."""
        if self._special:
            self._settle_plain(len(data))
        position = self._end
        buf = self._buf
        buf += data
        self._end = position + len(data)
        excess = len(buf) - self.limits.max_bytes
        if excess > 0:
            if self._gaps:
                self._trim()
            else:  # the common case, inline: only bytes to drop
                del buf[:excess]
                self._start += excess
        return position

    def append_at(self, mark: PeerMark, data: bytes) -> tuple[int, bytes]:
        """Add a chunk the peer numbered: it starts at `mark.offset` of `mark.stream`.

        Returns the position of the first new byte and the new bytes (empty when the
        chunk was all duplicate). Bytes this log already holds are dropped; a jump forward
        in the same stream is an ``unseen`` loss of exactly the skipped size; a new stream
        starts at the end.
        """
        if mark.offset < 0:
            raise ValueError(f"peer offset must be >= 0, got {mark.offset}")
        if self._peer_stream == mark.stream:
            position = self._peer_base + mark.offset
            if position + len(data) <= self._end:
                return self._end, b""
            if position < self._end:
                data = data[self._end - position :]
            elif position > self._end:
                skipped = position - self._end
                kind = LossKind.UNSAVED if self._unsaved_to is not None else LossKind.UNSEEN
                self._add_gap(skipped, kind, skipped)
            self._interrupted = False
            self._unsaved_to = None
        else:
            self._settle_pending()
            if self._ceiling is not None:
                # unreadable until a head naming the stream is written down: after a crash the
                # peer would replay the stream from its start, and a reader would see it twice
                self._ceiling = min(self._ceiling, self._end)
            self._peer_stream = mark.stream
            self._peer_base = self._end - mark.offset
            self._special = True
        position = self._end
        self._buf += data
        self._end = position + len(data)
        if len(self._buf) > self.limits.max_bytes:
            self._trim()
        return position, data

    def mark_interrupted(self) -> None:
        """The link ended: output may be lost unless the next chunk continues the same peer stream."""
        self._interrupted = True
        self._special = True

    def mark_lost(self, size: int | None = None) -> None:
        """Output was lost here: `size` bytes, or an unknown amount (one position)."""
        if size is not None and size < 1:
            raise ValueError(f"a loss has at least one byte, got {size}")
        width = 1 if size is None else size
        self._interrupted = False  # this loss says what the interruption could only suspect
        self._settle_plain(width)
        self._add_gap(width, LossKind.UNSEEN, size)

    # -- reading ----------------------------------------------------------------------------

    def read(self, since: int, max_bytes: int = 65536, *, expect_log: str | None = None) -> LogRead:
        """The bytes and losses from position `since` on, at most `max_bytes` data bytes.

        Raises `CursorError` for a cursor this log cannot serve: negative, past
        anything it ever handed out, or (with `expect_log`) from another log.
        """
        if expect_log is not None and expect_log != self.log_id:
            raise CursorError(f"the cursor belongs to log {expect_log}, but this session's log is {self.log_id}")
        if max_bytes < 1:
            raise CursorError(f"max_bytes must be >= 1, got {max_bytes}")
        readable = self.readable_end
        horizon = max(readable, self._floor)
        if since < 0 or since > horizon:
            raise CursorError(f"cursor {since} is outside this log (it covers 0 to {horizon})")
        if since >= readable:
            return LogRead(self.log_id, since, since, readable, b"")
        losses: list[Loss] = []
        pos = since
        if pos < self._start:
            exact = pos >= self._trimmed_unknown_before
            losses.append(Loss(pos, self._start, LossKind.TRIMMED, self._start - pos if exact else None))
            pos = self._start
        chunks: list[bytes] = []
        budget = max_bytes
        gaps = self._gaps
        index, buf_at = self._locate(pos)
        while pos < readable and budget > 0:
            gap = gaps[index] if index < len(gaps) else None
            if gap is not None and gap.start <= pos:
                losses.append(gap.clip(pos, readable))
                pos = gap.stop
                index += 1
                continue
            run_end = readable if gap is None else min(gap.start, readable)
            take = min(run_end - pos, budget)
            chunks.append(bytes(self._buf[buf_at : buf_at + take]))
            buf_at += take
            pos += take
            budget -= take
        pos = min(pos, readable)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return LogRead(self.log_id, since, pos, readable, data, tuple(losses))

    # -- persistence --------------------------------------------------------------------------

    def take_flush(self, session_id: str, *, final: bool = False) -> LogFlush:
        """What the next write must store for this log; hand it to `flushed` once committed.

        `final` is the last flush of a clean stop: nothing is reserved ahead, so the
        restarted log continues exactly at its end with no loss.
        """
        pending = self._unsaved_to or 0
        if final:
            reserved = max(self._end, pending)
            self._ceiling = reserved if self._ceiling is None else min(self._ceiling, reserved)
        else:
            reserved = self._end + self.limits.reserve
            if self._ceiling is None:
                self._ceiling = reserved  # from now on a crash may leave this head behind
            reserved = max(reserved, self._ceiling, pending)
        return LogFlush(session_id, self._head(reserved), tuple(self._rows_to_write()))

    def flushed(self, flush: LogFlush) -> None:
        """`flush` is committed: move the saved marks and raise the read ceiling to its reservation.

        The ceiling rises only while the stored peer mapping is still the live one;
        otherwise the next flush raises it (see `_settle_plain`).
        """
        head = flush.head
        if head.log_id != self.log_id:
            raise ValueError(f"flush of log {head.log_id} handed to log {self.log_id}")
        if (head.peer_stream, head.peer_base) == (self._peer_stream, self._peer_base):
            self._ceiling = head.reserved if self._ceiling is None else max(self._ceiling, head.reserved)
        if head.end > self._saved_end:
            self._saved_end = head.end
        if flush.rows:
            last = flush.rows[-1]
            short = last.kind is RowKind.DATA and last.stop - last.start < self.limits.row_bytes
            self._open_row = last.start if short and last.stop == head.end else None
        self._saved = _facts_of(head)

    @classmethod
    def restore(cls, stored: StoredLog, limits: LogLimits = DEFAULT_LIMITS) -> OutputLog:
        """The log a store kept, continuing where it was written down (see "Restarts").

        Raises ValueError when the rows do not cover the head's window exactly.
        """
        head = stored.head
        check_stored(stored)
        log = cls(limits, log_id=head.log_id, start=head.start)
        for row in stored.rows:
            if row.stop <= log._end or row.start >= head.end:
                continue
            if row.kind is RowKind.DATA:
                log._buf += row.data[log._end - row.start :]
            else:
                kind = LossKind.UNSEEN if row.kind is RowKind.UNSEEN else LossKind.UNSAVED
                loss = Loss(row.start, row.stop, kind, row.size).clip(log._end, row.stop)
                log._gaps.append(loss)
                log._gap_width += loss.stop - loss.start
            log._end = row.stop
        log._peer_stream = head.peer_stream
        log._peer_base = head.peer_base
        log._interrupted = head.interrupted
        log._trimmed_unknown_before = head.trimmed_unknown_before
        log._ceiling = log._floor = head.reserved
        if head.reserved > head.end:
            log._unsaved_to = head.reserved
        log._special = log._peer_stream is not None or log._interrupted or log._unsaved_to is not None
        log._saved_end = head.end
        last = stored.rows[-1] if stored.rows else None
        if last is not None and last.kind is RowKind.DATA and last.stop == head.end and last.start >= head.start:
            log._open_row = last.start if last.stop - last.start < limits.row_bytes else None
        log._saved = _facts_of(head)
        if len(log._buf) > limits.max_bytes or len(log._gaps) > limits.max_gaps:
            log._trim()
        return log

    # -- internals ----------------------------------------------------------------------------

    def _facts(self) -> tuple[object, ...]:
        return (self._start, self._end, self._peer_stream, self._peer_base, self._interrupted,
                self._trimmed_unknown_before)

    def _head(self, reserved: int) -> LogHead:
        return LogHead(
            log_id=self.log_id, start=self._start, end=self._end, reserved=reserved,
            peer_stream=self._peer_stream, peer_base=self._peer_base, interrupted=self._interrupted,
            trimmed_unknown_before=self._trimmed_unknown_before,
        )

    def _settle_plain(self, width: int) -> None:
        """Before `width` positions the peer did not number (plain output, a recorded loss).

        Pending losses become real. A current peer stream keeps its numbering, moved
        past the new positions, so a later replay of it still lines up; until a head
        with the moved numbering is written down, the new positions stay unreadable,
        since after a crash the stored numbering would put the peer's bytes there.
        An unsaved range does not move the numbering: it stands for the peer's bytes
        the killed tether may have shown.
        """
        self._settle_unsaved()
        moved_at = self._end
        if self._interrupted:
            self._interrupted = False
            self._add_gap(1, LossKind.UNSEEN, None)
        if self._peer_stream is None:
            self._special = False
            return
        if self._ceiling is not None:
            self._ceiling = min(self._ceiling, moved_at)
        self._peer_base += self._end - moved_at + width

    def _settle_pending(self) -> None:
        """Before a new peer stream: pending losses become real."""
        self._settle_unsaved()
        if self._interrupted:
            self._interrupted = False
            self._add_gap(1, LossKind.UNSEEN, None)

    def _settle_unsaved(self) -> None:
        if self._unsaved_to is not None:
            width = self._unsaved_to - self._end
            self._unsaved_to = None
            self._interrupted = False  # the unsaved loss already says output may be missing here
            if width > 0:
                self._add_gap(width, LossKind.UNSAVED, None)

    def _add_gap(self, width: int, kind: LossKind, size: int | None) -> None:
        self._gaps.append(Loss(self._end, self._end + width, kind, size))
        self._gap_width += width
        self._end += width
        if len(self._gaps) > self.limits.max_gaps:
            self._trim()

    def _locate(self, pos: int) -> tuple[int, int]:
        """For a position in the window: the index of the first loss ending after it, and the
        buffer index of its byte (of the loss's start, when it lies inside a loss)."""
        gaps = self._gaps
        if not gaps or gaps[-1].stop <= pos:
            return len(gaps), pos - self._start - self._gap_width
        width = 0
        for index, gap in enumerate(gaps):
            if gap.stop > pos:
                return index, min(pos, gap.start) - self._start - width
            width += gap.stop - gap.start
        raise AssertionError("unreachable: the last loss ends after pos")

    def _trim(self) -> None:
        """Drop the oldest positions until the bytes and the loss records fit the limits."""
        gaps = self._gaps
        while len(gaps) > self.limits.max_gaps:
            self._drop_through_first_gap()
        excess = len(self._buf) - self.limits.max_bytes
        while excess > 0:
            if gaps and gaps[0].start == self._start:
                self._drop_through_first_gap()
                continue
            cut = min(gaps[0].start - self._start, excess) if gaps else excess
            del self._buf[:cut]
            self._start += cut
            excess -= cut

    def _drop_through_first_gap(self) -> None:
        gap = self._gaps.pop(0)
        run = gap.start - self._start
        if run:
            del self._buf[:run]
        self._gap_width -= gap.stop - gap.start
        self._start = gap.stop
        if gap.size is None:
            self._trimmed_unknown_before = gap.stop

    def _rows_to_write(self) -> Iterator[LogRow]:
        """Rows for everything not yet stored, the open row rewritten longer."""
        pos = self._saved_end
        if self._open_row is not None and self._open_row >= self._start:
            pos = self._open_row
        pos = max(pos, self._start)
        gaps, limit = self._gaps, self.limits.row_bytes
        index, buf_at = self._locate(pos) if pos < self._end else (len(gaps), 0)
        while pos < self._end:
            gap = gaps[index] if index < len(gaps) else None
            if gap is not None and gap.start <= pos:
                clipped = gap.clip(pos, gap.stop)
                kind = RowKind.UNSEEN if gap.kind is LossKind.UNSEEN else RowKind.UNSAVED
                yield LogRow(clipped.start, clipped.stop, kind, size=clipped.size)
                pos = gap.stop
                index += 1
                continue
            take = min((self._end if gap is None else gap.start) - pos, limit)
            yield LogRow(pos, pos + take, RowKind.DATA, bytes(self._buf[buf_at : buf_at + take]))
            buf_at += take
            pos += take


def _facts_of(head: LogHead) -> tuple[object, ...]:
    return (head.start, head.end, head.peer_stream, head.peer_base, head.interrupted, head.trimmed_unknown_before)

def apply_flush(rows: dict[int, LogRow], flush: LogFlush) -> None:
    """Apply one flush to a session's stored rows (keyed by start), as a store must."""
    for row in flush.rows:
        rows[row.start] = row
    for start in [s for s, row in rows.items() if row.stop <= flush.head.start]:
        del rows[start]


def check_stored(stored: StoredLog) -> None:
    """Raise ValueError unless `stored` restores: a sane head and rows in order that cover its
    window exactly (what a store checks on load, so a damaged log is reported, not half-used)."""
    head = stored.head
    if not head.log_id or not 0 <= head.start <= head.end <= head.reserved:
        raise ValueError(f"bad head (start {head.start}, end {head.end}, reserved {head.reserved})")
    if head.trimmed_unknown_before < 0 or (head.peer_stream is None and head.peer_base != 0):
        raise ValueError("bad head (peer numbering or trim mark)")
    covered = head.start
    for row in stored.rows:
        if row.stop <= row.start:
            raise ValueError(f"row at {row.start} is empty")
        if row.kind is RowKind.DATA and len(row.data) != row.stop - row.start:
            raise ValueError(f"row at {row.start} holds {len(row.data)} bytes for {row.stop - row.start} positions")
        if row.kind is not RowKind.DATA and (row.data or (row.size is not None and row.size != row.stop - row.start)):
            raise ValueError(f"loss row at {row.start} is malformed")
        if row.stop <= covered:
            continue
        if row.start > covered:
            raise ValueError(f"hole at {covered}..{row.start}")
        if row.stop > head.end:
            raise ValueError(f"row at {row.start} runs past the end {head.end}")
        covered = row.stop
    if covered < head.end:
        raise ValueError(f"rows end at {covered}, the head says {head.end}")
