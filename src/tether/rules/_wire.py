"""cattrs converters: our own instances, never the global converter.

Events become JSON-ready dicts with a stable ``type`` tag and come back as the
same classes; a bad payload fails with `cattrs` errors that
`cattrs.transform_error` turns into ``field @ $.path`` lines.
"""

from __future__ import annotations

from typing import Any, Union

import cattrs
from cattrs.strategies import configure_tagged_union

from ._events import EVENT_TYPES, Event, Lagged
from ._reasons import DisconnectReason

AnyEvent = Union[EVENT_TYPES]  # type: ignore[valid-type]  # noqa: UP007 - runtime union of classes


def _type_tag(cls: type) -> str:
    tag = getattr(cls, "type", None)
    if not isinstance(tag, str):
        raise TypeError(f"{cls.__name__} has no wire type")
    return tag


def _plain_enums(converter: cattrs.Converter) -> None:
    """Unstructure our ``str`` enums to plain strings, so JSON and SQLite see values, not enums."""
    for enum_type in (DisconnectReason,):
        converter.register_unstructure_hook(enum_type, lambda e: e.value)


def make_event_converter() -> cattrs.Converter:
    """A converter for events: ``unstructure`` gives a dict with ``type``; ``structure`` inverts it."""
    converter = cattrs.Converter(forbid_extra_keys=True)
    _plain_enums(converter)
    configure_tagged_union(AnyEvent, converter, tag_generator=_type_tag, tag_name="type")
    return converter


_EVENTS = make_event_converter()


def event_to_dict(item: Event | Lagged) -> dict[str, Any]:
    """A JSON-ready dict for an event or a lag marker."""
    if isinstance(item, Lagged):
        return {"type": Lagged.type, "missed_from": item.missed_from, "missed": item.missed}
    data: dict[str, Any] = _EVENTS.unstructure(item, AnyEvent)
    return data


def event_from_dict(data: dict[str, Any]) -> Event:
    """The event a dict from `event_to_dict` describes."""
    event: Event = _EVENTS.structure(data, AnyEvent)  # type: ignore[arg-type]
    return event
