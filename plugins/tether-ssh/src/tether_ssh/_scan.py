"""Incremental scanners over the pty's byte stream. Pure, so chunk splits are testable.

`MarkerScanner` finds the connect markers (which may arrive split over
reads); `Osc7Scanner` pulls cwd reports (``ESC ] 7 ; file://host/path BEL``)
out of the output without ever judging the output itself.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import attrs

_OSC7 = re.compile(rb"\x1b\]7;([^\x07\x1b]{0,4096})(?:\x07|\x1b\\)")
_OSC7_START = b"\x1b]7;"
_PARTIAL_LIMIT = 4096 + 16
_BEFORE_LIMIT = 64 * 1024


@attrs.define
class MarkerScanner:
    """Waits for the first of several markers; keeps what came before and after it."""

    markers: tuple[bytes, ...]
    before: bytearray = attrs.field(factory=bytearray)
    """Everything before the marker (setup noise or the remote's error text)."""
    found: bytes | None = None

    def feed(self, data: bytes) -> bytes:
        """Consume `data`; once a marker is found, return the bytes that followed it."""
        if self.found is not None:
            return data
        self.before += data
        hits = [(self.before.find(m), m) for m in self.markers]
        hits = [(i, m) for i, m in hits if i >= 0]
        if not hits:
            if len(self.before) > _BEFORE_LIMIT:
                del self.before[:-_BEFORE_LIMIT]
            return b""
        index, marker = min(hits)
        self.found = marker
        after = bytes(self.before[index + len(marker):])
        del self.before[index:]
        return after


@attrs.define
class Osc7Scanner:
    """Yields the cwd from each OSC 7 report, carrying a partial report across chunks."""

    _pending: bytes = b""

    def feed(self, data: bytes) -> list[str]:
        buf = self._pending + data
        found: list[str] = []
        end = 0
        for match in _OSC7.finditer(buf):
            path = _path_of(match.group(1))
            if path is not None:
                found.append(path)
            end = match.end()
        rest = buf[end:]
        start = rest.rfind(_OSC7_START)
        if start < 0:
            # a report may be cut inside its introducer: keep a trailing ESC, "ESC ]" or "ESC ] 7"
            esc = rest.rfind(b"\x1b")
            start = esc if esc >= 0 and _OSC7_START.startswith(rest[esc:]) else -1
        self._pending = rest[start:] if start >= 0 and len(rest) - start <= _PARTIAL_LIMIT else b""
        return found


def _path_of(payload: bytes) -> str | None:
    url = payload.decode("utf-8", errors="replace")
    if not url.startswith("file://"):
        return None
    rest = url[len("file://"):]
    slash = rest.find("/")
    return unquote(rest[slash:]) if slash >= 0 else None
