"""`tether demo`: watch tether notice drops, back off, recover and restore, live.

It runs on embedded sessions, no config file. With the ``process`` backend
installed (tether-process) the sessions are real programs: one that exits
every few seconds, one that does not exist, one that runs healthily. Without
it, the ``scripted`` backend that ships in the core plays the same story
from timers, so the demo works right after ``pip install -e .``.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from ..engine._plugins import PluginRegistry
from ..engine._supervisor import Supervisor
from ..rules._policy import ReconnectPolicy
from ..rules._reasons import DisconnectReason
from ..rules._spec import SessionSpec
from ..rules._wire import event_to_dict
from ..testing import ScriptedBackend
from ._render import render

DEMO_POLICY = ReconnectPolicy(
    base_delay=0.5, max_delay=4.0, multiplier=2.0, max_retries=4, health_check_interval=3.0,
    connect_timeout=3.0, stable_after=1.0, keepalive_interval=0.0,
)
"""Short delays so every step shows within seconds."""


def process_sessions() -> list[SessionSpec]:
    """Real programs, for when tether-process is installed."""
    return [
        SessionSpec(id="steady", backend="process", policy=DEMO_POLICY,
                    options={"argv": ["sh", "-c", "while true; do echo tick $(date +%T); sleep 2; done"]}),
        SessionSpec(id="flaky-shell", backend="process", policy=DEMO_POLICY,
                    options={"argv": ["sh", "-c", "echo started in $PWD; sleep 3; echo bye; exit 3"],
                             "cwd": "/tmp"}),
        SessionSpec(id="missing-program", backend="process",
                    policy=ReconnectPolicy(base_delay=0.5, max_delay=2.0, max_retries=3, connect_timeout=3.0),
                    options={"argv": ["tether-demo-no-such-program"]}),
    ]


def scripted_sessions() -> list[SessionSpec]:
    """The same story, scripted (no programs are started)."""
    return [
        SessionSpec(id="steady", backend="scripted", policy=DEMO_POLICY, options={"target": "local"}),
        SessionSpec(id="flaky-shell", backend="scripted", policy=DEMO_POLICY,
                    options={"drop_after": 3.0, "drop_reason": "process-exit", "cwd": "/tmp/build",
                             "target": "local"}),
        SessionSpec(id="wifi-ssh", backend="scripted", policy=DEMO_POLICY,
                    options={"drop_after": 5.0, "drop_reason": "network", "target": "devbox:22"}),
        SessionSpec(id="sick-probe", backend="scripted", policy=DEMO_POLICY,
                    options={"target": "devbox:22"}),
        SessionSpec(id="missing-program", backend="scripted",
                    policy=ReconnectPolicy(base_delay=0.5, max_delay=2.0, max_retries=3, connect_timeout=3.0),
                    options={"fail_connects": 1_000_000, "fail_reason": "spawn-failed", "target": "local"}),
    ]


def demo_sessions(registry: PluginRegistry) -> tuple[list[SessionSpec], str]:
    """The sessions and the backend name they use."""
    if "process" in registry.backends:
        return process_sessions(), "process"
    return scripted_sessions(), "scripted"


async def chaos(supervisor: Supervisor) -> None:
    """Scripted only: every 9 s the wifi drops twice in a row and a probe goes bad for a while;
    every other round the failed program is revived by a forced reconnect."""
    backend = supervisor.registry.backends.get("scripted")
    if not isinstance(backend, ScriptedBackend):
        return
    for round_ in range(1, 1_000_000):
        await trio.sleep(4.0)
        if "sick-probe" in supervisor.session_ids:
            backend.script("sick-probe").probe = "fail"
        await trio.sleep(2.0)
        if "sick-probe" in supervisor.session_ids:
            backend.script("sick-probe").probe = "ok"
        await trio.sleep(3.0)
        if "wifi-ssh" in supervisor.session_ids:
            backend.fail_next("wifi-ssh", 2, DisconnectReason.NETWORK)
        if round_ % 2 == 0 and "missing-program" in supervisor.session_ids:
            await supervisor.force_reconnect("missing-program", wait=False)


async def live_log(supervisor: Supervisor, emit: Callable[[str], None]) -> None:
    """Print every event as one line as it happens, from the first (the sessions registering)."""
    with supervisor.subscribe(buffer=10_000, since=0) as sub:  # from the first event: the sessions registering
        async for item in sub:
            data = event_to_dict(item)
            if data["type"] == "session.output" and not str(data.get("data", "")).strip():
                continue
            emit(render(data))
