"""The tools' names, descriptions, argument schemas and argument classes. Pure.

The schema each tool publishes in ``tools/list`` is the one its arguments are
checked against (`check_arguments`, JSON Schema with no extra keys allowed),
so a bad argument is refused by exactly what the agent was shown; then the
arguments are structured into the tool's attrs class by tether's strict
converter (`tether.structure_options`), whose validators check what a schema
cannot say (exactly one of several fields, a regular expression that
compiles). A null for an optional argument means "not given" (several
clients send one for every argument they leave out).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, final

import attrs
import jsonschema

from tether import ConfigError, structure_options

Format = Literal["text", "raw", "base64"]

DEFAULT_READ_BYTES = 16 * 1024
MAX_READ_BYTES = 1024 * 1024
MAX_MESSAGE = 300
"""The longest a problem's message gets (jsonschema quotes the offending value)."""
MIN_READ_BYTES = 16
"""Smaller reads could not hold one character with the control sequence around it."""


class ArgumentError(ValueError):
    """Arguments refused by the tool's schema or its checks; `problems` name each field."""

    def __init__(self, tool: str, problems: Sequence[str]) -> None:
        self.tool = tool
        self.problems = tuple(problems)
        shown = "; ".join(self.problems)
        super().__init__(f"{tool}: bad arguments: {shown}")


# -- argument classes ----------------------------------------------------------------------------


def _one_of(instance: object, names: Sequence[str]) -> None:
    given = [n for n in names if getattr(instance, n) not in (None, False)]
    if len(given) != 1:
        listed = ", ".join(names[:-1]) + f" or {names[-1]}"
        shown = f" (got {', '.join(given)})" if given else ""
        raise ConfigError(names[0], f"give exactly one of {listed}{shown}")


@final
@attrs.frozen(kw_only=True)
class ListSessionsArgs:
    status: Sequence[str] = ()
    limit: int = 100


@final
@attrs.frozen(kw_only=True)
class OpenSessionArgs:
    session: Mapping[str, Any]
    wait_connected: bool = True
    timeout: float | None = None


@final
@attrs.frozen(kw_only=True)
class CloseSessionArgs:
    session_id: str


@final
@attrs.frozen(kw_only=True)
class SendInputArgs:
    session_id: str
    text: str | None = None
    keys: Sequence[str] | None = None
    secret: Mapping[str, str] | None = None
    enter: bool = False
    cursor: str | None = None

    def __attrs_post_init__(self) -> None:
        _one_of(self, ("text", "keys", "secret"))


@final
@attrs.frozen(kw_only=True)
class InterruptArgs:
    session_id: str
    cursor: str | None = None


@final
@attrs.frozen(kw_only=True)
class ReadOutputArgs:
    session_id: str
    cursor: str | None = None
    max_bytes: int = DEFAULT_READ_BYTES
    format: Format = "text"
    wait: float = 0.0


@final
@attrs.frozen(kw_only=True)
class WaitForArgs:
    session_id: str
    pattern: str | None = None
    quiet: float | None = None
    connected: bool = False
    cursor: str | None = None
    timeout: float | None = None

    def __attrs_post_init__(self) -> None:
        _one_of(self, ("pattern", "quiet", "connected"))
        if self.pattern is not None:
            try:
                re.compile(self.pattern.encode("utf-8", "surrogateescape"))
            except re.error as exc:
                raise ConfigError("pattern", f"not a regular expression: {exc}") from None


@final
@attrs.frozen(kw_only=True)
class RunCommandArgs:
    session_id: str
    command: str
    timeout: float | None = None
    max_output_bytes: int = DEFAULT_READ_BYTES
    format: Format = "text"
    cursor: str | None = None


@final
@attrs.frozen(kw_only=True)
class WaitCommandArgs:
    token: str
    timeout: float | None = None
    max_output_bytes: int = DEFAULT_READ_BYTES
    format: Format = "text"


@final
@attrs.frozen(kw_only=True)
class ReconnectArgs:
    session_id: str
    strategy: str | None = None
    cursor: str | None = None
    timeout: float | None = None


@final
@attrs.frozen(kw_only=True)
class ResizeArgs:
    session_id: str
    rows: int
    cols: int
    cursor: str | None = None


# -- schemas -------------------------------------------------------------------------------------


def _object(required: Mapping[str, Any], optional: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**required, **optional},
        "required": list(required),
        "additionalProperties": False,
    }


SESSION_ID = {"type": "string", "minLength": 1, "maxLength": 128,
              "description": "The session's id (list_sessions shows them)."}
CURSOR = {"type": "string", "minLength": 1, "maxLength": 200,
          "description": "A `cursor` from an earlier result for this session. The result's `since_cursor` then says "
                         "what happened to the session since: unbroken, reattached (same program), replaced (a new "
                         "program: jobs lost), down or unknown."}
FORMAT = {"type": "string", "enum": ["text", "raw", "base64"], "default": "text",
          "description": "text: UTF-8 with terminal control sequences removed and lost output noted inline; raw: the "
                         "exact bytes as UTF-8 (`exact` says whether they were valid UTF-8); base64: the exact bytes."}


def _timeout(budget: float, what: str) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": budget,
            "description": f"Seconds this call may {what} at most (default and most: {budget:g}, the server's call "
                           "budget)."}


def _bytes(default: int, what: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": MIN_READ_BYTES, "maximum": MAX_READ_BYTES, "default": default,
            "description": f"At most this many bytes of {what}."}


@final
@attrs.frozen
class ToolDef:
    name: str
    title: str
    description: str
    schema: Mapping[str, Any]
    args: type[Any]
    read_only: bool = False
    destructive: bool = False


def tool_defs(budget: float) -> list[ToolDef]:
    """Every tool, with `budget` (seconds) as the most any call may take."""
    return [
        ToolDef(
            "list_sessions", "List sessions",
            "The consoles tether keeps alive: for each, its status, backend, target, working directory, shell, the "
            "newest reconnects (same program or not) and a `cursor` at the end of its output (read_output from it "
            "shows only what comes next).",
            _object({}, {
                "status": {"type": "array", "items": {"type": "string", "enum": [
                    "connecting", "connected", "backing-off", "reconnecting", "waiting", "disconnected", "failed"]},
                    "description": "Only sessions in these statuses."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100,
                          "description": "At most this many sessions (in id order)."},
            }),
            ListSessionsArgs, read_only=True,
        ),
        ToolDef(
            "open_session", "Open a session",
            "Start supervising a console: a table like a `[[sessions]]` entry of tether's config: {id, backend, "
            "options, policy}. backend `process` runs a local program on a pseudo-terminal (options: command or argv, "
            "cwd, env, persist = \"tmux\" to keep it running across drops and restarts); `ssh` a shell over OpenSSH "
            "(options: host, user, port, ...); `websocket` a terminal behind a WebSocket (options: url, protocol). "
            "Checked like the config: every bad field is named. Secrets: give them by reference, "
            "{\"from_env\": \"NAME\"} or {\"from_file\": \"/path\"}, so they survive restarts and are never shown. "
            "Returns the session and a `cursor` at the start of its output.",
            _object({"session": {"type": "object", "description": "The session table: id, backend, options, policy.",
                                 "required": ["id", "backend"],
                                 "properties": {"id": {"type": "string"}, "backend": {"type": "string"},
                                                "options": {"type": "object"}, "policy": {"type": "object"}}}},
                    {"wait_connected": {"type": "boolean", "default": True,
                                        "description": "Wait until the session is connected before answering."},
                     "timeout": _timeout(budget, "wait to be connected")}),
            OpenSessionArgs,
        ),
        ToolDef(
            "close_session", "Close a session",
            "Stop supervising a session and forget it: its program is ended (a tmux-kept one too) and its output log "
            "and stored state are deleted.",
            _object({"session_id": SESSION_ID}, {}),
            CloseSessionArgs, destructive=True,
        ),
        ToolDef(
            "send_input", "Send input",
            "Type into a session's console: exactly one of `text`, `keys` (named keys: enter, tab, escape, "
            "backspace, up, down, left, right, home, end, ctrl-a ... ctrl-z, f1 ... f12) or `secret` (a reference, "
            "{\"from_env\": \"NAME\"} or {\"from_file\": \"/path\"}, read by `tether mcp` and never shown). "
            "`enter` presses Enter after it. The result's `cursor` is where the output after this input starts.",
            _object({"session_id": SESSION_ID}, {
                "text": {"type": "string", "maxLength": 32768, "description": "Text to type, as it is."},
                "keys": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                         "maxItems": 256, "description": "Key names to press in order."},
                "secret": {"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
                           "properties": {"from_env": {"type": "string", "minLength": 1},
                                          "from_file": {"type": "string", "minLength": 1}},
                           "description": "A secret to type, by reference: never echoed in any result."},
                "enter": {"type": "boolean", "default": False, "description": "Press Enter afterwards."},
                "cursor": CURSOR,
            }),
            SendInputArgs,
        ),
        ToolDef(
            "interrupt", "Interrupt",
            "Ctrl-C for what runs in the console, ahead of any input still being written.",
            _object({"session_id": SESSION_ID}, {"cursor": CURSOR}),
            InterruptArgs,
        ),
        ToolDef(
            "read_output", "Read output",
            "The session's output from a cursor: every byte the console printed has a position that only grows, "
            "across reconnects and restarts of tether and of this server; consecutive reads from each result's "
            "`cursor` see every byte once, and whatever could not be kept is listed in `losses`. Without a cursor, "
            "from the oldest output kept. `more` says more is waiting; `wait` waits that many seconds for output when "
            "there is none yet.",
            _object({"session_id": SESSION_ID}, {
                "cursor": CURSOR,
                "max_bytes": _bytes(DEFAULT_READ_BYTES, "output"),
                "format": FORMAT,
                "wait": {"type": "number", "minimum": 0, "maximum": budget, "default": 0,
                         "description": "Seconds to wait for output after the cursor when there is none yet."},
            }),
            ReadOutputArgs, read_only=True,
        ),
        ToolDef(
            "wait_for", "Wait for output or a connection",
            "Wait on tether (no polling) for exactly one of: `pattern` (a Python regular expression, matched against "
            "the output after `cursor`, or after now without one), the output going `quiet` for that many seconds, "
            "or the session being `connected`. `satisfied` false: the timeout came first. The result's `cursor` "
            "stays where the wait began (read from it to see everything, match included); `after_match` is just "
            "past the match.",
            _object({"session_id": SESSION_ID}, {
                "pattern": {"type": "string", "minLength": 1, "maxLength": 4096},
                "quiet": {"type": "number", "exclusiveMinimum": 0, "maximum": budget},
                "connected": {"type": "boolean"},
                "cursor": CURSOR,
                "timeout": _timeout(budget, "wait"),
            }),
            WaitForArgs, read_only=True,
        ),
        ToolDef(
            "run_command", "Run a command",
            "Run one command in a session's shell (bash or zsh with tether's integration: process sessions running "
            "`bash` or `zsh` have it, ssh sessions whose login shell is one, and websocket sessions whose Jupyter "
            "terminals run one) and return its exit "
            "status and output. Completion comes from marks with a "
            "fresh nonce per command, never from a prompt. A command still running when the timeout comes returns "
            "`done: false` and a `token`: call wait_command with it, as often as needed, even after this server or "
            "tether restarted. `output` is the last `max_output_bytes` of the command's output; `output_cursor` "
            "reads all of it.",
            _object({"session_id": SESSION_ID, "command": {"type": "string", "minLength": 1, "maxLength": 32768}}, {
                "timeout": _timeout(budget, "wait for the command"),
                "max_output_bytes": _bytes(DEFAULT_READ_BYTES, "the command's output (its end)"),
                "format": FORMAT,
                "cursor": CURSOR,
            }),
            RunCommandArgs,
        ),
        ToolDef(
            "wait_command", "Wait for a command",
            "The outcome of a command run_command left running (`token`): `done` with its exit status and output, "
            "or not done yet (call again), or `outcome: lost` when the shell it ran in was replaced (the command "
            "died with it).",
            _object({"token": {"type": "string", "minLength": 1, "maxLength": 1024}}, {
                "timeout": _timeout(budget, "wait for the command"),
                "max_output_bytes": _bytes(DEFAULT_READ_BYTES, "the command's output (its end)"),
                "format": FORMAT,
            }),
            WaitCommandArgs, read_only=True,
        ),
        ToolDef(
            "reconnect", "Reconnect",
            "Reconnect a session now, through its one retry loop: a connected one is closed and opened again "
            "(re-attached when its program survives, as with tmux), a failed one is revived with a fresh retry "
            "budget. Returns the attempt that answered (same_program says whether the program survived).",
            _object({"session_id": SESSION_ID}, {
                "strategy": {"type": "string", "minLength": 1,
                             "description": "A strategy to use (session-restore, process-restart, ...)."},
                "cursor": CURSOR,
                "timeout": _timeout(budget, "wait for the attempt"),
            }),
            ReconnectArgs,
        ),
        ToolDef(
            "resize", "Resize",
            "Set the console's size in rows and columns; kept for every later link too.",
            _object({"session_id": SESSION_ID,
                     "rows": {"type": "integer", "minimum": 1, "maximum": 10000},
                     "cols": {"type": "integer", "minimum": 1, "maximum": 10000}}, {"cursor": CURSOR}),
            ResizeArgs, read_only=False,
        ),
    ]


def check_arguments(tool: ToolDef, arguments: Mapping[str, Any] | None) -> Any:
    """`arguments` as the tool's argument class, or `ArgumentError` naming every bad field."""
    given = {k: v for k, v in (arguments or {}).items() if v is not None}
    validator = jsonschema.Draft202012Validator(tool.schema)
    problems = sorted(_where(error) + _message(error) for error in validator.iter_errors(given))
    if problems:
        raise ArgumentError(tool.name, problems)
    try:
        return structure_options(tool.args, given)
    except ConfigError as exc:
        errors = getattr(exc, "errors", None) or (exc,)
        raise ArgumentError(tool.name, [str(e) for e in errors]) from None


def _message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, without quoting a long value back in full (a 32 KiB text, say)."""
    value = error.instance
    if isinstance(value, str) and error.validator in ("maxLength", "minLength"):
        bound = "at most" if error.validator == "maxLength" else "at least"
        return f"is {len(value)} characters long, {bound} {error.validator_value} allowed"
    if len(error.message) > MAX_MESSAGE:
        return error.message[: MAX_MESSAGE - 3] + "..."
    return error.message


def _where(error: jsonschema.ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    return f"{path}: " if path else ""
