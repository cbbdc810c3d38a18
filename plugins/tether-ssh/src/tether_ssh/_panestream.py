"""The records the remote pane-log follower sends (`tether_ssh._panelog`), parsed. Pure.

After the connect marker the channel carries, in order::

    RS "S " name LF                 once: the log's name (the peer stream)
    RS "D " offset " " length LF    then `length` bytes of the program's output from that offset
    RS "D " ...                     the next segment (its offset may jump: trimmed bytes)

Lengths make the framing exact for any bytes; only the program's last segment
is short, and nothing follows it. Anything else (a record out of place, an
offset going back, a header that does not parse) means the stream is out of
step: `PaneStreamError`, and the link is dropped rather than a byte misplaced
(a re-attach resumes exactly from the output log's offset).
"""

from __future__ import annotations

import re

import attrs

from tether import PeerMark

from ._panelog import STREAM_PREFIX

HEADER_MAX = 256
_STREAM = re.compile(rb"\x1eS ([A-Za-z0-9_-]{1,100})")
_DATA = re.compile(rb"\x1eD (\d{1,19}) (\d{1,19})")


class PaneStreamError(ValueError):
    """The follower's records are out of step."""


@attrs.define
class PaneStream:
    """Turns the channel's bytes into the program's bytes, each chunk with its peer mark."""

    stream: str | None = None
    """The peer stream's name (``ssh-pane:<log directory>``), once its record arrived."""
    position: int = 0
    """The peer offset of the next byte expected."""
    _remaining: int = 0
    _header: bytearray = attrs.field(factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[PeerMark, bytes]]:
        """The chunks of program output in `data`; `PaneStreamError` if the records are out of step."""
        found: list[tuple[PeerMark, bytes]] = []
        pos, size = 0, len(data)
        while pos < size:
            if self._remaining:
                take = min(self._remaining, size - pos)
                assert self.stream is not None
                found.append((PeerMark(self.stream, self.position), data[pos : pos + take]))
                self.position += take
                self._remaining -= take
                pos += take
                continue
            end = data.find(b"\n", pos)
            if end < 0:
                self._header += data[pos:]
                if len(self._header) > HEADER_MAX:
                    raise PaneStreamError(f"no record header in {len(self._header)} bytes")
                break
            line = bytes(self._header) + data[pos:end]
            self._header.clear()
            pos = end + 1
            self._record(line)
        return found

    def _record(self, line: bytes) -> None:
        stream = _STREAM.fullmatch(line)
        if stream is not None:
            if self.stream is not None:
                raise PaneStreamError("a second stream record")
            self.stream = STREAM_PREFIX + stream.group(1).decode("ascii")
            return
        data = _DATA.fullmatch(line)
        if data is None:
            raise PaneStreamError(f"not a record header: {line[:80]!r}")
        if self.stream is None:
            raise PaneStreamError("a data record before the stream record")
        offset, length = int(data.group(1)), int(data.group(2))
        if length < 1:
            raise PaneStreamError(f"a data record of length {length}")
        if offset < self.position:
            raise PaneStreamError(f"offset {offset} goes back (expected {self.position} or later)")
        self.position = offset
        self._remaining = length
