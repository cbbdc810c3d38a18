"""The core escape scanner (OSC 7, OSC 133 with tether's nonce, OSC 6973) and the run tracker. Pure."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.rules._osc import (
    RUN_LINE_BYTES,
    CommandMark,
    CwdReport,
    Found,
    OscScanner,
    RunResult,
    RunTracker,
    ShellMark,
    encode_mark,
    encode_osc7,
    encode_shell_mark,
    new_nonce,
    parse_shell_mark,
    quote_ansi_c,
    run_line,
)


def wrap_for_tmux(sequence: bytes) -> bytes:
    """What a shell inside tmux sends to get a sequence through to the outer terminal."""
    return b"\x1bPtmux;" + sequence.replace(b"\x1b", b"\x1b\x1b") + b"\x1b\\"


def test_each_sequence_is_found_with_its_place_in_the_stream() -> None:
    """Events come with [start, stop) positions; the bytes pass through untouched by default."""
    cwd, done = encode_osc7("/tmp/a b"), encode_shell_mark("D", status=3, nonce="00ff00ff00ff00ff")
    data = b"ab" + cwd + b"cd" + done + b"ef"
    out, found = OscScanner(position=100).feed(data)
    assert out is data
    assert found == [
        Found(CwdReport("/tmp/a b"), 102, 102 + len(cwd)),
        Found(ShellMark("D", 3, "00ff00ff00ff00ff"), 104 + len(cwd), 104 + len(cwd) + len(done)),
    ]


def test_stripping_removes_only_what_it_recognises() -> None:
    """For display: the known sequences go, text and other OSCs (a title) stay in order."""
    title = b"\x1b]0;my title\x07"
    data = b"before " + encode_osc7("/x") + b"mid " + title + encode_mark("ls", 0) + b"after"
    out, found = OscScanner(strip=True).feed(data)
    assert out == b"before mid " + title + b"after"
    assert [f.event for f in found] == [CwdReport("/x"), CommandMark("ls", 0)]


def test_st_terminator_and_host() -> None:
    """OSC 7 may end with ST and name a host."""
    _, found = OscScanner().feed(b"\x1b]7;file://h/tmp/st\x1b\\rest")
    assert [f.event for f in found] == [CwdReport("/tmp/st", "h")]


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, 200), max_size=6), strip=st.booleans())
def test_chunk_boundaries_anywhere_change_nothing(cuts: list[int], strip: bool) -> None:
    """However the stream is split, the same events at the same positions and the same output."""
    data = (
        b"x" + encode_osc7("/one") + b"\x1b[31mred\x1b[0m" + wrap_for_tmux(encode_osc7("/two"))
        + encode_shell_mark("C", nonce="0123456789abcdef") + b"out\n" + encode_shell_mark("D", status=0,
        nonce="0123456789abcdef") + encode_mark("echo; x", 0) + b"\x1b]0;t\x07tail\x1b"
    )
    whole = OscScanner(strip=strip)
    out_whole, found_whole = whole.feed(data)
    out_whole += whole.flush()
    scanner, out, found, last = OscScanner(strip=strip), b"", [], 0
    for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
        piece, events = scanner.feed(data[last:cut])
        out, found, last = out + piece, found + events, cut
    out += scanner.flush()
    assert (out, found) == (out_whole, found_whole)
    assert len(found) == 5
    assert out == (data if not strip else b"x\x1b[31mred\x1b[0mout\n\x1b]0;t\x07tail\x1b")


def test_a_jump_in_positions_drops_an_unfinished_sequence() -> None:
    """at= says where a chunk starts; a skip (a loss in the log) forgets a half-seen sequence."""
    scanner = OscScanner()
    scanner.feed(b"ab\x1b]7;file:///ha", at=0)
    _, found = scanner.feed(b"lf\x07", at=50)
    assert found == []
    _, found = scanner.feed(encode_osc7("/ok"), at=53)
    assert [(f.event, f.start) for f in found] == [(CwdReport("/ok"), 53)]


def test_an_unterminated_sequence_is_bounded() -> None:
    """A stray ESC ] never holds output back beyond max_pending."""
    scanner = OscScanner(strip=True, max_pending=32)
    out, found = scanner.feed(b"\x1b]7;file:///" + b"a" * 40)
    assert out.startswith(b"\x1b]7;") and len(out) == 52 and found == []


def test_tmux_passthrough_is_understood() -> None:
    """A mark wrapped for tmux is found (and stripped whole); a foreign passthrough is left alone."""
    wrapped = wrap_for_tmux(encode_mark("make", 2))
    other = wrap_for_tmux(b"\x1b]52;c;aGk=\x07")
    out, found = OscScanner(strip=True).feed(b"a" + wrapped + b"b" + other)
    assert out == b"ab" + other and [f.event for f in found] == [CommandMark("make", 2)]
    assert found[0].start == 1 and found[0].stop == 1 + len(wrapped)


def test_an_introducer_cut_at_any_byte_is_kept_for_the_next_chunk() -> None:
    """Each chunk alone: a wrapped or plain sequence whose start ends a chunk is still found."""
    for sequence in (wrap_for_tmux(encode_osc7("/w")), encode_osc7("/p")):
        for cut in range(1, len(sequence)):
            scanner = OscScanner()
            first = scanner.feed(b"plain text " + sequence[:cut])[1]
            second = scanner.feed(sequence[cut:] + b" more")[1]
            assert [f.event for f in first + second] == [CwdReport(sequence.split(b"file://")[1][:2].decode())], cut


def test_shell_marks_parse_with_their_options() -> None:
    """133 marks: kind, status, tether's nonce and shell; unknown options and bad nonces ignored."""
    assert parse_shell_mark("A;tether-shell=zsh;cl=m") == ShellMark("A", shell="zsh")
    assert parse_shell_mark("D;130;tether=abcdef0123456789") == ShellMark("D", 130, "abcdef0123456789")
    assert parse_shell_mark("D") == ShellMark("D")
    assert parse_shell_mark("C;tether=NOT-HEX") == ShellMark("C")
    assert parse_shell_mark("P;k=i") is None
    assert encode_shell_mark("D", status=1, nonce="abcdef0123456789") == b"\x1b]133;D;1;tether=abcdef0123456789\x07"
    with pytest.raises(ValueError, match="one of A, B, C, D"):
        encode_shell_mark("Z")


def test_unknown_oscs_and_bad_urls_pass_untouched() -> None:
    """Not a file URL, not a number we know: output unchanged, nothing found."""
    for data in (b"\x1b]7;http://x/\x07", b"\x1b]1337;SetMark\x07", b"\x1b]6973;nope\x07"):
        out, found = OscScanner(strip=True).feed(data)
        assert (out, found) == (data, [])


# -- run ----------------------------------------------------------------------------------------------


def test_the_run_line_is_plain_text_with_the_command_quoted() -> None:
    """What run types holds no control byte at all: the command travels ANSI-C quoted."""
    nonce = "00112233aabbccdd"
    assert run_line("make test", nonce) == b"__tether_run 00112233aabbccdd $'make test'\r"
    line = run_line("printf 'a\tb'\necho \\ done\x1b", nonce)
    assert line == b"__tether_run 00112233aabbccdd $'printf \\'a\\tb\\'\\necho \\\\ done\\x1b'\r"
    assert not any(b < 0x20 for b in line[:-1])
    with pytest.raises(ValueError, match="nonce"):
        run_line("ls", "x; rm -rf /")
    assert len(new_nonce()) == 16 and new_nonce() != new_nonce()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_a_long_run_is_typed_as_short_lines_that_give_the_command_back() -> None:
    """Past `RUN_LINE_BYTES`, the run is typed as several short lines (each below a terminal's
    canonical line limit), joined by backslash continuations into the same one word."""
    nonce = "00112233aabbccdd"
    command = "it's \\ \"q\" \t tab\nline é ✓ \x01\x7f $HOME `x`;" * 200
    line = run_line(command, nonce)
    assert line.startswith(b"__tether_run 00112233aabbccdd $'") and line.endswith(b"'\r")
    lines = line[:-1].split(b"\r")
    assert len(lines) > 1 and all(len(one) < RUN_LINE_BYTES for one in lines)
    assert all(one.endswith(b"'\\") for one in lines[:-1]) and not any(b < 0x20 for b in b"".join(lines))
    script = "__tether_run() { printf %s \"$2\"; }\n" + line[:-1].replace(b"\r", b"\n").decode()
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    assert out.decode() == command


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_the_quoting_gives_the_command_back_exactly() -> None:
    """Every character survives bash's $'...' decoding (quotes, backslashes, controls, UTF-8)."""
    command = "it's \\ \"q\" \t tab\nline é \x01\x7f $HOME `x`"
    quoted = quote_ansi_c(command)
    out = subprocess.run(["bash", "-c", f"printf %s {quoted}"], capture_output=True, check=True).stdout
    assert out.decode() == command


def _stream(*parts: bytes) -> tuple[bytes, list[Found]]:
    data = b"".join(parts)
    return data, OscScanner().feed(data)[1]


def test_the_tracker_answers_with_status_and_the_exact_output_range() -> None:
    """C opens the range, D closes it with the status; other runs' marks do not count."""
    mine, other = "1111111111111111", "2222222222222222"
    data, found = _stream(
        b"$ echo\r\n",
        encode_shell_mark("C", nonce=other), b"not mine", encode_shell_mark("D", status=0, nonce=other),
        encode_shell_mark("C", nonce=mine), b"hello\r\n", encode_shell_mark("D", status=1, nonce=mine),
        encode_shell_mark("A", shell="bash"),
    )
    tracker = RunTracker(mine, sent_at=0)
    result = tracker.observe(found)
    assert result is not None and result.status == 1 and result.started
    assert data[result.output_start : result.output_stop] == b"hello\r\n"


def test_a_d_mark_without_its_c_still_ends_the_run() -> None:
    """A C mark lost with output the log never saw: the D still ends the run, the range from the send."""
    nonce = "3333333333333333"
    data, found = _stream(b"__tether_run ... $'x'\r\nsomething\r\n", encode_shell_mark("D", status=2, nonce=nonce))
    result = RunTracker(nonce, sent_at=0).observe(found)
    assert result == RunResult(nonce, 2, 0, data.index(b"\x1b]133"), started=False)


def test_marks_from_before_the_line_was_sent_are_ignored() -> None:
    """A replayed D of the same nonce from earlier in the stream cannot end a later run."""
    nonce = "4444444444444444"
    _, found = _stream(encode_shell_mark("D", status=0, nonce=nonce))
    tracker = RunTracker(nonce, sent_at=1000)
    assert tracker.observe(found) is None
