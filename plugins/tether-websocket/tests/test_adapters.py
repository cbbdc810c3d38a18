"""The protocol adapters and their registry, without any I/O."""

from __future__ import annotations

import json

import pytest

import tether
from tether_websocket import Adapter, AdapterRegistry, Frame, RawAdapter, TerminadoAdapter


def test_terminado_encodes_stdin_and_size() -> None:
    """Input and a resize become terminado's JSON frames."""
    adapter = TerminadoAdapter()
    assert json.loads(adapter.encode_input("ls é\r".encode())) == ["stdin", "ls é\r"]
    assert json.loads(adapter.encode_resize(24, 80)) == ["set_size", 24, 80]


@pytest.mark.parametrize(
    ("message", "frame"),
    [
        ('["stdout", "hi\\r\\n"]', Frame(output=b"hi\r\n")),
        ('["stdout", "\\u00e9"]', Frame(output="é".encode())),
        ('["setup", {}]', Frame()),
        ('["disconnect", 1]', Frame(exited=True, detail="terminal closed by the server (disconnect 1)")),
        ("not json", Frame()),
        ('{"stdout": 1}', Frame()),
        ("[]", Frame()),
        ('["stdout", 5]', Frame()),
    ],
)
def test_terminado_decodes(message: str, frame: Frame) -> None:
    """Output, the shell's death and anything unknown decode to the right frame."""
    assert TerminadoAdapter().decode(message) == frame


def test_raw_passes_bytes_and_text() -> None:
    """Raw frames are the terminal's bytes; text frames are UTF-8; input goes out as bytes."""
    adapter = RawAdapter()
    assert adapter.decode(b"\x1b[1mX") == Frame(output=b"\x1b[1mX")
    assert adapter.decode("é") == Frame(output="é".encode())
    assert adapter.encode_input(b"ls\r") == b"ls\r"
    assert adapter.encode_resize(24, 80) is None


class _Upper:
    """A third-party adapter: shouts its input."""

    name = "upper"

    def encode_input(self, data: bytes) -> bytes:
        return data.upper()

    def encode_resize(self, rows: int, cols: int) -> None:
        return None

    def decode(self, message: str | bytes) -> Frame:
        return Frame(output=message if isinstance(message, bytes) else message.encode())


def test_registry_adds_and_checks() -> None:
    """A factory added by name is created per link; an unknown name is a ConfigError naming the option."""
    registry = AdapterRegistry()
    registry.add("upper", _Upper)
    assert registry.names == ["raw", "terminado", "upper"]
    first, second = registry.create("upper"), registry.create("upper")
    assert isinstance(first, Adapter) and first is not second
    with pytest.raises(tether.ConfigError, match=r"^adapter: unknown adapter 'nope'; known: raw, terminado, upper$"):
        registry.check("nope")


def test_registry_rejects_a_factory_returning_junk() -> None:
    """A factory that returns something without the adapter methods is refused at create time."""
    registry = AdapterRegistry()
    registry.add("junk", object)
    with pytest.raises(tether.ConfigError, match="did not return an Adapter"):
        registry.create("junk")


def test_discover_has_the_builtins() -> None:
    """Discovery always includes the built-ins, whatever entry points are installed."""
    registry = AdapterRegistry.discover()
    assert {"raw", "terminado"} <= set(registry.names)
