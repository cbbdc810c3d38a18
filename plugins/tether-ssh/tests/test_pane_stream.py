"""The pane log's records: parsed exactly however the channel splits them, and out-of-step streams refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether import LossKind, OutputLog, PeerMark
from tether_ssh._panestream import PaneStream, PaneStreamError


def records(name: str, segments: list[tuple[int, bytes]]) -> bytes:
    out = b"\x1eS " + name.encode() + b"\n"
    for offset, data in segments:
        out += b"\x1eD %d %d\n" % (offset, len(data)) + data
    return out


def feed_split(stream: PaneStream, data: bytes, cuts: list[int]) -> list[tuple[PeerMark, bytes]]:
    found = []
    last = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        found += stream.feed(data[last:cut])
        last = cut
    return found


def by_offset(chunks: list[tuple[PeerMark, bytes]]) -> dict[int, int]:
    placed: dict[int, int] = {}
    for mark, data in chunks:
        for i, byte in enumerate(data):
            assert mark.offset + i not in placed, "a byte reported twice"
            placed[mark.offset + i] = byte
    return placed


@given(
    payload=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=6),
    skips=st.lists(st.integers(0, 50), min_size=6, max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_any_split_of_the_channel_gives_the_same_bytes_at_the_same_offsets(
    payload: list[bytes], skips: list[int], cuts: list[int]
) -> None:
    """Record headers, payload bytes that look like headers (RS, LF), trimmed jumps: every byte at its offset."""
    segments, offset = [], 3
    for data, skip in zip(payload, skips[: len(payload)], strict=True):
        segments.append((offset, data.replace(b"x", b"\x1eD 1 1\n")))
        offset += len(segments[-1][1]) + skip
    wire = records("s1-abc", segments)
    stream = PaneStream()
    chunks = feed_split(stream, wire, cuts)
    assert {mark.stream for mark, _ in chunks} == {"ssh-pane:s1-abc"}
    expected = {o + i: b for o, data in segments for i, b in enumerate(data)}
    assert by_offset(chunks) == expected
    assert stream.position == segments[-1][0] + len(segments[-1][1])


def test_a_segment_still_arriving_is_reported_as_it_comes() -> None:
    """A live segment: its header announces the rest of the segment; bytes are passed on as they arrive."""
    stream = PaneStream()
    assert stream.feed(b"\x1eS s-1\n\x1eD 4096 1024\nab") == [(PeerMark("ssh-pane:s-1", 4096), b"ab")]
    assert stream.feed(b"c") == [(PeerMark("ssh-pane:s-1", 4098), b"c")]
    assert stream.position == 4099


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (b"\x1eD 0 3\nabc", "before the stream record"),
        (b"\x1eS a\n\x1eS b\n", "a second stream record"),
        (b"\x1eS a\n\x1eD 10 2\nab\x1eD 5 2\nab", "goes back"),
        (b"\x1eS a\n\x1eD 0 2\nabc\n", "not a record header"),
        (b"\x1eS a\n\x1eD 0 0\n", "length 0"),
        (b"\x1eS a\n" + b"x" * 300, "no record header"),
        (b"\x1eS a b\n", "not a record header"),
    ],
)
def test_records_out_of_step_are_refused(wire: bytes, why: str) -> None:
    with pytest.raises(PaneStreamError, match=why):
        PaneStream().feed(wire)


def test_a_trimmed_jump_becomes_an_exact_unseen_loss_in_the_output_log() -> None:
    """What the core does with the chunks: a forward jump in the same stream is a loss of exactly its size."""
    log = OutputLog()
    stream = PaneStream()
    for mark, data in stream.feed(records("s-1", [(0, b"hello "), (1000, b"world")])):
        log.append_at(mark, data)
    read = log.read(0, 1 << 20)
    (loss,) = read.losses
    assert loss.kind is LossKind.UNSEEN and loss.size == 1000 - 6 == loss.stop - loss.start
    assert read.data == b"hello world"
    assert log.resume == PeerMark("ssh-pane:s-1", 1005)
