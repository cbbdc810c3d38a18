"""Real programs on real ptys: restarts restore state, failures are typed, nothing leaks."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import sys

import pytest
import trio

import tether
from tether import ConnectMode, DisconnectReason, SessionStatus
from tether.testing import require_peer
from tether_process import ProcessBackend

from .conftest import Spec, alive, children, connected, open_fds, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ptys and /proc: Linux")


async def test_killed_bash_comes_back_in_its_cwd(
    sup: tether.Supervisor, backend: ProcessBackend, spec: Spec, tmp_path: os.PathLike[str]
) -> None:
    """A bash that did `cd /tmp/x` and was killed is restarted in /tmp/x (OSC 7 via the integration)."""
    target = os.path.join(str(tmp_path), "x")
    os.mkdir(target)
    await sup.register(spec(argv=["bash"], cwd="/"))
    await connected(sup, "p1")
    await sup.send("p1", f"cd {target}\r".encode())
    await wait_for(lambda: (sup.state("p1").preserved or tether.PreservedState()).cwd == target)
    first = backend.links["p1"].pid
    os.kill(first, signal.SIGKILL)
    await wait_for(lambda: "p1" in backend.links and backend.links["p1"].pid != first)
    await connected(sup, "p1")
    state = sup.state("p1")
    assert state.last_disconnect is not None
    assert state.last_disconnect.reason is DisconnectReason.PROCESS_EXIT
    assert state.last_disconnect.signal == signal.SIGKILL
    assert state.episode is not None and state.episode.attempts[-1].used_strategy == "process-restart"
    assert os.readlink(f"/proc/{backend.links['p1'].pid}/cwd") == target
    assert b"\x1b]7;" in sup.output_history("p1")  # the output keeps the exact bytes, marks included


async def test_cwd_without_integration_comes_from_proc(
    sup: tether.Supervisor, backend: ProcessBackend, spec: Spec, tmp_path: os.PathLike[str]
) -> None:
    """With shell integration off, /proc/PID/cwd still tracks the shell's directory."""
    await sup.register(spec(argv=["bash", "--norc"], shell_integration=False, cwd="/"))
    await connected(sup, "p1")
    await sup.send("p1", f"cd {tmp_path}\r".encode())
    await wait_for(lambda: backend.links["p1"].current_state().cwd == str(tmp_path))


async def test_restart_restores_env_and_reruns_last_command(
    sup: tether.Supervisor, backend: ProcessBackend, spec: Spec
) -> None:
    """Env set through tether and the last command (rerun_last_command) survive a restart."""
    await sup.register(spec(argv=["bash"], cwd="/tmp", env={"FROM_SPEC": "s"}, rerun_last_command=True))
    await connected(sup, "p1")
    await backend.links["p1"].set_env("GREETING", "hello there")
    await sup.send("p1", b"echo rerun-$((40+2))\r")
    await wait_for(lambda: (sup.state("p1").preserved or tether.PreservedState()).last_command
                   == "echo rerun-$((40+2))")
    preserved = sup.state("p1").preserved
    assert preserved is not None and dict(preserved.env) == {"FROM_SPEC": "s", "GREETING": "hello there"}
    first = backend.links["p1"].pid
    os.kill(first, signal.SIGKILL)
    await wait_for(lambda: sup.output_history("p1").count(b"rerun-42\r\n") == 2)
    await sup.send("p1", b"echo got-$GREETING-$FROM_SPEC\r")
    await wait_for(lambda: b"got-hello there-s" in sup.output_history("p1"))


async def test_program_exiting_backs_off_then_fails(sup: tether.Supervisor, spec: Spec) -> None:
    """A program that exits 1 soon after each start backs off as configured, then is failed."""
    policy = {"max_retries": 3, "base_delay": 0.05, "multiplier": 2.0, "max_delay": 0.2, "stable_after": 30.0}
    with sup.subscribe(session_ids=["p1"]) as sub:
        started = trio.current_time()
        await sup.register(spec(command="sleep 0.1; exit 1", policy=policy))
        await wait_for(lambda: sup.state("p1").status is SessionStatus.FAILED)
        elapsed = trio.current_time() - started
        events = []
        while (item := sub.get_nowait()) is not None:
            events.append(item)
    delays = [e.delay for e in events if isinstance(e, tether.ReconnectScheduled)]
    assert delays == [0.05, 0.1]
    assert any(isinstance(e, tether.RetriesExhausted) for e in events)
    state = sup.state("p1")
    assert state.last_disconnect is not None and state.last_disconnect.exit_code == 1
    assert state.episode is not None and state.episode.attempts_made == 3
    assert {a.used_strategy for a in state.episode.attempts} == {"process-restart"}
    assert elapsed >= 0.15 + 4 * 0.1  # the waits and the program's runs really happened


def _write_script(path: str) -> str:
    """A shell script without the execute bit."""
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\necho hi\n")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return path


@pytest.mark.parametrize("persist", ["none", "tmux"])
@pytest.mark.parametrize("case", ["missing", "not-executable", "bad-cwd"])
async def test_program_that_cannot_start_is_spawn_failed(
    sup: tether.Supervisor, spec: Spec, tmp_path: os.PathLike[str], case: str, persist: str
) -> None:
    """No such file, not executable, bad cwd: a typed SPAWN_FAILED, retried per policy, then failed.
    With tmux too, where the program is started by tmux's shell and would only exit 127."""
    if persist == "tmux":
        require_peer(shutil.which("tmux") is not None, "tmux not installed")
    script = _write_script(os.path.join(str(tmp_path), "script"))
    options = {
        "missing": {"argv": ["/nonexistent/tether-prog"]},
        "not-executable": {"argv": [script]},
        "bad-cwd": {"argv": ["/bin/true"], "cwd": "/nonexistent/dir"},
    }[case]
    await sup.register(spec(policy={"max_retries": 2}, persist=persist, **options))
    await wait_for(lambda: sup.state("p1").status is SessionStatus.FAILED)
    state = sup.state("p1")
    assert state.last_disconnect is not None
    assert state.last_disconnect.reason is DisconnectReason.SPAWN_FAILED
    assert state.episode is not None and state.episode.attempts_made == 2
    expected = {"missing": "tether-prog", "not-executable": "Permission denied", "bad-cwd": "working directory"}
    assert expected[case] in state.last_disconnect.detail


async def test_reattach_without_tmux_is_unavailable(backend: ProcessBackend, spec: Spec) -> None:
    """persist = none has nothing to re-attach to: ReattachUnavailableError, nothing started."""
    before = children()
    request = tether.LinkRequest(
        spec=spec(argv=["cat"]), mode=ConnectMode.REATTACH, state=tether.PreservedState(cwd="/"),
        history=b"", deadline=trio.current_time() + 5, connect_timeout=5, keepalive_interval=0,
        report_closed=lambda d: None, report_output=lambda b: None, report_state=lambda s: None,
    )
    with pytest.raises(tether.ReattachUnavailableError):
        async with backend.open_link(request):
            pass  # pragma: no cover
    assert children() == before


async def test_unregister_leaks_no_pty_and_no_process(
    sup: tether.Supervisor, backend: ProcessBackend, spec: Spec
) -> None:
    """After unregister: the fd count is back, no child is left, and the program's group is dead."""
    await trio.sleep(0.05)
    fds, kids = open_fds(), children()
    await sup.register(spec("bash", argv=["bash"]))
    await sup.register(spec("cat", argv=["cat"]))
    await sup.register(spec("group", command="sleep 300 & echo bg=$!; wait"))
    for sid in ("bash", "cat", "group"):
        await connected(sup, sid)
    await wait_for(lambda: re.search(rb"bg=(\d+)", sup.output_history("group")) is not None)
    match = re.search(rb"bg=(\d+)", sup.output_history("group"))
    assert match is not None
    grandchild = int(match.group(1))
    assert alive(grandchild)
    assert open_fds() > fds
    for sid in ("bash", "cat", "group"):
        await sup.unregister(sid)
    assert open_fds() == fds
    assert children() == kids
    assert not alive(grandchild)
    assert backend.links == {}


async def test_unregister_ends_a_nohup_job_in_its_own_group(
    sup: tether.Supervisor, backend: ProcessBackend, spec: Spec
) -> None:
    """An interactive bash puts a job in its own process group; nohup makes it ignore SIGHUP.
    Unregister still returns only once that job is gone (it is in the program's session)."""
    await sup.register(spec("job", argv=["bash", "--norc", "-i"], shell_integration=False))
    await connected(sup, "job")
    shell = backend.links["job"].pid
    await sup.send("job", b"nohup sleep 300 >/dev/null 2>&1 & echo job=$!\r")
    await wait_for(lambda: re.search(rb"job=(\d+)", sup.output_history("job")) is not None)
    match = re.search(rb"job=(\d+)", sup.output_history("job"))
    assert match is not None
    job = int(match.group(1))
    assert alive(job)
    assert os.getpgid(job) != shell and os.getsid(job) == shell  # another group, same session
    await sup.unregister("job")
    assert not alive(job)


async def test_two_hundred_sessions_at_once(backend: ProcessBackend, spec: Spec) -> None:
    """200 programs connect, echo their input, and all end on unregister, leaving nothing behind."""
    count = 200
    async with tether.open_supervisor(backends=[backend], connect_limit=20) as sup:
        await trio.sleep(0.05)
        fds, kids = open_fds(), children()
        await sup.register_many(spec(f"c{i}", argv=["cat"]) for i in range(count))
        await wait_for(
            lambda: all(s.status is SessionStatus.CONNECTED for s in sup.states().values()), within=120
        )
        assert len(children() - kids) == count
        for i in (0, count // 2, count - 1):
            await sup.send(f"c{i}", f"ping-{i}\r".encode())
        for i in (0, count // 2, count - 1):
            await wait_for(lambda i=i: sup.output_history(f"c{i}").count(f"ping-{i}".encode()) == 2)
        assert sup.stats().registered_sessions == count
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(sup.unregister, f"c{i}")
        assert open_fds() == fds
        assert children() == kids
