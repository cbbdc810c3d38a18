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
import sys
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import trio
from mcp import ClientSession, StdioServerParameters, stdio_client

import tether
from tether_mcp import DEFAULT_CALL_BUDGET
from tether_mcp._continuity import Link
from tether_mcp._tooldefs import tool_defs

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


def test_the_install_line_names_the_distributions_it_needs() -> None:
    """`pip install -e plugins/tether-process -e plugins/tether-mcp`: the shell backend the tools drive,
    and this distribution, which gives `tether` its `mcp` command."""
    line = re.search(r"```sh\npip install (.*?)  ", README)
    assert line is not None
    paths = line.group(1).replace("-e ", "").split()
    assert paths == ["plugins/tether-process", "plugins/tether-mcp"]
    names = [tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]["name"] for path in paths]
    assert names == ["tether-process", "tether-mcp"]
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
    top = (ROOT / "README.md").read_text()
    section = top.split("## For AI agents: `tether mcp`", 1)[1].split("\n## ", 1)[0]
    assert "(plugins/tether-mcp/README.md)" in section and (ROOT / "plugins/tether-mcp/README.md").is_file()
    installed = re.search(r"pip install (.*?)    # then: .venv/bin/tether mcp\n", section)
    mine = re.search(r"```sh\npip install (.*?)  ", README)
    assert installed is not None and mine is not None
    assert installed.group(1) == mine.group(1)
