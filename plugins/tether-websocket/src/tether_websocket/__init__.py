"""tether-websocket: keep terminals behind a WebSocket alive (Jupyter/terminado, raw bytes)."""

from __future__ import annotations

from ._adapters import ADAPTERS_GROUP as ADAPTERS_GROUP
from ._adapters import Adapter as Adapter
from ._adapters import AdapterFactory as AdapterFactory
from ._adapters import AdapterFailure as AdapterFailure
from ._adapters import AdapterRegistry as AdapterRegistry
from ._adapters import Frame as Frame
from ._adapters import RawAdapter as RawAdapter
from ._adapters import TerminadoAdapter as TerminadoAdapter
from ._backend import DEFAULT_STRATEGIES as DEFAULT_STRATEGIES
from ._backend import WebSocketBackend as WebSocketBackend
from ._classify import disconnect_for_close as disconnect_for_close
from ._classify import reason_for_close as reason_for_close
from ._link import WebSocketLink as WebSocketLink
from ._options import WebSocketOptions as WebSocketOptions
from ._options import parse_options as parse_options

__version__ = "0.1.0"

__all__ = [
    "ADAPTERS_GROUP", "DEFAULT_STRATEGIES",
    "Adapter", "AdapterFactory", "AdapterFailure", "AdapterRegistry", "Frame", "RawAdapter",
    "TerminadoAdapter", "WebSocketBackend", "WebSocketLink", "WebSocketOptions",
    "disconnect_for_close", "parse_options", "reason_for_close",
]
