"""A console's output for people: decoded, without terminal control sequences, losses in words. Pure.

`tether tail` without ``--raw`` and the notes of `tether attach` use it; the
exact bytes are always one ``--raw`` (or `tether.open_client().read`) away.
"""

from __future__ import annotations

import codecs
import re

from ..rules._output import Loss, LossKind
from ._render import printable

_HELD_MAX = 4096
"""Longest unfinished escape sequence held back for the next chunk (longer ones are shown)."""
_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_TWO_BYTE = re.compile(r"\x1b[ -/]*[0-~]")

_WHY = {
    LossKind.UNSEEN: "between two links: whatever was printed then, nobody kept",
    LossKind.TRIMMED: "no longer in the session's buffer",
    LossKind.UNSAVED: "the daemon was killed before it saved them",
}


def describe_loss(loss: Loss) -> str:
    """``1,024 bytes lost at offset 5,000 (no longer in the session's buffer)``."""
    size = "output of unknown size" if loss.size is None else f"{loss.size:,} byte{'s' if loss.size != 1 else ''}"
    return f"{size} lost at offset {loss.start:,} ({_WHY[loss.kind]})"


def _unfinished_escape(text: str) -> int | None:
    """Where a terminal escape sequence starts that the next chunk must finish, if one does."""
    start = text.rfind("\x1b")
    if start < 0 or len(text) - start > _HELD_MAX:
        return None
    rest = text[start:]
    if len(rest) == 1:
        return start
    if rest[1] == "[":
        return None if _CSI.match(rest) else start
    if rest[1] in "]PX^_":
        return None if "\x07" in rest else start
    return None if _TWO_BYTE.match(rest) else start


class TextView:
    """Output chunks in, printable text out: UTF-8 (bad bytes replaced, a character split between
    chunks kept whole), control sequences dropped (also one split between chunks)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        self.at_line_start = True
        """The text given out so far ends a line (a note can follow on its own line)."""

    def feed(self, data: bytes) -> str:
        text = self._held + self._decoder.decode(data)
        cut = _unfinished_escape(text)
        self._held = "" if cut is None else text[cut:]
        shown = printable(text if cut is None else text[:cut])
        if shown:
            self.at_line_start = shown.endswith("\n")
        return shown

    def note(self, message: str) -> str:
        """`message` as a line of its own: ``[tether: ...]``."""
        line = ("" if self.at_line_start else "\n") + f"[tether: {message}]\n"
        self.at_line_start = True
        return line

    def finish(self) -> str:
        """What is still held back (an unfinished character or escape at the very end)."""
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return printable(text)
