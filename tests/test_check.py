"""`tether check` reports every problem of a config in one pass, each with its path, with a
"did you mean" for a key that is close to a known one; `tether run` refuses the same config
with the same lines. Through the real command."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import trio

from tether import discover_plugins
from tether.cli._config import check_config, check_config_file
from tether.rules._errors import InvalidConfigError

from .journeys.daemon import tether_command

MANY_ERRORS = textwrap.dedent("""\
    state_dir = 5

    [server]
    port = 70000
    hots = "127.0.0.1"

    [store]
    flush_interval = 0

    [defaults.policy]
    max_retires = 5

    [[session]]
    id = "typo"
    backend = "scripted"

    [[sessions]]
    id = "a"
    backend = "nope"
    [sessions.policy]
    max_delay = 1

    [[sessions]]
    id = "a"
    backend = "scripted"
    options = { fail_connects = "x" }
""")

EXPECTED = [
    "state_dir: must be a string, got 5",
    "server.port: must be between 0 and 65535, got 70000",
    "server.hots: unknown field; did you mean host?",
    "store.flush_interval: must be > 0, got 0.0",
    "defaults.policy.max_retires: unknown field; did you mean max_retries?",
    "session: unknown field; did you mean sessions?",
    "sessions[0].backend: unknown backend 'nope'; known: ",
    "sessions[0].policy.max_delay: must be >= base_delay (2.0), got 1.0",
    "sessions[1].id: 'a' is already used by sessions[0]",
    "sessions[1].options.fail_connects: has the wrong type str",
]


def _lines(text: str) -> list[str]:
    """The problem lines, with the list of known backends (whatever is installed) cut off."""
    lines = [line.strip() for line in text.splitlines()[1:]]
    return [line[: line.index("known: ") + 7] if "unknown backend" in line else line for line in lines]


def test_every_problem_in_one_pass(tmp_path: Path) -> None:
    """Ten problems in five sections and two sessions, all named at once, in file order."""
    path = tmp_path / "many.toml"
    path.write_text(MANY_ERRORS)
    with pytest.raises(InvalidConfigError) as info:
        check_config_file(path, discover_plugins())
    assert _lines(str(info.value.problem)) == EXPECTED
    assert str(info.value.problem).splitlines()[0] == f"{path}: 10 problems"


@pytest.mark.parametrize("command", ["check", "run"])
def test_the_command_says_every_line_and_run_says_the_same(tmp_path: Path, command: str) -> None:
    """`tether check` and `tether run` print the same lines, exit 2, no traceback."""
    path = tmp_path / "many.toml"
    path.write_text(MANY_ERRORS)
    result = tether_command(command, str(path), state=tmp_path / "state")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == f"tether: {path}: 10 problems"
    assert _lines(result.stderr) == EXPECTED


def test_a_broken_session_is_still_checked_by_its_plugin() -> None:
    """A session with a bad policy still has its backend and options checked."""
    _, errors = check_config({"sessions": [{"id": "a", "backend": "scripted", "policy": {"multiplier": 0},
                                            "options": {"drop_after": "soon"}}]}, discover_plugins())
    assert [str(e) for e in errors] == [
        "sessions[0].options.drop_after: has the wrong type str",
        "sessions[0].policy.multiplier: must be > 0, got 0",
    ]


def test_a_bad_default_is_named_once_and_the_good_ones_still_apply() -> None:
    """[defaults.policy] with one bad key: one line at its path, not one per session."""
    config, errors = check_config({"defaults": {"policy": {"base_delay": "x", "max_retries": 9}},
                                   "sessions": [{"id": "a", "backend": "scripted"},
                                                {"id": "b", "backend": "scripted"}]})
    assert [str(e) for e in errors] == ["defaults.policy.base_delay: must be a number of seconds, got 'x'"]
    assert config is None


@pytest.mark.parametrize(("key", "expected"), [
    ("sesions", "sesions: unknown field; did you mean sessions?"),
    ("servers", "servers: unknown field; did you mean server?"),
    ("connect_limt", "connect_limt: unknown field; did you mean connect_limit?"),
    ("banana", "banana: unknown field"),
])
def test_unknown_top_level_keys_suggest_the_close_one(key: str, expected: str) -> None:
    _, errors = check_config({key: 1})
    assert [str(e) for e in errors] == [expected]


def test_connect_limits() -> None:
    """A default for every target and per-target values; "unlimited" lifts one."""
    config, errors = check_config({"connect_limit": "unlimited", "connect_limits": {"devbox:22": 3}})
    assert errors == [] and config is not None
    assert config.connect_limits.limit_for("devbox:22") == 3
    assert config.connect_limits.limit_for("other:22") is None
    _, errors = check_config({"connect_limit": 0, "connect_limits": {"devbox:22": "many"}})
    assert [str(e) for e in errors] == [
        'connect_limit: must be a whole number >= 1 or "unlimited", got 0',
        'connect_limits."devbox:22": must be a whole number >= 1 or "unlimited", got \'many\'',
    ]


@pytest.mark.parametrize(("limit", "per_target", "started"), [
    (1, None, 1), (2, None, 2), ("unlimited", None, 3), (1, 2, 2), ("unlimited", 1, 1),
])
async def test_the_daemon_hands_connect_limit_to_the_engine(
    tmp_path: Path, autojump_clock: object, limit: int | str, per_target: int | None, started: int
) -> None:
    """connect_limit from the config reaches the supervisor: with 1, one connect to a target is in
    flight at a time (each takes 5 s here, on trio's mock clock)."""
    from tether import SessionSpec
    from tether.cli._daemon import DaemonOptions, run_daemon
    from tether.testing import ScriptedBackend

    table: dict[str, object] = {"connect_limit": limit}
    if per_target is not None:
        table["connect_limits"] = {"t": per_target}
    config, errors = check_config(table)
    assert config is not None, errors
    backend = ScriptedBackend()
    specs = [SessionSpec(id=f"s{i}", backend="scripted", options={"target": "t", "connect_delay": 5.0})
             for i in range(3)]
    seen: list[int] = []

    async def on_start(supervisor: object, nursery: object) -> None:
        await trio.sleep(1)  # every connect the limit lets start has started
        seen.append(sum(backend.ledger(spec.id).connects for spec in specs))

    options = DaemonOptions(state_dir=tmp_path / "state", sessions=specs, backends=[backend], duration=2,
                            connect_limits=config.connect_limits)
    await run_daemon(options, on_start=on_start)
    assert seen == [started]


def test_per_target_limits_are_accepted_by_check_and_run(tmp_path: Path) -> None:
    """[connect_limits] passes `check` and `run` alike."""
    path = tmp_path / "limits.toml"
    path.write_text('connect_limit = 5\n[server]\nport = 0\n[connect_limits]\n"devbox:22" = 2\n')  # 8765 may be taken
    for command in ("check", "run"):
        result = tether_command(command, str(path), "--duration", "0.1", state=tmp_path / "state") \
            if command == "run" else tether_command(command, str(path), state=tmp_path / "state")
        assert result.returncode == 0, result.stderr


def test_a_bad_default_beside_a_cross_field_one_is_reported_at_defaults_once(tmp_path: Path) -> None:
    """A bad jitter in [defaults.policy] does not hide its max_delay < base_delay, nor move that
    problem onto the first session; a misspelt backend gets a did-you-mean."""
    path = tmp_path / "t.toml"
    path.write_text('[defaults.policy]\njitter = "ful"\nbase_delay = 5.0\nmax_delay = 1.0\n'
                    '[[sessions]]\nid = "a"\nbackend = "scripted"\n'
                    '[[sessions]]\nid = "b"\nbackend = "scriptd"\n[sessions.policy]\nmultiplier = 0.5\n')
    result = tether_command("check", str(path), state=tmp_path / "state")
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert problems == [
        "defaults.policy.jitter: must be one of full, equal, decorrelated, none, got 'ful'",
        "defaults.policy.max_delay: must be >= base_delay (5.0), got 1.0",
        "sessions[1].backend: unknown backend 'scriptd'; did you mean scripted? known: "
        + result.stderr.split("known: ")[1].splitlines()[0],
        "sessions[1].policy.multiplier: must be >= 1 (delays never shrink), got 0.5",
    ], result.stderr
