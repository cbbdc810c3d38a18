"""docs/control.md is true: its transcript runs against a real server reply for reply, its Python
client example runs against a real daemon, and every error type it lists is one the server sends."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from tether import SessionStatus, open_supervisor
from tether.server import _control as control
from tether.server._server import serve_events
from tether.server._settings import ServerSettings
from tether.testing import ScriptedBackend

from .journeys.daemon import running

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

DOC = Path(__file__).parent.parent / "docs" / "control.md"
TEXT = DOC.read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", TEXT, flags=re.DOTALL)
TRANSCRIPT = next(body for lang, body in BLOCKS if body.startswith("> "))
EXAMPLE = next(body for lang, body in BLOCKS if lang == "python")


def matches(doc: Any, actual: Any, where: str = "$") -> list[str]:
    """Where `actual` differs from the documented `doc`: ``"..."`` stands for anything (as a key:
    for any further keys), ``0.0`` for any number; everything else must be equal."""
    if doc == "...":
        return []
    if isinstance(doc, float) and doc == 0.0:
        return [] if isinstance(actual, (int, float)) and not isinstance(actual, bool) else [f"{where}: {actual!r}"]
    if isinstance(doc, dict):
        if not isinstance(actual, dict):
            return [f"{where}: {actual!r} is not an object"]
        problems = []
        keys = set(doc) - {"..."}
        if "..." not in doc and set(actual) != keys:
            problems.append(f"{where}: keys {sorted(actual)} != documented {sorted(keys)}")
        for key in keys:
            problems += matches(doc[key], actual.get(key, "<missing>"), f"{where}.{key}")
        return problems
    if isinstance(doc, list):
        if not isinstance(actual, list) or len(actual) != len(doc):
            return [f"{where}: {actual!r} has not {len(doc)} items"]
        return [p for i, (d, a) in enumerate(zip(doc, actual, strict=True)) for p in matches(d, a, f"{where}[{i}]")]
    return [] if doc == actual and type(doc) is type(actual) else [f"{where}: {actual!r} != documented {doc!r}"]


async def _settled(supervisor: Any) -> None:
    """Wait (on events, not a clock) until no session is on its way somewhere."""
    moving = {SessionStatus.CONNECTING, SessionStatus.RECONNECTING, SessionStatus.BACKING_OFF}
    with supervisor.subscribe() as events:
        while any(s.status in moving for s in supervisor.states().values()):
            await events.get()


async def test_the_transcript_is_what_the_server_says(nursery: trio.Nursery) -> None:
    """Each documented request, sent to a real server, gets the documented reply."""
    lines = [line for line in TRANSCRIPT.splitlines() if line.strip()]
    pairs = [(json.loads(lines[i][2:]), json.loads(lines[i + 1][2:])) for i in range(0, len(lines), 2)]
    assert all(line.startswith(">") for line in lines[::2]) and all(line.startswith("<") for line in lines[1::2])
    async with open_supervisor(backends=[ScriptedBackend()]) as supervisor:
        port = await nursery.start(lambda task_status: serve_events(
            supervisor, ServerSettings(port=0), token=None, task_status=task_status))
        with trio.fail_after(20):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/control") as ws:
                for request, documented in pairs:
                    await _settled(supervisor)
                    await ws.send_message(json.dumps(request))
                    reply = json.loads(await ws.get_message())
                    assert matches(documented, reply) == [], reply
        nursery.cancel_scope.cancel()


def test_every_documented_error_type_is_one_the_server_sends() -> None:
    """The error table lists exactly the types `error_for` and the parser produce."""
    table = TEXT[TEXT.index("Error types:"):TEXT.index("## `status`")]
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.MULTILINE))
    source = Path(control.__file__).read_text()
    sent = set(re.findall(r'ControlError\(\s*"([a-z-]+)"', source)) | {"invalid-request"}
    assert documented == sent


@pytest.mark.slow
def test_the_python_client_example_runs_against_a_real_daemon(tmp_path: Path) -> None:
    """The README-style example in docs/control.md, run as a user would, against `tether run`."""
    config = tmp_path / "tether.toml"
    config.write_text('[[sessions]]\nid = "web"\nbackend = "scripted"\n'
                      '[[sessions]]\nid = "db"\nbackend = "scripted"\noptions = { fail_connects = 1000000 }\n'
                      '[sessions.policy]\nmax_retries = 1\nbase_delay = 0.0\n')
    state = tmp_path / "state"
    with running(state, config) as daemon:
        daemon.start()
        script = tmp_path / "example.py"
        script.write_text(EXAMPLE)
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                                env={"TETHER_STATE_DIR": str(state), "PATH": "/usr/bin:/bin"}, check=False)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("2 {")
        assert lines[-1] == "no session 'nope' is registered"
        daemon.stop()


def _documented_reply_keys(op: str) -> set[str]:
    row = re.search(rf"^\| `{op}` \| .*? \| `\{{(.*?)\}}` \|$", TEXT, flags=re.MULTILINE)
    assert row, f"no {op} row in the op table"
    return set(re.findall(r'"(\w+)"', row.group(1)))


@pytest.mark.slow
def test_a_run_whose_shell_ends_is_lost_as_documented(tmp_path: Path) -> None:
    """`run` and `wait-run` over /control against `tether run` with a real bash: the reply has the
    documented keys, and a run whose shell exits answers `done` with `lost` (docs/control.md)."""
    from tether import LinkError
    from tether.server._client import find_daemon, open_client

    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "tether.toml"
    config.write_text('[[sessions]]\nid = "sh"\nbackend = "process"\noptions = { argv = ["bash"] }\n'
                      '[sessions.policy]\nbase_delay = 0.1\njitter = "none"\n')
    state = tmp_path / "state"
    assert _documented_reply_keys("run") >= {"token", "done", "exit_status", "lost"}
    with running(state, config, env={"HOME": str(home), "TERM": "xterm"}) as daemon:
        daemon.start()

        async def run(command: str, budget: float) -> dict[str, Any]:
            """`run` once the (new) shell has shown its integration's prompt."""
            async with open_client(find_daemon(state_dir=state)) as client:
                while True:
                    await client.wait("sh", connected=True, budget=30)
                    try:
                        reply: dict[str, Any] = await client.request("run", session_id="sh", command=command,
                                                                     budget=budget)
                        return reply
                    except LinkError:  # no prompt yet: wait for the shell to print one
                        await client.wait("sh", quiet=0.2, budget=30)

        async def main() -> None:
            fine = await run("true", 30)
            assert set(fine) == _documented_reply_keys("run"), fine
            assert fine["done"] is True and fine["exit_status"] == 0 and fine["lost"] is None, fine
            ended = await run("echo bye; exit 3", 30)
            assert set(ended) == _documented_reply_keys("run"), ended
            assert ended["done"] is True and ended["exit_status"] is None, ended
            assert ended["lost"] == "the shell ended before the command finished", ended
            waiting = await run("sleep 1; exit 4", 0.1)
            assert waiting["done"] is False and waiting["lost"] is None, waiting
            async with open_client(find_daemon(state_dir=state)) as client:
                resumed = await client.request("wait-run", session_id="sh", token=waiting["token"], budget=30)
            assert set(resumed) == _documented_reply_keys("run"), resumed
            assert resumed["done"] is True and resumed["lost"] == ended["lost"], resumed

        trio.run(main)
        daemon.stop()
