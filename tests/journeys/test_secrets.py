"""Secrets through the real daemon: never in its log, stderr, events, status or /control replies,
never in its database, and never handed to a program as ``[redacted]``.

A plugin installed through real entry points quotes its options in every error
it raises (as careless client libraries do): the attempt failures (events,
status), a traceback the engine logs (``current_state()`` raised), an internal
error over /control (``send`` raised) and a check that refused a register. The
literals and the value a reference resolved to must appear nowhere a user can
read. Then process sessions over /control, one secret literal and one by
reference, across a SIGTERM restart: the reference comes back with its real
value in the program's environment (read in /proc), the literal comes back
failed naming the missing secret, and no program ever sees ``[redacted]``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from .daemon import DB_NAME, Daemon, control, install_plugin, processes_with_env, wait_for

pytestmark = pytest.mark.slow

LITERAL = "lit-Secr3t-a7f1"
CHECKED = "chk-Secr3t-b8e2"
HELD = "held-Secr3t-c9d3"
REFERENCED = "ref-Secr3t-d0c4"
SECRETS = (LITERAL, CHECKED, HELD, REFERENCED)

PLUGIN = '''
from contextlib import asynccontextmanager

import trio


class _Link:
    def __init__(self, options):
        self.options = options

    async def probe(self):
        await trio.lowlevel.checkpoint()

    def current_state(self):
        raise RuntimeError(f"no state for {self.options}")

    async def send(self, data):
        raise RuntimeError(f"cannot write with {self.options}")


class LeakyBackend:
    """Every error quotes the options it was given: secrets included."""

    name = "leaky"
    plugin_api = 1
    features = frozenset()
    default_strategies = {}

    def validate(self, spec):
        if spec.options.get("refuse"):
            raise ValueError(f"cannot check {dict(spec.options)}")

    def target(self, spec):
        return "leaky:" + spec.id

    @asynccontextmanager
    async def open_link(self, request):
        options = dict(request.spec.options)
        if options.get("fail"):
            raise RuntimeError(f"refused: {options}")
        yield _Link(options)
'''

FAST = {"base_delay": 0.1, "max_delay": 0.2, "max_retries": "forever", "connect_timeout": 5}


def _register(state: Path, rid: int, table: dict[str, Any]) -> dict[str, Any]:
    return control(state, {"id": rid, "op": "register", "session": table})


def _assert_nowhere(text: str, where: str, secrets: tuple[str, ...] = SECRETS) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked into {where}:\n{text[:3000]}"


def test_plugin_errors_never_show_a_secret(tmp_path: Path) -> None:
    site = install_plugin(tmp_path / "site", "tether-leaky", "0.1", "tether_leaky", PLUGIN, {"leaky": "LeakyBackend"})
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "LEAKY_TOKEN": REFERENCED}
    state = tmp_path / "state"
    daemon = Daemon(state, None, env=env, extra_args=("--log-level", "debug"))
    replies: list[dict[str, Any]] = []
    try:
        daemon.start()
        replies.append(_register(state, 1, {"id": "fails-literal", "backend": "leaky", "policy": FAST,
                                            "options": {"fail": True, "password": LITERAL}}))
        replies.append(_register(state, 2, {"id": "fails-reference", "backend": "leaky", "policy": FAST,
                                            "options": {"fail": True, "token": {"from_env": "LEAKY_TOKEN"}}}))
        replies.append(_register(state, 3, {"id": "held", "backend": "leaky", "options": {"api_key": HELD}}))
        refused = _register(state, 4, {"id": "refused", "backend": "leaky",
                                       "options": {"refuse": True, "secret": CHECKED}})
        assert refused["error"]["type"] == "invalid-config" and "[redacted]" in refused["error"]["message"], refused
        replies.append(refused)
        sessions = wait_for(lambda: (s := daemon.sessions()) and all(
            s[sid]["attempts_failed"] >= 2 for sid in ("fails-literal", "fails-reference"))
            and s["held"]["status"] == "connected" and s, what="attempts to fail and one session to connect")
        detail = sessions["fails-reference"]["last_disconnect"]["detail"]
        assert detail == "RuntimeError: refused: {'fail': True, 'token': '[redacted]'}", detail
        sent = control(state, {"id": 5, "op": "send", "session_id": "held", "text": "hello"})
        assert sent["error"]["type"] == "internal" and "cannot write with" in sent["error"]["message"], sent
        replies.append(sent)
        replies.append(control(state, {"id": 6, "op": "status", "detail": True, "limit": 10}))
        _assert_nowhere(json.dumps(replies), "/control replies")
        _assert_nowhere(daemon.cli("status", "--json").stdout, "status --json")
        _assert_nowhere(json.dumps(sessions), "status --detail --json")
        events = daemon.cli("watch", "--json", "--since", "0", "--type", "reconnect.failed", "--count", "4").stdout
        assert events.count("[redacted]") == 4, events
        _assert_nowhere(daemon.cli("watch", "--json", "--since", "0", "--count", "20").stdout, "events")
        log = daemon.log()
        assert "control command Send (session 'held') failed" in log and "cannot write with" in log
        assert "current_state() raised" in log and "Traceback" in log, "the tracebacks are logged, scrubbed"
        daemon.stop("SIGTERM")
        _assert_nowhere(daemon.log(), "the daemon's log and stderr")
        _assert_nowhere((state / DB_NAME).read_bytes().decode("utf-8", "replace"), "the database")
    finally:
        daemon.kill()


PROGRAM = "import os, time\nprint('up', flush=True)\ntime.sleep(3600)\n"


def _program_env(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        items = [item.decode(errors="replace").partition("=") for item in f.read().split(b"\0") if item]
    return {name: value for name, _, value in items}


def test_process_secrets_survive_a_restart_by_reference_and_are_never_faked(tmp_path: Path) -> None:
    """Over /control: one program with a literal secret, one with a secret by reference. status,
    events and replies never show them; after SIGTERM and a start the reference is in the new
    program's environment, the literal's session is failed naming it, and no program sees [redacted]."""
    state = tmp_path / "state"
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    daemon = Daemon(state, None, env={"PROGRAM_DB_PASSWORD": REFERENCED})
    try:
        daemon.start()
        replies = [
            _register(state, 1, {"id": "literal", "backend": "process", "options": {
                "command": command, "env": {"API_TOKEN": LITERAL, "MARK": "secret-journey-literal"}}}),
            _register(state, 2, {"id": "reference", "backend": "process", "options": {
                "command": command, "env": {"DB_PASSWORD": {"from_env": "PROGRAM_DB_PASSWORD"},
                                            "MARK": "secret-journey-reference"}}}),
        ]
        assert all("result" in reply for reply in replies), replies
        wait_for(lambda: (s := daemon.sessions()) and all(s[sid]["status"] == "connected"
                                                           for sid in ("literal", "reference")),
                 what="both programs to start")
        (literal,) = processes_with_env("MARK", "secret-journey-literal")
        (reference,) = processes_with_env("MARK", "secret-journey-reference")
        assert _program_env(literal)["API_TOKEN"] == LITERAL, "the program gets the real literal"
        assert _program_env(reference)["DB_PASSWORD"] == REFERENCED, "and the resolved reference"
        replies.append(control(state, {"id": 3, "op": "status", "detail": True, "limit": 10}))
        _assert_nowhere(json.dumps(replies), "/control replies")
        _assert_nowhere(daemon.cli("status", "--detail", "--json").stdout, "status --detail --json")
        _assert_nowhere(daemon.cli("watch", "--json", "--since", "0", "--count", "4").stdout, "events")

        daemon.stop("SIGTERM")
        wait_for(lambda: not processes_with_env("MARK", "secret-journey-literal")
                 and not processes_with_env("MARK", "secret-journey-reference"),
                 what="the programs to end with the daemon")
        daemon.start()
        sessions = wait_for(lambda: (s := daemon.sessions()) and s["reference"]["status"] == "connected"
                            and s["literal"]["status"] == "failed" and s, what="the restore")
        (again,) = wait_for(lambda: processes_with_env("MARK", "secret-journey-reference"), what="the new program")
        assert again != reference
        assert _program_env(again)["DB_PASSWORD"] == REFERENCED, "a reference restores the real value"
        failure = sessions["literal"]["failure"]
        assert failure["reason"] == "secret-missing" and "options.env.API_TOKEN" in failure["detail"], failure
        assert not processes_with_env("MARK", "secret-journey-literal"), "no program started with a fake secret"
        faked = [pid for pid in processes_with_env("MARK", "secret-journey-reference")
                 if "[redacted]" in _program_env(pid).values()]
        assert not faked, "no program ever receives [redacted]"
        _assert_nowhere(daemon.cli("status", "--detail", "--json").stdout, "status after the restart")
        _assert_nowhere(daemon.cli("watch", "--json", "--since", "0", "--count", "4").stdout, "events after it")
        daemon.stop("SIGTERM")
        _assert_nowhere(daemon.log(), "the daemon's log")
        _assert_nowhere((state / DB_NAME).read_bytes().decode("utf-8", "replace"), "the database")
    finally:
        daemon.kill()
