"""Bad input gets a tool error that names what is wrong, never a traceback; secrets never come back.

Through the real `tether mcp`, as the SDK's client sees it. Session tables
are checked as the config file is: the same table in a TOML file gets the
same problems from ``tether check``.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tether_mcp import DEFAULT_CALL_BUDGET
from tether_mcp._cursor import Cursor, RunToken
from tether_mcp._tooldefs import ToolDef, tool_defs

from .conftest import BASH, open_mcp

UNKNOWN = "nosuch"
ONE_OF = {"send_input": {"text": "x"}, "wait_for": {"connected": True}}
"""What the tools that want exactly one of several arguments get (the schema cannot say which)."""


def _example(schema: dict[str, Any]) -> object:
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    return True if kind == "boolean" else "true"


def _naming_unknown_session(tool: ToolDef) -> dict[str, Any] | None:
    """Arguments that pass `tool`'s checks and name a session nobody registered (None: it names none)."""
    properties = tool.schema["properties"]
    if "session_id" in properties:
        arguments: dict[str, Any] = {"session_id": UNKNOWN}
    elif "token" in properties:
        arguments = {"token": RunToken(UNKNOWN, "0" * 16, Cursor("0", 0, 0, 0)).encode()}
    else:
        return None
    for name in tool.schema["required"]:
        arguments.setdefault(name, _example(properties[name]))
    return {**arguments, **ONE_OF.get(tool.name, {})}


NAMING_A_SESSION = [tool for tool in tool_defs(DEFAULT_CALL_BUDGET) if _naming_unknown_session(tool) is not None]


def test_only_these_tools_name_no_session() -> None:
    """Every other tool is in `test_an_unknown_session_is_named` (a new one joins it by itself)."""
    named = {tool.name for tool in NAMING_A_SESSION}
    assert {tool.name for tool in tool_defs(DEFAULT_CALL_BUDGET)} - named == {"list_sessions", "open_session"}


@pytest.mark.parametrize("tool", NAMING_A_SESSION, ids=lambda tool: tool.name)
async def test_an_unknown_session_is_named(tool: ToolDef, env: dict[str, str], tmp_path: Path) -> None:
    """Every tool about a session answers an unknown id with a not-found tool error, at once: never an
    internal error (one tool reads the session twice at once, and both reads fail)."""
    arguments = _naming_unknown_session(tool)
    assert arguments is not None
    log = tmp_path / "mcp.log"
    with trio.fail_after(60):
        async with open_mcp(env, log=log) as mcp:
            message = await mcp.error(tool.name, **arguments)
            assert message == f"no session {UNKNOWN!r} is registered; list_sessions shows the sessions there are"
            result = await mcp.session.call_tool(tool.name, arguments)
            assert result.structured_content == {"error": {"type": "not-found", "message": message}}
    assert "Traceback" not in log.read_text()


async def test_bad_arguments_are_refused_by_the_schema(env: dict[str, str], tmp_path: Path) -> None:
    """Wrong types, unknown and missing arguments, bad values: each named; null means not given."""
    with trio.fail_after(60):
        async with open_mcp(env, log=tmp_path / "mcp.log") as mcp:
            assert "no tool 'explode'; the tools are: list_sessions" in await mcp.error("explode")
            assert "max_bytes: '5' is not of type 'integer'" in await mcp.error(
                "read_output", session_id="sh", max_bytes="5")
            assert "('bogus' was unexpected)" in await mcp.error("read_output", session_id="sh", bogus=1)
            assert "'session_id' is a required property" in await mcp.error("read_output")
            assert "format: 'hex' is not one of ['text', 'raw', 'base64']" in await mcp.error(
                "read_output", session_id="sh", format="hex")
            assert "timeout: 300 is greater than the maximum of 45" in await mcp.error(
                "wait_for", session_id="sh", quiet=1, timeout=300)
            assert "give exactly one of pattern, quiet or connected" in await mcp.error(
                "wait_for", session_id="sh", pattern="x", connected=True)
            assert "pattern: not a regular expression" in await mcp.error("wait_for", session_id="sh", pattern="(")
            assert "give exactly one of text, keys or secret" in await mcp.error("send_input", session_id="sh")
            assert "rows: 0 is less than the minimum of 1" in await mcp.error(
                "resize", session_id="sh", rows=0, cols=80)
            listed = await mcp.call("list_sessions", status=None, limit=None)  # null: as if not given
            assert listed["sessions"] == []


async def test_sessions_cursors_and_tokens_that_do_not_fit(env: dict[str, str], tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_mcp(env, log=tmp_path / "mcp.log") as mcp:
            assert "no session 'nope' is registered; list_sessions shows" in await mcp.error(
                "read_output", session_id="nope")
            await mcp.call("open_session", session={"id": "sh", **BASH})
            assert "session 'sh' is already registered" in await mcp.error("open_session",
                                                                           session={"id": "sh", **BASH})
            assert "is not a cursor this server handed out" in await mcp.error(
                "read_output", session_id="sh", cursor="12")
            assert "is not a run token this server handed out" in await mcp.error("wait_command", token="run.x.y")
            await mcp.call("open_session", session={"id": "cat", "backend": "process", "options": {"argv": ["cat"]}})
            message = await mcp.error("run_command", session_id="cat", command="true", timeout=2)
            assert "no shell that run_command can drive" in message
            gone = {"id": "gone", "backend": "process", "options": {"argv": ["/nonexistent/program"]},
                    "policy": {"max_retries": 0}}
            opened = await mcp.call("open_session", session=gone, timeout=5)
            assert opened["status"] == "failed"
            assert "not connected" in await mcp.error("send_input", session_id="gone", text="x")
            listed = {s["id"]: s for s in (await mcp.call("list_sessions"))["sessions"]}
            assert listed["gone"]["failure"]["reason"] == "spawn-failed"


async def test_session_tables_are_checked_like_the_config(env: dict[str, str], tmp_path: Path) -> None:
    """Every bad field named with its path; `tether check` names the same ones for the same table."""
    tables = {
        "argv": ({"id": "a", "backend": "process", "options": {"argv": "bash"}},
                 ["session.options.argv: must be a list of strings (did you mean command = bash?)"]),
        "typo": ({"id": "b", "backend": "process", "options": {"comand": "bash"}, "policy": {"max_retires": 3}},
                 ["session.policy.max_retires: unknown field; did you mean max_retries?"]),
        "backend": ({"id": "c", "backend": "telnet"}, ["unknown backend 'telnet'; known backends:"]),
        "ssh": ({"id": "d", "backend": "ssh", "options": {"port": "22"}}, ["host"]),
        "websocket": ({"id": "e", "backend": "websocket", "options": {"url": "http://x"}}, ["url"]),
    }
    with trio.fail_after(60):
        async with open_mcp(env, log=tmp_path / "mcp.log") as mcp:
            for name, (table, expected) in tables.items():
                message = await mcp.error("open_session", session=table)
                for part in expected:
                    assert part in message, (name, message)
            assert (await mcp.call("list_sessions"))["sessions"] == []
    config = tmp_path / "same.toml"
    config.write_text("[[sessions]]\nid = \"a\"\nbackend = \"process\"\noptions = { argv = \"bash\" }\n")
    checked = await trio.run_process([sys.executable, "-m", "tether", "check", str(config)], capture_stdout=True,
                                     capture_stderr=True, env=env, check=False)
    assert "argv: must be a list of strings (did you mean command = bash?)" in checked.stderr.decode()


async def test_secrets_never_come_back(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    """A literal secret, a secret by reference and typed secrets (from the environment, from a file): never
    in a result, the server's log or a snapshot. (What the program itself prints is its output: tether's
    output log keeps it as printed.)"""
    literal, referenced, typed = "s3cret-literal-4711", "s3cret-from-env-0815", "s3cret-typed-9999"
    filed = "s3cret-filed-2468"
    env = {**env, "MCP_TEST_KEY": referenced, "MCP_TYPED": typed}
    log = tmp_path / "mcp.log"
    results: list[str] = []
    with trio.fail_after(60):
        async with open_mcp(env, log=log) as mcp:
            bad = {"id": "x", "backend": "process", "options": {"command": "bash", "env": {"API_TOKEN": literal},
                                                                  "rows": literal}}
            message = await mcp.error("open_session", session=bad)
            results.append(message)
            assert "rows" in message and literal not in message and "[redacted]" in message
            table = {"id": "sh", "backend": "process", "options": {
                "command": "bash", "env": {"API_TOKEN": literal, "API_KEY": {"from_env": "MCP_TEST_KEY"}}}}
            results.append(json.dumps(await mcp.call("open_session", session=table)))
            shown = await mcp.run("sh", 'echo "$API_TOKEN $API_KEY"')
            results.append(json.dumps(shown))
            assert shown["output"] == "[redacted] [redacted]\n"
            await mcp.call("send_input", session_id="sh", text="read -r got", enter=True)
            await mcp.call("send_input", session_id="sh", secret={"from_env": "MCP_TYPED"}, enter=True)
            typed_back = await mcp.run("sh", 'echo "${#got} $got"')
            assert typed_back["output"] == f"{len(typed)} [redacted]\n"
            results.append(json.dumps(typed_back))
            secret_file = tmp_path / "typed-secret"
            secret_file.write_text(filed + "\n")  # one line, as an editor saves it: the newline is not typed
            await mcp.call("send_input", session_id="sh", text="read -r got", enter=True)
            await mcp.call("send_input", session_id="sh", secret={"from_file": str(secret_file)}, enter=True)
            filed_back = await mcp.run("sh", 'echo "${#got} $got"')
            assert filed_back["output"] == f"{len(filed)} [redacted]\n"
            results.append(json.dumps(filed_back))
            for fmt in ("text", "raw", "base64"):
                read = await mcp.call("read_output", session_id="sh", format=fmt, max_bytes=1024 * 1024)
                assert read["redacted"] >= 4 and read["exact"] is False
                results.append(json.dumps(read))
            missing = await mcp.error("send_input", session_id="sh", secret={"from_env": "NOT_SET_ANYWHERE"})
            assert "NOT_SET_ANYWHERE is not set in the environment of `tether mcp`" in missing
        async with open_mcp(env, log=log) as mcp:  # a literal is gone after a restart, and the session says so
            listed = (await mcp.call("list_sessions"))["sessions"][0]
            results.append(json.dumps(listed))
            assert listed["status"] == "failed" and listed["failure"]["reason"] == "secret-missing"
            assert "API_TOKEN" in listed["failure"]["detail"]
    everything = "\n".join(results)
    decoded = "".join(base64.b64decode(json.loads(r)["text"]).decode("utf-8", "replace")
                      for r in results if '"format": "base64"' in r)
    for secret in (literal, referenced, typed, filed):
        assert secret not in everything and secret not in decoded
        assert secret not in log.read_text()
        snapshots = sqlite3.connect(state / "tether.sqlite3").execute("select body from sessions").fetchall()
        assert snapshots and all(secret not in body for (body,) in snapshots)
