"""persist = "tmux": the remote program survives an outage and ssh-reconnect re-attaches to it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import trio

import tether
from tether.testing import wait_until
from tether_ssh import SshBackend, tmux_name

from .conftest import Sshd, run_and_expect, ssh_spec, ssh_supervisor, wait_status

S = tether.SessionStatus


def _tmux(socket: str, *args: str) -> str:
    done = subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True)
    return done.stdout.strip() or f"(tmux {args[0]} failed: {done.stderr.strip()})"


def _has_session(socket: str, name: str) -> bool:
    return subprocess.run(["tmux", "-L", socket, "has-session", "-t", f"={name}"]).returncode == 0


def _count(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


async def test_counting_loop_keeps_counting_through_an_outage(
    sshd: Sshd, tmux_socket: str, tmp_path: Path
) -> None:
    """The server goes away for a second; the loop counts on in tmux and the link re-attaches to it."""
    counter = tmp_path / "count"
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, persist="tmux", tmux_socket=tmux_socket))
        await wait_status(sup, "s1", S.CONNECTED)
        preserved = sup.state("s1").preserved
        assert preserved is not None and preserved.handle == tmux_name("s1")
        pane = _tmux(tmux_socket, "list-panes", "-t", tmux_name("s1"), "-F", "#{pane_pid}")
        loop = f"i=0; while :; do i=$((i+1)); echo $i > {counter}.n; mv {counter}.n {counter}; sleep 0.1; done"
        await sup.send("s1", loop.encode() + b"\n")
        await wait_until(lambda: _count(counter) >= 3, timeout=10, step=0.05)

        sshd.stop()
        await wait_until(lambda: sup.state("s1").status is not S.CONNECTED, timeout=10, step=0.02)
        during = _count(counter)
        await trio.sleep(1.0)
        assert _count(counter) > during, "the loop must count on while the link is down"
        sshd.start()

        await wait_until(lambda: sup.state("s1").episodes_recovered == 1, timeout=15, step=0.02)
        before = _count(counter)
        await wait_until(lambda: _count(counter) > before, timeout=5, step=0.05)
        assert _count(counter) > during + 5  # never restarted from 1
        after = _tmux(tmux_socket, "list-panes", "-t", tmux_name("s1"), "-F", "#{pane_pid}")
        assert after == pane, "re-attached to a different pane"


async def test_gone_tmux_session_falls_back_to_a_new_shell_in_the_old_cwd(
    sshd: Sshd, tmux_socket: str, tmp_path: Path
) -> None:
    """Re-attach finds nothing (GONE marker), so ssh-reconnect starts a new shell where the old one was."""
    work = tmp_path / "w"
    work.mkdir()
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, persist="tmux", tmux_socket=tmux_socket))
        await wait_status(sup, "s1", S.CONNECTED)
        await sup.send("s1", f"cd '{work}'\n".encode())

        def seen() -> bool:
            state = sup.state("s1").preserved
            return state is not None and state.cwd == str(work)

        await wait_until(seen, timeout=10, step=0.02)  # OSC 7 through tmux passthrough
        sshd.stop()
        _tmux(tmux_socket, "kill-session", "-t", tmux_name("s1"))
        sshd.start()
        try:
            await wait_until(lambda: sup.state("s1").episodes_recovered == 1, timeout=15, step=0.02)
        except trio.TooSlowError:
            raise AssertionError(str(sup.state("s1"))) from None
        await run_and_expect(sup, "s1", "printf 'C%sD\\n' \"$(pwd)\"", f"C{work}D".encode())
        assert _has_session(tmux_socket, tmux_name("s1"))


async def test_unregister_kills_the_tmux_session_shutdown_and_reconnect_keep_it(
    sshd: Sshd, tmux_socket: str
) -> None:
    """Unregister ends the remote program; a reconnect or a daemon shutdown leaves it running."""
    backend = SshBackend()
    async with ssh_supervisor(backend) as sup:
        for sid in ("gone", "kept"):
            await sup.register(ssh_spec(sshd, session_id=sid, persist="tmux", tmux_socket=tmux_socket))
        for sid in ("gone", "kept"):
            await wait_status(sup, sid, S.CONNECTED)
        pane = _tmux(tmux_socket, "list-panes", "-t", tmux_name("kept"), "-F", "#{pane_pid}")
        await sup.force_reconnect("kept")
        await wait_status(sup, "kept", S.CONNECTED)
        assert _has_session(tmux_socket, tmux_name("kept")), "a reconnect must not end the program"
        assert backend.remote_kills == 0

        with trio.fail_after(10):
            await sup.unregister("gone")
        assert not _has_session(tmux_socket, tmux_name("gone")), "unregister must end the tmux session"
        assert backend.remote_kills == 1
    # the supervisor shut down with "kept" still registered: its program lives on, same pane
    assert _has_session(tmux_socket, tmux_name("kept"))
    assert _tmux(tmux_socket, "list-panes", "-t", tmux_name("kept"), "-F", "#{pane_pid}") == pane
    assert backend.remote_kills == 1
