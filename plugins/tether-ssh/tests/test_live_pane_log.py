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
from tether import LossKind
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
        f"[ $((i % {pause_every})) -eq 0 ] && sleep 0.01; done\r"
    ).encode()


def line(number: int) -> bytes:
    return b"n=%d\r\n" % number


def last_number(sup: tether.Supervisor, sid: str) -> int:
    found = NUMBER.findall(sup.read(sid, max(0, sup.read(sid).end - 256)).data)
    return int(found[-1]) if found else 0


def whole_log(sup: tether.Supervisor, sid: str) -> tether.LogRead:
    read = sup.read(sid, 0, 1 << 30)
    assert read.next == read.end, "the whole log in one read"
    return read


def numbers(data: bytes) -> list[int]:
    return [int(n) for n in NUMBER.findall(data)]


def tmux(socket: str, *args: str) -> str:
    """A tmux command on the test's tmux server (the remote host is this machine); its output."""
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True).stdout.strip()


def log_directory(tmux_socket: str, sid: str) -> Path:
    """The remote pane log of session `sid` (the remote host is this machine)."""
    out = subprocess.run(
        ["tmux", "-L", tmux_socket, "show-options", "-qv", "-t", f"={tmux_name(sid)}:", "@tether-pane-log"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert out, "the session has a pane log"
    return Path(out)


def oldest_kept(directory: Path, segment: int) -> int:
    kept = sorted(directory.glob("seg.?????????.w"))
    return int(kept[0].name[4:13]) * segment if kept else 0


async def cut(sup: tether.Supervisor, sshd: Sshd, sid: str, fault: str) -> None:
    """Drop the link for real: a black hole until the drop is noticed, or the server-side connection killed."""
    if fault == "black-hole":
        with black_hole(sshd.port):
            await wait_until(lambda: sup.state(sid).status is not S.CONNECTED, timeout=15, step=0.02)
    else:
        sshd.kill_children()
        await wait_until(lambda: sup.state(sid).status is not S.CONNECTED, timeout=15, step=0.02)


@pytest.mark.parametrize(
    ("fault", "shared"), [("black-hole", True), ("killed-connection", True), ("killed-connection", False)]
)
async def test_numbered_lines_through_a_drop_arrive_exactly_once(
    sshd: Sshd, tmux_socket: str, fault: str, shared: bool
) -> None:
    """Drop the link while the loop prints; after the re-attach every number is there once, in order, no loss."""
    count = 3000
    async with ssh_supervisor(SshBackend(), output_history_bytes=HISTORY) as sup:
        await sup.register(ssh_spec(sshd, persist="tmux", tmux_socket=tmux_socket, shell_integration=False,
                                    share_connection=shared))
        await wait_status(sup, "s1", S.CONNECTED)
        await sup.send("s1", loop(count))
        await wait_until(lambda: last_number(sup, "s1") >= 50, timeout=15, step=0.02)
        await cut(sup, sshd, "s1", fault)
        seen = last_number(sup, "s1")
        await wait_until(lambda: sup.state("s1").episodes_recovered == 1, timeout=20, step=0.02)
        assert sup.state("s1").episode is not None and sup.state("s1").episode.attempts[-1].same_program
        await wait_until(lambda: last_number(sup, "s1") == count, timeout=30, step=0.05)
        read = whole_log(sup, "s1")
    assert seen < count - 24, "the loop must still be printing when the link comes back (more than a screen)"
    assert read.losses == ()
    assert numbers(read.data) == list(range(1, count + 1))


async def test_a_remote_log_trimmed_while_away_is_one_exact_loss(sshd: Sshd, tmux_socket: str) -> None:
    """A small remote log (4 KiB) and an outage longer than it holds: one unseen loss of exactly the
    bytes the log dropped, and around it the loop's own bytes."""
    count, total = 6000, 4096
    segment = total // 4
    async with ssh_supervisor(SshBackend(), output_history_bytes=HISTORY) as sup:
        await sup.register(ssh_spec(sshd, persist="tmux", tmux_socket=tmux_socket, shell_integration=False,
                                    pane_log_bytes=total))
        await wait_status(sup, "s1", S.CONNECTED)
        directory = log_directory(tmux_socket, "s1")
        await sup.send("s1", loop(count, pause_every=20))
        await wait_until(lambda: last_number(sup, "s1") >= 50, timeout=15, step=0.02)
        with black_hole(sshd.port):
            await wait_until(lambda: sup.state("s1").status is not S.CONNECTED, timeout=15, step=0.02)
            held = sup.read("s1").end  # this stream began the log: positions are its offsets
            await wait_until(lambda: oldest_kept(directory, segment) > held, timeout=15, step=0.02)
            assert len(list(directory.glob("seg.?????????"))) <= 4, "the remote log's bound held"
        await wait_until(lambda: sup.state("s1").episodes_recovered == 1, timeout=20, step=0.02)
        await wait_until(lambda: last_number(sup, "s1") == count, timeout=30, step=0.05)
        read = whole_log(sup, "s1")
    (loss,) = read.losses
    assert loss.kind is LossKind.UNSEEN and loss.start == held
    assert loss.size == loss.stop - loss.start > 0 and loss.stop % segment == 0  # to a segment's start
    before, after = read.data[: loss.start], read.data[loss.start :]
    first_after = numbers(after)[0]
    last_before = numbers(before)[-1]
    assert numbers(before) == list(range(1, last_before + 1))
    assert numbers(after) == list(range(first_after, count + 1))
    # the loss is exactly the loop's bytes between the two: the partial lines around it plus the lines missing
    tail = len(before) - (before.rindex(line(last_before)) + len(line(last_before)))
    head = after.index(line(first_after))
    missing = sum(len(line(n)) for n in range(last_before + 1, first_after))
    assert tail + loss.size + head == missing
    assert before[len(before) - tail :] == line(last_before + 1)[:tail]


async def test_the_window_takes_the_link_size_and_input_reaches_the_program_as_typed(
    sshd: Sshd, tmux_socket: str
) -> None:
    """No tmux client is attached: the window follows the link's size, and Ctrl-C still interrupts."""
    async with ssh_supervisor(SshBackend(), output_history_bytes=HISTORY) as sup:
        await sup.register(ssh_spec(sshd, persist="tmux", tmux_socket=tmux_socket, shell_integration=False,
                                    rows=30, cols=100))
        await wait_status(sup, "s1", S.CONNECTED)

        def size() -> str:
            return tmux(tmux_socket, "display", "-p", "-t", f"={tmux_name('s1')}:", "#{window_width}x#{window_height}")

        await wait_until(lambda: size() == "100x30", timeout=10, step=0.02)
        assert tmux(tmux_socket, "list-clients") == "", "no tmux client: the channel carries the pane log"
        await sup.resize("s1", 40, 132)
        await wait_until(lambda: size() == "132x40", timeout=10, step=0.02)
        await sup.send("s1", b"stty size; sleep 100; echo AFTER$((6*7))\r")
        try:
            await wait_until(lambda: b"40 132" in sup.read("s1").data, timeout=5, step=0.02)
        except trio.TooSlowError:
            raise AssertionError(sup.read("s1").data[-300:]) from None
        await sup.interrupt("s1")
        await sup.send("s1", b"echo DONE$((6*7))\r")
        await wait_until(lambda: b"DONE42" in sup.read("s1").data, timeout=10, step=0.02)
        assert b"AFTER42" not in sup.read("s1").data, "Ctrl-C ended the sleep and the rest of its line"


async def test_a_session_without_a_pane_log_is_attached_as_before(sshd: Sshd, tmux_socket: str) -> None:
    """A tmux session an older tether started (no pane log) is reused and attached with a tmux client:
    its output is what the client draws, and commands work."""
    name = tmux_name("s1")
    tmux(tmux_socket, "-f", "/dev/null", "new-session", "-d", "-s", name, "sh")
    async with ssh_supervisor(SshBackend(), output_history_bytes=HISTORY) as sup:
        await sup.register(ssh_spec(sshd, persist="tmux", tmux_socket=tmux_socket, shell_integration=False))
        await wait_status(sup, "s1", S.CONNECTED)
        assert tmux(tmux_socket, "list-clients", "-t", f"={name}"), "a tmux client is attached (the old way)"
        await sup.send("s1", b"echo OLD$((6*7))\r")
        await wait_until(lambda: b"OLD42" in sup.read("s1").data, timeout=10, step=0.02)
    assert "@tether-pane-log" not in tmux(tmux_socket, "show-options", "-t", f"={name}:")
