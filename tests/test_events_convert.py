"""Events turn into JSON-ready dicts with a stable type tag, and back."""

from __future__ import annotations

import json
import typing

import attrs
import pytest

import tether
from tether import EVENT_TYPES, DisconnectReason, event_from_dict, event_to_dict

_SAMPLES = {str: "x", int: 3, float: 1.5, bool: True, DisconnectReason: DisconnectReason.NETWORK}


def _example(cls: type[tether.Event]) -> tether.Event:
    hints = typing.get_type_hints(cls)
    values = {}
    for field in attrs.fields(cls):
        hint = hints[field.name]
        base = next((t for t in (typing.get_args(hint) or (hint,)) if t in _SAMPLES), None)
        values[field.name] = _SAMPLES[base]  # type: ignore[index]
    return cls(**values)


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.type)
def test_every_event_round_trips_through_json(cls: type[tether.Event]) -> None:
    event = _example(cls)
    data = json.loads(json.dumps(event_to_dict(event)))
    assert data["type"] == cls.type
    assert event_from_dict(data) == event


def test_type_tags_are_unique_and_dotted() -> None:
    tags = [cls.type for cls in EVENT_TYPES]
    assert len(set(tags)) == len(tags)
    assert all("." in t for t in tags)


def test_a_lag_marker_serialises() -> None:
    assert event_to_dict(tether.Lagged(missed_from=5, missed=2)) == {"type": "lagged", "missed_from": 5, "missed": 2}


def test_a_bad_payload_is_an_error_not_a_guess() -> None:
    with pytest.raises(Exception, match=r"session\.teleported|type"):
        event_from_dict({"type": "session.teleported", "seq": 1, "at": 0.0, "session_id": "a"})


def test_every_documented_example_is_a_real_event() -> None:
    """Each JSON example in docs/events.md structures into its class and back, field for field."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "events.md").read_text()
    examples = [json.loads(line) for line in re.findall(r'^\{"seq": .*\}$', text, re.M)]
    assert {e["type"] for e in examples} == {cls.type for cls in EVENT_TYPES}
    for example in examples:
        assert event_to_dict(event_from_dict(dict(example))) == example, example["type"]
