"""Find (and optionally strip) the escape sequences shell integration sends. Pure, no I/O.

Two sequences carry state out of the shell:

* OSC 7, ``ESC ] 7 ; file://HOST/PATH BEL``: the working directory (the
  convention of VTE, iTerm2, WezTerm, foot, tmux's ``pane_path``).
* OSC 6973, ``ESC ] 6973 ; cmd ; STATUS ; COMMAND BEL``: a command finished
  (tether's private mark). COMMAND is percent-encoded for ``%``, ``;`` and
  control characters so it can never contain the terminator.

Both may end with BEL or ST (``ESC \\``). Pty reads split sequences anywhere,
so `OscScanner` carries an unfinished one over to the next chunk, bounded so a
stray ``ESC ]`` can never make it hold output back without limit.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

import attrs

MARK_OSC = 6973
"""The private OSC number of tether's command mark."""

_OSC_START = b"\x1b]"
_BEL = 0x07
_ST = b"\x1b\\"
_MARK_SAFE = " !\"#$&'()*+,-./:<=>?@[\\]^_`{|}~"


@attrs.frozen
class CwdReport:
    """The shell said it is now in `path` (on `host`)."""

    path: str
    host: str = ""


@attrs.frozen
class CommandMark:
    """The shell finished `command` with `status`."""

    command: str
    status: int | None = None


OscEvent = CwdReport | CommandMark


def encode_osc7(path: str, host: str = "") -> bytes:
    """The OSC 7 report for `path`, as a shell integration would send it."""
    return b"\x1b]7;file://" + (host + quote(path, safe="/")).encode() + b"\x07"


def encode_mark(command: str, status: int | None = None) -> bytes:
    """The command mark for `command`, as tether's shell integration sends it."""
    text = quote(command, safe=_MARK_SAFE)
    code = "" if status is None else str(status)
    return f"\x1b]{MARK_OSC};cmd;{code};{text}\x07".encode()


def parse_osc7(payload: str) -> CwdReport | None:
    """The cwd in an OSC 7 payload (the part after ``7;``), or None if it is not a file URL."""
    try:
        url = urlsplit(payload)
    except ValueError:
        return None
    if url.scheme != "file" or not url.path.startswith("/"):
        return None
    return CwdReport(path=unquote(url.path, errors="surrogateescape"), host=url.hostname or "")


def parse_mark(payload: str) -> CommandMark | None:
    """The command in a mark payload (the part after ``6973;``), or None if malformed."""
    kind, sep, rest = payload.partition(";")
    if kind != "cmd" or not sep:
        return None
    code, sep, command = rest.partition(";")
    if not sep:
        return None
    status: int | None
    try:
        status = int(code) if code else None
    except ValueError:
        status = None
    return CommandMark(command=unquote(command, errors="replace"), status=status)


def _parse(payload: bytes) -> OscEvent | None:
    number, sep, rest = payload.partition(b";")
    if not sep:
        return None
    text = rest.decode("utf-8", errors="surrogateescape")
    if number == b"7":
        return parse_osc7(text)
    if number == str(MARK_OSC).encode():
        return parse_mark(text)
    return None


@attrs.define
class OscScanner:
    """Incremental scanner over pty output: yields events, strips them if `strip`.

    Only OSC 7 and the command mark are recognised and stripped; every other
    byte (other OSCs included) passes through untouched and in order.
    """

    strip: bool = True
    max_pending: int = 8192
    """Longest unfinished sequence held back; past it the bytes are passed through."""
    _pending: bytes = attrs.field(default=b"", init=False)

    def feed(self, data: bytes) -> tuple[bytes, list[OscEvent]]:
        """Scan one chunk; return the output to pass on and the events found in it."""
        buf = self._pending + data
        self._pending = b""
        out = bytearray()
        events: list[OscEvent] = []
        pos = 0
        while True:
            start = buf.find(_OSC_START, pos)
            if start < 0:
                tail = buf[pos:]
                if tail.endswith(b"\x1b"):  # maybe the first half of ESC ]
                    out += tail[:-1]
                    self._pending = b"\x1b"
                else:
                    out += tail
                break
            out += buf[pos:start]
            end, term_len = _find_terminator(buf, start + 2)
            if end < 0:
                if len(buf) - start > self.max_pending:
                    out += buf[start:]
                else:
                    self._pending = buf[start:]
                break
            event = _parse(buf[start + 2 : end])
            if event is not None:
                events.append(event)
            if event is None or not self.strip:
                out += buf[start : end + term_len]
            pos = end + term_len
        return bytes(out), events

    def flush(self) -> bytes:
        """Whatever is held back (at end of stream)."""
        pending, self._pending = self._pending, b""
        return pending


def _find_terminator(buf: bytes, start: int) -> tuple[int, int]:
    """Index and length of the BEL or ST ending the OSC begun before `start`; (-1, 0) if none yet."""
    bel = buf.find(bytes([_BEL]), start)
    st = buf.find(_ST, start)
    if bel < 0 and st < 0:
        return -1, 0
    if st < 0 or (0 <= bel < st):
        return bel, 1
    return st, 2
