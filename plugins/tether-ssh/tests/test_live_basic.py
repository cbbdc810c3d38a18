"""A real sshd on 127.0.0.1: connect, talk, track the cwd, and never judge by remote output."""

from __future__ import annotations

from pathlib import Path

import tether
from tether_ssh import SshBackend

from .conftest import Sshd, run_and_expect, ssh_spec, ssh_supervisor, wait_status

CONNECTED = tether.SessionStatus.CONNECTED


async def test_connects_runs_commands_and_tracks_cwd(sshd: Sshd, tmp_path: Path) -> None:
    """The shell comes up, answers input, and a ``cd`` is reported back as preserved cwd (OSC 7)."""
    work = tmp_path / "work dir"
    work.mkdir()
    backend = SshBackend()
    async with ssh_supervisor(backend) as sup:
        await sup.register(ssh_spec(sshd, env={"TETHER_T": "v1"}))
        await wait_status(sup, "s1", CONNECTED)
        await run_and_expect(sup, "s1", "printf 'E%sF\\n' \"$TETHER_T\"", b"Ev1F")
        await sup.send("s1", f"cd '{work}'\n".encode())
        await wait_until_cwd(sup, "s1", str(work))


async def wait_until_cwd(sup: tether.Supervisor, sid: str, cwd: str) -> None:
    from tether.testing import wait_until

    def seen() -> bool:
        state = sup.state(sid).preserved
        return state is not None and state.cwd == cwd

    await wait_until(seen, timeout=10, step=0.02)


async def test_a_resize_reaches_the_remote_terminal(sshd: Sshd) -> None:
    """The local pty is ssh's controlling terminal: a resize is a window-change on the remote pty."""
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, shell_integration=False, rows=24, cols=80))
        await wait_status(sup, "s1", CONNECTED)
        await run_and_expect(sup, "s1", "stty size | sed 's/^/S=/'", b"S=24 80")
        await sup.resize("s1", 41, 133)
        await run_and_expect(sup, "s1", "stty size | sed 's/^/S=/'", b"S=41 133")
