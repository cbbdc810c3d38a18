"""The console commands as a user drives them: the real `tether` command against the real daemon.

`add` (options, policy, ``--file``, a bad session), `send` (text, keys,
stdin bytes), `tail` (``-n``, ``--raw``, ``--since`` and ``--show-offset``
across a daemon restart, ``-f`` across one), `exec` (exit status, only the
command's output, the 124 timeout and ``--resume``, 125 for a command whose
shell ended), `reconnect`, `remove`;
and `tether attach` for real inside tmux (send-keys, capture-pane): type a
command, kill the shell from outside, the attach client stays and shows the
new shell; restart the daemon, it continues from its cursor; the window size
follows; Ctrl-] detaches; an unknown session (on a terminal or not) and piped
input are refused with one line and exit 1. What docs/cli.md says of these commands, checked.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.testing import require_peer

from .daemon import Daemon, proc_alive, running, tether_command, wait_for

pytestmark = pytest.mark.slow


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "tether.toml"
    config.write_text(
        '[[sessions]]\nid = "sh"\nbackend = "process"\noptions = { argv = ["bash"] }\n'
        "[sessions.policy]\nbase_delay = 0.1\nmax_delay = 0.5\njitter = \"none\"\n"
    )
    return config


def _daemon_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"  # the shells must not read the developer's ~/.bashrc
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "TERM": "xterm"}


def _pid(daemon: Daemon, sid: str = "sh") -> int | None:
    session = daemon.sessions().get(sid)
    if not session or session["status"] != "connected" or not session.get("preserved"):
        return None
    pid = session["preserved"]["extra"].get("pid")
    return int(pid) if pid else None


def _tail(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return daemon.cli("tail", "sh", *args)


def _offset(stderr: str) -> int:
    found = re.search(r"tether: next offset (\d+)", stderr)
    assert found, stderr
    return int(found.group(1))


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n")


def test_add_send_tail_exec_reconnect_remove(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running(state, _config(tmp_path), env=_daemon_env(tmp_path)) as daemon:
        daemon.start()
        wait_for(lambda: _pid(daemon), what="the shell to run")

        added = daemon.cli("add", "sh2", "--backend", "process", "-o", 'argv=["bash"]', "-p", "max_retries=5")
        assert added.stdout.startswith("sh2: registered (process -> "), added.stdout
        wait_for(lambda: _pid(daemon, "sh2"), what="the added shell to run")
        listed = tmp_path / "more.toml"
        listed.write_text('[[sessions]]\nid = "f1"\nbackend = "process"\noptions = { argv = ["cat"] }\n'
                          '[[sessions]]\nid = "f2"\nbackend = "process"\noptions = { argv = ["cat"] }\n')
        from_file = daemon.cli("add", "--file", str(listed))
        assert [line.split(":")[0] for line in from_file.stdout.splitlines()] == ["f1", "f2"], from_file.stdout
        assert daemon.cli("remove", "f1", "f2").stdout == "f1: unregistered\nf2: unregistered\n"
        bad = daemon.cli("add", "sh3", "--backend", "process", "-p", "max_retries=-1", check=False)
        assert bad.returncode == 2 and "max_retries" in bad.stderr, bad.stderr
        assert "sh3" not in daemon.sessions()

        # exec: the exit status, and only the command's own output
        assert daemon.cli("exec", "sh", "--", "true", check=False).returncode == 0
        assert daemon.cli("exec", "sh", "--", "false", check=False).returncode == 1
        printed = daemon.cli("exec", "sh", "--", "printf", "'one\\ntwo\\n'")
        assert _lines(printed.stdout) == "one\ntwo\n"
        slow = daemon.cli("exec", "sh", "--timeout", "0.5", "--", "sleep 1.5; echo slow-done", check=False)
        assert slow.returncode == 124, slow
        token = re.search(r"--resume (\S+)", slow.stderr)
        assert token, slow.stderr
        resumed = daemon.cli("exec", "sh", "--resume", token.group(1))
        assert _lines(resumed.stdout) == "slow-done\n"

        # send and tail: typed text shows; --since the offset printed last time shows only what is new
        daemon.cli("send", "sh", "echo first-$((20+3))", "--enter")
        wait_for(lambda: "first-23" in _tail(daemon).stdout, what="the typed command's output")
        mark = _offset(_tail(daemon, "--show-offset").stderr)
        daemon.cli("send", "sh", "echo")
        daemon.cli("send", "sh", "--keys", "space")
        daemon.cli("send", "sh", "keys-$((5+5))")
        daemon.cli("send", "sh", "--keys", "enter")
        wait_for(lambda: "\nkeys-10" in _lines(_tail(daemon, "--since", str(mark)).stdout), what="the keys' output")
        since = _tail(daemon, "--since", str(mark), "--show-offset")
        assert "first-23" not in since.stdout
        mark = _offset(since.stderr)

        # -n: the last lines; without --raw no terminal control sequences, with it the exact bytes
        daemon.cli("send", "sh", "printf 'l1\\nl2\\n\\033[1mbold-%s\\033[0m\\n' x", "--enter")
        wait_for(lambda: "bold-x" in _tail(daemon, "-n", "2").stdout, what="the bold line")
        last = _tail(daemon, "-n", "2").stdout
        assert "l2" not in last and "\x1b" not in last, last
        raw = daemon.cli("tail", "sh", "-n", "2", "--raw").stdout
        assert "\x1b[1mbold-x\x1b[0m" in raw, raw
        # send --data-stdin: the exact bytes
        follow_from = _offset(_tail(daemon, "--show-offset").stderr)
        typed = _tether_input(daemon, b"echo stdin-$((3*3))\r", "send", "sh", "--data-stdin")
        assert typed.returncode == 0, typed.stderr
        wait_for(lambda: "\nstdin-9" in _lines(_tail(daemon).stdout), what="the bytes from stdin to run")
        mark = _offset(_tail(daemon, "--show-offset").stderr)

        # tail -f follows across the restart (written to a file, read as it grows)
        followed = tmp_path / "followed.txt"
        with open(followed, "w") as out:
            follower = subprocess.Popen([sys.executable, "-m", "tether", "tail", "sh", "-f", "--since",
                                         str(follow_from)], stdout=out, stderr=subprocess.STDOUT,
                                        env={**os.environ, "TETHER_STATE_DIR": str(state)})
        try:
            wait_for(lambda: "stdin-9" in followed.read_text(), what="tail -f to show what is there")
            _restart_and_continue(daemon, mark)
            wait_for(lambda: "after-42" in followed.read_text(), what="tail -f to show output after the restart")
            shown = _lines(followed.read_text())
            assert len(re.findall("^stdin-9$", shown, re.M)) == 1, shown  # nothing twice
            assert len(re.findall("^after-42$", shown, re.M)) == 1, shown
            assert "reconnecting" in shown and "continuing" in shown, shown
        finally:
            follower.terminate()
            follower.wait(10)
        after = _tail(daemon, "--since", str(mark)).stdout
        assert "stdin-9" not in after and "keys-" not in after
        assert after.count("after-42") == 1, after  # its output (the echo shows the line as typed)
        assert "lost at offset" in after, after  # tether's absence, said

        # reconnect: a new program (the shell of a pty does not survive its link)
        old = _pid(daemon)
        assert old is not None
        reconnected = daemon.cli("reconnect", "sh")
        assert re.match(r"sh: reconnected by \S+ .*in \d+\.\d\ds \((a new|the same) program\)", reconnected.stdout), \
            reconnected.stdout
        wait_for(lambda: _pid(daemon) not in (None, old), what="a new shell")

        # remove: unregistered, and its program ends
        shell2 = _pid(daemon, "sh2")
        assert shell2 is not None
        assert daemon.cli("remove", "sh2").stdout == "sh2: unregistered\n"
        assert "sh2" not in daemon.sessions()
        wait_for(lambda: not proc_alive(shell2), what="the removed session's shell to end")
        daemon.stop("SIGTERM")


def _restart_and_continue(daemon: Daemon, mark: int) -> None:
    """A clean restart; the new shell's output follows the cursor."""
    daemon.stop("SIGTERM")
    daemon.start()
    wait_for(lambda: _pid(daemon), what="the shell to run again")
    daemon.cli("send", "sh", "echo after-$((40+2))", "--enter")
    wait_for(lambda: "after-42" in _tail(daemon, "--since", str(mark)).stdout, what="output after the restart")


def _tether_input(daemon: Daemon, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tether", *args], input=data, capture_output=True, timeout=60,
                          env={**os.environ, "TETHER_STATE_DIR": str(daemon.state)}, check=False)


@pytest.fixture
def tmux_socket() -> Iterator[str]:
    require_peer(shutil.which("tmux") is not None, "tmux not installed")
    directory = tempfile.mkdtemp(prefix="ta-", dir="/tmp")  # socket paths must stay short
    socket = os.path.join(directory, "s")
    yield socket
    subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True, check=False)
    shutil.rmtree(directory, ignore_errors=True)


def _tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-S", socket, *args], capture_output=True, text=True, check=True).stdout


def _screen(socket: str) -> str:
    return _tmux(socket, "capture-pane", "-p", "-J", "-S", "-200", "-t", "=attach:")


def test_attach_in_tmux_survives_a_killed_shell_and_a_daemon_restart(tmp_path: Path, tmux_socket: str) -> None:
    state = tmp_path / "state"
    with running(state, _config(tmp_path), env=_daemon_env(tmp_path)) as daemon:
        daemon.start()
        first = wait_for(lambda: _pid(daemon), what="the shell to run")
        # attach's exit status, said by the shell that ran it (tmux may see the pane die before it reaps it)
        attach = f"sh -c '{sys.executable} -m tether attach sh; echo attach-exit=$?; sleep 600'"
        _tmux(tmux_socket, "-f", "/dev/null", "new-session", "-d", "-s", "attach", "-x", "100", "-y", "30",
              "-e", f"TETHER_STATE_DIR={state}", "-e", f"PATH={os.environ['PATH']}", attach,
              ";", "set-option", "-w", "-t", "=attach:", "remain-on-exit", "on")  # the screen stays readable

        def typed(line: str, shown: str, what: str) -> None:
            _tmux(tmux_socket, "send-keys", "-t", "=attach:", "-l", line)
            _tmux(tmux_socket, "send-keys", "-t", "=attach:", "Enter")
            wait_for(lambda: shown in _screen(tmux_socket), what=what, timeout=30)

        wait_for(lambda: re.search(r"[$#] *$", _screen(tmux_socket).rstrip("\n"), re.M), what="a prompt in attach")
        typed("echo typed-$((1+1))", "typed-2", "the typed command's output in attach")

        os.kill(first, signal.SIGKILL)  # the shell killed from outside: the daemon starts a new one
        wait_for(lambda: _pid(daemon) not in (None, first), what="a new shell")
        # attach refuses input while the session is not connected: type once attach says it is back
        wait_for(lambda: "reconnected: a new program" in _screen(tmux_socket), what="attach to see the new shell",
                 timeout=30)
        typed("echo new-shell-$((2+2))", "new-shell-4", "the new shell answering in attach")

        daemon.stop("SIGTERM")
        daemon.start()
        wait_for(lambda: _pid(daemon), what="the shell after the restart")
        wait_for(lambda: "[tether: back with the daemon; continuing at offset" in _screen(tmux_socket),
                 what="attach to reconnect to the restarted daemon", timeout=30)
        typed("echo restarted-$((3+3))", "restarted-6", "attach continuing after the daemon restart")
        screen = _screen(tmux_socket)
        for shown in ("typed-2", "new-shell-4", "restarted-6"):  # each output once: nothing replayed
            assert len(re.findall(rf"^{shown}$", screen, re.M)) == 1, screen
        assert "reconnected: a new program" in screen, screen  # the killed shell, said
        assert "[tether: back with the daemon; continuing at offset" in screen, screen
        assert "lost at offset" in screen, screen  # tether's absence, said as a loss

        _tmux(tmux_socket, "resize-window", "-t", "=attach:", "-x", "90", "-y", "25")  # the window size follows
        typed("stty size", "\n25 90", "the new size in the session's terminal")

        _tmux(tmux_socket, "send-keys", "-t", "=attach:", "C-]")  # detach: attach ends, the session stays
        wait_for(lambda: "attach-exit=" in _screen(tmux_socket), what="attach to end on Ctrl-]", timeout=30)
        assert "attach-exit=0" in _screen(tmux_socket), _screen(tmux_socket)
        assert _pid(daemon) is not None
        daemon.stop("SIGTERM")


def _on_a_terminal(daemon: Daemon, *args: str) -> tuple[int, str]:
    """Run `tether ARGS` with a pty for stdin, stdout and stderr (as in a terminal): exit code, what it showed."""
    controller, terminal = os.openpty()
    try:
        child = subprocess.Popen([sys.executable, "-m", "tether", *args], stdin=terminal, stdout=terminal,
                                 stderr=terminal, env={**os.environ, "TETHER_STATE_DIR": str(daemon.state)},
                                 start_new_session=True)
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            shown += chunk
        return child.wait(30), shown.decode("utf-8", "replace")
    finally:
        os.close(controller)


def test_attach_refuses_an_unknown_session_and_piped_input(tmp_path: Path) -> None:
    with running(tmp_path / "state", _config(tmp_path), env=_daemon_env(tmp_path)) as daemon:
        daemon.start()
        wait_for(lambda: _pid(daemon), what="the shell to run")
        code, shown = _on_a_terminal(daemon, "attach", "nosuch")  # on a terminal: one line, no traceback
        assert code == 1, shown
        assert "tether: no session 'nosuch' is registered" in shown and "Traceback" not in shown, shown
        for stdin in (subprocess.DEVNULL, None):  # without a terminal: the same line and exit code
            quiet = subprocess.run([sys.executable, "-m", "tether", "attach", "nosuch"], stdin=stdin,
                                   input=b"" if stdin is None else None, capture_output=True, timeout=60,
                                   env={**os.environ, "TETHER_STATE_DIR": str(daemon.state)}, check=False)
            assert quiet.returncode == 1, quiet
            assert quiet.stderr.decode() == "tether: no session 'nosuch' is registered\n", quiet.stderr
        # piped input to a session that exists: refused, saying what to use; nothing typed
        mark = _offset(_tail(daemon, "--show-offset").stderr)
        piped = _tether_input(daemon, b"echo piped-$((6*7))\n", "attach", "sh")
        assert piped.returncode == 1, piped
        assert b"attach needs a terminal" in piped.stderr and b"tether send sh --data-stdin" in piped.stderr, \
            piped.stderr
        assert b"not connected" not in piped.stderr, piped.stderr
        assert daemon.cli("exec", "sh", "--", "echo", "still-here").stdout.strip() == "still-here"
        assert "piped-" not in _tail(daemon, "--since", str(mark)).stdout
        daemon.stop("SIGTERM")


def test_exec_whose_shell_ends_says_so_at_once_and_on_resume(tmp_path: Path) -> None:
    with running(tmp_path / "state", _config(tmp_path), env=_daemon_env(tmp_path)) as daemon:
        daemon.start()
        first = wait_for(lambda: _pid(daemon), what="the shell to run")
        ended = daemon.cli("exec", "sh", "--timeout", "20", "--", "echo before-$((1+1)); exit 3", check=False,
                           timeout=40)
        assert ended.returncode == 125, ended
        assert _lines(ended.stdout) in ("before-2\n", "before-2\nexit\n"), ended.stdout  # and bash's own "exit"
        assert ended.stderr == "tether: the shell ended before the command finished; its output is above\n", \
            ended.stderr
        second = wait_for(lambda: _pid(daemon) not in (None, first) and _pid(daemon), what="a new shell")

        # --resume of a run left waiting when its shell went: the same answer, not "still running"
        slow = daemon.cli("exec", "sh", "--timeout", "0.5", "--", "sleep 30", check=False)
        assert slow.returncode == 124, slow
        token = re.search(r"--resume (\S+)", slow.stderr)
        assert token, slow.stderr
        os.kill(second, signal.SIGKILL)
        resumed = daemon.cli("exec", "sh", "--timeout", "20", "--resume", token.group(1), check=False, timeout=40)
        assert resumed.returncode == 125, resumed
        assert resumed.stderr == "tether: the shell ended before the command finished; its output is above\n", \
            resumed.stderr
        wait_for(lambda: _pid(daemon) not in (None, second), what="another new shell")
        assert daemon.cli("exec", "sh", "--", "echo", "fine").stdout.strip() == "fine"  # the new shell runs commands
        daemon.stop("SIGTERM")


def test_exec_timeout_prints_a_resume_line_that_works_as_printed(tmp_path: Path) -> None:
    """The 124 message's line names the daemon the way this exec found it (here ``--state-dir``,
    with $TETHER_STATE_DIR elsewhere): copied as printed, it waits for the run and prints its output."""
    state = tmp_path / "state"
    elsewhere = {**_daemon_env(tmp_path), "TETHER_STATE_DIR": str(tmp_path / "no-daemon-here")}
    with running(state, _config(tmp_path), env=_daemon_env(tmp_path)) as daemon:
        daemon.start()
        wait_for(lambda: _pid(daemon), what="the shell to run")
        slow = tether_command("exec", "--state-dir", str(state), "sh", "--timeout", "0.5", "--",
                              "sleep 1.5; echo slow-$((2+2))", state=state, env=elsewhere)
        assert slow.returncode == 124, slow
        printed = re.search(r"wait for it with: (.+)$", slow.stderr.strip())
        assert printed, slow.stderr
        words = shlex.split(printed.group(1))
        assert words[:2] == ["tether", "exec"] and str(state) in words, words
        assert "--token" not in words  # a secret: never printed
        resumed = tether_command(*words[1:], state=state, env=elsewhere, timeout=40)
        assert resumed.returncode == 0, resumed
        assert _lines(resumed.stdout) == "slow-4\n"
        daemon.stop("SIGTERM")
