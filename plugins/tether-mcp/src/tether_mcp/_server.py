"""The MCP server: the SDK's low-level `Server` with tether's tools, each call inside its time budget.

Every call runs in its own task (the SDK's dispatcher starts one per
request), so a long wait never holds up another call. Each has a deadline:
its ``timeout`` argument or the server's call budget, whichever is shorter;
waits inside it ask tether for that long less a margin, and the whole call is
cancelled at the deadline whatever happens (a daemon that stopped answering),
answering with a tool error that says so. A call never takes longer.

Errors come back as tool errors (``isError``) whose text names what is wrong
(a field, a session, why a command could not run), never a traceback;
results and errors alike are scrubbed of the secrets this server was given
(`tether_mcp._secrets`). Nothing a tool was given is logged: a log line names
the tool and the kind of failure only.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import Any, final

import attrs
import mcp_types as types
import trio
from mcp.server import Server, ServerRequestContext

import tether
from tether import (
    ConfigError,
    CursorError,
    DaemonError,
    DuplicateSessionError,
    InvalidConfigError,
    LinkError,
    SessionNotFoundError,
    TetherError,
    UnknownBackendError,
    UnknownStrategyError,
)

from . import __version__
from ._access import LostDuringCallError, TetherAccess, UnavailableError
from ._cursor import TokenError
from ._secrets import SecretBook
from ._tooldefs import ArgumentError, ToolDef, check_arguments, tool_defs
from ._tools import Call, NotRunError, Tools, tool_table

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger("tether.mcp")

DEFAULT_CALL_BUDGET = 45.0
"""Seconds any call may take by default: under the 60 s many MCP clients allow a call."""
MAX_CALL_BUDGET = 3600.0
MAX_MESSAGE = 4000
"""Longest error message (a schema error may quote a long value)."""

INSTRUCTIONS = """\
tether keeps consoles alive (local shells, SSH, WebSocket terminals) and never loses track of their output. \
Every result about a session has a `cursor`: pass it to the next call (read_output, wait_for, run_command, \
send_input, ...) and the result's `since_cursor` says what happened since: `unbroken`, `reattached` (the link \
dropped but the same program continues), `replaced` (a new program: its jobs and variables are gone, check \
its state before going on), `down` or `unknown`. Cursors and run tokens stay valid across restarts of this \
server and of tether. A call never takes longer than its `timeout`; a command that does returns a `token` for \
wait_command."""


@final
@attrs.frozen(kw_only=True)
class ServerOptions:
    call_budget: float = DEFAULT_CALL_BUDGET

    def __attrs_post_init__(self) -> None:
        if not 0 < self.call_budget <= MAX_CALL_BUDGET:
            raise ConfigError("call_budget", f"must be more than 0 and at most {MAX_CALL_BUDGET:g} seconds, "
                              f"got {self.call_budget!r}")


class _TimedOut(TetherError):
    pass


def margin_for(budget: float) -> float:
    """How much of a call's budget to keep for answering (the requests after its wait)."""
    return min(1.0, 0.05 + budget * 0.1)


@final
class ToolServer:
    """Tool definitions, their handlers and the rules around every call (budget, errors, secrets)."""

    def __init__(self, access: TetherAccess, options: ServerOptions) -> None:
        self.options = options
        self.access = access
        self.secrets = SecretBook()
        self.defs: dict[str, ToolDef] = {d.name: d for d in tool_defs(options.call_budget)}
        self.handlers = tool_table(Tools(access, self.secrets))

    def listed(self) -> list[types.Tool]:
        return [
            types.Tool(
                name=d.name, title=d.title, description=d.description, input_schema=dict(d.schema),
                annotations=types.ToolAnnotations(
                    title=d.title, read_only_hint=d.read_only, destructive_hint=d.destructive,
                    open_world_hint=False,
                ),
            )
            for d in self.defs.values()
        ]

    async def call(self, name: str, arguments: Mapping[str, Any] | None) -> types.CallToolResult:
        tool = self.defs.get(name)
        if tool is None:
            return self._error("unknown-tool", f"no tool {name!r}; the tools are: {', '.join(self.defs)}")
        if isinstance(arguments, Mapping) and isinstance(arguments.get("session"), Mapping):
            self.secrets.learn_table(arguments["session"])  # before anything can quote a value
        budget = self.options.call_budget
        timeout = arguments.get("timeout") if isinstance(arguments, Mapping) else None
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and 0 <= timeout < budget:
            budget = float(timeout)
        started = trio.current_time()
        deadline = started + budget
        try:
            args = check_arguments(tool, arguments)
            result: dict[str, Any] | None = None
            with trio.move_on_at(deadline):
                result = await self.handlers[name](args, Call(deadline, margin_for(budget)))
            if result is None:
                raise _TimedOut(self._timed_out(name, budget))
        except Exception as exc:
            kind, message = self._describe(exc, name)
            return self._error(kind, message)
        result = self.secrets.scrub_tree(result)
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(result))],
                                    structured_content=result)

    def _timed_out(self, name: str, budget: float) -> str:
        why = f" (last problem: {self.access.last_problem})" if self.access.last_problem else ""
        return (f"{name} did not finish within its {budget:g} s: tether did not answer in time{why}. Nothing was "
                "lost; try again, or with a longer timeout")

    def _describe(self, exc: Exception, name: str) -> tuple[str, str]:
        """The error's kind and the message for the agent (and a log line without any argument)."""
        kind, message = _kind_and_message(_essential(exc))
        if kind == "internal":
            logger.error("%s failed inside tether-mcp", name, exc_info=exc)
            message = f"{name} failed inside tether-mcp ({type(exc).__name__}); its log (stderr) has the details"
        else:
            logger.info("%s: %s", name, kind)
        return kind, message

    def _error(self, kind: str, message: str) -> types.CallToolResult:
        message = self.secrets.scrub(message)
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=message)], is_error=True,
            structured_content={"error": {"type": kind, "message": message}},
        )


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _essential(exc: Exception) -> Exception:
    """What a tool's nursery raised, as the agent should hear it: a group whose every member is an
    error with an answer (the session's two reads both finding no such session) stands for its first;
    a group holding anything else stays a group, reported as internal with all of it logged."""
    leaves = list(_leaves(exc))
    if leaves and all(isinstance(leaf, Exception) and _kind_and_message(leaf)[0] != "internal" for leaf in leaves):
        first = leaves[0]
        assert isinstance(first, Exception)
        return first
    return exc


def _kind_and_message(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, ArgumentError):
        return "invalid-arguments", str(exc)
    if isinstance(exc, TokenError):
        return "bad-cursor", str(exc)
    if isinstance(exc, SessionNotFoundError):
        return "not-found", f"{exc}; list_sessions shows the sessions there are"
    if isinstance(exc, DuplicateSessionError):
        return "duplicate", f"{exc}: use it as it is (list_sessions gives its cursor), or close_session it first"
    if isinstance(exc, InvalidConfigError):  # only open_session's table: each path from its `session` argument
        problems = [f"{_under_session(e.path)}: {e.problem}" if e.path else e.problem for e in exc.errors]
        return "invalid-session", "the session table was refused: " + "; ".join(problems)
    if isinstance(exc, (UnknownBackendError, UnknownStrategyError, ConfigError)):
        return "invalid-arguments", str(exc)
    if isinstance(exc, CursorError):
        return "bad-cursor", f"{exc}; read without a cursor to start from the oldest output kept"
    if isinstance(exc, NotRunError):
        return "cannot-run", str(exc)
    if isinstance(exc, LinkError):
        return "not-connected", f"{exc}: wait_for connected, or reconnect"
    if isinstance(exc, _TimedOut):
        return "timeout", str(exc)
    if isinstance(exc, (LostDuringCallError, UnavailableError)):
        return "unavailable", str(exc)
    if isinstance(exc, DaemonError):
        return "unavailable", f"tether's daemon did not answer: {exc}"
    if isinstance(exc, tether.SupervisorClosedError):
        return "unavailable", f"tether is stopping: {exc}; try again in a moment"
    if isinstance(exc, TetherError):
        return "tether", str(exc)
    return "internal", ""


def _under_session(path: str) -> str:
    return path if path == "session" or path.startswith(("session.", "session[")) else f"session.{path}"


def build_server(tools: ToolServer) -> Server[Any]:
    """The SDK's low-level server, answering tools/list and tools/call from `tools`."""

    async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools.listed())

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        return await tools.call(params.name, params.arguments)

    return Server("tether", version=__version__, title="tether consoles", instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool)
