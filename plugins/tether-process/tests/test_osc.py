"""The pure OSC 7 / command-mark scanner: parsing, stripping and chunk boundaries."""

from __future__ import annotations

import pytest

from tether_process import (
    CommandMark,
    CwdReport,
    OscScanner,
    encode_mark,
    encode_osc7,
    parse_mark,
    parse_osc7,
)


def test_osc7_round_trip_with_spaces_and_unicode() -> None:
    """A path with spaces, percent signs and non-ASCII survives encoding and parsing."""
    data = encode_osc7("/tmp/a b/%x/é", host="box")
    out, events = OscScanner().feed(data)
    assert out == b""
    assert events == [CwdReport(path="/tmp/a b/%x/é", host="box")]


def test_mark_round_trip_keeps_semicolons_and_newlines() -> None:
    """A command with ; and newlines comes back whole, with its status."""
    command = "for i in 1 2; do\n  echo $i\ndone"
    _, events = OscScanner().feed(encode_mark(command, 3))
    assert events == [CommandMark(command=command, status=3)]


def test_output_around_sequences_passes_through_in_order() -> None:
    """Only the recognised sequences are stripped; text and other OSCs stay."""
    title = b"\x1b]0;my title\x07"
    data = b"before " + encode_osc7("/x") + b"mid " + title + encode_mark("ls", 0) + b"after"
    out, events = OscScanner().feed(data)
    assert out == b"before mid " + title + b"after"
    assert events == [CwdReport("/x"), CommandMark("ls", 0)]


def test_no_strip_keeps_bytes_but_reports() -> None:
    """With strip off (integration not ours), output is untouched and state still tracked."""
    data = b"a" + encode_osc7("/y") + b"b"
    out, events = OscScanner(strip=False).feed(data)
    assert out == data
    assert events == [CwdReport("/y")]


def test_st_terminator_is_accepted() -> None:
    """ESC backslash ends a sequence as well as BEL does."""
    out, events = OscScanner().feed(b"\x1b]7;file://h/tmp/st\x1b\\rest")
    assert out == b"rest"
    assert events == [CwdReport("/tmp/st", "h")]


@pytest.mark.parametrize("cut", range(1, 24))
def test_sequence_split_anywhere_across_chunks(cut: int) -> None:
    """A sequence split at any byte is still found once, and no byte is lost or duplicated."""
    data = b"x" + encode_osc7("/tmp/split") + b"y"
    scanner = OscScanner()
    first, ev1 = scanner.feed(data[:cut])
    second, ev2 = scanner.feed(data[cut:])
    assert first + second + scanner.flush() == b"xy"
    assert ev1 + ev2 == [CwdReport("/tmp/split")]


def test_unterminated_sequence_is_bounded() -> None:
    """A stray ESC ] never holds output back past max_pending."""
    scanner = OscScanner(max_pending=16)
    out, events = scanner.feed(b"\x1b]7;file:///" + b"a" * 40)
    assert out.startswith(b"\x1b]7;") and len(out) == 52
    assert events == []


def test_trailing_escape_is_held_for_the_next_chunk() -> None:
    """A chunk ending in a lone ESC may be the start of an OSC."""
    scanner = OscScanner()
    out, _ = scanner.feed(b"abc\x1b")
    assert out == b"abc"
    out, events = scanner.feed(b"]7;file:///q\x07z")
    assert out == b"z"
    assert events == [CwdReport("/q")]


def test_malformed_payloads_are_not_events() -> None:
    """Not-a-file URLs, relative paths and foreign marks are ignored (and kept in the output)."""
    assert parse_osc7("http://h/x") is None
    assert parse_osc7("file://h") is None
    assert parse_mark("other;1;x") is None
    assert parse_mark("cmd") is None
    assert parse_mark("cmd;;ls") == CommandMark("ls", None)
    assert parse_mark("cmd;bad;ls") == CommandMark("ls", None)
    out, events = OscScanner().feed(b"\x1b]7;http://x/\x07")
    assert out == b"\x1b]7;http://x/\x07"
    assert events == []
