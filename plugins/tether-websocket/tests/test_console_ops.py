"""The console ops on a real Jupyter Server terminal, through the supervisor: what attach, tail and exec get.

Each test drives the terminal's bash with `tether.testing.console`: `wait`
for a pattern, `resize` (terminado's ``set_size``) seen by ``stty size``,
markers printed before and after a dropped WebSocket (the network path cut
with nft until the missing pong is noticed) or a restart of the supervisor
itself (the same SQLite file), read on from the cursor taken before. The
server keeps the shell either way: tether re-attaches to the same terminal,
and since terminado's replay carries no offsets, the log holds one explicit
unseen loss of unknown size there, and no byte twice.

`run` needs tether's shell integration (the ``OSC 133;A;tether-shell`` prompt
mark); the websocket backend installs only an OSC 7 PROMPT_COMMAND in the
shells it starts, so `run` is refused with a `LinkError` that says why, which
is what is checked.
"""

from __future__ import annotations

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
    check_wait_pattern,
    print_marker,
    require_peer,
    wait_for_prompt,
    wait_until,
)

from .conftest import JupyterServer, NetworkCut, quick_policy, registry


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


async def test_wait_resize_and_run_refused(supervisor: tether.Supervisor, shared_jupyter: JupyterServer) -> None:
    """wait for a pattern; a resize reaches the terminal's shell; run refused, saying why."""
    await supervisor.register(spec(shared_jupyter, "ops"))
    await wait_for_prompt(supervisor, "ops")
    await check_wait_pattern(supervisor, "ops")
    await check_resize(supervisor, "ops", 41, 132)
    await check_resize(supervisor, "ops", 24, 80)
    with pytest.raises(tether.LinkError, match="no shell with tether's integration"):
        await supervisor.run("ops", "true")
    assert supervisor.state("ops").status is SessionStatus.CONNECTED, "a refused run leaves the session alone"


async def test_read_since_across_a_dropped_websocket(
    supervisor: tether.Supervisor, shared_jupyter: JupyterServer
) -> None:
    """The network path is cut until the missing pong drops the WebSocket; once it is back the same
    shell is re-attached and the cursor reads on: the new marker once, the old never again."""
    require_peer(NetworkCut.available(), "nft (and root) needed to cut loopback traffic")
    await supervisor.register(spec(shared_jupyter, "drop", connect_timeout=2.0, max_retries=None, max_delay=0.5))
    await wait_for_prompt(supervisor, "drop")
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
    span = await check_continues(supervisor, "drop", before, expect_loss=True)
    assert_one_unknown_loss(span, before)


async def test_read_since_across_a_supervisor_restart(
    shared_jupyter: JupyterServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor stops (cleanly: the server keeps the shell) and starts again on the same SQLite
    file; the same terminal is re-attached and the cursor taken before reads on. The token is named
    by reference: a literal one is not kept across restarts."""
    monkeypatch.setenv("TETHER_TEST_JUPYTER_TOKEN", shared_jupyter.token)
    path = tmp_path / "tether.sqlite3"
    async with tether.open_sqlite_store(path) as store, \
            tether.open_supervisor(registry=registry(), store=store, flush_interval=0.05) as sup:
        await sup.register(spec(shared_jupyter, "restart", token={"from_env": "TETHER_TEST_JUPYTER_TOKEN"}))
        await wait_for_prompt(sup, "restart")
        before = await print_marker(sup, "restart", "restart")
        handle = sup.state("restart").preserved.handle  # type: ignore[union-attr]
    async with tether.open_sqlite_store(path) as store, \
            tether.open_supervisor(registry=registry(), store=store, flush_interval=0.05) as sup:
        span = await check_continues(sup, "restart", before, expect_loss=True)
        assert_one_unknown_loss(span, before)
        assert sup.state("restart").preserved.handle == handle  # type: ignore[union-attr]
        await sup.unregister("restart")  # deletes the terminal tether made
