"""The readiness probe: pure parsing, then against a real sshd (up, down, frozen, not SSH, proxied)."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest
import trio

import tether
from tether_ssh import SshBackend
from tether_ssh._probe import identification, parse_route

from .conftest import Sshd, free_port, ssh_spec, ssh_supervisor, wait_status

R = tether.DisconnectReason


def test_route_from_ssh_g() -> None:
    """`ssh -G` lines: the first value of a keyword wins; a proxy of any kind is noticed."""
    route = parse_route("user root\nhostname build.example.org\nport 2222\nproxycommand none\n")
    assert (route.hostname, route.port, route.proxied) == ("build.example.org", 2222, False)
    assert parse_route("hostname h\nport 22\nproxyjump bastion\n").proxied
    assert parse_route("hostname h\nport 22\nproxycommand nc %h %p\n").proxied


def test_identification_needs_a_whole_ssh_line() -> None:
    """Lines before the identification are allowed (RFC 4253 4.2); a partial line is not an answer."""
    assert identification(b"SSH-2.0-OpenSSH_9.2") is None
    assert identification(b"hello\r\nSSH-2.0-OpenSSH_9.2p1 Debian\r\n") == "SSH-2.0-OpenSSH_9.2p1 Debian"
    assert identification(b"HTTP/1.1 400 Bad Request\r\n") is None


async def _probe(backend: SshBackend, spec: tether.SessionSpec, within: float = 3.0) -> None:
    await backend.probe_target(spec, trio.current_time() + within)


async def test_probe_of_a_live_sshd_returns_and_warms_a_shared_connection(sshd: Sshd) -> None:
    """Up: the greeting answers; with sharing on, the first shared connection comes up with the probe,
    and the session that follows opens a channel on it (one login in all)."""
    backend = SshBackend()
    spec = ssh_spec(sshd)
    async with ssh_supervisor(backend) as sup:
        await _probe(backend, spec, within=5.0)
        assert backend.logins.succeeded == 1
        await sup.register(spec)
        await wait_status(sup, "s1", tether.SessionStatus.CONNECTED)
        assert backend.logins.started == 1 == sshd.logins()


async def test_probe_without_sharing_logs_in_nowhere(sshd: Sshd) -> None:
    """Sharing off: the probe is a TCP connect and sshd's identification line, no login at all."""
    backend = SshBackend()
    before = sshd.log_size()
    await _probe(backend, ssh_spec(sshd, share_connection=False))
    assert backend.logins.started == 0
    assert sshd.logins(since=before) == 0


async def test_probe_of_a_stopped_sshd_is_network(sshd: Sshd) -> None:
    """Down (refused): `LinkError` with reason network, at once."""
    sshd.stop()
    backend = SshBackend()
    start = trio.current_time()
    with pytest.raises(tether.LinkError) as caught:
        await _probe(backend, ssh_spec(sshd))
    assert caught.value.reason is R.NETWORK
    assert "refused" in str(caught.value).lower()
    assert trio.current_time() - start < 1.0
    assert backend.logins.started == 0


async def test_probe_of_a_frozen_listener_times_out_at_the_deadline(sshd: Sshd) -> None:
    """SIGSTOPped sshd: the kernel accepts, no greeting comes: timeout, by the deadline."""
    assert sshd.process is not None
    sshd.process.send_signal(signal.SIGSTOP)
    try:
        start = trio.current_time()
        with pytest.raises(tether.LinkError) as caught:
            await _probe(SshBackend(), ssh_spec(sshd), within=1.0)
        assert caught.value.reason is R.TIMEOUT
        assert 0.9 <= trio.current_time() - start < 2.0
    finally:
        sshd.process.send_signal(signal.SIGCONT)


async def test_probe_of_something_else_on_the_port_is_network(sshd: Sshd) -> None:
    """A port that answers, but not with SSH (a web server took it): not ready."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        async def answer_http() -> None:
            conn, _ = await trio.to_thread.run_sync(listener.accept)
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_http)
            with pytest.raises(tether.LinkError) as caught:
                await _probe(SshBackend(), ssh_spec(sshd, port=port, share_connection=False))
        assert caught.value.reason is R.NETWORK
        assert "without an SSH identification" in str(caught.value)


async def test_probe_where_the_login_would_fail_still_returns(sshd: Sshd) -> None:
    """The host answers but refuses our key: the probe returns (the sessions end as auth themselves)."""
    sshd.root.joinpath("authorized_keys").write_text("")
    backend = SshBackend()
    await _probe(backend, ssh_spec(sshd), within=5.0)
    assert backend.logins.started == 1 and backend.logins.succeeded == 0


PROXY = """
import socket, sys, threading
conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def up():
    while data := sys.stdin.buffer.read1(65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := conn.recv(65536):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
"""


async def test_probe_through_a_proxy_is_a_login(sshd: Sshd, tmp_path: Path) -> None:
    """Through a ProxyCommand a direct TCP probe would test the wrong thing: the probe logs in through it."""
    proxy = tmp_path / "proxy.py"
    proxy.write_text(PROXY)
    spec = ssh_spec(sshd, share_connection=False)
    options = dict(spec.options)
    options["extra_options"] = [*options["extra_options"], f"ProxyCommand={sys.executable} {proxy} {sshd.port}"]
    proxied = tether.SessionSpec(id="p", backend="ssh", options=options, policy=spec.policy)
    backend = SshBackend()
    await _probe(backend, proxied, within=5.0)
    assert backend.logins.succeeded == 1
    options["extra_options"] = [*spec.options["extra_options"], f"ProxyCommand={sys.executable} {proxy} {free_port()}"]
    with pytest.raises(tether.LinkError) as caught:
        await _probe(backend, tether.SessionSpec(id="p", backend="ssh", options=options, policy=spec.policy))
    assert caught.value.reason is R.NETWORK


async def test_probe_follows_the_users_config(sshd: Sshd, tmp_path: Path) -> None:
    """The host is an alias in the ssh config (HostName, Port): the probe goes where ssh would."""
    config = tmp_path / "ssh_config"
    config.write_text(f"Host build-alias\n  HostName 127.0.0.1\n  Port {sshd.port}\n")
    options = {**sshd.options(share_connection=False), "host": "build-alias", "config_file": str(config)}
    del options["port"]
    await _probe(SshBackend(), tether.SessionSpec(id="a", backend="ssh", options=options))
    config.write_text(f"Host build-alias\n  HostName 127.0.0.1\n  Port {free_port()}\n")
    with pytest.raises(tether.LinkError) as caught:
        await _probe(SshBackend(), tether.SessionSpec(id="a", backend="ssh", options=options))
    assert caught.value.reason is R.NETWORK
