"""The output log: exact bytes at offsets that only grow, every loss explicit, never a duplicate.

Examples pin each documented rule of `tether.rules._output`; the Hypothesis
tests at the end check the rules against a plain model of "everything ever
appended", and a state machine drives appends, peer replays, drops, flushes
that commit or fail, crashes and clean restarts under a reader that keeps its
cursor throughout.
"""

from __future__ import annotations

import pytest

from tether.rules._errors import ConfigError, CursorError
from tether.rules._output import (
    LogLimits,
    LogRead,
    LogRow,
    Loss,
    LossKind,
    OutputLog,
    PeerMark,
    RowKind,
    StoredLog,
    apply_flush,
)

SMALL = LogLimits(max_bytes=16, max_gaps=3, reserve=1000, row_bytes=4)


def read_all(log: OutputLog, since: int = 0, step: int = 1 << 20) -> tuple[bytes, list[Loss], int]:
    """Chain reads from `since` to the readable end: the bytes, the losses and the final cursor."""
    data, losses, cursor = b"", [], since
    while True:
        got = log.read(cursor, step)
        data += got.data
        losses += got.losses
        if got.next == cursor:
            return data, losses, cursor
        cursor = got.next


class Disk:
    """A store's rows and head for one session, changed only by committed flushes."""

    def __init__(self) -> None:
        self.rows: dict[int, LogRow] = {}
        self.head = None

    def commit(self, log: OutputLog, *, final: bool = False) -> None:
        flush = log.take_flush("s", final=final)
        apply_flush(self.rows, flush)
        self.head = flush.head
        log.flushed(flush)

    def restore(self, limits: LogLimits = SMALL) -> OutputLog:
        assert self.head is not None
        return OutputLog.restore(StoredLog(self.head, tuple(self.rows[k] for k in sorted(self.rows))), limits)


# -- positions and losses ---------------------------------------------------------------------


def test_every_byte_gets_the_next_position_and_reads_are_exact() -> None:
    """Chunks take consecutive positions; a read returns the exact bytes and where to go on."""
    log = OutputLog()
    assert log.append(b"ab\x00\xff") == 0
    assert log.append(b"cd") == 4
    got = log.read(1, max_bytes=3)
    assert (got.data, got.since, got.next, got.end, got.losses) == (b"b\x00\xff", 1, 4, 6, ())
    assert log.read(6).data == b"" and log.read(6).next == 6


def test_a_gap_of_unknown_size_takes_one_position_and_is_reported_once() -> None:
    """An unknown loss is one position wide: a chain of reads meets it exactly once."""
    log = OutputLog()
    log.append(b"abc")
    log.mark_lost()
    log.append(b"de")
    gap = Loss(3, 4, LossKind.UNSEEN, None)
    assert log.read(0, max_bytes=3).losses == ()
    second = log.read(3)
    assert (second.losses, second.data, second.next) == ((gap,), b"de", 6)
    assert list(second.pieces()) == [gap, (4, b"de")]


def test_a_log_that_ends_in_a_gap_tells_a_reader_at_its_end() -> None:
    """A reader at the end learns of a loss recorded there, and its cursor moves past it."""
    log = OutputLog()
    log.append(b"abc")
    assert log.read(3).next == 3
    log.mark_lost(10)
    got = log.read(3)
    assert (got.losses, got.next, got.data) == ((Loss(3, 13, LossKind.UNSEEN, 10),), 13, b"")


def test_an_interruption_becomes_a_loss_only_when_plain_output_follows() -> None:
    """mark_interrupted is decided by the next chunk: plain output means an unknown gap."""
    log = OutputLog()
    log.append(b"ab")
    log.mark_interrupted()
    assert log.end == 2  # nothing decided yet
    log.append(b"cd")
    assert log.read(0).losses == (Loss(2, 3, LossKind.UNSEEN, None),)


def test_trimmed_bytes_read_as_trimmed_with_their_exact_size() -> None:
    """Past the bound the oldest bytes leave; a cursor before them gets one trimmed range."""
    log = OutputLog(SMALL)
    log.append(bytes(range(20)))
    assert log.kept_bytes == 16 and log.start == 4
    got = log.read(1)
    assert got.losses == (Loss(1, 4, LossKind.TRIMMED, 3),) and got.data == bytes(range(4, 20))


def test_a_trimmed_unknown_gap_makes_the_trimmed_size_unknown() -> None:
    """Once an unknown-size loss has been trimmed, ranges before it cannot claim a size."""
    log = OutputLog(SMALL)
    log.append(b"ab")
    log.mark_lost()
    log.append(bytes(20))
    assert log.read(0).losses[0] == Loss(0, log.start, LossKind.TRIMMED, None)
    assert log.read(3).losses[0] == Loss(3, log.start, LossKind.TRIMMED, log.start - 3)


def test_loss_records_are_bounded_and_the_oldest_leaves_with_what_came_before() -> None:
    """More than max_gaps losses: the oldest goes, and everything before it reads as trimmed."""
    log = OutputLog(SMALL)
    for _ in range(4):
        log.append(b"x")
        log.mark_lost(2)
    assert log.read(0).losses[0].kind is LossKind.TRIMMED
    assert [loss.kind for loss in log.read(0).losses].count(LossKind.UNSEEN) == 3


def test_bad_cursors_are_refused_with_a_reason() -> None:
    """Negative, ahead of the log, or from another log: a CursorError that says which."""
    log = OutputLog(log_id="aaaa")
    log.append(b"abc")
    with pytest.raises(CursorError, match="outside this log"):
        log.read(-1)
    with pytest.raises(CursorError, match="outside this log"):
        log.read(4)
    with pytest.raises(CursorError, match="belongs to log bbbb"):
        log.read(0, expect_log="bbbb")
    with pytest.raises(CursorError, match="max_bytes"):
        log.read(0, 0)
    assert log.read(0, expect_log="aaaa").data == b"abc"


def test_limits_are_validated_with_their_names() -> None:
    """A bad bound names itself."""
    with pytest.raises(ConfigError, match=r"output\.max_gaps: must be >= 1"):
        LogLimits(max_gaps=0)
    with pytest.raises(ConfigError, match=r"output\.max_bytes: must be >= 0"):
        LogLimits(max_bytes=-1)


def test_a_zero_byte_bound_keeps_nothing_but_still_counts() -> None:
    """max_bytes = 0: every byte is trimmed at once, positions still advance."""
    log = OutputLog(LogLimits(max_bytes=0))
    log.append(b"hello")
    assert log.read(0) == LogRead(log.log_id, 0, 5, 5, b"", (Loss(0, 5, LossKind.TRIMMED, 5),))


# -- peer offsets -----------------------------------------------------------------------------


def test_a_replay_of_bytes_already_held_is_cut_exactly() -> None:
    """A peer that re-sends from an older offset adds only what is new."""
    log = OutputLog()
    log.append(b"intro ")
    assert log.append_at(PeerMark("pane", 0), b"0123") == (6, b"0123")
    log.mark_interrupted()
    assert log.append_at(PeerMark("pane", 2), b"234567") == (10, b"4567")
    assert log.append_at(PeerMark("pane", 0), b"0123") == (14, b"")
    data, losses, _ = read_all(log)
    assert data == b"intro 01234567" and losses == []
    assert log.resume == PeerMark("pane", 8)


def test_a_peer_that_trimmed_what_we_missed_yields_an_exact_loss() -> None:
    """A jump forward in the same stream is an unseen loss of exactly the skipped bytes."""
    log = OutputLog()
    log.append_at(PeerMark("pane", 0), b"0123")
    log.mark_interrupted()
    log.append_at(PeerMark("pane", 10), b"ab")
    assert read_all(log)[1] == [Loss(4, 10, LossKind.UNSEEN, 6)]
    assert log.read(10).data == b"ab"


def test_a_new_stream_after_a_drop_starts_at_the_end_behind_an_unknown_gap() -> None:
    """Another stream (a new program) cannot prove continuity: an unknown gap, then its bytes."""
    log = OutputLog()
    log.append_at(PeerMark("old", 0), b"abc")
    log.mark_interrupted()
    assert log.append_at(PeerMark("new", 5), b"xyz") == (4, b"xyz")
    assert read_all(log)[1] == [Loss(3, 4, LossKind.UNSEEN, None)]
    assert log.resume == PeerMark("new", 8)


def test_plain_output_in_between_keeps_the_peer_numbering() -> None:
    """Plain bytes and recorded losses move the stream's numbering past them: a replay still lines up."""
    log = OutputLog()
    log.append_at(PeerMark("pane", 0), b"abc")
    log.append(b"!")
    log.mark_lost(2)
    assert log.resume == PeerMark("pane", 3)
    assert log.append_at(PeerMark("pane", 1), b"bcde") == (6, b"de")
    assert read_all(log) == (b"abc!de", [Loss(4, 6, LossKind.UNSEEN, 2)], 8)


# -- persistence --------------------------------------------------------------------------------


def test_a_clean_restart_continues_exactly_where_it_stopped() -> None:
    """After a final flush the restored log holds the same bytes and adds no loss."""
    disk, log = Disk(), OutputLog(SMALL)
    log.append(b"0123456789")
    log.mark_lost(3)
    log.append(b"abcdef")
    disk.commit(log, final=True)
    restored = disk.restore()
    assert read_all(restored) == read_all(log)
    restored.append(b"new")
    assert restored.log_id == log.log_id and read_all(restored, log.end) == (b"", [], log.end)
    disk.commit(restored)
    assert read_all(restored, log.end)[0] == b"new"


def test_reads_never_pass_the_last_reservation_written_down() -> None:
    """Once a head is stored, positions past its reservation wait for the next flush."""
    disk, log = Disk(), OutputLog(LogLimits(reserve=4))
    log.append(b"ab")
    disk.commit(log)  # reserved = 6
    log.append(b"cdefgh")
    assert log.read(0).data == b"abcdef" and log.wants_flush
    disk.commit(log)
    assert log.read(0).data == b"abcdefgh"


def test_after_kill_9_the_unsaved_positions_become_one_explicit_loss() -> None:
    """Bytes seen after the last flush are gone after a crash: a reader past them is told."""
    disk, log = Disk(), OutputLog(SMALL)
    log.append(b"saved")
    disk.commit(log)
    log.append(b"lost!")
    cursor = log.read(0).next  # a reader saw "savedlost!"
    restored = disk.restore()  # kill -9: no final flush
    assert restored.read(cursor).next == cursor  # nothing yet, and no error
    restored.append(b"after")
    reserved = disk.head.reserved  # type: ignore[attr-defined]
    assert restored.wants_flush and restored.read(cursor).next == reserved  # "after" waits for a flush
    disk.commit(restored)
    got = restored.read(cursor)
    assert got.losses == (Loss(cursor, reserved, LossKind.UNSAVED, None),) and got.data == b"after"
    assert restored.read(0).losses == (Loss(5, reserved, LossKind.UNSAVED, None),)


def test_after_kill_9_a_peer_stream_fills_the_same_positions_again() -> None:
    """A re-attached peer stream puts its bytes where the killed tether had put them: no loss."""
    disk, log = Disk(), OutputLog(LogLimits(reserve=100))
    log.append_at(PeerMark("pane", 0), b"line1\n")
    disk.commit(log)
    log.append_at(PeerMark("pane", 6), b"line2\n")
    cursor = log.read(0).next
    restored = disk.restore(LogLimits(reserve=100))
    assert restored.resume == PeerMark("pane", 6)
    restored.append_at(PeerMark("pane", 6), b"line2\nline3\n")
    got = restored.read(cursor)
    assert (got.data, got.losses) == (b"line3\n", ())
    assert restored.read(0).data == b"line1\nline2\nline3\n"


def test_positions_after_a_stream_ends_stay_hidden_until_written_down() -> None:
    """Leaving a peer stream hides what follows until a head without the stream is stored,
    so a crash can never put the stream's bytes where a reader saw other bytes."""
    disk, log = Disk(), OutputLog()
    log.append_at(PeerMark("pane", 0), b"abc")
    disk.commit(log)
    log.append(b"plain")
    assert log.read(0).data == b"abc"
    disk.commit(log)
    assert log.read(0).data == b"abcplain"


def test_a_new_stream_is_readable_once_written_down() -> None:
    """A stream begun after the last flush waits for a head that names it: after a crash the
    peer would replay it from its start, and a reader must not have seen any of it before."""
    disk, log = Disk(), OutputLog()
    log.append(b"ab")
    disk.commit(log)
    log.append_at(PeerMark("pane", 0), b"0123")
    assert log.read(0).data == b"ab" and log.wants_flush
    disk.commit(log)
    assert log.read(0).data == b"ab0123" and not log.wants_flush


def test_an_interruption_survives_a_restart() -> None:
    """A drop recorded before a clean stop still decides the next chunk after it."""
    disk, log = Disk(), OutputLog()
    log.append(b"a")
    log.mark_interrupted()
    disk.commit(log, final=True)
    restored = disk.restore(LogLimits())
    restored.append(b"b")
    assert restored.read(0).next == 1  # nothing past the clean stop is readable before a flush
    disk.commit(restored)
    assert read_all(restored)[1] == [Loss(1, 2, LossKind.UNSEEN, None)]


def test_stored_rows_stay_within_the_disk_bound() -> None:
    """Rows hold at most max_bytes + row_bytes of data, in rows of at most row_bytes."""
    limits = LogLimits(max_bytes=64, max_gaps=4, row_bytes=8)
    disk, log = Disk(), OutputLog(limits)
    for i in range(200):
        log.append(bytes([i]) * (i % 13 + 1))
        if i % 7 == 0:
            log.mark_lost(i % 3 + 1)
        if i % 3 == 0:
            disk.commit(log)
    disk.commit(log)
    data_rows = [r for r in disk.rows.values() if r.kind is RowKind.DATA]
    assert sum(len(r.data) for r in data_rows) <= limits.max_bytes + limits.row_bytes
    assert all(len(r.data) <= limits.row_bytes for r in data_rows)
    assert len(disk.rows) <= -(-limits.max_bytes // limits.row_bytes) + 1 + limits.max_gaps
    assert read_all(disk.restore(limits)) == read_all(log)


def test_a_short_last_row_is_rewritten_in_place_while_it_grows() -> None:
    """Trickling output does not leave a row per flush: the open row is rewritten longer."""
    disk, log = Disk(), OutputLog(LogLimits(row_bytes=4))
    for ch in b"abcdefghij":
        log.append(bytes([ch]))
        disk.commit(log)
    assert [(r.start, r.data) for r in sorted(disk.rows.values(), key=lambda r: r.start)] == [
        (0, b"abcd"), (4, b"efgh"), (8, b"ij"),
    ]


def test_a_failed_flush_is_retried_as_is() -> None:
    """A flush never committed changes nothing: the next one writes everything again."""
    disk, log = Disk(), OutputLog(SMALL)
    log.append(b"one")
    log.take_flush("s")  # the transaction failed
    log.append(b"two")
    assert log.needs_flush
    disk.commit(log)
    assert not log.needs_flush
    assert read_all(disk.restore())[0] == b"onetwo"


def test_restoring_rows_with_a_hole_is_refused() -> None:
    """Rows that do not cover the head's window are an error, not a silent gap."""
    disk, log = Disk(), OutputLog(LogLimits(row_bytes=2))
    log.append(b"abcdef")
    disk.commit(log)
    del disk.rows[2]
    with pytest.raises(ValueError, match=r"hole at 2\.\.4"):
        disk.restore()


# -- hypothesis: the log against a plain model of everything ever appended ------------------------

from hypothesis import given, settings  # noqa: E402 - the property tests live apart from the examples
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

Cell = tuple[object, ...]
"""One position of the model: ("byte", value) or ("loss", kind, loss_id, size)."""


class Model:
    """Every position ever handed out, one list cell each: no bounds, no persistence, no cleverness."""

    def __init__(self) -> None:
        self.cells: list[Cell] = []
        self.interrupted = False
        self.stream: str | None = None
        self.base = 0
        self.losses = 0

    def _loss(self, kind: LossKind, width: int, size: int | None) -> None:
        self.losses += 1
        self.cells += [("loss", kind, self.losses, size)] * width

    def append(self, data: bytes) -> None:
        before = len(self.cells)
        if self.interrupted:
            self._loss(LossKind.UNSEEN, 1, None)
        self.interrupted = False
        self.cells += [("byte", b) for b in data]
        self.base += len(self.cells) - before  # a peer stream's numbering moves past plain positions

    def append_at(self, stream: str, offset: int, data: bytes) -> None:
        if stream == self.stream:
            position, end = self.base + offset, len(self.cells)
            if position + len(data) <= end:
                return
            if position < end:
                data = data[end - position :]
            elif position > end:
                self._loss(LossKind.UNSEEN, position - end, position - end)
        else:
            if self.interrupted:
                self._loss(LossKind.UNSEEN, 1, None)
            self.stream, self.base = stream, len(self.cells) - offset
        self.interrupted = False
        self.cells += [("byte", b) for b in data]

    def lost(self, size: int | None) -> None:
        self.interrupted = False
        self._loss(LossKind.UNSEEN, size or 1, size)
        self.base += size or 1


def content(stream: str, start: int, stop: int) -> bytes:
    """What program `stream` printed at peer offsets [start, stop): the same bytes every time."""
    seed = sum(stream.encode())
    return bytes((seed + 31 * i) % 256 for i in range(start, stop))


operation = st.one_of(
    st.tuples(st.just("append"), st.binary(max_size=12)),
    st.tuples(st.just("append_at"), st.sampled_from(["a", "b"]), st.integers(0, 40), st.integers(0, 10)),
    st.tuples(st.just("interrupt")),
    st.tuples(st.just("lost"), st.one_of(st.none(), st.integers(1, 5))),
)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(operation, max_size=60),
    limits=st.builds(LogLimits, max_bytes=st.integers(0, 40), max_gaps=st.integers(1, 5)),
    since=st.integers(0, 400),
    steps=st.lists(st.integers(1, 9), min_size=1, max_size=8),
)
def test_reads_agree_with_the_model_of_everything_appended(
    ops: list[tuple[object, ...]], limits: LogLimits, since: int, steps: list[int]
) -> None:
    """Any operations, any cursor, any read sizes: each position reads as its model cell, as trimmed
    when it left the window, and a chain of reads covers every position exactly once."""
    log, model = OutputLog(limits), Model()
    for op in ops:
        if op[0] == "append":
            log.append(op[1])  # type: ignore[arg-type]
            model.append(op[1])  # type: ignore[arg-type]
        elif op[0] == "append_at":
            stream, offset, length = op[1], op[2], op[3]
            data = content(stream, offset, offset + length)  # type: ignore[arg-type, operator]
            log.append_at(PeerMark(stream, offset), data)  # type: ignore[arg-type]
            model.append_at(stream, offset, data)  # type: ignore[arg-type]
        elif op[0] == "interrupt":
            log.mark_interrupted()
            model.interrupted = True
        else:
            log.mark_lost(op[1])  # type: ignore[arg-type]
            model.lost(op[1])  # type: ignore[arg-type]
        assert log.kept_bytes <= limits.max_bytes
    assert log.end == len(model.cells)
    since = min(since, log.end)
    cursor, index, seen = since, 0, 0
    while True:
        got = log.read(cursor, steps[index % len(steps)])
        index += 1
        pos = cursor
        for piece in got.pieces():
            if isinstance(piece, Loss):
                assert piece.start == pos and piece.stop > pos
                for p in range(piece.start, piece.stop):
                    cell = model.cells[p]
                    if p < log.start:
                        assert piece.kind is LossKind.TRIMMED
                    else:
                        assert cell[0] == "loss" and cell[1] is piece.kind
                        assert (piece.size is None) == (cell[3] is None)
                pos = piece.stop
            else:
                start, data = piece
                assert start == pos and start >= log.start
                assert [model.cells[start + i] for i in range(len(data))] == [("byte", b) for b in data]
                pos += len(data)
                seen += len(data)
        assert pos == got.next
        if got.next == cursor:
            break
        cursor = got.next
    assert cursor == log.end
    in_window = sum(1 for cell in model.cells[max(since, log.start) :] if cell[0] == "byte")
    assert seen == in_window


# -- hypothesis: a reader that keeps its cursor through drops, flushes, crashes and restarts ------


Origin = tuple[object, ...]
"""Where a byte came from: ("plain", chunk, index) or ("peer", stream, offset)."""


class ReaderThroughCrashes(RuleBasedStateMachine):
    """One session's log under a peer that numbers its bytes, plain output, drops, flushes that
    commit late or fail, kill -9 and clean restarts; one reader keeps its cursor throughout.

    What the reader must never see: a byte twice, a byte that is not what was printed there,
    a position whose meaning changed after it was shown, a cursor refused, or output it could
    have been shown skipped without a loss in its place.
    """

    limits = LogLimits(max_bytes=48, max_gaps=4, reserve=24, row_bytes=8)
    PEER_KEEP = 16

    @initialize()
    def start(self) -> None:
        self.log = OutputLog(self.limits)
        self.disk = Disk()
        self.pending = None
        self.program = 0
        self.stream = "prog-0"
        self.produced: dict[str, int] = {"prog-0": 0}
        self.chunks = 0
        self.assigned: dict[int, tuple[Origin, int]] = {}
        self.sent: list[Origin] = []
        self.exposed: dict[int, Origin] = {}
        """Positions a reader could have been shown as bytes, and whose bytes they were."""
        self.unexposed: set[int] = set()
        self.cursor = 0
        self.delivered: list[Origin | None] = []  # None: a loss

    # -- what the session does --------------------------------------------------------------

    def _record(self, position: int, origins: list[Origin], data: bytes) -> None:
        for i, (origin, byte) in enumerate(zip(origins, data, strict=True)):
            p = position + i
            if p in self.exposed:
                assert self.exposed[p] == origin, f"position {p} was shown as {self.exposed[p]}, now {origin}"
            self.assigned[p] = (origin, byte)
            self.unexposed.add(p)
            if origin not in self.sent:
                self.sent.append(origin)

    @rule(data=st.binary(min_size=1, max_size=10))
    def plain_output(self, data: bytes) -> None:
        self.chunks += 1
        position = self.log.append(data)
        self._record(position, [("plain", self.chunks, i) for i in range(len(data))], data)

    @rule(n=st.integers(1, 12))
    def program_prints(self, n: int) -> None:
        self.produced[self.stream] += n

    @rule(back=st.integers(0, 6))
    def peer_delivers(self, back: int) -> None:
        produced = self.produced[self.stream]
        resume = self.log.resume
        start = resume.offset if resume is not None and resume.stream == self.stream else 0
        start = max(0, produced - self.PEER_KEEP, min(start, produced) - back)
        data = content(self.stream, start, produced)
        position, new = self.log.append_at(PeerMark(self.stream, start), data)
        first = produced - len(new)
        self._record(position, [("peer", self.stream, o) for o in range(first, produced)], new)

    @rule()
    def new_program(self) -> None:
        self.program += 1
        self.stream = f"prog-{self.program}"
        self.produced[self.stream] = 0

    @rule()
    def link_drops(self) -> None:
        self.log.mark_interrupted()

    @rule(size=st.one_of(st.none(), st.integers(1, 4)))
    def engine_records_a_loss(self, size: int | None) -> None:
        self.log.mark_lost(size)

    # -- what the flusher does ----------------------------------------------------------------

    @rule()
    def flush(self) -> None:
        self.disk.commit(self.log)
        self.pending = None

    @rule()
    def take_a_flush(self) -> None:
        self.pending = self.log.take_flush("s")

    @precondition(lambda self: self.pending is not None)
    @rule(commits=st.booleans())
    def the_taken_flush_ends(self, commits: bool) -> None:
        if commits:
            apply_flush(self.disk.rows, self.pending)
            self.disk.head = self.pending.head
            self.log.flushed(self.pending)
        self.pending = None

    @precondition(lambda self: self.disk.head is not None)
    @rule()
    def kill_9(self) -> None:
        durable_end = self.disk.head.end
        self.log = self.disk.restore(self.limits)
        self.pending = None
        lost = {origin for p, (origin, _) in self.assigned.items() if p >= durable_end}
        self.assigned = {p: v for p, v in self.assigned.items() if p < durable_end}
        self.unexposed = {p for p in self.unexposed if p < durable_end}
        shown = set(self.exposed.values())
        self.sent = [o for o in self.sent if o not in lost or o in shown]

    @rule()
    def clean_restart(self) -> None:
        self.disk.commit(self.log, final=True)
        before = read_all(self.log)
        self.log = self.disk.restore(self.limits)
        self.pending = None
        assert read_all(self.log) == before  # nothing lost or added by a clean stop

    # -- what the reader does ---------------------------------------------------------------------

    @rule(step=st.integers(1, 20))
    def reader_reads(self, step: int) -> None:
        got = self.log.read(self.cursor, step, expect_log=self.log.log_id)
        for piece in got.pieces():
            if isinstance(piece, Loss):
                self.delivered.append(None)
                continue
            start, data = piece
            for i, byte in enumerate(data):
                origin, value = self.assigned[start + i]
                assert value == byte
                if origin[0] == "peer":
                    assert bytes([byte]) == content(origin[1], origin[2], origin[2] + 1)  # type: ignore[arg-type]
                self.delivered.append(origin)
        self.cursor = got.next

    @invariant()
    def note_what_could_be_shown(self) -> None:
        readable = self.log.readable_end
        for p in [p for p in self.unexposed if p < readable]:
            self.exposed[p] = self.assigned[p][0]
            self.unexposed.discard(p)

    @invariant()
    def bounds_hold(self) -> None:
        assert self.log.kept_bytes <= self.limits.max_bytes

    @invariant()
    def the_reader_saw_a_faithful_subsequence(self) -> None:
        order = {origin: i for i, origin in enumerate(self.sent)}
        last, loss_since = -1, False
        seen: set[Origin] = set()
        for item in self.delivered:
            if item is None:
                loss_since = True
                continue
            assert item not in seen, f"{item} delivered twice"
            seen.add(item)
            index = order[item]
            assert index > last, f"{item} delivered out of order"
            assert index == last + 1 or loss_since, f"skipped {self.sent[last + 1]} without a loss"
            last, loss_since = index, False


ReaderThroughCrashes.TestCase.settings = settings(max_examples=400, stateful_step_count=60, deadline=None)
test_a_reader_through_crashes = ReaderThroughCrashes.TestCase


def test_a_smaller_bound_at_restore_trims_at_once() -> None:
    """A log written with a larger bound is cut to the new one when it is restored."""
    disk, log = Disk(), OutputLog(LogLimits(max_bytes=32))
    log.append(bytes(range(30)))
    disk.commit(log, final=True)
    restored = disk.restore(LogLimits(max_bytes=8))
    assert restored.kept_bytes == 8 and restored.read(0).data == bytes(range(22, 30))
