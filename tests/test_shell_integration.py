"""tether's shell integration as each way of loading it gives it to a real bash and zsh on a pty.

What is checked is what `run` and cwd tracking need: the prompt mark naming
the shell, OSC 7 with the cwd, and a ``__tether_run`` line answered with its
C and D marks and the command's status, plus what the user's own start-up
files set (an integration that skipped them would change the user's shell).
"""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import tether
from tether.rules._integration import CANONICAL_LINE_LIMIT
from tether.testing import require_peer

SHELLS = [name for name in ("bash", "zsh") if shutil.which(name)]


class Pty:
    """A program on a real pty: type into it, read until a byte string shows up."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                     start_new_session=True)
        os.close(slave)
        self.seen = b""

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def until(self, wanted: bytes, limit: float = 20.0) -> bytes:
        """Read until `wanted` was printed (a guard against a hang, not a timing check)."""
        deadline = time.monotonic() + limit
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {wanted!r}; got {self.seen[-600:]!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    break
        return self.seen

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def home_with_startup(tmp_path: Path) -> dict[str, str]:
    """A HOME whose start-up files each set a variable, so loading them shows."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("export FROM_BASHRC=yes\n")
    (home / ".profile").write_text("export FROM_PROFILE=yes\n")
    (home / ".zshrc").write_text("export FROM_ZSHRC=yes\n")
    (home / ".zprofile").write_text("export FROM_ZPROFILE=yes\n")
    return {"HOME": str(home), "PATH": os.environ["PATH"], "TERM": "xterm", "PS1": "$ ", "PROMPT": "%% "}


def prompt_mark(shell: str) -> bytes:
    return f"133;A;tether-shell={shell}".encode()


def check_runs(pty: Pty, shell: str, cwd: Path) -> None:
    """The prompt mark and OSC 7 arrive; a run of ``false`` answers C, then D with status 1."""
    pty.until(prompt_mark(shell))
    assert b"]7;file://" in pty.seen and str(cwd).encode() in pty.seen
    nonce = tether.new_nonce()
    pty.type(tether.run_line("echo out; false", nonce).decode())
    seen = pty.until(f"133;D;1;tether={nonce}".encode())
    assert f"133;C;tether={nonce}".encode() in seen


@pytest.mark.parametrize("login", [False, True], ids=["rc", "login"])
def test_bash_rcfile_loads_the_users_startup_then_the_integration(tmp_path: Path, login: bool) -> None:
    env = home_with_startup(tmp_path)
    rc = tmp_path / "rc"
    rc.write_text(tether.bash_rcfile(login=login))
    pty = Pty(["bash", "--rcfile", str(rc), "-i"], env, tmp_path)
    try:
        check_runs(pty, "bash", tmp_path)
        pty.type("echo bashrc=$FROM_BASHRC profile=$FROM_PROFILE\r")
        expected = b"bashrc= profile=yes" if login else b"bashrc=yes profile="
        pty.until(expected)
    finally:
        pty.close()


@pytest.mark.parametrize("login", [False, True], ids=["rc", "login"])
def test_zsh_dotfiles_load_the_users_own_then_the_integration(tmp_path: Path, login: bool) -> None:
    require_peer("zsh" in SHELLS, "zsh not installed")
    env = home_with_startup(tmp_path)
    zdot = tmp_path / "zdot"
    zdot.mkdir()
    for name, text in tether.zsh_dotfiles().items():
        (zdot / name).write_text(text)
    env["ZDOTDIR"] = str(zdot)
    pty = Pty(["zsh", "-i", *(["-l"] if login else [])], env, tmp_path)
    try:
        check_runs(pty, "zsh", tmp_path)
        pty.type("echo zshrc=$FROM_ZSHRC zprofile=$FROM_ZPROFILE\r")
        pty.until(b"zshrc=yes zprofile=" + (b"yes" if login else b"\r"))
    finally:
        pty.close()


@pytest.mark.parametrize("named", [True, False], ids=["named", "unknown"])
@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_typed_integration_installs_into_a_running_shell_once(tmp_path: Path, shell: str, named: bool) -> None:
    """Typed into a shell that already started (a Jupyter terminal), with the shell named or not
    (``typed_integration()``: the shell picks its own body): its prompt has status 0 and only its
    own mark; typed twice (a re-attach), each prompt still reports once."""
    require_peer(shell in SHELLS, f"{shell} not installed")
    env = home_with_startup(tmp_path)
    env["PS1"], env["PROMPT"] = "[$?]$ ", "[%?]%% "
    argv = ["bash", "--norc", "-i"] if shell == "bash" else ["zsh", "-f", "-i"]
    pty = Pty(argv, env, tmp_path)
    try:
        line = tether.typed_integration(shell) if named else tether.typed_integration()  # type: ignore[arg-type]
        assert "\x1b" not in line and line.startswith(" ") and line.endswith("\r")
        pty.type(line)
        check_runs(pty, shell, tmp_path)
        after_install = pty.seen[pty.seen.index(prompt_mark(shell)):]
        first_prompt = re.search(rb"\[(\d+)\][$%] ", after_install)
        assert first_prompt is not None and first_prompt.group(1) == b"0", after_install[:300]
        assert prompt_mark("zsh" if shell == "bash" else "bash") not in pty.seen
        pty.type(line)
        pty.type("echo first-$((1+1))\r")
        pty.type("echo second-$((2+2))\r")
        seen = pty.until(b"second-4")
        between = seen[seen.index(b"first-2") : seen.index(b"second-4")]
        assert between.count(prompt_mark(shell)) == 1, "one prompt, one mark: the hook is installed once"
    finally:
        pty.close()


def test_typed_integration_for_an_unknown_shell_leaves_another_shell_alone(tmp_path: Path) -> None:
    """In dash (no line editing: the terminal's canonical mode reads the line), the line is read
    whole, says nothing, installs nothing, and the shell goes on answering."""
    require_peer(shutil.which("dash") is not None, "dash not installed")
    line = tether.typed_integration()
    assert len(line.encode()) < CANONICAL_LINE_LIMIT
    pty = Pty(["dash", "-i"], home_with_startup(tmp_path), tmp_path)
    try:
        pty.until(b"$ ")
        pty.type(line)
        pty.type("echo status-$?-alive\r")
        seen = pty.until(b"status-0-alive\r\n")
        typed = seen[seen.index(b"|| true") :]
        assert b"133;" not in seen and b"6973" not in seen
        assert b"> " not in typed and b"rror" not in typed and b"not found" not in typed, typed  # no PS2, no error
    finally:
        pty.close()


def test_typed_integration_stays_out_of_a_bash_history_that_ignores_space(tmp_path: Path) -> None:
    """The line starts with a space: bash with ``HISTCONTROL=ignorespace`` keeps it out of its history."""
    env = {**home_with_startup(tmp_path), "HISTCONTROL": "ignorespace", "HISTFILE": str(tmp_path / "history")}
    pty = Pty(["bash", "--norc", "-i"], env, tmp_path)
    try:
        pty.type(tether.typed_integration())
        pty.until(prompt_mark("bash"))
        pty.type("echo kept\r")
        pty.until(b"kept\r\n")
        pty.type("history; echo history-$((1+1))\r")
        seen = pty.until(b"history-2\r\n")
        entries = re.findall(rb"[\r\n] +\d+  ([^\r]*)\r", seen)
        assert entries == [b"echo kept", b"history; echo history-$((1+1))"], seen[-400:]
    finally:
        pty.close()


@pytest.mark.parametrize("shell", SHELLS)
def test_a_long_command_typed_while_another_runs_is_read_whole(tmp_path: Path, shell: str) -> None:
    """A run typed while the shell is out of its line editor (here: a command still running, so
    the terminal is in canonical mode) is read line by line by the terminal; a line past its
    limit would be cut and leave the shell in an open quote. A long command still runs whole."""
    env = home_with_startup(tmp_path)
    if shell == "bash":
        rc = tmp_path / "rc"
        rc.write_text(tether.bash_rcfile())
        argv = ["bash", "--rcfile", str(rc), "-i"]
    else:
        zdot = tmp_path / "zdot"
        zdot.mkdir()
        for name, text in tether.zsh_dotfiles().items():
            (zdot / name).write_text(text)
        env["ZDOTDIR"] = str(zdot)
        argv = ["zsh", "-i"]
    text = "it's a \\ \"q\" \t $HOME `x` %;\n" * 300  # past the terminal's limit many times over
    expected = subprocess.run(["cksum"], input=text.encode(), capture_output=True, check=True).stdout.strip()
    pty = Pty(argv, env, tmp_path)
    try:
        pty.until(prompt_mark(shell))
        first, second = tether.new_nonce(), tether.new_nonce()
        pty.type(tether.run_line("sleep 3", first).decode())
        pty.until(f"133;C;tether={first}".encode())  # sleep runs: the terminal reads what comes next
        long_line = tether.run_line(f"printf %s {shlex.quote(text)} | cksum", second)
        assert len(long_line) > CANONICAL_LINE_LIMIT
        pty.type(long_line.decode())
        seen = pty.until(f"133;D;0;tether={second}".encode())
        ran = seen[seen.index(f"133;C;tether={second}".encode()) :]
        assert expected in ran, ran[-300:]
    finally:
        pty.close()
