"""The console ops on a real pty and in real tmux, through the supervisor: what attach, tail and exec get.

Each test drives a real bash with `tether.testing.console`: markers printed
before and after a drop (the shell killed, the tmux client killed) or a
restart of the supervisor itself (the same SQLite file), read on from the
cursor taken before; `run` for true and false; `wait` for a pattern;
`resize` seen by ``stty size``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

import tether
from tether.testing import (
    check_continues,
    check_resize,
    check_runs,
    check_wait_pattern,
    print_marker,
    require_peer,
    wait_for_prompt,
)
from tether_process import ProcessBackend

from .conftest import Spec, registry_with, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ptys and /proc: Linux")


@pytest.fixture(params=["pty", "tmux"])
def persist(request: pytest.FixtureRequest) -> str:
    if request.param == "tmux":
        require_peer(shutil.which("tmux") is not None, "tmux not installed")
    return "none" if request.param == "pty" else "tmux"


async def test_run_wait_and_resize(sup: tether.Supervisor, spec: Spec, persist: str) -> None:
    """run: 0 for true, 1 for false, the output range, a token for a long command; wait for a
    pattern; a resize reaches the program."""
    await sup.register(spec(argv=["bash"], persist=persist))
    await wait_for_prompt(sup, "p1")
    await check_runs(sup, "p1")
    await check_wait_pattern(sup, "p1")
    await check_resize(sup, "p1", 41, 132)
    await check_resize(sup, "p1", 24, 80)


async def test_read_since_across_a_link_drop(
    sup: tether.Supervisor, backend: ProcessBackend, spec: Spec, persist: str
) -> None:
    """A pty: the shell killed, a new one started (its output follows, nothing was lost: the old
    program's output ended with it). tmux: the client killed, the same shell re-attached and its
    pane log replays exactly what was missed. Either way no byte twice."""
    await sup.register(spec(argv=["bash"], persist=persist))
    await wait_for_prompt(sup, "p1")
    before = await print_marker(sup, "p1", "drop")
    link = backend.links["p1"]
    os.kill(link.pid if persist == "none" else link._child.pid, signal.SIGKILL)
    await wait_for(lambda: "p1" in backend.links and backend.links["p1"] is not link, 20)
    span = await check_continues(sup, "p1", before, expect_loss=False)
    assert span.losses == ()


async def test_read_since_across_a_supervisor_restart(
    backend: ProcessBackend, spec: Spec, persist: str, tmp_path: Path
) -> None:
    """The supervisor stops (cleanly) and starts again on the same SQLite file; the cursor taken
    before reads on. A pty's shell ended with tether: one loss says tether was away. tmux kept the
    shell: it is re-attached and nothing is lost."""
    path = tmp_path / "tether.sqlite3"
    async with tether.open_sqlite_store(path) as store, \
            tether.open_supervisor(registry=registry_with(backend), store=store, flush_interval=0.05) as sup:
        await sup.register(spec(argv=["bash"], persist=persist))
        await wait_for_prompt(sup, "p1")
        before = await print_marker(sup, "p1", "restart")
    async with tether.open_sqlite_store(path) as store, \
            tether.open_supervisor(registry=registry_with(backend), store=store, flush_interval=0.05) as sup:
        span = await check_continues(sup, "p1", before, expect_loss=persist == "none")
        if persist == "none":
            assert [(loss.kind, loss.size) for loss in span.losses] == [(tether.LossKind.UNSEEN, None)]
        await sup.unregister("p1")  # tmux: end the kept shell with the test
