"""The console ops on a real Jupyter Server terminal, through the supervisor: what attach, tail and exec get.

Each test drives the terminal's shell with `tether.testing.console`: `run`
(exit status, output range, a token for a long command, ``cd`` that sticks),
`wait` for a pattern, `resize` (terminado's ``set_size``) seen by
``stty size``, markers printed before and after a dropped WebSocket (the
network path cut with nft until the missing pong is noticed) or a restart of
the supervisor itself (the same SQLite file), read on from the cursor taken
before. The server keeps the shell either way: tether re-attaches to the same
terminal, and since terminado's replay carries no offsets, the log holds one
explicit unseen loss of unknown size there, and no byte twice.

`run` needs tether's shell integration (the ``OSC 133;A;tether-shell`` prompt
mark): the backend types it into every new terminal's shell, which picks
bash's or zsh's body itself; sh ignores it, and `run` is refused with a
`LinkError` that says why. A re-attach types nothing (the echo of the install
line is counted): the shell still has the integration, and the session's state
says which shell it is (``extra["shell"]``), so `run` works the moment the
session is connected again, after a supervisor restart too. A new terminal
after the server restarted gets the integration again, in the restored cwd.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

import tether
from tether import SessionSpec, SessionStatus
from tether.testing import (
    Marked,
    Span,
    check_continues,
    check_resize,
    check_runs,
    check_wait_pattern,
    print_marker,
    require_peer,
    wait_connected,
    wait_until,
)

from .conftest import INSTALL_ECHO, JupyterServer, NetworkCut, quick_policy, registry, wait_for_integration


def spec(server: JupyterServer, sid: str, token: object = None, **policy: object) -> SessionSpec:
    options = server.options() if token is None else server.options(token=token)
    return SessionSpec(id=sid, backend="websocket", options=options, policy=quick_policy(**policy))


def assert_one_unknown_loss(span: Span, before: Marked) -> None:
    """A re-attach gets terminado's replay of recent output, not bytes at known offsets: what the
    shell printed while tether was away cannot be placed exactly, so the log says so with one
    unseen loss of unknown size where the link came back (and shows nothing twice)."""
    (loss,) = span.losses
    assert (loss.kind, loss.size) == (tether.LossKind.UNSEEN, None), loss
    assert before.cursor <= loss.start < span.next, (loss, before)


async def run_output(sup: tether.Supervisor, sid: str, command: str) -> str:
    """`run` `command`: it must succeed; its output (one line, stripped)."""
    done = await sup.run(sid, command, budget=20)
    assert done.done and done.exit_status == 0, done
    out, cursor = b"", done.output_start
    while cursor < done.output_stop:  # after a restart the log serves it once written down
        read = await sup.read_next(sid, cursor, done.output_stop - cursor, budget=10)
        assert read.next > cursor and not read.losses, read
        out, cursor = out + read.data, read.next
    return out.decode().strip()


def since(sup: tether.Supervisor, sid: str) -> int:
    return sup.read(sid, None, 1).end


def typed_after(sup: tether.Supervisor, sid: str, start: int) -> int:
    """How often the integration was typed since `start` (its echo)."""
    return sup.output_history(sid)[start:].count(INSTALL_ECHO)


async def test_run_wait_and_resize(supervisor: tether.Supervisor, shared_jupyter: JupyterServer) -> None:
    """Once connected, run: 0 for true, 1 for false, the output range, a token for a long command
    that wait_run finishes; wait for a pattern; a resize reaches the terminal's shell."""
    await supervisor.register(spec(shared_jupyter, "ops"))
    await wait_connected(supervisor, "ops")
    await check_runs(supervisor, "ops")  # at once: a connect waits for the integration's first prompt
    assert typed_after(supervisor, "ops", 0) == 1, "the integration is typed once into a new shell"
    await check_wait_pattern(supervisor, "ops")
    await check_resize(supervisor, "ops", 41, 132)
    await check_resize(supervisor, "ops", 24, 80)


async def test_cd_in_a_run_sticks(supervisor: tether.Supervisor, shared_jupyter: JupyterServer) -> None:
    """A ``cd`` in one run holds for the next (the command runs in the shell itself), the cwd is
    tracked from the integration's OSC 7, and the last command is the run's, not the typed line."""
    work = shared_jupyter.root / "run dir"
    work.mkdir()
    await supervisor.register(spec(shared_jupyter, "cd"))
    await wait_for_integration(supervisor, "cd")
    assert await run_output(supervisor, "cd", f"cd '{work}' && pwd") == str(work)
    assert await run_output(supervisor, "cd", "pwd") == str(work)
    def kept() -> tuple[str | None, str | None]:
        state = supervisor.state("cd").preserved or tether.PreservedState()
        return state.cwd, state.last_command

    await wait_until(lambda: kept() == (str(work), "pwd"), timeout=5)


async def test_run_at_once_after_a_reattach(supervisor: tether.Supervisor, shared_jupyter: JupyterServer) -> None:
    """A forced re-attach to the same shell: nothing is typed into it (no integration, no key), and
    run works as soon as the session is connected."""
    await supervisor.register(spec(shared_jupyter, "again"))
    await wait_for_integration(supervisor, "again")
    pid = await run_output(supervisor, "again", "cd /tmp && echo $$")
    start = since(supervisor, "again")
    attempt = await supervisor.force_reconnect("again", "session-restore")
    assert attempt is not None and attempt.success and attempt.same_program, attempt
    assert await run_output(supervisor, "again", "echo $$:$PWD") == f"{pid}:/tmp"
    assert typed_after(supervisor, "again", start) == 0
    assert b"^C" not in supervisor.output_history("again")[start:]


async def test_read_since_across_a_dropped_websocket(
    supervisor: tether.Supervisor, shared_jupyter: JupyterServer
) -> None:
    """The network path is cut until the missing pong drops the WebSocket; once it is back the same
    shell is re-attached, run works at once in it, and the cursor reads on: the new marker once,
    the old never again."""
    require_peer(NetworkCut.available(), "nft (and root) needed to cut loopback traffic")
    await supervisor.register(spec(shared_jupyter, "drop", connect_timeout=4.0, max_retries=None, max_delay=0.5))
    await wait_for_integration(supervisor, "drop")
    pid = await run_output(supervisor, "drop", "echo $$")
    before = await print_marker(supervisor, "drop", "drop")
    cut = NetworkCut(shared_jupyter.port)
    try:
        await trio.to_thread.run_sync(cut.cut)
        await wait_until(lambda: supervisor.state("drop").episodes_total == 1, timeout=15, step=0.02)
    finally:
        await trio.to_thread.run_sync(cut.restore)
    await wait_until(lambda: supervisor.state("drop").episodes_recovered == 1, timeout=20, step=0.02)
    episode = supervisor.state("drop").episode
    assert episode is not None and episode.attempts[-1].same_program, episode
    assert await run_output(supervisor, "drop", "echo $$") == pid
    assert typed_after(supervisor, "drop", before.cursor) == 0, "a re-attach never retypes the integration"
    span = await check_continues(supervisor, "drop", before, expect_loss=True)
    assert_one_unknown_loss(span, before)


async def test_read_since_across_a_supervisor_restart(
    shared_jupyter: JupyterServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor stops (cleanly: the server keeps the shell) and starts again on the same SQLite
    file; the same terminal is re-attached, run works at once in the cwd a run moved to, and the
    cursor taken before reads on. The token is named by reference: a literal one is not kept
    across restarts."""
    monkeypatch.setenv("TETHER_TEST_JUPYTER_TOKEN", shared_jupyter.token)
    path = tmp_path / "tether.sqlite3"
    async with tether.open_sqlite_store(path) as store, \
            tether.open_supervisor(registry=registry(), store=store, flush_interval=0.05) as sup:
        await sup.register(spec(shared_jupyter, "restart", token={"from_env": "TETHER_TEST_JUPYTER_TOKEN"}))
        await wait_for_integration(sup, "restart")
        pid = await run_output(sup, "restart", "cd /tmp && echo $$")
        before = await print_marker(sup, "restart", "restart")
        handle = sup.state("restart").preserved.handle  # type: ignore[union-attr]
        assert sup.state("restart").preserved.extra["shell"] == "bash"  # type: ignore[union-attr]
    async with tether.open_sqlite_store(path) as store, \
            tether.open_supervisor(registry=registry(), store=store, flush_interval=0.05) as sup:
        await wait_connected(sup, "restart")
        assert await run_output(sup, "restart", "echo $$:$PWD") == f"{pid}:/tmp"
        span = await check_continues(sup, "restart", before, expect_loss=True)
        assert_one_unknown_loss(span, before)
        assert span.data.count(INSTALL_ECHO) == 0
        assert sup.state("restart").preserved.handle == handle  # type: ignore[union-attr]
        await sup.unregister("restart")  # deletes the terminal tether made


async def test_a_new_terminal_after_a_server_restart_gets_it_again(
    supervisor: tether.Supervisor, jupyter: JupyterServer
) -> None:
    """The server restarts (its shells are gone): the new terminal (RESTART) gets the integration
    again, in the cwd a run had moved to, and run works there."""
    work = jupyter.root / "kept dir"
    work.mkdir()
    await supervisor.register(spec(jupyter, "new", max_retries=None, max_delay=0.5))
    await wait_for_integration(supervisor, "new")
    pid = await run_output(supervisor, "new", f"cd '{work}' && echo $$")
    await wait_until(lambda: (supervisor.state("new").preserved or tether.PreservedState()).cwd == str(work), timeout=5)
    await trio.to_thread.run_sync(jupyter.stop)
    await wait_until(lambda: supervisor.state("new").status is not SessionStatus.CONNECTED, timeout=10)
    start = since(supervisor, "new")
    await trio.to_thread.run_sync(jupyter.start)
    await wait_until(lambda: supervisor.state("new").episodes_recovered == 1, timeout=30, step=0.02)
    assert await run_output(supervisor, "new", "pwd") == str(work)  # at once, as after a first connect
    assert await run_output(supervisor, "new", "echo $$") != pid
    assert typed_after(supervisor, "new", start) == 1


async def test_zsh_gets_its_own_integration(supervisor: tether.Supervisor, tmp_path: Path) -> None:
    """A server whose terminals run zsh: the same typed line installs zsh's body; run works."""
    require_peer(shutil.which("zsh") is not None, "zsh not installed")
    server = JupyterServer(tmp_path, shell=(str(shutil.which("zsh")), "-f"))
    await trio.to_thread.run_sync(server.start)
    try:
        await supervisor.register(spec(server, "z"))
        assert await wait_for_integration(supervisor, "z") == "zsh"
        await check_runs(supervisor, "z")
        assert await run_output(supervisor, "z", "cd /tmp; pwd") == "/tmp"
        assert await run_output(supervisor, "z", "pwd") == "/tmp"
    finally:
        await trio.to_thread.run_sync(server.kill)


async def test_sh_ignores_it_and_run_says_why(supervisor: tether.Supervisor, tmp_path: Path) -> None:
    """A server whose terminals run sh (dash): the line installs nothing and prints no error, the
    shell goes on answering (its cwd untracked), and run is refused with the engine's clear error."""
    require_peer(shutil.which("dash") is not None, "dash not installed")
    server = JupyterServer(tmp_path, shell=(str(shutil.which("dash")),))
    await trio.to_thread.run_sync(server.start)
    try:
        await supervisor.register(spec(server, "sh"))
        await wait_connected(supervisor, "sh")
        await supervisor.send("sh", b"echo alive-$((6*7))\r")
        found = await supervisor.wait("sh", pattern=r"alive-42\r\n", budget=20)
        assert found.satisfied, supervisor.output_history("sh")[-600:]
        out = supervisor.output_history("sh")
        assert out.count(INSTALL_ECHO) == 1 and b"\x1b]133;" not in out
        assert b"rror" not in out and b"not found" not in out, out[-600:]
        await supervisor.send("sh", b"cd /tmp\r")
        assert (await supervisor.wait("sh", pattern=r"cd /tmp\r\n[$#] ", budget=20)).satisfied
        assert (supervisor.state("sh").preserved or tether.PreservedState()).cwd is None, "no cwd tracking"
        with pytest.raises(tether.LinkError, match="no shell with tether's integration"):
            await supervisor.run("sh", "true")
        assert supervisor.state("sh").status is SessionStatus.CONNECTED, "a refused run leaves the session alone"
    finally:
        await trio.to_thread.run_sync(server.kill)
