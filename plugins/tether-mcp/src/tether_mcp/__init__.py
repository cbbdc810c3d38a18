"""tether for AI agents: console sessions that survive, as Model Context Protocol tools (`tether mcp`).

`serve` runs the server on stdin/stdout inside ``trio.run``; `ToolServer` is
its tools with the rules around every call, for embedding in another MCP
transport.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._access import AccessSettings as AccessSettings
from ._command import serve as serve
from ._server import DEFAULT_CALL_BUDGET as DEFAULT_CALL_BUDGET
from ._server import ServerOptions as ServerOptions
from ._server import ToolServer as ToolServer
from ._server import build_server as build_server

__all__ = ["DEFAULT_CALL_BUDGET", "AccessSettings", "ServerOptions", "ToolServer", "build_server", "serve"]
