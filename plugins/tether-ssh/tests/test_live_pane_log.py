"""persist = "tmux" over ssh keeps a pane log on the remote host: a re-attach delivers exactly the bytes missed.

A loop in the remote tmux session prints numbered lines while the network is
cut (an nft black hole on the sshd port) or the connection is killed; tmux's
screen alone would keep only its last rows. After the re-attach every number
is in the session's output log exactly once, in order, or inside an explicit
loss whose size is what the remote log had to trim.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import trio

import tether
from tether import Loss, LossKind
from tether.testing import wait_until
from tether_ssh import SshBackend, tmux_name

from .conftest import Sshd, black_hole, ssh_spec, ssh_supervisor, wait_status

S = tether.SessionStatus
NUMBER = re.compile(rb"n=(\d+)\r\n")
HISTORY = 4 << 20
"""The supervisor's output log: big enough to hold the whole test's output (no tether-side trim)."""


def loop(count: int, pause_every: int = 10) -> bytes:
    """A shell loop printing ``n=1`` .. ``n=count``, pausing 10 ms every `pause_every` lines (its echo
    holds no ``n=<digit>``)."""
    return (
        f"i=0; while [ $i -lt {count} ]; do i=$((i+1)); echo n=$i; "
        f"[ $((i % {pause_every})) -eq 0 ] && sleep 0.01; done\n"
    ).encode()


def last_number(sup: tether.Supervisor, sid: str) -> int:
    found = NUMBER.findall(sup.read(sid, max(0, sup.read(sid).end - 256)).data)
    return int(found[-1]) if found else 0


def numbers_and_losses(sup: tether.Supervisor, sid: str) -> tuple[list[int], list[Loss], list[tuple[int, bytes]]]:
    read = sup.read(sid, 0, 1 << 30)
    assert read.next == read.end, "the whole log in one read"
    pieces = list(read.pieces())
    runs = [p for p in pieces if not isinstance(p, Loss)]
    losses = [p for p in pieces if isinstance(p, Loss)]
    return [int(n) for n in NUMBER.findall(read.data)], losses, runs


def _tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True).stdout.strip()


async def test_numbered_lines_through_a_black_hole_arrive_exactly_once(sshd: Sshd, tmux_socket: str) -> None:
    """Cut the network while the loop prints; after the re-attach every number is there once, no loss."""
    async with ssh_supervisor(SshBackend(), output_history_bytes=HISTORY) as sup:
        await sup.register(ssh_spec(sshd, persist="tmux", tmux_socket=tmux_socket, shell_integration=False))
        await wait_status(sup, "s1", S.CONNECTED)
        await sup.send("s1", loop(3000))
        await wait_until(lambda: last_number(sup, "s1") >= 50, timeout=15, step=0.02)
        with black_hole(sshd.port):
            await wait_until(lambda: sup.state("s1").status is not S.CONNECTED, timeout=15, step=0.02)
            during = last_number(sup, "s1")
        await wait_until(lambda: sup.state("s1").episodes_recovered == 1, timeout=20, step=0.02)
        await wait_until(lambda: last_number(sup, "s1") == 3000, timeout=30, step=0.05)
        numbers, losses, _ = numbers_and_losses(sup, "s1")
        print("during", during, sup.state("s1"))
    assert during < 2500, "the loop must still print when the link comes back"
    assert losses == []
    assert numbers == list(range(1, 3001))
