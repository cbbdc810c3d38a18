"""Shared connections against a real sshd: sized to MaxSessions, a dead master is a network drop,
a channel that closes alone is not, sockets stay private, sharing can be turned off."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest
import trio

import tether
from tether.testing import wait_until
from tether_ssh import SshBackend
from tether_ssh._control_dir import base_directory

from .conftest import (
    Sshd,
    processes_matching,
    run_and_expect,
    ssh_spec,
    ssh_supervisor,
    wait_status,
)

R = tether.DisconnectReason
S = tether.SessionStatus


def _masters(sshd: Sshd) -> list[int]:
    """The background ControlMaster processes of this test's sshd (no children of ours)."""
    return [pid for pid in processes_matching("ControlMaster=yes")
            if f" {sshd.port} ".encode() in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")]


async def _all_connected(sup: tether.Supervisor, within: float = 30) -> None:
    def connected() -> bool:
        return all(s.status is S.CONNECTED for s in sup.states().values())

    await wait_until(connected, timeout=within, step=0.05)


async def test_a_server_below_our_max_sessions_gets_more_connections(sshd: Sshd) -> None:
    """sshd with MaxSessions 3: refused channels make more shared connections; no session fails, no login
    happens behind tether's back (the fallback ssh would make is impossible)."""
    sshd.stop()
    sshd.configure("MaxSessions 3")
    sshd.start()
    backend = SshBackend()
    async with ssh_supervisor(backend) as sup:
        await sup.register_many(ssh_spec(sshd, session_id=f"s{i}", shell_integration=False) for i in range(7))
        await _all_connected(sup)
        assert all(s.episodes_total == 0 for s in sup.states().values())
        assert backend.channels_refused >= 1
        assert 3 <= backend.logins.started <= 4
        assert sshd.logins() == backend.logins.started, "every login sshd saw was one tether made"
        await run_and_expect(sup, "s6", "printf 'O%sK\\n' ''", b"OK")
    assert "drop connection" not in sshd.log.read_text()


async def test_a_dead_master_is_a_network_drop_for_its_sessions(sshd: Sshd) -> None:
    """kill -9 of the shared connection's master: every session on it drops (network) and comes back."""
    backend = SshBackend()
    async with ssh_supervisor(backend) as sup:
        await sup.register_many(ssh_spec(sshd, session_id=f"s{i}") for i in range(3))
        await _all_connected(sup)
        assert backend.logins.started == 1
        (master,) = _masters(sshd)
        os.kill(master, signal.SIGKILL)
        await wait_until(lambda: all(s.episodes_recovered == 1 for s in sup.states().values()),
                         timeout=20, step=0.05)
        for state in sup.states().values():
            assert state.last_disconnect is not None
            assert state.last_disconnect.reason is R.NETWORK
            assert "shared connection to 127.0.0.1" in state.last_disconnect.detail
        assert backend.logins.started == 2
        await run_and_expect(sup, "s2", "printf 'B%sK\\n' ac", b"BacK")


async def test_a_channel_that_closes_alone_is_not_a_network_drop(sshd: Sshd) -> None:
    """The remote shell exits (3) or is killed: that session's end is process-exit / remote-closed, the
    master lives on, the other session is untouched and the reconnect needs no new login."""
    backend = SshBackend()
    async with ssh_supervisor(backend) as sup:
        await sup.register_many(ssh_spec(sshd, session_id=f"s{i}") for i in range(2))
        await _all_connected(sup)
        await sup.send("s0", b"exit 3\n")
        await wait_until(lambda: sup.state("s0").episodes_recovered == 1, timeout=15, step=0.05)
        why = sup.state("s0").last_disconnect
        assert why is not None and why.reason is R.PROCESS_EXIT and why.exit_code == 3
        await sup.send("s0", b"kill -9 $$\n")
        await wait_until(lambda: sup.state("s0").episodes_recovered == 2, timeout=15, step=0.05)
        why = sup.state("s0").last_disconnect
        assert why is not None and why.reason is R.REMOTE_CLOSED, why
        assert sup.state("s1").episodes_total == 0
        assert backend.logins.started == 1
        assert len(_masters(sshd)) == 1
        await run_and_expect(sup, "s0", "printf 'S%sL\\n' ti", b"StiL")


async def test_sharing_off_is_one_login_per_session(sshd: Sshd) -> None:
    """share_connection = false: each session is a connection of its own, no master runs."""
    backend = SshBackend()
    async with ssh_supervisor(backend) as sup:
        await sup.register_many(ssh_spec(sshd, session_id=f"s{i}", share_connection=False) for i in range(3))
        await _all_connected(sup)
        assert backend.logins.started == 3 == sshd.logins()
        assert _masters(sshd) == []
        assert len(sshd.children()) == 3


async def test_control_sockets_are_private(sshd: Sshd) -> None:
    """The control socket is in a 0700 directory of ours, inside a 0700 per-user directory."""
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd))
        await wait_status(sup, "s1", S.CONNECTED)
        base = base_directory()
        mine = [d for d in base.iterdir() if d.name.startswith(f"{os.getpid()}-")]
        sockets = [p for d in mine for p in d.iterdir() if p.is_socket()]
        assert sockets, f"no control socket under {base}"
        for directory in (base, *mine):
            info = directory.lstat()
            assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "unshared"])
async def test_a_banner_with_failure_words_never_turns_a_drop_into_auth(sshd: Sshd, tmp_path: Path,
                                                                         shared: bool) -> None:
    """sshd's login banner says 'Permission denied (publickey).': a later network drop is still network,
    and the session comes back instead of failing for good."""
    banner = tmp_path / "banner"
    banner.write_text("Authorised use only.\nPermission denied (publickey).\nHost key verification failed.\n")
    sshd.stop()
    sshd.configure(f"Banner {banner}")
    sshd.start()
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, share_connection=shared))
        await wait_status(sup, "s1", S.CONNECTED)
        assert sshd.kill_children()
        await wait_until(lambda: sup.state("s1").episodes_recovered == 1, timeout=15, step=0.05)
        why = sup.state("s1").last_disconnect
        assert why is not None and why.reason is R.NETWORK, why
        assert "Permission denied" not in why.detail
        await run_and_expect(sup, "s1", "printf 'A%sE\\n' liv", b"AlivE")


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "unshared"])
async def test_the_remote_pty_has_a_terminals_modes(sshd: Sshd, shared: bool) -> None:
    """The remote side's pty is a terminal's (onlcr, icanon, echo, isig): \\r\\n line ends, Ctrl-C works."""
    async with ssh_supervisor(SshBackend()) as sup:
        await sup.register(ssh_spec(sshd, share_connection=shared))
        await wait_status(sup, "s1", S.CONNECTED)
        await run_and_expect(sup, "s1", "stty -a | tr ' ' '\\n' | grep -xE -- '-?(onlcr|icanon|echo|isig|opost)'"
                             " | tr '\\n' ' '; printf 'M%sS\\n' ode", b"ModeS")
        modes = sup.output_history("s1").rsplit(b"ModeS", 1)[0].split()
        assert {b"onlcr", b"icanon", b"echo", b"isig", b"opost"} <= set(modes), modes
        await run_and_expect(sup, "s1", "printf 'L1%s\\nL2%s\\n' x y", b"L1x\r\nL2y\r\n")
        await sup.send("s1", b"sleep 47.125\n")
        await wait_until(lambda: processes_matching("sleep 47.125"), timeout=10, step=0.05)
        await sup.send("s1", b"\x03")
        await wait_until(lambda: not processes_matching("sleep 47.125"), timeout=10, step=0.05)
        await run_and_expect(sup, "s1", "printf 'B%sK\\n' ac", b"BacK")


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "unshared"])
async def test_a_proxy_command_never_outlives_a_connect_timeout(sshd: Sshd, shared: bool) -> None:
    """A ProxyCommand that never answers: the connect times out and the proxy is ended with ssh."""
    needle = "sleep 93.4567" if shared else "sleep 93.4568"
    policy = tether.ReconnectPolicy(connect_timeout=1.5, max_retries=0, keepalive_interval=1.0)
    async with ssh_supervisor(SshBackend()) as sup:
        spec = ssh_spec(sshd, policy=policy, share_connection=shared)
        options = dict(spec.options)
        options["extra_options"] = [*options["extra_options"], f"ProxyCommand={needle}"]
        await sup.register(tether.SessionSpec(id="s1", backend="ssh", options=options, policy=policy))
        await wait_until(lambda: processes_matching(needle), timeout=10, step=0.02)
        await wait_status(sup, "s1", S.FAILED, within=15)
        why = sup.state("s1").last_disconnect
        assert why is not None and why.reason in (R.TIMEOUT, R.NETWORK), why
        await wait_until(lambda: not processes_matching(needle), timeout=5, step=0.05)
        await trio.sleep(0.5)  # and nothing re-parented to pid 1 comes back
        assert processes_matching(needle) == []
