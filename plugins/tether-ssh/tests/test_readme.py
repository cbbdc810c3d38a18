"""The claims of plugins/tether-ssh/README.md that no behaviour test pins: its example, its defaults, where
files go. (The behaviours are the live and journey tests'; each README bullet names what they check.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import tether
from tether_ssh import parse_options, ssh_argv
from tether_ssh._control_dir import base_directory
from tether_ssh._panelog import SEGMENTS_KEPT, create_log

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _example() -> str:
    (toml,) = re.findall(r"```toml\n(.*?)```", README, flags=re.DOTALL)
    return str(toml)


def test_the_example_passes_tether_check_and_maps_its_policy_onto_ssh(tmp_path: Path) -> None:
    """The README's session, as written: ``tether check`` accepts it; its policy becomes ConnectTimeout and
    ServerAlive*; BatchMode is on and host keys are checked."""
    config = tmp_path / "tether.toml"
    config.write_text(_example())
    checked = subprocess.run([sys.executable, "-m", "tether", "check", str(config)], capture_output=True,
                             text=True, env={**os.environ, "TETHER_STATE_DIR": str(tmp_path / "state")})
    assert checked.returncode == 0, checked.stderr
    (spec,) = tether.load_config(config).sessions
    opts = parse_options(spec.options)
    assert (opts.host, opts.user, opts.persist) == ("build.example.org", "ci", "tmux")
    argv = ssh_argv(opts, connect_timeout=spec.policy.connect_timeout,
                    keepalive_interval=spec.policy.keepalive_interval, command="CMD")
    options = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-o"]
    assert {"ConnectTimeout=10", "ServerAliveInterval=15", "BatchMode=yes", "StrictHostKeyChecking=yes"} <= set(
        options
    )
    assert [o for o in options if o.startswith("ServerAliveCountMax=")] == ["ServerAliveCountMax=3"]


def test_documented_defaults() -> None:
    """Sharing on, 10 channels per shared connection, a 262144-byte pane log in four segments."""
    opts = parse_options({"host": "h"})
    assert opts.share_connection is True
    assert opts.max_sessions_per_connection == 10
    assert opts.pane_log_bytes == 262144
    assert SEGMENTS_KEPT == 4


def test_the_pane_log_is_four_numbered_segments_under_the_users_private_directory(tmp_path: Path) -> None:
    """``$TMPDIR/tether-ssh-<uid>/<name>``, both 0700, the segment size a quarter of the bound."""
    made = subprocess.run(["sh", "-c", create_log("s1-abc", 262144) + '; echo "$L"'], capture_output=True,
                          text=True, check=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    directory = Path(made.stdout.strip())
    assert directory.parent == tmp_path / f"tether-ssh-{os.geteuid()}"
    assert (directory / "format").read_text() == "1 65536\n"
    for private in (directory, directory.parent):
        assert private.stat().st_mode & 0o777 == 0o700


def test_the_pane_log_is_removed_a_few_seconds_after_the_program_ends(tmp_path: Path) -> None:
    """When the pane's output ends (the program is gone), pipe.sh marks the end, lingers, and removes the log."""
    made = subprocess.run(["sh", "-c", create_log("s1-abc", 4096, linger=1) + '; echo "$L"'], capture_output=True,
                          text=True, check=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    directory = Path(made.stdout.strip())
    pipe = subprocess.run(["sh", str(directory / "pipe.sh")], input=b"last words\n", capture_output=True,
                          timeout=30)
    assert pipe.returncode == 0 and pipe.stdout == b"", "nothing but the input FIFO reaches the pane"
    assert not directory.exists(), "pipe.sh returns once it removed the log"
    assert directory.parent.exists(), "the per-user directory stays"


@pytest.mark.parametrize("runtime", ["set", "unset", "missing"])
def test_control_sockets_live_under_the_runtime_directory_or_the_temp_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, runtime: str
) -> None:
    """``$XDG_RUNTIME_DIR/tether-ssh-<uid>/`` when it is a directory, else under the temp directory."""
    if runtime == "set":
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    elif runtime == "missing":
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))
    else:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    root = tmp_path if runtime == "set" else Path(tempfile.gettempdir())
    assert base_directory() == root / f"tether-ssh-{os.geteuid()}"
