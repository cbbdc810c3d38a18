"""What travels over the wire: events, output read results and input to send. Pure.

cattrs converters are our own instances, never the global converter. Events
become JSON-ready dicts with a stable ``type`` tag and come back as the same
classes; a bad payload fails with `cattrs` errors that
`cattrs.transform_error` turns into ``field @ $.path`` lines. Output and input
bytes travel as base64 inside JSON (see the section below), checked strictly
on the way in.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any, Union

import cattrs
from cattrs.gen import make_dict_structure_fn, override
from cattrs.strategies import configure_tagged_union

from ._errors import ConfigError, InvalidConfigError
from ._events import EVENT_TYPES, Event, Lagged
from ._keys import encode_keys
from ._output import LogRead, Loss, LossKind
from ._reasons import DisconnectReason
from ._structure import FieldProblem, make_strict_converter, register_table_class, structure_at

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


# -- output and input over /control ------------------------------------------------------------
#
# Bytes travel as standard base64 (padded) inside JSON, so every byte value survives any JSON
# library; decoding output to text is the client's choice. A read result:
#
#     {"log": "3f2a...", "since": 0, "next": 24, "end": 24, "data": "aGVsbG8=",
#      "losses": [{"start": 5, "stop": 6, "kind": "unseen", "size": null}]}
#
# and input to send is exactly one of {"data": BASE64}, {"text": "ls -l\r"} (sent as UTF-8) or
# {"keys": ["ctrl-c", "enter"]} (see `tether.rules._keys`).


def encode_bytes(data: bytes) -> str:
    """Bytes as wire text: standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def decode_bytes(text: object) -> bytes:
    """Wire text back to bytes; `FieldProblem` for anything that is not strict base64."""
    if not isinstance(text, str):
        raise FieldProblem(f"must be base64 text, got {text!r}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FieldProblem("must be base64 (standard alphabet, padded)") from None


def _loss_kind(value: object, _: type) -> LossKind:
    try:
        return LossKind(value)
    except ValueError:
        raise FieldProblem(f"must be one of {', '.join(k.value for k in LossKind)}, got {value!r}") from None


def _optional_int(value: object, _: type) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldProblem(f"must be a whole number or null, got {value!r}")
    return value


def _check_read(read: LogRead) -> LogRead:
    """A frame must describe a read that could have happened: losses in order inside
    ``[since, next)`` and exactly as many data bytes as the positions they leave."""
    pos = read.since
    for index, loss in enumerate(read.losses):
        if not pos <= loss.start < loss.stop <= read.next:
            where = f"losses[{index}]"
            raise FieldProblem(f"loss {loss.start}..{loss.stop} is out of order or outside since..next", where)
        if loss.size is not None and loss.size < 0:
            raise FieldProblem("size must be >= 0 or null", f"losses[{index}].size")
        pos = loss.stop
    if not 0 <= read.since <= read.next <= read.end:
        raise FieldProblem(f"needs 0 <= since <= next <= end, got {read.since}, {read.next}, {read.end}")
    expected = read.next - read.since - sum(loss.stop - loss.start for loss in read.losses)
    if len(read.data) != expected:
        raise FieldProblem(f"holds {len(read.data)} bytes where since..next leaves {expected}", "data")
    return read


def make_wire_converter() -> cattrs.Converter:
    """Strict structuring of read results (as a client receives them), errors with paths."""
    converter = make_strict_converter()
    converter.register_structure_hook(LossKind, _loss_kind)
    converter.register_structure_hook(int | None, _optional_int)
    converter.register_structure_hook(bytes, lambda value, _: decode_bytes(value))
    register_table_class(converter, Loss)
    fn = make_dict_structure_fn(
        LogRead, converter, _cattrs_forbid_extra_keys=True, log_id=override(rename="log"),
    )

    def structure_read(value: Any, _: type) -> LogRead:
        if not isinstance(value, Mapping):
            raise FieldProblem(f"must be a table, got {value!r}")
        return _check_read(fn(value, LogRead))

    converter.register_structure_hook(LogRead, structure_read)
    return converter


_WIRE = make_wire_converter()


def loss_to_dict(loss: Loss) -> dict[str, Any]:
    return {"start": loss.start, "stop": loss.stop, "kind": loss.kind.value, "size": loss.size}


def read_to_dict(read: LogRead) -> dict[str, Any]:
    """A read result as a JSON-ready dict (bytes in base64)."""
    return {
        "log": read.log_id, "since": read.since, "next": read.next, "end": read.end,
        "data": encode_bytes(read.data), "losses": [loss_to_dict(loss) for loss in read.losses],
    }


def read_from_dict(data: object, *, path: str = "read") -> LogRead:
    """The read a dict from `read_to_dict` describes; `InvalidConfigError` names each bad field."""
    return structure_at(_WIRE, data, LogRead, path)


def input_to_dict(
    *, data: bytes | None = None, text: str | None = None, keys: Sequence[str] | None = None
) -> dict[str, Any]:
    """Input to send, as exactly one of ``data`` (base64), ``text`` or ``keys``."""
    given = [name for name, value in (("data", data), ("text", text), ("keys", keys)) if value is not None]
    if len(given) != 1:
        raise ConfigError("input", f"give exactly one of data, text or keys (got {', '.join(given) or 'none'})")
    if data is not None:
        return {"data": encode_bytes(data)}
    if text is not None:
        return {"text": text}
    return {"keys": list(keys or ())}


def input_from_dict(payload: object, *, path: str = "input") -> bytes:
    """The bytes an input dict stands for; `InvalidConfigError` names what is wrong and where."""
    if not isinstance(payload, Mapping):
        raise InvalidConfigError(path, [ConfigError(path, f"must be a table, got {payload!r}")])
    given = [key for key in ("data", "text", "keys") if key in payload]
    extra = sorted(set(payload) - {"data", "text", "keys"})
    problems: list[ConfigError] = []
    if extra:
        problems.append(ConfigError(path, f"unknown field{'s' if len(extra) > 1 else ''}: {', '.join(extra)}"))
    if len(given) != 1:
        problems.append(ConfigError(path, f"give exactly one of data, text or keys (got {', '.join(given) or 'none'})"))
    if problems:
        raise InvalidConfigError(path, problems)
    key, value = given[0], payload[given[0]]
    try:
        if key == "data":
            return decode_bytes(value)
        if key == "text":
            if not isinstance(value, str):
                raise FieldProblem(f"must be a string, got {value!r}")
            return value.encode("utf-8", errors="surrogateescape")
        if not isinstance(value, (list, tuple)) or not value:
            raise FieldProblem(f"must be a non-empty list of key names, got {value!r}")
        return encode_keys(value, path=f"{path}.keys")
    except FieldProblem as exc:
        raise InvalidConfigError(path, [ConfigError(f"{path}.{key}", exc.problem)]) from None
    except ConfigError as exc:
        raise InvalidConfigError(path, [exc]) from None
