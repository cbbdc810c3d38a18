"""persist = tmux: the program outlives its link and tether itself; unregister ends it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import trio

import tether
from tether import DisconnectReason, SessionStatus
from tether.testing import require_peer
from tether_process import ProcessBackend, TmuxHandle

from .conftest import Spec, alive, children, connected, registry_with, tmux_has, tmux_sockets, wait_for

SCRIPT = os.path.join(os.path.dirname(__file__), "supervise_tmux.py")


@pytest.fixture(autouse=True)
def _tmux() -> None:
    require_peer(shutil.which("tmux") is not None, "tmux not installed")


def handle_of(sup: tether.Supervisor, session_id: str) -> TmuxHandle:
    preserved = sup.state(session_id).preserved
    handle = TmuxHandle.decode(preserved.handle if preserved else None)
    assert handle is not None
    return handle


async def test_dropped_client_reattaches_to_the_same_program(
    sup: tether.Supervisor, backend: ProcessBackend, spec: Spec
) -> None:
    """Killing the tmux client is a remote-closed drop; session-restore re-attaches: same pid, same shell."""
    await sup.register(spec(argv=["bash"], persist="tmux", cwd="/tmp"))
    await connected(sup, "p1")
    await sup.send("p1", b"KEPT=still-here\r")
    await wait_for(lambda: (sup.state("p1").preserved or tether.PreservedState()).last_command == "KEPT=still-here")
    link = backend.links["p1"]
    pid, client = link.pid, link._child.pid
    os.kill(client, signal.SIGKILL)
    await wait_for(lambda: "p1" in backend.links and backend.links["p1"] is not link)
    await connected(sup, "p1")
    state = sup.state("p1")
    assert state.last_disconnect is not None
    assert state.last_disconnect.reason is DisconnectReason.REMOTE_CLOSED
    assert state.episode is not None and state.episode.attempts[-1].used_strategy == "session-restore"
    assert backend.links["p1"].pid == pid
    await sup.send("p1", b"echo value=$KEPT\r")
    await wait_for(lambda: b"value=still-here" in sup.output_history("p1"))


async def test_program_exit_in_tmux_restarts_in_preserved_cwd(
    sup: tether.Supervisor, backend: ProcessBackend, spec: Spec, tmp_path: os.PathLike[str]
) -> None:
    """`exit` in the tmux shell is a process exit; process-restart starts a new one where it was."""
    await sup.register(spec(argv=["bash"], persist="tmux", cwd="/"))
    await connected(sup, "p1")
    await sup.send("p1", f"cd {tmp_path}\r".encode())
    await wait_for(lambda: (sup.state("p1").preserved or tether.PreservedState()).cwd == str(tmp_path))
    old_pid, old_handle = backend.links["p1"].pid, handle_of(sup, "p1")
    await sup.send("p1", b"exit\r")
    await wait_for(lambda: "p1" in backend.links and backend.links["p1"].pid != old_pid)
    await connected(sup, "p1")
    state = sup.state("p1")
    assert state.last_disconnect is not None and state.last_disconnect.reason is DisconnectReason.PROCESS_EXIT
    assert os.readlink(f"/proc/{backend.links['p1'].pid}/cwd") == str(tmp_path)
    assert not tmux_has(old_handle)
    assert handle_of(sup, "p1") != old_handle


async def test_unregister_kills_the_tmux_session(
    sup: tether.Supervisor, backend: ProcessBackend, spec: Spec, runtime_dir: str
) -> None:
    """Unregister ends the program, its tmux server and socket, and the client: no leaks."""
    kids = children()
    await sup.register(spec(argv=["bash"], persist="tmux"))
    await connected(sup, "p1")
    pid, handle = backend.links["p1"].pid, handle_of(sup, "p1")
    assert tmux_has(handle)
    await sup.unregister("p1")
    assert not tmux_has(handle)
    assert not alive(pid)
    assert tmux_sockets(runtime_dir) == []
    assert children() == kids


async def test_force_reconnect_reattaches_to_the_same_program(
    sup: tether.Supervisor, backend: ProcessBackend, spec: Spec
) -> None:
    """A forced reconnect of a tmux session closes only the client: session-restore
    re-attaches to the same program (same pid, shell state kept); unregister still ends it."""
    await sup.register(spec(argv=["bash"], persist="tmux", cwd="/tmp"))
    await connected(sup, "p1")
    await sup.send("p1", b"KEPT=forced\r")
    await wait_for(lambda: (sup.state("p1").preserved or tether.PreservedState()).last_command == "KEPT=forced")
    link = backend.links["p1"]
    pid, handle = link.pid, handle_of(sup, "p1")
    with trio.fail_after(20):
        attempt = await sup.force_reconnect("p1")
    assert attempt is not None and attempt.used_strategy == "session-restore"
    await connected(sup, "p1")
    assert backend.links["p1"] is not link
    assert backend.links["p1"].pid == pid and alive(pid)
    assert handle_of(sup, "p1") == handle
    await sup.send("p1", b"echo value=$KEPT\r")
    await wait_for(lambda: b"value=forced" in sup.output_history("p1"))
    await sup.unregister("p1")
    assert not tmux_has(handle)
    assert not alive(pid)


async def test_supervisor_shutdown_leaves_the_program_running(
    backend: ProcessBackend, spec: Spec, runtime_dir: str
) -> None:
    """Leaving open_supervisor detaches (like a crash would), so a restarted daemon can re-attach."""
    async with tether.open_supervisor(registry=registry_with(backend)) as sup:
        await sup.register(spec(argv=["sleep", "300"], persist="tmux"))
        await connected(sup, "p1")
        pid, handle = backend.links["p1"].pid, handle_of(sup, "p1")
    assert tmux_has(handle)
    assert alive(pid)


async def test_tether_killed_then_restored_reattaches_to_the_same_pid(
    backend: ProcessBackend, spec: Spec, runtime_dir: str, tmp_path: os.PathLike[str]
) -> None:
    """SIGKILL the daemon while a tmux program runs; a new supervisor restores the session
    (``register(restore=SessionState)``) and session-restore re-attaches: same pid, same shell state."""
    workdir = str(tmp_path)
    marker = f"m{os.getpid()}"
    process = await trio.lowlevel.open_process(
        [sys.executable, SCRIPT, runtime_dir, workdir, marker], stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(4096)
                assert chunk, "the daemon script ended early"
                line += chunk
        report = json.loads(line)
    finally:
        process.kill()  # SIGKILL: no cleanup code runs in the daemon
        await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()
    handle = TmuxHandle.decode(report["handle"])
    assert handle is not None
    assert tmux_has(handle) and alive(report["pid"])

    restore = tether.SessionState(
        id="crash", backend="process", target="localhost", status=SessionStatus.CONNECTED,
        status_since=time.time(), episode=None, history=(),
        preserved=tether.PreservedState(cwd=report["cwd"], handle=report["handle"]),
        last_disconnect=None, connected_at=None, next_attempt_at=None,
        episodes_total=0, episodes_recovered=0, episodes_failed=0,
    )
    async with tether.open_supervisor(registry=registry_with(backend)) as sup:
        await sup.register(
            tether.SessionSpec(id="crash", backend="process", options={"argv": ["bash"], "persist": "tmux"}),
            restore=restore,
        )
        await connected(sup, "crash", within=20)
        state = sup.state("crash")
        assert state.episode is not None
        assert state.episode.disconnect.reason is DisconnectReason.SUPERVISOR_RESTART
        assert state.episode.attempts[-1].used_strategy == "session-restore"
        assert backend.links["crash"].pid == report["pid"]
        await sup.send("crash", b"echo marker=$MARKER pwd=$PWD\r")
        await wait_for(lambda: f"marker={marker} pwd={workdir}".encode() in sup.output_history("crash"))
        await sup.unregister("crash")
    assert not tmux_has(handle)
    assert not alive(report["pid"])


async def test_reattach_to_a_vanished_session_falls_back_to_restart(
    backend: ProcessBackend, spec: Spec, runtime_dir: str
) -> None:
    """A restored handle whose tmux session is gone: session-restore is unavailable, process-restart runs."""
    gone = TmuxHandle(socket=os.path.join(runtime_dir, "gone.sock")).encode()
    restore = tether.SessionState(
        id="p1", backend="process", target="localhost", status=SessionStatus.CONNECTED,
        status_since=time.time(), episode=None, history=(),
        preserved=tether.PreservedState(cwd="/tmp", handle=gone), last_disconnect=None,
        connected_at=None, next_attempt_at=None, episodes_total=0, episodes_recovered=0, episodes_failed=0,
    )
    async with tether.open_supervisor(registry=registry_with(backend)) as sup:
        await sup.register(spec(argv=["bash"], persist="tmux"), restore=restore)
        await connected(sup, "p1")
        attempt = sup.state("p1").episode
        assert attempt is not None and attempt.attempts[-1].used_strategy == "process-restart"
        assert os.readlink(f"/proc/{backend.links['p1'].pid}/cwd") == "/tmp"
        await sup.unregister("p1")
    assert tmux_sockets(runtime_dir) == []
