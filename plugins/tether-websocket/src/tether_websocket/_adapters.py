"""Protocol adapters: how terminal bytes are framed on the WebSocket.

An adapter is a small pure object (no I/O): it encodes input and a resize,
and decodes one incoming message into a `Frame`. New ones plug in through a
`AdapterRegistry` or the ``tether_websocket.adapters`` entry-point group,
each entry naming a zero-argument factory (usually the class).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Protocol, final, runtime_checkable

import attrs
import importlib_metadata

from tether import ConfigError

ADAPTERS_GROUP = "tether_websocket.adapters"


@attrs.frozen
class Frame:
    """What one incoming message meant."""

    output: bytes = b""
    """Terminal output to report (may be empty)."""
    exited: bool = False
    """The program behind the terminal ended (terminado's ``["disconnect", ...]``)."""
    detail: str = ""
    """Why it exited, for humans."""


@runtime_checkable
class Adapter(Protocol):
    """Frames terminal I/O for one WebSocket protocol. One instance per link, so it may keep state."""

    name: str

    def encode_input(self, data: bytes) -> str | bytes:
        """The message that writes `data` to the terminal."""

    def encode_resize(self, rows: int, cols: int) -> str | bytes | None:
        """The message that resizes the terminal, or None if the protocol has none."""

    def decode(self, message: str | bytes) -> Frame:
        """What an incoming message means. Unknown messages are an empty `Frame`."""


AdapterFactory = Callable[[], Adapter]


@final
class TerminadoAdapter:
    """terminado / Jupyter Server terminals: JSON arrays ``[kind, ...]``.

    In: ``["stdout", text]``, ``["setup", {}]``, ``["disconnect", 1]`` (the
    shell died; the server closes the socket next). Out: ``["stdin", text]``,
    ``["set_size", rows, cols]``.
    """

    name = "terminado"

    def encode_input(self, data: bytes) -> str:
        return json.dumps(["stdin", data.decode("utf-8", errors="replace")])

    def encode_resize(self, rows: int, cols: int) -> str:
        return json.dumps(["set_size", rows, cols])

    def decode(self, message: str | bytes) -> Frame:
        try:
            parsed = json.loads(message)
        except ValueError:
            return Frame()
        if not isinstance(parsed, list) or not parsed or not isinstance(parsed[0], str):
            return Frame()
        kind = parsed[0]
        if kind == "stdout" and len(parsed) > 1 and isinstance(parsed[1], str):
            return Frame(output=parsed[1].encode("utf-8", errors="surrogateescape"))
        if kind == "disconnect":
            code = parsed[1] if len(parsed) > 1 else None
            return Frame(exited=True, detail=f"terminal closed by the server (disconnect {code!r})")
        return Frame()


@final
class RawAdapter:
    """Every message is the terminal's bytes (text frames are UTF-8); input goes out as binary."""

    name = "raw"

    def encode_input(self, data: bytes) -> bytes:
        return data

    def encode_resize(self, rows: int, cols: int) -> None:
        return None

    def decode(self, message: str | bytes) -> Frame:
        return Frame(output=message.encode("utf-8") if isinstance(message, str) else bytes(message))


BUILTIN_ADAPTERS: Mapping[str, AdapterFactory] = {"terminado": TerminadoAdapter, "raw": RawAdapter}


@attrs.frozen
class AdapterFailure:
    """An adapter entry point that did not load, and why."""

    name: str
    error: str


@final
class AdapterRegistry:
    """Adapter factories by name: the built-ins, then entry points, then whatever is added."""

    def __init__(self, factories: Mapping[str, AdapterFactory] = BUILTIN_ADAPTERS) -> None:
        self._factories: dict[str, AdapterFactory] = dict(factories)
        self.failures: list[AdapterFailure] = []

    @classmethod
    def discover(cls) -> AdapterRegistry:
        """The built-ins plus every ``tether_websocket.adapters`` entry point that loads.

        A broken entry point is recorded in `failures`, never fatal (as tether does for plugins).
        """
        registry = cls()
        for ep in importlib_metadata.entry_points(group=ADAPTERS_GROUP):
            if ep.name in registry._factories:
                continue
            try:
                factory = ep.load()
                registry.add(ep.name, factory)
            except Exception as exc:
                registry.failures.append(AdapterFailure(ep.name, f"{type(exc).__name__}: {exc}"))
        return registry

    @property
    def names(self) -> list[str]:
        return sorted(self._factories)

    def add(self, name: str, factory: AdapterFactory) -> None:
        """Register `factory` under `name`; it is called once per link."""
        if not callable(factory):
            raise TypeError(f"adapter {name!r}: factory must be callable")
        self._factories[name] = factory

    def check(self, name: str) -> None:
        """`ConfigError` if no adapter has this name."""
        if name not in self._factories:
            failure = next((f for f in self.failures if f.name == name), None)
            why = f" (its plugin failed to load: {failure.error})" if failure else ""
            raise ConfigError("adapter", f"unknown adapter {name!r}{why}; known: {', '.join(self.names)}")

    def create(self, name: str) -> Adapter:
        """A fresh adapter for one link."""
        self.check(name)
        adapter = self._factories[name]()
        if not isinstance(adapter, Adapter):
            raise ConfigError("adapter", f"factory for {name!r} did not return an Adapter")
        return adapter
