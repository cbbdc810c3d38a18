"""Which events a subscriber wants: pure, so it is tested without a bus."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import final

import attrs

from ._events import Event


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    parts = [fnmatch.translate(p) for p in patterns]
    return re.compile("|".join(parts)) if parts else None


@final
@attrs.frozen
class EventFilter:
    """Session ids (exact) and event-type patterns (shell-style: ``reconnect.*``).

    Empty means everything.
    """

    session_ids: frozenset[str] = frozenset()
    types: tuple[str, ...] = ()
    _regex: re.Pattern[str] | None = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_regex", _compile(self.types))

    def matches(self, event: Event) -> bool:
        """True when the subscriber asked for this event."""
        return self.wants(event.type, event.session_id)

    def wants(self, type_name: str, session_id: str) -> bool:
        """`matches` for an event not built yet: its type and session id are all a filter reads."""
        if self.session_ids and session_id not in self.session_ids:
            return False
        return self.wants_type(type_name)

    def wants_type(self, type_name: str) -> bool:
        """The type half of `wants` (the same for every event of a class: a publisher may cache it)."""
        return self._regex is None or self._regex.match(type_name) is not None
