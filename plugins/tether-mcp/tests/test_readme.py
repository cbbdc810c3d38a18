"""The README's claims that are about this code, checked against it: snippets run, tables match.

The behaviours it describes are walked through by the other tests (the
journeys, budgets, errors, secrets, tools); this file checks what they do
not: that every client config snippet starts a server with these tools,
that every table lists exactly what the code has, that the numbers and
names it gives are the code's, and that its install line (and the top-level
README's, which points here) names the distributions that give `tether mcp`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import pytest
import trio
from mcp import ClientSession, StdioServerParameters, stdio_client

import tether
from tether_mcp import DEFAULT_CALL_BUDGET
from tether_mcp._continuity import Link
from tether_mcp._tooldefs import ArgumentError, OpenSessionArgs, check_arguments, tool_defs

from .conftest import open_mcp

README = (Path(__file__).parent.parent / "README.md").read_text()
ROOT = Path(__file__).parents[3]
"""The repository's root: the README's install line runs from a clone."""


def _json_blocks() -> list[dict[str, Any]]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", README, re.DOTALL)]


def _table(heading: str) -> list[str]:
    """The first column of the first table after `heading`."""
    lines = README.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line.split("`")[1])
    return rows


def _open_session_example() -> dict[str, Any]:
    [example] = [block for block in _json_blocks() if "session" in block]
    return example


def _client_env() -> dict[str, str]:
    [entry] = [block["mcpServers"]["tether"] for block in _json_blocks() if "mcpServers" in block]
    return dict(entry["env"])


def test_the_open_session_example_fits_the_schema() -> None:
    """The example is what the published schema takes; the bare table is refused, as the README says."""
    tool = {tool.name: tool for tool in tool_defs(DEFAULT_CALL_BUDGET)}["open_session"]
    example = _open_session_example()
    checked = check_arguments(tool, example)
    assert isinstance(checked, OpenSessionArgs) and checked.session == example["session"]
    with pytest.raises(ArgumentError) as refused:
        check_arguments(tool, example["session"])
    assert "'session' is a required property" in str(refused.value)
    assert set(example["session"]) == {"id", "backend", "options", "policy"}  # what the tools table names
    assert "up to ten reconnect attempts (five by default)" in README
    assert example["session"]["policy"] == {"max_retries": 10} and tether.ReconnectPolicy().max_retries == 5


async def test_the_open_session_example_runs(env: dict[str, str], tmp_path: Path) -> None:
    """Through the real server, with the client config's `env`: connected, in /tmp, with the secret, and the
    run_command example answers what the README says."""
    example = _open_session_example()
    said = re.search(r"Then `run_command` with `(\{.*?\})` answers\n`(.*?)`", README)
    assert said is not None
    run_arguments, answer = json.loads(said.group(1)), said.group(2)
    secret = _client_env()["DB_PASSWORD"]
    with trio.fail_after(60):
        async with open_mcp({**env, **_client_env()}, log=tmp_path / "mcp.log") as mcp:
            opened = await mcp.call("open_session", **example)
            assert opened["status"] == "connected" and opened["session_id"] == example["session"]["id"]
            ran = await mcp.call("run_command", **run_arguments)
            assert (ran["output"], ran["exit_status"]) == (answer + "\n", 0)
            typed = await mcp.call("run_command", session_id=run_arguments["session_id"],
                                   command=f'test "$DB_PASSWORD" = "{secret}"')
            assert typed["exit_status"] == 0
            refused = await mcp.error("open_session", **example["session"])
            assert "'session' is a required property" in refused


def test_the_try_it_script_runs(env: dict[str, str], tmp_path: Path) -> None:
    """The script as the README says to run it: from the clone (here: a directory whose .venv/bin/tether is
    this environment's), with the Python of that venv; it prints what the README says."""
    script = re.search(r"```python\n(.*?)```", README.split("## Try it by hand", 1)[1], re.DOTALL)
    assert script is not None and "saved as\n`try_mcp.py`" in README and "`.venv/bin/python try_mcp.py`" in README
    (tmp_path / "try_mcp.py").write_text(script.group(1))
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "tether").symlink_to(Path(sys.executable).with_name("tether"))
    ran = subprocess.run([sys.executable, "try_mcp.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    tools, sessions = ran.stdout.splitlines()
    assert tools == "tools: " + ", ".join(tool.name for tool in tool_defs(DEFAULT_CALL_BUDGET))
    state = Path(env["HOME"]) / ".local" / "state" / "tether"  # the SDK hands the server only HOME, PATH, ...
    assert sessions == "sessions: " + str({"sessions": [], "more": False,
                                           "tether": {"mode": "embedded", "at": str(state)}})
    printed = re.search(r"It prints `(.*?)` and\n`(.*?)`", README)
    assert printed is not None
    for claimed, got in zip(printed.groups(), (tools, sessions), strict=True):
        assert got.startswith(claimed.split("...")[0]), (claimed, got)
    assert state.is_dir()  # it supervised there


def test_the_tools_table_lists_every_tool() -> None:
    assert _table("## The tools") == [tool.name for tool in tool_defs(DEFAULT_CALL_BUDGET)]


def test_the_link_table_lists_every_answer() -> None:
    assert _table("`since_cursor.link`:") == [link.value for link in Link]


def test_numbers_and_names_the_readme_gives() -> None:
    assert "45 by default" in README and DEFAULT_CALL_BUDGET == 45
    assert "64 KiB by default" in README and tether.LogLimits().max_bytes == 64 * 1024
    for kind in tether.LossKind:
        assert f"`{kind.value}`:" in README
    assert "`tether.mode`: `daemon` or `embedded`" in README  # test_journey_* check the values
    assert "official MCP Python SDK (`mcp`, 2.x)" in README and version("mcp").split(".")[0] == "2"


def _install_paths(text: str, follows: str = "\n") -> list[str]:
    """The paths of the `.venv/bin/python -m pip install -e ...` line (pip run by the venv's Python)."""
    line = re.search(r"^\.venv/bin/python -m pip install ((?:-e \S+ ?)+)" + follows, text, re.MULTILINE)
    assert line is not None, "no `.venv/bin/python -m pip install -e ...` line"
    return line.group(1).replace("-e ", "").split()


def test_the_install_lines_make_a_venv_and_name_the_distributions_they_need() -> None:
    """In a venv (Debian's Python refuses a bare `pip install`): tether itself, the shell backend the tools
    drive and this distribution, which gives `tether` its `mcp` command; then the venv's `tether mcp`."""
    block = re.search(r"```sh\n(.*?)```", README, re.DOTALL)
    assert block is not None
    commands = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    assert commands[0] == "python3 -m venv .venv" and commands[2] == ".venv/bin/tether mcp"
    assert not re.search(r"^pip ", README, re.MULTILINE)
    paths = _install_paths(block.group(1))
    assert paths == [".", "plugins/tether-process", "plugins/tether-mcp"]
    names = [tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]["name"] for path in paths]
    assert names == ["tether", "tether-process", "tether-mcp"]
    assert [e.name for e in entry_points(group="tether.commands") if e.value.startswith("tether_mcp")] == ["mcp"]
    assert "process" in {e.name for e in entry_points(group="tether.backends")}


async def test_every_client_snippet_starts_the_server(env: dict[str, str], tmp_path: Path) -> None:
    """Each `mcpServers` / `servers` entry, run as a client would run it (tether from this environment)."""
    entries = [entry for block in _json_blocks() for table in ("mcpServers", "servers") if table in block
               for entry in block[table].values()]
    assert len(entries) == 2
    expected = {tool.name for tool in tool_defs(DEFAULT_CALL_BUDGET)}
    for entry in entries:
        assert entry["command"] == "tether"
        command = str(Path(sys.executable).with_name("tether"))
        params = StdioServerParameters(command=command, args=entry["args"], env={**env, **entry.get("env", {})})
        with trio.fail_after(60), (tmp_path / "mcp.log").open("a") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                listed = await session.list_tools()
                assert {tool.name for tool in listed.tools} == expected


def test_the_top_level_readme_points_here_with_the_same_install_line() -> None:
    """The top-level README installs tether into .venv before: its line adds the same plugins."""
    top = (ROOT / "README.md").read_text()
    section = top.split("## For AI agents: `tether mcp`", 1)[1].split("\n## ", 1)[0]
    assert "(plugins/tether-mcp/README.md)" in section and (ROOT / "plugins/tether-mcp/README.md").is_file()
    assert [".", *_install_paths(section, follows=r"   +# then: \.venv/bin/tether mcp\n")] == _install_paths(README)
