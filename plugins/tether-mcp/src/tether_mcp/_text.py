"""Console bytes as text an agent can read, with the encoding said out loud. Pure.

Three formats, named in every result:

* ``text`` (the default): UTF-8, terminal control sequences removed (colours,
  cursor movement, the shell integration's marks, title changes), ``\\r\\n``
  as ``\\n``, a line rewritten with ``\\r`` (a progress bar) as its last
  version, and each loss of output as a one-line ``[tether: ...]`` note where
  it happened. For reading, not for byte counting.
* ``raw``: the exact bytes decoded as UTF-8; exact unless a byte sequence is
  not UTF-8 (then it becomes U+FFFD and the result says how many bytes).
* ``base64``: the exact bytes, always.

A read never ends inside a UTF-8 character or (``text``) inside a control
sequence when more may follow: those few bytes are left for the next read,
whose cursor starts at them, so nothing is split into garbage or shown twice.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Callable, Iterable
from typing import final

import attrs

from tether import Loss


class Format(str, enum.Enum):
    TEXT = "text"
    RAW = "raw"
    BASE64 = "base64"


HOLD_BACK_LIMIT = 256
"""Longest unfinished sequence at the end of a read that is left for the next read."""

_ESCAPES = re.compile(
    r"""
      \x1b\[[0-?]*[ -/]*[@-~]                  # CSI: colours, cursor movement, erase
    | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)        # OSC: titles, cwd reports, tether's marks
    | \x1b[P^_X][^\x1b]*\x1b\\                 # DCS, PM, APC, SOS (tmux passthrough)
    | \x1b[ -/]*[0-~]                          # two- and three-byte escapes (charsets, keypad)
    | \x9b[0-?]*[ -/]*[@-~]                    # 8-bit CSI
    """,
    re.VERBOSE,
)
_UNFINISHED = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*|[P^_X][^\x1b]*(?:\x1b)?|[ -/]*)?\Z")
_SURROGATES = re.compile("[\udc80-\udcff]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@final
@attrs.frozen(kw_only=True)
class Rendered:
    text: str
    encoding: str
    """``utf-8`` or ``base64``: how `text` holds the bytes."""
    exact: bool
    """True when `text` decodes back to exactly the bytes read."""
    invalid_bytes: int = 0
    """Bytes that were not UTF-8 (each shown as U+FFFD)."""
    held_back: int = 0
    """Bytes at the end left for the next read (an unfinished character or sequence)."""
    redacted: int = 0
    """Secrets replaced by ``[redacted]`` (`tether_mcp._secrets`): the text is not exact then."""


def incomplete_utf8_tail(data: bytes) -> int:
    """How many bytes at the end of `data` start a UTF-8 character that is not finished (0-3)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): does its character fit?
            need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
            return back if need > back else 0
    return 0


def unfinished_escape_tail(data: bytes) -> int:
    """Bytes at the end of `data` that begin a control sequence not finished yet."""
    found = _UNFINISHED.search(data)
    return len(data) - found.start() if found is not None else 0


def strip_terminal(text: str) -> str:
    """`text` as a reader sees it: no control sequences, ``\\r\\n`` as ``\\n``, a ``\\r``-rewritten
    line as its last version, backspaces applied, other control characters gone."""
    text = _ESCAPES.sub("", text).replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        if "\r" in line:
            line = next((part for part in reversed(line.split("\r")) if part), "")
        if "\b" in line:
            kept: list[str] = []
            for char in line:
                if char == "\b":
                    if kept:
                        kept.pop()
                else:
                    kept.append(char)
            line = "".join(kept)
        lines.append(_CONTROLS.sub("", line))
    return "\n".join(lines)


def loss_note(loss: Loss) -> str:
    """The one line a `text` read shows where output was lost."""
    size = f"{loss.size} bytes" if loss.size is not None else "an unknown amount of output"
    why = {
        "unseen": "never seen: the link was down and nothing kept it",
        "trimmed": "no longer kept: it left the session's bounded output buffer",
        "unsaved": "shown by a tether process that was killed before it wrote it down",
    }.get(loss.kind.value, loss.kind.value)
    return f"\n[tether: {size} lost here ({why})]\n"


Scrub = Callable[[bytes], tuple[bytes, int]]


def render(pieces: Iterable[tuple[int, bytes] | Loss], fmt: Format, *, more_may_follow: bool,
           may_hold_all: bool = False, scrub: Scrub | None = None) -> Rendered:
    """The read's pieces (bytes at positions, and losses) in `fmt`, each piece passed through `scrub`
    (which hides secrets) after the positions are settled.

    With `more_may_follow`, an unfinished character or (``text``) control sequence at the very
    end is held back for the next read, up to `HOLD_BACK_LIMIT` bytes; the whole read only with
    `may_hold_all` (it reached the end of the output: the rest is still to come), so a read cut
    short by its size always moves on.
    """
    items = list(pieces)
    data = b"".join(p[1] for p in items if not isinstance(p, Loss))
    held = 0
    if more_may_follow and items and not isinstance(items[-1], Loss):
        last = items[-1][1]
        held = incomplete_utf8_tail(last)
        if fmt is Format.TEXT:
            held += unfinished_escape_tail(last[: len(last) - held])
        if held > HOLD_BACK_LIMIT or (held >= len(data) and not may_hold_all):
            held = 0
        if held:
            items[-1] = (items[-1][0], last[: len(last) - held])
    redacted = 0
    if scrub is not None:
        for index, piece in enumerate(items):
            if not isinstance(piece, Loss):
                cleaned, count = scrub(piece[1])
                if count:
                    items[index] = (piece[0], cleaned)
                    redacted += count
    if fmt is Format.BASE64:
        data = b"".join(p[1] for p in items if not isinstance(p, Loss))
        return Rendered(text=base64.b64encode(data).decode("ascii"), encoding="base64", exact=not redacted,
                        redacted=redacted)
    if fmt is Format.RAW:
        text, invalid = decode(b"".join(p[1] for p in items if not isinstance(p, Loss)))
        return Rendered(text=text, encoding="utf-8", exact=invalid == 0 and not redacted, invalid_bytes=invalid,
                        held_back=held, redacted=redacted)
    parts: list[str] = []
    invalid = 0
    for piece in items:
        if isinstance(piece, Loss):
            parts.append(loss_note(piece))
        else:
            text, bad = decode(piece[1])
            parts.append(text)
            invalid += bad
    return Rendered(text=strip_terminal("".join(parts)), encoding="utf-8", exact=False, invalid_bytes=invalid,
                    held_back=held, redacted=redacted)


def decode(data: bytes) -> tuple[str, int]:
    """`data` as UTF-8, each byte that is not part of a valid character as U+FFFD; and how many."""
    text = data.decode("utf-8", "surrogateescape")
    invalid = len(_SURROGATES.findall(text))
    return (_SURROGATES.sub("\ufffd", text) if invalid else text), invalid
