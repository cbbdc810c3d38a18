"""The console ops over a real sshd, through the supervisor: what attach, tail and exec get.

Each test drives a remote bash (a plain ssh shell, and one kept in tmux) with
`tether.testing.console`: `wait` for a pattern, `resize` seen by ``stty size``,
markers printed before and after a drop (the server-side connection or ssh killed)
or a restart of the supervisor itself (the same SQLite file), read on from the
cursor taken before. A plain shell dies with its connection: the new shell's
output follows one explicit loss (what the old shell printed while unseen is
unknown). tmux keeps the shell and its pane log replays what was missed: the
cursor reads on exactly, with no loss.

`run` needs tether's shell integration (the ``OSC 133;A;tether-shell`` prompt
mark): the ssh backend writes its start-up files on the remote host and starts
the login bash with them, so `run` answers with the command's status and
output range, a `cd` in a run sticks, and the user's own login files still run.
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.testing import (
    check_continues,
    check_resize,
    check_runs,
    check_wait_pattern,
    print_marker,
    wait_for_prompt,
    wait_until,
)
from tether_ssh import SshBackend, tmux_name

from .conftest import Sshd, children_of, processes_matching, ssh_spec, ssh_supervisor, stored_ssh_supervisor

S = tether.SessionStatus


async def test_wait_resize_and_run(sshd: Sshd, persist: dict[str, Any]) -> None:
    """wait for a pattern; a resize reaches the remote program; run gives status and output range."""
    (sshd.home / ".profile").write_text("export FROM_PROFILE=login-files-ran\n")
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, **persist))
        await wait_for_prompt(sup, "s1")
        await check_wait_pattern(sup, "s1")
        tty = remote_tty(sshd, persist)
        for rows, cols in ((41, 132), (24, 80)):
            await resized(sup, tty, rows, cols)
            await check_resize(sup, "s1", rows, cols)
        await check_runs(sup, "s1")
        moved = await sup.run("s1", "cd /tmp && echo $FROM_PROFILE")
        assert (moved.done, moved.exit_status) == (True, 0), moved
        out = sup.read("s1", moved.output_start, moved.output_stop - moved.output_start)
        assert out.data.strip() == b"login-files-ran", out
        where = await sup.run("s1", "pwd")
        assert sup.read("s1", where.output_start, where.output_stop - where.output_start).data.strip() == b"/tmp"


async def test_run_after_a_link_drop(sshd: Sshd, persist: dict[str, Any]) -> None:
    """After the connection is killed, the re-attached shell (tmux) or the new one (plain) runs
    commands again: its integration is loaded in a new shell too."""
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, **persist))
        await wait_for_prompt(sup, "s1")
        first = await sup.run("s1", "true")
        assert first.exit_status == 0, first
        assert sshd.kill_children(), "nothing to kill"
        await wait_until(lambda: sup.state("s1").episodes_recovered == 1, timeout=20, step=0.02)
        since = sup.read("s1", None, 1).end
        await sup.send("s1", b"\r")  # a re-attached shell tells its name again at its next prompt
        await wait_for_prompt(sup, "s1", since=since)
        again = await sup.run("s1", "false")
        assert (again.done, again.exit_status) == (True, 1), again


def remote_tty(sshd: Sshd, persist: dict[str, Any]) -> str:
    """The remote shell's terminal (the remote host is this machine): tmux's pane, or the pty sshd
    made for the one plain login shell under it."""
    if persist:
        return subprocess.run(
            ["tmux", "-L", persist["tmux_socket"], "display", "-p", "-t", f"={tmux_name('s1')}:", "#{pane_tty}"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    pending, shells = list(sshd.children()), []
    while pending:
        pid = pending.pop()
        pending.extend(children_of(pid))
        with suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "bash":
                shells.append(os.readlink(f"/proc/{pid}/fd/0"))
    assert len(shells) == 1, f"one remote shell expected: {shells}"
    return shells[0]


async def resized(sup: tether.Supervisor, tty: str, rows: int, cols: int) -> None:
    """Resize, then wait until the remote terminal has the size.

    Over ssh a resize is a window-change message sent when ssh gets round to its SIGWINCH, and
    in tmux the pane log's follower applies it (`tether_ssh._panelog`) and tmux sets the pane's
    terminal later still: input typed right after `resize` returns can reach the shell first
    and see the old size. So the test waits for the size itself before asking the shell.
    """
    await sup.resize("s1", rows, cols)

    def size() -> str:
        return subprocess.run(["stty", "-F", tty, "size"], capture_output=True, text=True).stdout.strip()

    await wait_until(lambda: size() == f"{rows} {cols}", timeout=10, step=0.02)


def kill_ssh_clients(sshd: Sshd) -> list[int]:
    """kill -9 tether's ssh clients for this server (their argv names the test's client key)."""
    pids = [pid for pid in processes_matching(str(sshd.client_key))
            if Path(f"/proc/{pid}/comm").read_text().strip() == "ssh"]
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@pytest.mark.parametrize("fault", ["server-side", "client"])
async def test_read_since_across_a_link_drop(sshd: Sshd, persist: dict[str, Any], fault: str) -> None:
    """The server-side connection is killed, or tether's ssh client is. Plain: a new shell, one
    explicit loss, no byte twice. tmux: the same shell re-attached, its pane log replays: exact
    continuation, no loss."""
    tmux = bool(persist)
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, **persist))
        await wait_for_prompt(sup, "s1")
        before = await print_marker(sup, "s1", "drop")
        killed = sshd.kill_children() if fault == "server-side" else kill_ssh_clients(sshd)
        assert killed, f"nothing to kill ({fault})"
        await wait_until(lambda: sup.state("s1").episodes_recovered == 1, timeout=20, step=0.02)
        episode = sup.state("s1").episode
        assert episode is not None and episode.attempts[-1].same_program is tmux, [str(a) for a in episode.attempts]
        span = await check_continues(sup, "s1", before, expect_loss=not tmux)
        if tmux:
            assert span.losses == ()
        else:
            assert [loss.kind for loss in span.losses] == [tether.LossKind.UNSEEN], span.losses


async def test_read_since_across_a_supervisor_restart(
    sshd: Sshd, persist: dict[str, Any], tmp_path: Path
) -> None:
    """The supervisor stops (cleanly) and starts again on the same SQLite file; the cursor taken before
    reads on. Plain: ssh ended with tether, so did the shell: one unseen loss of unknown size. tmux kept
    the shell: it is re-attached and nothing is lost."""
    tmux = bool(persist)
    path = tmp_path / "tether.sqlite3"
    async with stored_ssh_supervisor(path) as sup:
        await sup.register(ssh_spec(sshd, **persist))
        await wait_for_prompt(sup, "s1")
        before = await print_marker(sup, "s1", "restart")
    async with stored_ssh_supervisor(path) as sup:
        span = await check_continues(sup, "s1", before, expect_loss=not tmux)
        if not tmux:
            assert [(loss.kind, loss.size) for loss in span.losses] == [(tether.LossKind.UNSEEN, None)]
        await sup.unregister("s1")  # tmux: end the kept shell with the test
