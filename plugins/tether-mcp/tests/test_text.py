"""Console bytes as text: the three formats, what a read holds back, loss notes, secrets (pure)."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from tether import Loss, LossKind
from tether_mcp._secrets import SecretBook
from tether_mcp._text import Format, incomplete_utf8_tail, render, strip_terminal


def test_text_removes_what_a_terminal_would_not_show() -> None:
    raw = "\x1b]133;A;tether-shell=bash\x07\x1b[1;32mok\x1b[0m\r\nloading 10%\rloading 100%\nab\bc\x1b(B\x07"
    assert strip_terminal(raw) == "ok\nloading 100%\nac"


def test_formats_say_how_exact_they_are() -> None:
    data = "grün\x1b[0m".encode() + b"\xff"
    pieces = [(0, data)]
    raw = render(pieces, Format.RAW, more_may_follow=False)
    assert (raw.text, raw.exact, raw.invalid_bytes) == ("grün\x1b[0m\ufffd", False, 1)
    exact = render([(0, "grün".encode())], Format.RAW, more_may_follow=False)
    assert exact.exact and exact.text == "grün"
    b64 = render(pieces, Format.BASE64, more_may_follow=False)
    assert b64.exact and base64.b64decode(b64.text) == data and b64.encoding == "base64"
    text = render(pieces, Format.TEXT, more_may_follow=False)
    assert text.text == "grün\ufffd" and text.exact is False


def test_a_read_never_ends_inside_a_character_or_a_sequence() -> None:
    cut = "é".encode()[:1]
    held = render([(0, b"abc" + cut)], Format.RAW, more_may_follow=True)
    assert (held.text, held.held_back) == ("abc", 1)
    sequence = render([(0, b"abc\x1b]133;D;0;tether=12")], Format.TEXT, more_may_follow=True)
    assert sequence.text == "abc" and sequence.held_back == len(b"\x1b]133;D;0;tether=12")
    alone = render([(0, cut)], Format.RAW, more_may_follow=True)
    assert alone.held_back == 0  # a read cut short by its size always moves on
    waiting = render([(0, cut)], Format.RAW, more_may_follow=True, may_hold_all=True)
    assert (waiting.text, waiting.held_back) == ("", 1)  # at the end of the output: the rest is coming
    assert incomplete_utf8_tail("€".encode()) == 0 and incomplete_utf8_tail("€".encode()[:2]) == 2


@given(st.text(min_size=1, max_size=200), st.lists(st.integers(min_value=4, max_value=40), min_size=1, max_size=20))
def test_reads_that_hold_back_put_every_character_together_again(text: str, sizes: list[int]) -> None:
    """However the bytes are cut into reads (of 4 bytes or more: a character fits), the texts joined are
    the text, once (raw format)."""
    data = text.encode()
    shown = []
    position = 0
    for step in range(4 * len(data) + 4):
        if position >= len(data):
            break
        size = sizes[step % len(sizes)]
        chunk = data[position : position + size]
        more = position + len(chunk) < len(data)
        rendered = render([(position, chunk)], Format.RAW, more_may_follow=more)
        shown.append(rendered.text)
        position += len(chunk) - rendered.held_back
    assert "".join(shown) == text


def test_losses_are_noted_where_they_happened() -> None:
    pieces = [(0, b"before\n"), Loss(7, 8, LossKind.UNSEEN, None), (8, b"after\n")]
    text = render(pieces, Format.TEXT, more_may_follow=False).text
    assert text == "before\n\n[tether: an unknown amount of output lost here (never seen: the link was down and " \
                   "nothing kept it)]\nafter\n"
    assert render(pieces, Format.RAW, more_may_follow=False).text == "before\nafter\n"


def test_known_secrets_are_scrubbed_from_every_format() -> None:
    book = SecretBook()
    book.add("hunter22")
    book.add("ok")  # too short to scrub: every "ok" on a screen would go
    for fmt in Format:
        shown = render([(0, b"pw hunter22 ok")], fmt, more_may_follow=False, scrub=book.scrub_bytes)
        text = base64.b64decode(shown.text).decode() if fmt is Format.BASE64 else shown.text
        assert text == "pw [redacted] ok" and shown.redacted == 1 and not shown.exact
    assert book.scrub_tree({"a": ["x hunter22"], "n": 1}) == {"a": ["x [redacted]"], "n": 1}


def test_tables_teach_the_book_their_literal_secrets_only() -> None:
    book = SecretBook()
    book.learn_table({"id": "x", "options": {"env": {"API_TOKEN": "tok-123456", "PATH": "/bin/xyz"},
                                             "headers": [{"Authorization": "Bearer abcdef"}]}})
    assert book.scrub("tok-123456 /bin/xyz Bearer abcdef") == "[redacted] /bin/xyz [redacted]"
