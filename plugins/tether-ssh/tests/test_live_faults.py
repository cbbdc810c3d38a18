"""Real faults against a real sshd: each link loss is classified and recovered (or refused) truthfully."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import tether
from tether.testing import wait_until
from tether_ssh import SshBackend

from .conftest import (
    Sshd,
    black_hole,
    fast_policy,
    run_and_expect,
    ssh_spec,
    ssh_supervisor,
    wait_status,
)

R = tether.DisconnectReason
S = tether.SessionStatus


async def _cd(sup: tether.Supervisor, sid: str, path: Path) -> None:
    """cd remotely and wait until the OSC 7 report has refreshed the preserved cwd."""
    await sup.send(sid, f"cd '{path}'\n".encode())

    def seen() -> bool:
        state = sup.state(sid).preserved
        return state is not None and state.cwd == str(path)

    await wait_until(seen, timeout=10, step=0.02)


async def _assert_back_in(sup: tether.Supervisor, sid: str, path: Path) -> None:
    """The new remote shell really runs in `path` (asked of the shell, not of tether)."""
    await run_and_expect(sup, sid, "printf 'C%sD\\n' \"$(pwd)\"", f"C{path}D".encode())


async def test_remote_output_is_never_a_verdict(sshd: Sshd) -> None:
    """Lesson: the remote program printing ssh's failure words on stderr leaves the link connected."""
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd))
        await wait_status(sup, "s1", S.CONNECTED)
        await run_and_expect(
            sup, "s1",
            "echo 'root@h: Permission denied (publickey).' >&2; echo 'Host key verification failed.' >&2;"
            " echo 'Connection to h closed by remote host.' >&2; printf 'O%sK\\n' ''",
            b"OK",
        )
        await trio.sleep(1.5)  # a health probe or two
        state = sup.state("s1")
        assert state.status is S.CONNECTED
        assert state.episodes_total == 0


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "unshared"])
async def test_killed_peer_reconnects_with_cwd_and_env(sshd: Sshd, tmp_path: Path, shared: bool) -> None:
    """kill -9 of the sshd child: a network drop (the shared connection ended, or 'closed by remote
    host'); a new shell in the old cwd and env."""
    work = tmp_path / "w"
    work.mkdir()
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, env={"TETHER_T": "v1"}, share_connection=shared))
        await wait_status(sup, "s1", S.CONNECTED)
        await _cd(sup, "s1", work)
        assert sshd.kill_children()
        await wait_until(lambda: sup.state("s1").episodes_recovered == 1, timeout=15, step=0.02)
        state = sup.state("s1")
        assert state.last_disconnect is not None
        assert state.last_disconnect.reason is R.NETWORK
        expected = "shared connection to 127.0.0.1" if shared else "closed by remote host"
        assert expected in state.last_disconnect.detail
        assert state.episode is not None and state.episode.attempts[-1].used_strategy == "ssh-reconnect"
        await _assert_back_in(sup, "s1", work)
        await run_and_expect(sup, "s1", "printf 'E%sF\\n' \"$TETHER_T\"", b"Ev1F")


async def test_server_down_then_up(sshd: Sshd, tmp_path: Path) -> None:
    """sshd gone for 2 s: refused connects are retried with backoff; back in the old cwd afterwards."""
    work = tmp_path / "w"
    work.mkdir()
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd))
        await wait_status(sup, "s1", S.CONNECTED)
        await _cd(sup, "s1", work)
        sshd.stop()
        await wait_until(lambda: sup.state("s1").status is not S.CONNECTED, timeout=10, step=0.02)
        await trio.sleep(2.0)
        sshd.start()
        await wait_until(lambda: sup.state("s1").episodes_recovered == 1, timeout=15, step=0.02)
        episode = sup.state("s1").episode
        assert episode is not None
        failed = [a for a in episode.attempts if not a.success]
        assert failed, "connects while sshd was down should have failed"
        assert all(a.reason is R.NETWORK and "Connection refused" in (a.error or "") for a in failed)
        await _assert_back_in(sup, "s1", work)


async def test_black_hole_is_noticed_by_keepalive(sshd: Sshd, tmp_path: Path) -> None:
    """Traffic dropped both ways on lo: only ServerAlive can notice; recovered once the hole closes."""
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd))
        await wait_status(sup, "s1", S.CONNECTED)
        with black_hole(sshd.port):
            start = trio.current_time()
            await wait_until(lambda: sup.state("s1").status is not S.CONNECTED, timeout=10, step=0.02)
            noticed = trio.current_time() - start
        state = sup.state("s1")
        assert state.last_disconnect is not None
        assert state.last_disconnect.reason is R.NETWORK
        assert "not responding" in state.last_disconnect.detail
        assert noticed < 6, f"keepalive took {noticed:.1f}s"
        await wait_status(sup, "s1", S.CONNECTED, within=20)
        await run_and_expect(sup, "s1", "printf 'U%sP\\n' ''", b"UP")


async def test_changed_host_key_fails_and_is_never_retried(sshd: Sshd) -> None:
    """After the server's key changes, the reconnect is refused (host-key) and never tried again."""
    backend = SshBackend()
    async with ssh_supervisor(backend) as sup:
        await sup.register(ssh_spec(sshd))
        await wait_status(sup, "s1", S.CONNECTED)
        sshd.stop()
        sshd.new_host_key()
        sshd.start()
        await wait_status(sup, "s1", S.FAILED, within=15)
        await trio.sleep(1.0)
        state = sup.state("s1")
        assert state.episode is not None
        assert state.episode.attempts_made == 1
        assert state.episode.attempts[-1].reason is R.HOST_KEY
        assert "has changed" in (state.episode.attempts[-1].error or "")
        assert backend.logins.started == 2


async def test_refused_key_is_auth_and_fails_at_once(sshd: Sshd, tmp_path: Path) -> None:
    """A key the server does not accept: auth, failed, no retries."""
    (tmp_path / "authorized_keys").write_text("")
    backend = SshBackend()
    async with ssh_supervisor(backend) as sup:
        await sup.register(ssh_spec(sshd))
        await wait_status(sup, "s1", S.FAILED)
        state = sup.state("s1")
        assert state.last_disconnect is not None
        assert state.last_disconnect.reason is R.AUTH
        assert "Permission denied" in state.last_disconnect.detail
        await trio.sleep(0.5)
        assert backend.logins.started == 1


async def test_unknown_host_key_strict_by_default_accept_new_on_request(sshd: Sshd) -> None:
    """An unknown key fails (host-key); with accept_new_host_keys it is learnt and the warning is benign."""
    sshd.known_hosts.write_text("")
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, session_id="strict"))
        await sup.register(ssh_spec(sshd, session_id="tofu", accept_new_host_keys=True))
        await wait_status(sup, "strict", S.FAILED)
        await wait_status(sup, "tofu", S.CONNECTED)
        strict = sup.state("strict").last_disconnect
        assert strict is not None and strict.reason is R.HOST_KEY
        assert sshd.known_hosts.read_text() == "", "learnt keys never go where strict sessions look"
        learnt = sshd.known_hosts.with_name(sshd.known_hosts.name + ".tether-accepted")
        assert "127.0.0.1" in learnt.read_text()


async def test_accept_new_session_never_teaches_a_strict_one(sshd: Sshd) -> None:
    """Regression: a tofu session learning a key must not make a strict session on the same file trust it.

    Both sessions name the same known_hosts_file. Before the fix the tofu session's ssh wrote
    the key into that file, so a strict session verifying afterwards (a race in the test above,
    made certain here by ordering) connected to a key nobody had vouched for.
    """
    sshd.known_hosts.write_text("")
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, session_id="tofu", accept_new_host_keys=True))
        await wait_status(sup, "tofu", S.CONNECTED)
        await sup.register(ssh_spec(sshd, session_id="strict"))
        await wait_status(sup, "strict", S.FAILED)
        strict = sup.state("strict").last_disconnect
        assert strict is not None and strict.reason is R.HOST_KEY
        assert sshd.known_hosts.read_text() == "", "the user's file is only read, never written"


async def test_frozen_listener_times_out_within_connect_timeout(sshd: Sshd) -> None:
    """A listener that accepts but never speaks: the connect ends at the deadline, typed, not hung."""
    import signal

    assert sshd.process is not None
    sshd.process.send_signal(signal.SIGSTOP)
    try:
        async with ssh_supervisor(SshBackend()) as sup:
            await sup.register(ssh_spec(sshd, policy=fast_policy(connect_timeout=1.5, max_retries=0)))
            start = trio.current_time()
            await wait_status(sup, "s1", S.FAILED, within=10)
            assert trio.current_time() - start < 4
            why = sup.state("s1").last_disconnect
            assert why is not None and why.reason in (R.TIMEOUT, R.NETWORK)
    finally:
        sshd.process.send_signal(signal.SIGCONT)


async def test_forced_reconnect_to_a_stopped_sshd_is_network(sshd: Sshd) -> None:
    """force-reconnect against a host that is down: every strategy was refused, so the attempt says network."""
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, policy=fast_policy(auto_reconnect=False)))
        await wait_status(sup, "s1", S.CONNECTED)
        sshd.stop()
        await wait_until(lambda: sup.state("s1").status is not S.CONNECTED, timeout=10, step=0.02)
        attempt = await sup.force_reconnect("s1", "force-reconnect")
        assert attempt is not None and not attempt.success
        assert attempt.reason is R.NETWORK, attempt
        assert "every strategy failed" in (attempt.error or "")
        assert "Connection refused" in (attempt.error or "")
