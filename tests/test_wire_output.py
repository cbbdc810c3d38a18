"""Output and input on the wire: exact bytes as base64 in JSON, strict on the way in."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.rules._errors import ConfigError, InvalidConfigError
from tether.rules._keys import INTERRUPT, KEYS, encode_keys
from tether.rules._output import LogLimits, LogRead, Loss, LossKind, OutputLog, PeerMark
from tether.rules._wire import input_from_dict, input_to_dict, read_from_dict, read_to_dict


def problems(exc: pytest.ExceptionInfo[InvalidConfigError]) -> list[str]:
    return [str(e) for e in exc.value.errors]


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.binary(max_size=50),
            st.none(),
            st.integers(1, 9),
            st.tuples(st.sampled_from(["p", "q"]), st.integers(0, 30), st.binary(max_size=9)),
        ),
        max_size=30,
    ),
    since=st.integers(0, 200),
    max_bytes=st.integers(1, 80),
)
def test_every_read_survives_json_exactly(ops: list[object], since: int, max_bytes: int) -> None:
    """Whatever a log answers, through JSON text and back it is the same read, byte for byte."""
    log = OutputLog(LogLimits(max_bytes=64, max_gaps=3))
    for op in ops:
        if isinstance(op, bytes):
            log.append(op)
        elif op is None:
            log.mark_interrupted()
        elif isinstance(op, int):
            log.mark_lost(op)
        else:
            stream, offset, data = op  # type: ignore[misc]
            log.append_at(PeerMark(stream, offset), data)
    read = log.read(min(since, log.end), max_bytes)
    assert read_from_dict(json.loads(json.dumps(read_to_dict(read)))) == read


def test_the_documented_frame() -> None:
    """The frame shape the wire section of rules/_wire.py shows, exactly."""
    read = LogRead("3f2a", 0, 9, 9, b"hi\x00\xff", (Loss(2, 7, LossKind.UNSEEN, 5),))
    assert read_to_dict(read) == {
        "log": "3f2a", "since": 0, "next": 9, "end": 9, "data": "aGkA/w==",
        "losses": [{"start": 2, "stop": 7, "kind": "unseen", "size": 5}],
    }


def test_a_bad_frame_names_every_problem() -> None:
    """Unknown fields, bad base64, bad kinds and inconsistent counts are each named with a path."""
    with pytest.raises(InvalidConfigError) as info:
        read_from_dict({"log": "x", "since": 0, "next": 4, "end": 4, "data": "**", "losses": [
            {"start": 1, "stop": 2, "kind": "eaten", "size": None}], "extra": 1})
    assert problems(info) == [
        "read.data: must be base64 (standard alphabet, padded)",
        "read.losses[0].kind: must be one of unseen, trimmed, unsaved, got 'eaten'",
        "read.extra: unknown field",
    ]
    with pytest.raises(InvalidConfigError) as info:
        read_from_dict({"log": "x", "since": 0, "next": 4, "end": 4, "data": "YQ==", "losses": []})
    assert problems(info) == ["read.data: holds 1 bytes where since..next leaves 4"]
    with pytest.raises(InvalidConfigError) as info:
        read_from_dict({"log": "x", "since": 0, "next": 4, "end": 4, "data": "", "losses": [
            {"start": 2, "stop": 4, "kind": "unseen", "size": 2},
            {"start": 0, "stop": 2, "kind": "trimmed", "size": 2},
        ]})
    assert problems(info) == ["read.losses[1]: loss 0..2 is out of order or outside since..next"]


def test_input_comes_as_bytes_text_or_keys() -> None:
    """Each input form gives the bytes a terminal would get."""
    assert input_from_dict(input_to_dict(data=b"\x00\xffraw")) == b"\x00\xffraw"
    assert input_from_dict(input_to_dict(text="ls -l é\r")) == "ls -l é\r".encode()
    assert input_from_dict(input_to_dict(keys=["ctrl-c", "C-d", "^z", "Enter", "up", "f5"])) == (
        b"\x03\x04\x1a\r\x1b[A\x1b[15~"
    )
    with pytest.raises(ConfigError, match="exactly one of data, text or keys"):
        input_to_dict(text="a", keys=["enter"])


def test_bad_input_is_named_with_its_path() -> None:
    """Two forms at once, unknown keys, an empty key list, bad base64: each a clear error."""
    cases = {
        "both": ({"text": "a", "keys": ["enter"]}, ["input: give exactly one of data, text or keys (got text, keys)"]),
        "stray": ({"text": "a", "txt": "b"}, ["input: unknown field: txt"]),
        "key": ({"keys": ["enter", "hyper-x"]}, None),
        "empty": ({"keys": []}, ["input.keys: must be a non-empty list of key names, got []"]),
        "base64": ({"data": "not base64!"}, ["input.data: must be base64 (standard alphabet, padded)"]),
        "type": ({"text": 5}, ["input.text: must be a string, got 5"]),
    }
    for name, (payload, expected) in cases.items():
        with pytest.raises(InvalidConfigError) as info:
            input_from_dict(payload)
        if expected is not None:
            assert problems(info) == expected, name
    with pytest.raises(InvalidConfigError) as info:
        input_from_dict({"keys": ["enter", "hyper-x"]})
    assert problems(info)[0].startswith("input.keys[1]: unknown key 'hyper-x'; known: enter, tab,")


def test_key_names_give_the_terminal_bytes() -> None:
    """Control keys are their ASCII codes; interrupt is ctrl-c; names are case-insensitive."""
    assert [encode_keys([f"ctrl-{c}"]) for c in "acz"] == [b"\x01", b"\x03", b"\x1a"]
    assert INTERRUPT == b"\x03" == encode_keys(["C-C"])
    assert KEYS["escape"] == KEYS["ctrl-["] == b"\x1b"
    assert encode_keys(["f1", "f12", "delete", "pagedown"]) == b"\x1bOP\x1b[24~\x1b[3~\x1b[6~"
