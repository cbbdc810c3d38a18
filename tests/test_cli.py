"""The real `tether` command, run as a subprocess, against a real daemon over loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tether

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).parent.parent


def _run(*args: str, state: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TETHER_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "tether", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def test_events_doc_has_every_event_type() -> None:
    """docs/events.md shows an example of every type in tether.EVENT_TYPES (and lagged)."""
    text = (ROOT / "docs" / "events.md").read_text()
    for cls in tether.EVENT_TYPES:
        assert f"### `{cls.type}`" in text, f"{cls.type} is missing from docs/events.md"
        assert f'"type": "{cls.type}"' in text, f"{cls.type} has no JSON example in docs/events.md"
    assert '"type": "lagged"' in text


def test_cli_doc_lists_exit_codes() -> None:
    """docs/cli.md documents each exit code the command uses."""
    from tether.cli import _main as _cli

    text = (ROOT / "docs" / "cli.md").read_text()
    from tether.cli import _common

    for code in (_cli.EXIT_OK, _cli.EXIT_FAILURE, _cli.EXIT_USAGE, _cli.EXIT_CONNECT, _cli.EXIT_AUTH,
                 _common.EXIT_TIMEOUT, _common.EXIT_LOST):
        assert f"| {code} |" in text


def test_check_names_every_bad_field(tmp_path: Path) -> None:
    """`tether check` prints each problem with its path and exits 2, no traceback."""
    config = tmp_path / "bad.toml"
    config.write_text(
        '[[sessions]]\nid = "a"\nbackend = "scripted"\n[sessions.policy]\nmax_delay = 1\n'
        '[[sessions]]\nid = "b"\nbackend = "nope"\n'
    )
    result = _run("check", str(config), state=tmp_path / "state")
    assert result.returncode == 2
    assert "sessions[0].policy.max_delay: must be >= base_delay (2.0), got 1.0" in result.stderr
    assert "sessions[1].backend: unknown backend 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    ok = _run("check", str(ROOT / "examples" / "tether.toml"), state=tmp_path / "state")
    assert "Traceback" not in ok.stderr
    assert "note:" not in ok.stdout  # the shipped example gets everything it asks for


def test_check_notes_a_command_that_runs_under_sh(tmp_path: Path) -> None:
    """A valid config still gets the backend's advice: a shell line under /bin/sh -c loses the
    shell integration, and `tether check` says so (exit 0), naming the option."""
    pytest.importorskip("tether_process")
    config = tmp_path / "sh.toml"
    config.write_text(
        '[[sessions]]\nid = "wrapped"\nbackend = "process"\noptions = { command = "cd /tmp && bash" }\n'
        '[[sessions]]\nid = "plain"\nbackend = "process"\noptions = { command = "bash" }\n'
    )
    result = _run("check", str(config), state=tmp_path / "state")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{config}: ok (2 sessions)"
    assert lines[1:] == [
        "  note: sessions[0].options.command: runs under /bin/sh -c: a shell it starts gets no tether "
        "integration (cwd only from /proc, no rerun_last_command, no run); use argv = [\"bash\"] or a plain "
        "command such as \"bash\"",
    ]


def test_plugins_lists_backends_and_strategies(tmp_path: Path) -> None:
    """`tether plugins --json` shows the scripted backend and the six strategies, with distributions."""
    result = _run("plugins", "--json", state=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    names = {(p["group"], p["name"]): p["distribution"] for p in data["loaded"]}
    assert names[("tether.backends", "scripted")] == "tether"
    assert ("tether.strategies", "force-reconnect") in names
    assert isinstance(data["failed"], list)


def test_token_is_private_and_stable(tmp_path: Path) -> None:
    """The token is made once, 0600 in a 0700 directory, and printed by `tether token`."""
    state = tmp_path / "state"
    first = _run("token", state=state)
    second = _run("token", state=state)
    assert first.returncode == 0 and first.stdout == second.stdout and len(first.stdout.strip()) >= 32
    assert stat.S_IMODE((state / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_token_of_a_config_is_the_one_in_its_state_dir(tmp_path: Path) -> None:
    """`tether token --config FILE` prints the token its daemon uses (the config's state_dir), as
    the client commands find it; it makes none in the default state directory."""
    daemons = tmp_path / "daemons-state"
    config = tmp_path / "tether.toml"
    config.write_text(f"state_dir = {json.dumps(str(daemons))}\n")
    made = _run("token", "--state-dir", str(daemons), state=tmp_path / "unused")
    assert made.returncode == 0, made.stderr
    printed = _run("token", "--config", str(config), state=tmp_path / "default")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == made.stdout == (daemons / "token").read_text().strip() + "\n"
    assert not (tmp_path / "default").exists()


def test_status_without_daemon_exits_3(tmp_path: Path) -> None:
    """Nothing listening: exit code 3 and a readable message."""
    result = _run("status", "--url", "ws://127.0.0.1:9", state=tmp_path)
    assert result.returncode == 3
    assert "cannot connect" in result.stderr


def test_remote_listen_needs_a_flag(tmp_path: Path) -> None:
    """A non-loopback address without --allow-remote is a usage error."""
    result = _run("run", "--host", "0.0.0.0", "--duration", "1", state=tmp_path)
    assert result.returncode == 2
    assert "--allow-remote" in result.stderr


@pytest.mark.slow
def test_run_status_watch_and_sigterm(tmp_path: Path) -> None:
    """A real daemon: status (table and JSON), watch with since=, a wrong token (4), SIGTERM stops it fast."""
    state = tmp_path / "state"
    config = tmp_path / "t.toml"
    config.write_text('[[sessions]]\nid = "web"\nbackend = "scripted"\noptions = { drop_after = 0.5 }\n'
                      '[sessions.policy]\nbase_delay = 0.1\nmax_delay = 0.5\n')
    env = {**os.environ, "TETHER_STATE_DIR": str(state)}
    daemon = subprocess.Popen([sys.executable, "-m", "tether", "run", str(config), "--port", "0"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (state / "daemon.json").exists():
            assert daemon.poll() is None, daemon.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.5)
        status = _run("status", "--json", state=state)
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["total"] == 1
        assert data["stats"]["disconnections"] >= 1
        detail = json.loads(_run("status", "--detail", "--json", state=state).stdout)
        assert [s["id"] for s in detail["sessions"]] == ["web"]
        table = _run("status", state=state)
        assert table.returncode == 0 and table.stdout.startswith("1 session: 1 ")
        rows = _run("status", "--detail", state=state)
        assert rows.returncode == 0 and "web" in rows.stdout
        watch = _run("watch", "--json", "--since", "0", "--count", "4", "--session", "web", state=state)
        assert watch.returncode == 0, watch.stderr
        events = [json.loads(line) for line in watch.stdout.splitlines()]
        seqs = [e["seq"] for e in events]
        assert len(seqs) == 4 and seqs == sorted(set(seqs)), seqs
        assert events[0]["type"] == "session.registered"
        wrong = _run("status", "--token", "not-the-token", state=state)
        assert wrong.returncode == 4
        token = (state / "token").read_text().strip()
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=10)
        assert time.monotonic() - started < 3
        assert daemon.returncode == 0, err
        assert token not in err and token not in out
        assert not (state / "daemon.json").exists()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()


@pytest.mark.slow
def test_demo_runs_with_duration(tmp_path: Path) -> None:
    """`tether demo --duration` shows drops and recoveries and ends by itself with 0."""
    result = _run("demo", "--duration", "4", "--plain", state=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "session.disconnected" in result.stdout
    assert "reconnect.succeeded" in result.stdout or "session.connected" in result.stdout


def test_a_following_client_waits_for_its_daemon_file_instead_of_the_default_address(tmp_path: Path) -> None:
    """Once found through daemon.json, a stopped daemon (its file removed) is not looked for at the
    default address, where another daemon may listen and refuse the token."""
    import argparse

    from tether.cli._common import DaemonFinder
    from tether.server._client import write_daemon_file

    args = argparse.Namespace(url=None, token=None, state_dir=str(tmp_path), config=None)
    finder = DaemonFinder(args)
    assert "default address" in finder.find().source  # nothing found yet: the default, as before
    path = write_daemon_file(tmp_path, host="127.0.0.1", port=40001)
    assert finder.find().url == "ws://127.0.0.1:40001"
    path.unlink()
    with pytest.raises(tether.CannotConnectError, match="no daemon runs for"):
        finder.find()
    write_daemon_file(tmp_path, host="127.0.0.1", port=40002)  # the next run, on another port
    assert finder.find().url == "ws://127.0.0.1:40002"


def test_the_loss_line_docs_cli_shows_is_the_one_tail_prints() -> None:
    from tether.cli._console_text import describe_loss

    doc = " ".join((ROOT / "docs" / "cli.md").read_text().split())
    shown = re.search(r"`\[tether: (output of unknown size lost at offset 1,234 \(.*?\))\]`", doc)
    assert shown is not None
    loss = tether.Loss(start=1234, stop=1234 + (1 << 26), kind=tether.LossKind.UNSEEN, size=None)
    assert describe_loss(loss) == shown.group(1)


def test_a_known_plugin_command_that_is_not_installed_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`tether mcp` without tether-mcp names the distribution and the line that installs it (into the
    Python that runs tether), not argparse's bare "invalid choice"."""
    from tether.cli import _main as _cli

    monkeypatch.setattr(_cli, "plugin_commands", dict)  # as where only tether itself is installed
    assert _cli.main(["mcp", "--embedded"]) == 2
    said = capsys.readouterr().err
    assert said == (f"tether: tether mcp comes with tether-mcp: {sys.executable} -m pip install -e plugins/tether-mcp "
                    "(from a clone of tether)\n")
    for command, dist in _cli.KNOWN_PLUGIN_COMMANDS.items():  # each is the command its distribution gives
        project = tomllib.loads((ROOT / "plugins" / dist / "pyproject.toml").read_text())["project"]
        assert project["name"] == dist and command in project["entry-points"][_cli.PLUGIN_COMMANDS_GROUP]
    with pytest.raises(SystemExit):
        _cli.main(["nosuchcommand"])
    assert "invalid choice: 'nosuchcommand'" in capsys.readouterr().err
