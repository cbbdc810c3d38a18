"""Against a real Jupyter Server on 127.0.0.1 with a token: commands, re-attach, restart, auth.

Real time, small delays: each test bounds itself with ``fail_after``.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import trio

import tether
from tether import DisconnectReason, SessionSpec, SessionStatus
from tether.testing import require_peer

from .conftest import JupyterServer, NetworkCut, quick_policy, run_command, wait_output, wait_status


async def test_command_output_and_cwd(supervisor: tether.Supervisor, shared_jupyter: JupyterServer) -> None:
    """A command's output comes back, and a ``cd`` is tracked through OSC 7 into the preserved state,
    with the command itself (tether's command mark)."""
    with trio.fail_after(20):
        await supervisor.register(SessionSpec(
            id="cmd", backend="websocket", options=shared_jupyter.options(), policy=quick_policy()
        ))
        await wait_status(supervisor, "cmd", SessionStatus.CONNECTED)
        assert await run_command(supervisor, "cmd", "echo ANSWER=$((6*7))", "ANSWER") == "42"
        await supervisor.send("cmd", b"cd /tmp\r")
        await tether.testing.wait_until(  # the integration reports both at the next prompt
            lambda: (supervisor.state("cmd").preserved or tether.PreservedState()).last_command == "cd /tmp",
            timeout=5,
        )
        preserved = supervisor.state("cmd").preserved
        assert preserved is not None and preserved.handle and preserved.cwd == "/tmp"


async def test_reattach_keeps_the_same_shell(
    supervisor: tether.Supervisor, shared_jupyter: JupyterServer
) -> None:
    """After the client link drops, session-restore re-attaches to the same shell, and the
    server's replay is not shown twice."""
    with trio.fail_after(20):
        await supervisor.register(SessionSpec(
            id="same", backend="websocket", options=shared_jupyter.options(), policy=quick_policy()
        ))
        await wait_status(supervisor, "same", SessionStatus.CONNECTED)
        before = await run_command(supervisor, "same", "echo PID=$$", "PID")
        handle = supervisor.state("same").preserved.handle  # type: ignore[union-attr]
        attempt = await supervisor.force_reconnect("same", "session-restore")
        assert attempt is not None and attempt.success and attempt.used_strategy == "session-restore"
        await wait_status(supervisor, "same", SessionStatus.CONNECTED)
        after = await run_command(supervisor, "same", "echo PID=$$", "PID")
        assert after == before
        assert supervisor.state("same").preserved.handle == handle  # type: ignore[union-attr]
        assert supervisor.output_history("same").count(f"PID={before}".encode()) == 2  # once per echo


async def test_wrong_token_fails_fast(supervisor: tether.Supervisor, shared_jupyter: JupyterServer) -> None:
    """A wrong token is an auth failure: FAILED at once, never retried, token never reported."""
    with trio.fail_after(10):
        await supervisor.register(SessionSpec(
            id="auth", backend="websocket", options=shared_jupyter.options(token="wrong-token-xyz"),
            policy=quick_policy(max_retries=None),
        ))
        await wait_status(supervisor, "auth", SessionStatus.FAILED, within=5)
    state = supervisor.state("auth")
    assert state.last_disconnect is not None
    assert state.last_disconnect.reason is DisconnectReason.AUTH
    assert state.episode is not None and state.episode.attempts_made == 0
    assert "wrong-token-xyz" not in repr(state)


async def test_shell_exit_restarts_in_the_same_directory(
    supervisor: tether.Supervisor, shared_jupyter: JupyterServer
) -> None:
    """``exit`` kills the shell: terminado says disconnect, process-restart opens a new terminal
    in the preserved cwd with the spec's env."""
    work = shared_jupyter.root / "exit-dir"
    work.mkdir()
    with trio.fail_after(20):
        await supervisor.register(SessionSpec(
            id="exit", backend="websocket", options=shared_jupyter.options(env={"TETHER_T": "kept"}),
            policy=quick_policy(),
        ))
        await wait_status(supervisor, "exit", SessionStatus.CONNECTED)
        before = await run_command(supervisor, "exit", f"cd {work}; echo PID=$$", "PID")
        await tether.testing.wait_until(
            lambda: (supervisor.state("exit").preserved or tether.PreservedState()).cwd == str(work), timeout=5
        )
        old_handle = supervisor.state("exit").preserved.handle  # type: ignore[union-attr]
        await supervisor.send("exit", b"exit\r")
        await tether.testing.wait_until(lambda: supervisor.state("exit").episodes_total == 1, timeout=5)
        await wait_status(supervisor, "exit", SessionStatus.CONNECTED)
        state = supervisor.state("exit")
        assert state.last_disconnect is not None
        assert state.last_disconnect.reason is DisconnectReason.PROCESS_EXIT
        assert state.episode is not None and state.episode.attempts[-1].strategy == "process-restart"
        assert state.preserved is not None and state.preserved.handle != old_handle  # names are never reused
        assert await run_command(supervisor, "exit", "echo WHERE=$PWD:$TETHER_T", "WHERE") == f"{work}:kept"
        assert await run_command(supervisor, "exit", "echo PID=$$", "PID") != before


async def test_server_restart_comes_back_with_cwd(
    supervisor: tether.Supervisor, jupyter: JupyterServer
) -> None:
    """Restart the server mid-session: after backoff a new terminal opens (the old name is 404)
    and the cwd is restored."""
    work = jupyter.root / "sub dir"
    work.mkdir()
    with trio.fail_after(60):
        await supervisor.register(SessionSpec(
            id="restart", backend="websocket", options=jupyter.options(),
            policy=quick_policy(max_retries=None, max_delay=0.5),
        ))
        await wait_status(supervisor, "restart", SessionStatus.CONNECTED)
        await supervisor.send("restart", f"cd '{work}'\r".encode())
        await tether.testing.wait_until(
            lambda: (supervisor.state("restart").preserved or tether.PreservedState()).cwd == str(work),
            timeout=5,
        )
        before = await run_command(supervisor, "restart", "echo PID=$$", "PID")
        await trio.to_thread.run_sync(jupyter.stop)
        await tether.testing.wait_until(
            lambda: supervisor.state("restart").status is not SessionStatus.CONNECTED, timeout=10
        )
        await trio.sleep(1.0)  # a few refused attempts while it is down
        await trio.to_thread.run_sync(jupyter.start)
        await wait_status(supervisor, "restart", SessionStatus.CONNECTED, within=20)
        state = supervisor.state("restart")
        assert state.episode is not None and state.episode.attempts_made >= 2
        assert all(a.strategy == "ssh-reconnect" for a in state.episode.attempts)
        assert await run_command(supervisor, "restart", "echo WHERE=$PWD", "WHERE") == str(work)
        assert await run_command(supervisor, "restart", "echo PID=$$", "PID") != before


async def test_server_gone_for_good_fails_at_the_unreachable_bound(
    supervisor: tether.Supervisor, jupyter: JupyterServer
) -> None:
    """kill -9 the server and never bring it back: the session waits for it on the readiness gate
    (spending no budget) and is FAILED at the unreachable bound."""
    with trio.fail_after(30):
        await supervisor.register(SessionSpec(
            id="gone", backend="websocket", options=jupyter.options(),
            policy=quick_policy(max_retries=3, base_delay=0.1, max_delay=0.2, connect_timeout=2.0,
                                unreachable_timeout=4.0),
        ))
        await wait_status(supervisor, "gone", SessionStatus.CONNECTED)
        await wait_output(supervisor, "gone", b"\x1b]7;")
        await trio.to_thread.run_sync(jupyter.kill)
        await wait_status(supervisor, "gone", SessionStatus.FAILED, within=15)
    state = supervisor.state("gone")
    assert state.episode is not None and 1 <= state.episode.attempts_made <= 3, state
    assert state.episode.attempts_unreachable >= 1, state
    assert state.failure is not None and "stayed unreachable" in state.failure.detail
    assert state.episode.disconnect.reason in (DisconnectReason.NETWORK, DisconnectReason.REMOTE_CLOSED), state
    # The first attempt runs at once and can reach the dying server's listen backlog: the
    # handshake then never completes and trio-websocket does not surface the EOF, so that
    # attempt ends at its deadline as TIMEOUT. Later ones are refused: NETWORK (under load the
    # gate may park the session after that first attempt alone).
    attempts = state.episode.attempts
    assert len(attempts) == 1 or attempts[-1].reason is DisconnectReason.NETWORK, attempts
    assert all(a.reason in (DisconnectReason.NETWORK, DisconnectReason.TIMEOUT) for a in state.episode.attempts), [
        (a.reason, a.error) for a in state.episode.attempts
    ]


async def test_network_cut_reattaches_to_the_same_shell(
    supervisor: tether.Supervisor, shared_jupyter: JupyterServer
) -> None:
    """Drop the network path only (nft on loopback): the missing pong is noticed, and once the
    path is back ssh-reconnect re-attaches to the shell that kept running."""
    require_peer(NetworkCut.available(), "nft (and root) needed to cut loopback traffic")
    cut = NetworkCut(shared_jupyter.port)
    try:
        with trio.fail_after(40):
            await supervisor.register(SessionSpec(
                id="cut", backend="websocket", options=shared_jupyter.options(),
                policy=quick_policy(connect_timeout=2.0, max_retries=None, max_delay=0.5),
            ))
            await wait_status(supervisor, "cut", SessionStatus.CONNECTED)
            before = await run_command(supervisor, "cut", "echo PID=$$", "PID")
            handle = supervisor.state("cut").preserved.handle  # type: ignore[union-attr]
            await trio.to_thread.run_sync(cut.cut)
            started = trio.current_time()
            await tether.testing.wait_until(lambda: supervisor.state("cut").episodes_total == 1, timeout=10)
            noticed = trio.current_time() - started
            await trio.sleep(1.0)  # at least one attempt into the black hole
            await trio.to_thread.run_sync(cut.restore)
            await wait_status(supervisor, "cut", SessionStatus.CONNECTED, within=15)
            assert await run_command(supervisor, "cut", "echo PID=$$", "PID") == before
    finally:
        cut.restore()
    state = supervisor.state("cut")
    assert state.last_disconnect is not None
    assert state.last_disconnect.reason is DisconnectReason.NETWORK, state.last_disconnect
    assert noticed < 5.0  # ping every 1 s, 2 s pong timeout (FAULTS.md measured 3.5 s)
    assert state.preserved is not None and state.preserved.handle == handle
    assert state.episode is not None and state.episode.attempts[-1].used_strategy == "ssh-reconnect"


def _terminal_status(server: JupyterServer, name: str) -> int:
    request = urllib.request.Request(
        f"{server.base_url}api/terminals/{name}", headers={"Authorization": f"token {server.token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_unregister_deletes_the_terminal_tether_made(
    supervisor: tether.Supervisor, shared_jupyter: JupyterServer
) -> None:
    """A forced reconnect and a supervisor shutdown keep the server's shell; unregister
    (LinkRequest.session_ending) deletes it. A terminal the spec names is never deleted."""
    with trio.fail_after(30):
        await supervisor.register(SessionSpec(
            id="gone", backend="websocket", options=shared_jupyter.options(), policy=quick_policy()
        ))
        await supervisor.register(SessionSpec(
            id="named", backend="websocket", options=shared_jupyter.options(terminal="users_own"),
            policy=quick_policy(),
        ))
        for sid in ("gone", "named"):
            await wait_status(supervisor, sid, SessionStatus.CONNECTED)
        name = supervisor.state("gone").preserved.handle  # type: ignore[union-attr]
        assert name and await trio.to_thread.run_sync(_terminal_status, shared_jupyter, name) == 200
        before = await run_command(supervisor, "gone", "echo PID=$$", "PID")
        await supervisor.force_reconnect("gone")
        await wait_status(supervisor, "gone", SessionStatus.CONNECTED)
        assert await run_command(supervisor, "gone", "echo PID=$$", "PID") == before
        for sid in ("gone", "named"):
            await supervisor.unregister(sid)
        assert await trio.to_thread.run_sync(_terminal_status, shared_jupyter, name) == 404
        assert await trio.to_thread.run_sync(_terminal_status, shared_jupyter, "users_own") == 200
