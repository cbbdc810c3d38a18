"""The connect-marker scanner over the pty's byte stream. Pure, so chunk splits are testable.

`MarkerScanner` finds the connect markers (which may arrive split over reads).
The cwd reports in the output (OSC 7) are found by tether's own scanner
(``tether.OscScanner``), shared by every backend.
"""

from __future__ import annotations

import attrs

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
