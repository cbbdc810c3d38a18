"""Find the escape sequences a shell integration sends, with where they are in the stream. Pure.

Three operating-system commands (OSC: ``ESC ] NUMBER ; PAYLOAD``, ended by
BEL or ST ``ESC \\``) carry facts out of a shell:

* OSC 7, ``ESC ] 7 ; file://HOST/PATH``: the working directory (the
  convention of VTE, iTerm2, WezTerm, foot, tmux's ``pane_path``).
* OSC 133, the shell-integration marks of FinalTerm / VS Code / kitty:
  ``A`` a prompt starts, ``B`` input starts, ``C`` a command's output
  starts, ``D ; STATUS`` it finished. Options follow as ``;KEY=VALUE``;
  terminals ignore keys they do not know, and tether adds two:
  ``tether=NONCE`` ties a C and a D to the one command `run` typed (a fresh
  nonce per command, so back-to-back commands can never be confused), and
  ``tether-shell=bash`` on A says tether's integration is at a prompt.
* OSC 6973, ``ESC ] 6973 ; cmd ; STATUS ; COMMAND`` (tether's private mark):
  a command finished, with its text (percent-encoded for ``%``, ``;`` and
  control characters), so a restart can type it again.

A sequence wrapped in tmux's passthrough (``ESC P tmux; ... ESC \\``, inner
ESCs doubled) is found too: shells inside tmux that send them wrapped keep
being understood. Every other byte, other OSCs included, passes through
untouched and in order.

Streams are read in chunks that split sequences anywhere, so `OscScanner`
carries an unfinished one over, bounded so a stray ``ESC ]`` never holds
output back without limit. Each `Found` says where its sequence lies in the
stream (positions count the bytes fed, or follow the positions the caller
passes with ``at=``, e.g. an output log's), which is what `run` needs to
cut a command's output exactly.
"""

from __future__ import annotations

import re
import secrets
from typing import Final, final
from urllib.parse import quote, unquote, urlsplit

import attrs

MARK_OSC = 6973
"""The private OSC number of tether's command mark."""
SHELL_MARK_OSC = 133
NONCE_KEY = "tether"
SHELL_KEY = "tether-shell"

_OSC = b"\x1b]"
_DCS_TMUX = b"\x1bPtmux;"
_BEL = b"\x07"
_ST = b"\x1b\\"
_MARK_SAFE = " !\"#$&'()*+,-./:<=>?@[\\]^_`{|}~"
_NONCE = re.compile(r"[0-9a-f]{8,64}")
_SHELL_KINDS = frozenset("ABCD")


@final
@attrs.frozen
class CwdReport:
    """The shell said it is now in `path` (on `host`)."""

    path: str
    host: str = ""


@final
@attrs.frozen
class CommandMark:
    """The shell finished `command` with `status` (tether's OSC 6973)."""

    command: str
    status: int | None = None


@final
@attrs.frozen
class ShellMark:
    """An OSC 133 mark: ``A`` prompt, ``B`` input, ``C`` output starts, ``D`` finished."""

    kind: str
    status: int | None = None
    """For ``D``: the exit status, when the shell gave one."""
    nonce: str | None = None
    """``tether=NONCE``: the `run` this mark belongs to."""
    shell: str | None = None
    """``tether-shell=NAME``: tether's integration in shell NAME sent it."""


OscEvent = CwdReport | CommandMark | ShellMark


@final
@attrs.frozen
class Found:
    """A recognised sequence and where it lies: ``[start, stop)`` in stream positions."""

    event: OscEvent
    start: int
    stop: int


# -- encoding (what an integration sends) ---------------------------------------------------------


def encode_osc7(path: str, host: str = "") -> bytes:
    """The OSC 7 report for `path`, as a shell integration sends it."""
    return b"\x1b]7;file://" + (host + quote(path, safe="/")).encode() + _BEL


def encode_mark(command: str, status: int | None = None) -> bytes:
    """Tether's command mark for `command`."""
    text = quote(command, safe=_MARK_SAFE)
    code = "" if status is None else str(status)
    return f"\x1b]{MARK_OSC};cmd;{code};{text}\x07".encode()


def encode_shell_mark(kind: str, *, status: int | None = None, nonce: str | None = None,
                      shell: str | None = None) -> bytes:
    """An OSC 133 mark with tether's options, as the integration sends it."""
    if kind not in _SHELL_KINDS:
        raise ValueError(f"an OSC 133 mark is one of A, B, C, D, not {kind!r}")
    parts = [str(SHELL_MARK_OSC), kind]
    if kind == "D" and status is not None:
        parts.append(str(status))
    if nonce is not None:
        parts.append(f"{NONCE_KEY}={nonce}")
    if shell is not None:
        parts.append(f"{SHELL_KEY}={shell}")
    return b"\x1b]" + ";".join(parts).encode() + _BEL


def valid_nonce(text: str) -> bool:
    """Whether `text` can be a run's nonce (8-64 lowercase hex digits)."""
    return _NONCE.fullmatch(text) is not None


def new_nonce() -> str:
    """A fresh nonce for one `run`: 16 hex digits, never reused in practice (64 random bits)."""
    return secrets.token_hex(8)


# -- parsing (one payload) --------------------------------------------------------------------------


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
    """The command in a 6973 payload (the part after ``6973;``), or None if malformed."""
    kind, sep, rest = payload.partition(";")
    if kind != "cmd" or not sep:
        return None
    code, sep, command = rest.partition(";")
    if not sep:
        return None
    return CommandMark(command=unquote(command, errors="replace"), status=_status(code))


def parse_shell_mark(payload: str) -> ShellMark | None:
    """An OSC 133 payload (the part after ``133;``), or None if it is not one of A-D."""
    kind, *options = payload.split(";")
    if kind not in _SHELL_KINDS:
        return None
    status = None
    if kind == "D" and options and "=" not in options[0]:
        status = _status(options.pop(0))
    found = dict(option.partition("=")[::2] for option in options if "=" in option)
    nonce = found.get(NONCE_KEY)
    if nonce is not None and not _NONCE.fullmatch(nonce):
        nonce = None
    return ShellMark(kind=kind, status=status, nonce=nonce, shell=found.get(SHELL_KEY) or None)


def _status(code: str) -> int | None:
    try:
        return int(code) if code else None
    except ValueError:
        return None


def parse_osc(payload: bytes) -> OscEvent | None:
    """The event in one OSC's payload (between ``ESC ]`` and its terminator), if we know it."""
    number, sep, rest = payload.partition(b";")
    if not sep:
        return None
    text = rest.decode("utf-8", errors="surrogateescape")
    if number == b"7":
        return parse_osc7(text)
    if number == b"133":
        return parse_shell_mark(text)
    if number == b"6973":
        return parse_mark(text)
    return None


# -- scanning (a stream) ------------------------------------------------------------------------------


@final
@attrs.define
class OscScanner:
    """Incremental scanner over terminal output: finds events and, if `strip`, removes them.

    `position` is the stream position of the next byte fed. ``feed(data, at=P)``
    says `data` starts at position P; a P other than expected means the stream
    skipped (a loss in the output log), so an unfinished sequence is dropped.
    """

    strip: bool = False
    """Remove the recognised sequences from the output (for display); the log keeps them."""
    max_pending: int = 8192
    """Longest unfinished sequence held back; past it the bytes are passed through."""
    position: int = 0
    _pending: bytes = attrs.field(default=b"", init=False)

    def feed(self, data: bytes, at: int | None = None) -> tuple[bytes, list[Found]]:
        """Scan one chunk; return the output to pass on and the sequences found in it."""
        if at is not None and at != self.position:
            self._pending = b""
            self.position = at
        base = self.position - len(self._pending)
        self.position += len(data)
        if not self._pending and not _may_start_here(data):
            return data, []  # no OSC and no passthrough begins in this chunk: the common case
        buf = self._pending + data
        self._pending = b""
        out = bytearray() if self.strip else None
        found: list[Found] = []
        pos = 0
        while True:
            start, wrapped = _next_start(buf, pos)
            if start < 0:
                tail_start = len(buf) - 1 if buf.endswith(b"\x1b") else len(buf)
                if out is not None:
                    out += buf[pos:tail_start]
                self._pending = buf[tail_start:]
                break
            if out is not None:
                out += buf[pos:start]
            end = _dcs_end(buf, start) if wrapped else _osc_end(buf, start + 2)
            if end < 0:
                if len(buf) - start > self.max_pending:
                    if out is not None:
                        out += buf[start:]
                else:
                    self._pending = buf[start:]
                break
            event = _unwrap(buf[start:end]) if wrapped else parse_osc(_osc_payload(buf, start, end))
            if event is not None:
                found.append(Found(event, base + start, base + end))
            if out is not None and event is None:
                out += buf[start:end]
            pos = end
        if out is None:
            return data, found  # not stripping: every byte passes at once, pending is only for finding
        return bytes(out), found

    def flush(self) -> bytes:
        """Whatever is held back (at the end of the stream), for a stripping scanner to pass on."""
        pending, self._pending = self._pending, b""
        return pending if self.strip else b""


def _may_start_here(data: bytes) -> bool:
    """Whether an OSC or a tmux passthrough may begin in `data` (false positives are fine).

    Colourful output has an ESC every few bytes, where a two-byte search crawls; the byte
    after the ESC (``]``) is rare, so memchr for it and look one byte back.
    """
    if data.find(b"\x1b") < 0:
        return False  # one memchr: most chunks end here
    if data[-1] == 0x1B or data.find(b"Ptmux;") >= 0 or data.find(b"\x1bP", len(data) - len(_DCS_TMUX)) >= 0:
        return True  # a lone ESC, a passthrough, or one whose introducer the next chunk completes
    i = data.find(b"]", 1)
    while i > 0:
        if data[i - 1] == 0x1B:
            return True
        i = data.find(b"]", i + 1)
    return False


def _next_start(buf: bytes, pos: int) -> tuple[int, bool]:
    """Where the next OSC or tmux-wrapped sequence starts at or after `pos`, and whether it is wrapped."""
    osc = buf.find(_OSC, pos)
    dcs = buf.find(_DCS_TMUX, pos, osc if osc >= 0 else len(buf))
    if dcs >= 0:
        return dcs, True
    if osc >= 0:
        return osc, False
    # an unfinished "ESC P tmux;" introducer at the very end waits for the next chunk
    cut = buf.rfind(b"\x1bP", pos)
    if cut >= 0 and _DCS_TMUX.startswith(buf[cut : cut + len(_DCS_TMUX)]) and len(buf) - cut < len(_DCS_TMUX):
        return cut, True
    return -1, False


def _osc_end(buf: bytes, start: int) -> int:
    """Index just past the BEL or ST ending the OSC begun before `start`; -1 if not here yet."""
    bel = buf.find(_BEL, start)
    st = buf.find(_ST, start)
    if bel < 0 and st < 0:
        return -1
    if st < 0 or (0 <= bel < st):
        return bel + 1
    return st + 2


def _osc_payload(buf: bytes, start: int, end: int) -> bytes:
    stop = end - 1 if buf[end - 1 : end] == _BEL else end - 2
    return buf[start + 2 : stop]


def _dcs_end(buf: bytes, start: int) -> int:
    """Index just past the ``ESC \\`` ending a tmux passthrough (inner ESCs come doubled); -1 if
    not here yet. A lone ESC inside ends a malformed one just before it."""
    i = start + len(_DCS_TMUX)
    if len(buf) < i:
        return -1
    while True:
        esc = buf.find(b"\x1b", i)
        if esc < 0 or esc + 1 >= len(buf):
            return -1
        follower = buf[esc + 1]
        if follower == 0x1B:
            i = esc + 2
        elif follower == 0x5C:  # backslash
            return esc + 2
        else:
            return esc


def _unwrap(sequence: bytes) -> OscEvent | None:
    """The event inside one tmux passthrough, if it holds exactly one OSC we know."""
    if not sequence.endswith(_ST):
        return None
    inner = sequence[len(_DCS_TMUX) : -2].replace(b"\x1b\x1b", b"\x1b")
    if not inner.startswith(_OSC):
        return None
    end = _osc_end(inner, 2)
    if end != len(inner):
        return None
    return parse_osc(_osc_payload(inner, 0, end))


# -- run: one command's completion, from its marks ---------------------------------------------------


@final
@attrs.frozen
class RunResult:
    """How one `run` ended: its exit status and where its output lies in the stream."""

    nonce: str
    status: int | None
    """The exit status the shell reported (None if it gave none)."""
    output_start: int
    output_stop: int
    """``[output_start, output_stop)``: the command's output, between its C and D marks."""
    started: bool
    """False when no C mark came before the D (it was lost with output the log never saw): the
    range then runs from where the line was sent to the D mark."""
    lost: str | None = None
    """Why the run can never finish (its shell ended, or was replaced by a new program): then
    `status` is None and the range runs to where the log was when that became known."""


def quote_ansi_c(text: str) -> str:
    """`text` as a bash/zsh ``$'...'`` word: every control byte escaped, so typing it sends no
    tab (readline would complete), no newline (the shell would run half) and no escape byte."""
    out = ["$'"]
    for ch in text:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)


_C_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


RUN_LINE_BYTES: Final = 1024
"""The longest line `run_line` types. A terminal's canonical line limit (4095 bytes on Linux)
cuts a longer line typed while the shell is not in its line editor (a command still running,
a prompt hook not done yet): the shell would sit in an open quote and no run would finish."""


def run_line(command: str, nonce: str) -> bytes:
    """What `run` types: ``__tether_run NONCE $'COMMAND'`` and Enter.

    tether's shell integration defines ``__tether_run``: it prints the C mark,
    runs the command with ``eval`` in the shell itself, and prints the D mark
    with its status. The typed text holds no escape, tab or newline byte, so
    the terminal's echo of it can never look like a mark, nor be cut by the
    line editor; a command of several lines is one run. A long command is
    typed as several lines of at most `RUN_LINE_BYTES`: ``$'...'`` pieces
    joined by a backslash before each Enter (a continuation the shell
    removes, leaving one word).
    """
    if not _NONCE.fullmatch(nonce):
        raise ValueError(f"a run nonce is 8-64 lowercase hex digits, not {nonce!r}")
    if "\x00" in command:
        raise ValueError("a run command cannot hold NUL")
    head = f"__tether_run {nonce} "
    line = head + quote_ansi_c(command)
    if len(line.encode()) < RUN_LINE_BYTES:
        return f"{line}\r".encode()
    lines: list[str] = []
    piece: list[str] = []
    size = len(head) + len("$''\\")
    for ch in command:
        quoted = quote_ansi_c(ch)[2:-1]
        width = len(quoted.encode())
        if piece and size + width >= RUN_LINE_BYTES:
            lines.append("$'" + "".join(piece) + "'")
            piece, size = [], len("$''\\")
        piece.append(quoted)
        size += width
    lines.append("$'" + "".join(piece) + "'")
    return (head + "\\\r".join(lines) + "\r").encode()


@final
@attrs.define
class RunTracker:
    """Turns the marks found in a session's output into the result of one `run`.

    `sent_at` is the stream position when the line was typed. Marks of other
    nonces (another run, a nested shell) and marks without one are ignored, so
    runs back to back, or one inside another, never answer for each other.
    """

    nonce: str
    sent_at: int
    started_at: int | None = None
    result: RunResult | None = None

    def observe(self, found: list[Found]) -> RunResult | None:
        """Take the marks of one scanned chunk; the result once the D mark came."""
        for item in found:
            mark = item.event
            if self.result is not None or not isinstance(mark, ShellMark) or mark.nonce != self.nonce:
                continue
            if mark.kind == "C" and self.started_at is None and item.start >= self.sent_at:
                self.started_at = item.stop
            elif mark.kind == "D" and item.start >= self.sent_at:
                started = self.started_at is not None
                start = self.started_at if self.started_at is not None else self.sent_at
                self.result = RunResult(self.nonce, mark.status, start, max(start, item.start), started)
        return self.result
