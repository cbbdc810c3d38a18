"""What a newcomer meets, through the real commands: the README's first command, its library
example and Ctrl-C, the demo's first events, what `tether watch` and a piped `tether status` print,
fresh statistics, and a watcher told the daemon stopped."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .daemon import running, tether_command

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent.parent
README = (ROOT / "README.md").read_text()
FRAGMENT = re.compile(r"\[\?\d+[hl]|\x1b")
"""What a terminal escape leaves behind when only its ESC is dropped: ``[?2004h``, ``[?1049h``."""


def _quickstart() -> str:
    section = README[README.index("## Quickstart"):README.index("## The library")]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.DOTALL)[0]


def test_the_quickstart_command_works_in_a_fresh_clone(tmp_path: Path) -> None:
    """The README's first command, as written (its venv included), in a fresh copy of the repository."""
    command = _quickstart()
    assert command.startswith("python3 -m venv .venv && ")
    clone = tmp_path / "clone"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):  # the working tree as it is, like a fresh clone
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env["TETHER_STATE_DIR"] = str(tmp_path / "state")
    result = subprocess.run(["bash", "-c", command.replace("--duration 30", "--duration 3 --plain")], cwd=clone,
                            env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "session.registered" in result.stdout and "demo stopped" in result.stdout


def test_the_library_example_stops_cleanly_on_ctrl_c() -> None:
    """examples/library.py (the README's example) sees session.registered first and Ctrl-C ends it
    with exit 0 and no traceback."""
    example = (ROOT / "examples" / "library.py").read_text()
    readme_code = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)[0]
    for line in ("with sup.subscribe(", "await sup.register(SessionSpec(", "except KeyboardInterrupt:"):
        assert line in example and line in readme_code
    assert example.index("sup.subscribe(") < example.index("sup.register(")
    program = subprocess.Popen([sys.executable, "-u", str(ROOT / "examples" / "library.py")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert program.stdout is not None
        first = program.stdout.readline()
        while "SessionConnected" not in program.stdout.readline():
            pass
        program.send_signal(signal.SIGINT)
        out, err = program.communicate(timeout=15)
    finally:
        program.kill()
    assert first.startswith("SessionRegistered(")
    assert program.returncode == 0 and "Traceback" not in err, err
    assert out.splitlines()[-1] == "stopped"


def test_the_demo_shows_its_first_events(tmp_path: Path) -> None:
    """Every demo session's session.registered is printed, and the event numbers start at #1; a
    state directory it makes is private (README: created 0700), the demo's folder in it too."""
    state = tmp_path / "fresh" / "state"
    result = tether_command("demo", "--duration", "3", "--plain", state=state, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [stat.S_IMODE(p.stat().st_mode) for p in (state, state / "demo")] == [0o700, 0o700]
    assert re.search(r"#1\s", result.stdout)
    registered = re.findall(r"(\S+)\s+session\.registered", result.stdout)
    assert len(registered) >= 3
    assert not FRAGMENT.search(result.stdout)


def test_cli_doc_names_the_flags_each_command_has(tmp_path: Path) -> None:
    """Every flag on docs/cli.md's usage lines is one `tether COMMAND --help` lists (demo: --no-serve)."""
    doc = (ROOT / "docs" / "cli.md").read_text()
    usage = doc[doc.index("```\n") + 4:doc.index("```", doc.index("```\n") + 4)]
    for line in usage.splitlines():
        words = line.split()
        command = words[1:3] if len(words) > 2 and not words[2].startswith(("[", "-")) and words[2].islower() \
            and words[2].isalpha() else words[1:2]
        helptext = tether_command(*command, "--help", state=tmp_path).stdout
        for flag in re.findall(r"--[a-z][a-z-]*", line):
            assert flag in helptext, f"{flag} of `{line}` is not an option of tether {' '.join(command)}"
    assert "tether demo [--duration SECONDS] [--no-serve]" in usage


def test_the_readme_daemon_commands_are_commands_with_those_flags(tmp_path: Path) -> None:
    """Each `tether ...` line of the README's daemon section names a real command, its flags are
    that command's, and the sessions it names are the example config's."""
    section = README[README.index("## The daemon and the `tether` command"):README.index("- State lives")]
    block = section[section.index("```sh\n") + 6:section.index("```", section.index("```sh\n") + 6)]
    example = tomllib.loads((ROOT / "examples" / "tether.toml").read_text())
    sessions = {s["id"] for s in example["sessions"]}
    for line in block.splitlines():
        words = line.split("#")[0].split()
        command = words[1:3] if words[1] == "store" else words[1:2]
        shown = tether_command(*command, "--help", state=tmp_path)
        assert shown.returncode == 0, f"`{line}`: {shown.stderr}"
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", line.split("#")[0]):
            assert flag in shown.stdout, f"{flag} of `{line}` is not an option of tether {' '.join(command)}"
        named = [w for w in words[2:] if w in sessions or w == "sh"]
        if command[0] in ("attach", "exec", "tail", "send"):
            assert named and set(named) <= sessions, f"`{line}` names no session of examples/tether.toml"


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tether.toml"
    path.write_text(body)
    return path


def test_watch_shows_program_output_without_terminal_fragments(tmp_path: Path) -> None:
    """A shell that switches bracketed paste and the alternate screen on: watch shows its text only."""
    pytest.importorskip("tether_process")
    # output events are live (the exact record is the output log): the shell prints on a loop
    script = (r"while :; do printf '\033[?2004h\033]0;title\007\033[?1049hready \033[1;32mgreen\033[0m\r\n';"
              " sleep 0.3; done")
    config = _config(tmp_path, '[[sessions]]\nid = "sh"\nbackend = "process"\n'
                     f"options = {{ argv = [\"sh\", \"-c\", '''{script}'''] }}\n")
    with running(tmp_path / "state", config) as daemon:
        daemon.start()
        watch = daemon.cli("watch", "--type", "session.output", "--count", "1", timeout=30)
        daemon.stop()
    line = watch.stdout.strip()
    assert line.endswith("output: ready green"), line
    assert not FRAGMENT.search(watch.stdout)


def test_piped_status_is_not_cut_and_fresh_statistics_claim_nothing(tmp_path: Path) -> None:
    """Piped, long cells stay whole on one line; a daemon with no reconnection yet says so."""
    target = "a-rather-long-target-name.example.org:2222/with/a/path/that/goes/on/and/on/past/eighty/columns"
    config = _config(tmp_path, '[[sessions]]\nid = "down"\nbackend = "scripted"\n'
                     f'options = {{ hang_connects = 1, target = "{target}" }}\n'
                     '[sessions.policy]\nconnect_timeout = 600.0\n'
                     '[[sessions]]\nid = "up"\nbackend = "scripted"\n')
    with running(tmp_path / "state", config) as daemon:
        daemon.start()
        summary = daemon.cli("status").stdout
        detail = daemon.cli("status", "--detail").stdout
        daemon.stop()
    assert any(target in line and "down" in line and "connecting" in line for line in summary.splitlines()), summary
    assert any(target in line and "down" in line for line in detail.splitlines()), detail
    assert re.search(r"reconnections, all runs\s+│ none yet", summary)
    assert re.search(r"last reconnection\s+│ never", summary)
    assert re.search(r"attempts, all runs\s+│ none yet", summary)
    assert "100.0" not in summary and "None" not in summary


def test_watch_is_told_the_daemon_stopped(tmp_path: Path) -> None:
    """SIGTERM to the daemon: a watcher sees 1001 (going away), says so, and keeps trying."""
    config = _config(tmp_path, '[[sessions]]\nid = "up"\nbackend = "scripted"\n')
    with running(tmp_path / "state", config) as daemon:
        daemon.start()
        env = {**os.environ, "TETHER_STATE_DIR": str(tmp_path / "state")}
        watcher = subprocess.Popen([sys.executable, "-m", "tether", "watch", "--since", "0", "--max-retries", "1"],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert watcher.stdout is not None
            assert "session.registered" in watcher.stdout.readline()  # connected and following
            daemon.stop()
            _, err = watcher.communicate(timeout=30)
        finally:
            watcher.kill()
    assert "the daemon is stopping (closed 1001); retrying in" in err, err
    assert watcher.returncode == 3
