"""50 sessions to one sshd: the per-target connect limit keeps sshd's MaxStartups from refusing any;
with connection sharing, 50 sessions are 5 logins."""

from __future__ import annotations

import trio

import tether
from tether.testing import wait_until
from tether_ssh import SshBackend

from .conftest import Sshd, fast_policy, ssh_spec, ssh_supervisor

SESSIONS = 50
LIMIT = 10
"""sshd refuses at random past 10 unauthenticated connections (MaxStartups 10:30:100)."""


async def test_fifty_sessions_honour_the_connect_limit(sshd: Sshd) -> None:
    """Unshared: at most LIMIT ssh clients are ever between spawn and ready; every session connects first time."""
    backend = SshBackend()
    policy = fast_policy(connect_timeout=20.0, health_check_interval=5.0, keepalive_interval=5.0)
    async with ssh_supervisor(backend, connect_limit=LIMIT) as sup:
        await sup.register_many(
            ssh_spec(sshd, session_id=f"s{i}", policy=policy, shell_integration=False, share_connection=False)
            for i in range(SESSIONS)
        )
        start = trio.current_time()

        def all_connected() -> bool:
            return all(s.status is tether.SessionStatus.CONNECTED for s in sup.states().values())

        await wait_until(all_connected, timeout=60, step=0.05)
        took = trio.current_time() - start
        troubled = [s.last_disconnect for s in sup.states().values() if s.last_disconnect is not None]
        assert backend.connects_started == SESSIONS, f"connects were retried: {troubled}"
        assert 1 <= backend.peak_connecting <= LIMIT
        assert all(s.episodes_total == 0 for s in sup.states().values())
        assert len(sshd.children()) >= SESSIONS
    log = sshd.log.read_text()
    assert "MaxStartups" not in log and "drop connection" not in log
    print(f"{SESSIONS} sessions connected in {took:.1f}s, peak concurrent connects {backend.peak_connecting}")


async def test_fifty_shared_sessions_are_five_logins(sshd: Sshd) -> None:
    """Shared: 50 sessions are channels on ceil(50 / MaxSessions) = 5 connections, counted in sshd's own log."""
    backend = SshBackend()
    policy = fast_policy(connect_timeout=20.0, health_check_interval=5.0, keepalive_interval=5.0)
    async with ssh_supervisor(backend, connect_limit=LIMIT) as sup:
        await sup.register_many(
            ssh_spec(sshd, session_id=f"s{i}", policy=policy, shell_integration=False) for i in range(SESSIONS)
        )
        start = trio.current_time()

        def all_connected() -> bool:
            return all(s.status is tether.SessionStatus.CONNECTED for s in sup.states().values())

        await wait_until(all_connected, timeout=60, step=0.05)
        took = trio.current_time() - start
        assert all(s.episodes_total == 0 for s in sup.states().values())
        assert backend.logins.started == SESSIONS // 10
        assert backend.logins.peak <= LIMIT
        assert len(sshd.children()) == SESSIONS // 10, "one sshd connection per shared connection"
    log = sshd.log.read_text()
    assert log.count("Accepted publickey") == SESSIONS // 10
    assert "MaxStartups" not in log and "drop connection" not in log
    print(f"{SESSIONS} shared sessions connected in {took:.1f}s over {backend.logins.started} logins")
