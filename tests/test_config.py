"""Config files: every bad field is named with its path, in tether's words."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tether import ConfigError, ReconnectPolicy, discover_plugins
from tether.cli._config import check_with_plugins, load_config, parse_config
from tether.rules._errors import InvalidConfigError
from tether.rules._structure import structure_session


def _problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(InvalidConfigError) as info:
        parse_config(data)
    return [str(e) for e in info.value.errors]


def _session(sid: str, **extra: object) -> dict[str, object]:
    return {"id": sid, "backend": "scripted", **extra}


def test_max_delay_below_base_delay_names_the_path_exactly() -> None:
    """The issue's own example, word for word."""
    data = {"sessions": [_session("a"), _session("b"), _session("c"), _session("d", policy={"max_delay": 1})]}
    assert _problems(data) == ["sessions[3].policy.max_delay: must be >= base_delay (2.0), got 1.0"]


def test_every_bad_field_is_reported() -> None:
    """Several bad fields in several sessions are all named, not just the first."""
    data = {
        "sessions": [
            _session("a", policy={"max_retries": "5", "base_delay": -1, "enabled": 1,
                                  "strategies": {"bogus": "simple-reconnect"}}, extra=1),
            {"backend": 3},
        ]
    }
    assert _problems(data) == [
        "sessions[0].policy.enabled: must be true or false, got 1",
        "sessions[0].policy.max_retries: must be a whole number >= 0 or \"forever\" (retry without end), got '5'",
        "sessions[0].policy.base_delay: must be >= 0, got -1.0",
        "sessions[0].policy.strategies.bogus: unknown reason; known reasons: network, process-exit, "
        "spawn-failed, timeout, auth, host-key, remote-closed, health-check, backend-error, forced, "
        "supervisor-restart, secret-missing",
        "sessions[0].extra: unknown field",
        "sessions[1].id: required field missing",
        "sessions[1].backend: must be a backend name, got 3",
    ]


def test_zero_means_zero() -> None:
    """max_retries = 0 and base_delay = 0 stay zero (flaw 6)."""
    config = parse_config({"sessions": [_session("a", policy={"max_retries": 0, "base_delay": 0})]})
    assert config.sessions[0].policy.max_retries == 0
    assert config.sessions[0].policy.base_delay == 0.0


def test_defaults_policy_applies_and_sessions_override() -> None:
    """[defaults.policy] is the base of every session's policy, key by key."""
    config = parse_config({
        "defaults": {"policy": {"max_retries": 9, "base_delay": 0.5}},
        "sessions": [_session("a"), _session("b", policy={"max_retries": 1})],
    })
    assert config.sessions[0].policy == ReconnectPolicy(max_retries=9, base_delay=0.5)
    assert config.sessions[1].policy.max_retries == 1
    assert config.sessions[1].policy.base_delay == 0.5


def test_bad_defaults_are_named_under_defaults() -> None:
    """A bad default is reported once, at its own path."""
    assert _problems({"defaults": {"policy": {"base_delay": "x"}}}) == [
        "defaults.policy.base_delay: must be a number of seconds, got 'x'"
    ]


def test_server_store_and_layout_errors() -> None:
    """Server and store tables, unknown top-level keys and a non-array sessions."""
    assert _problems({"server": {"port": 70000}, "store": {"flush_interval": 0}, "sessions": {"a": 1}, "x": 1}) == [
        "server.port: must be between 0 and 65535, got 70000",
        "store.flush_interval: must be > 0, got 0.0",
        "sessions: must be an array of tables ([[sessions]])",
        "x: unknown field",
    ]
    assert _problems({"server": {"host": "0.0.0.0"}}) == [
        "server.host: '0.0.0.0' is not a loopback address; set allow_remote = true to listen on it"
    ]


def test_duplicate_ids() -> None:
    """Two sessions with one id: the second is named."""
    assert _problems({"sessions": [_session("a"), _session("a")]}) == [
        "sessions[1].id: 'a' is already used by sessions[0]"
    ]


def test_plugin_checks_name_backend_options_and_strategies() -> None:
    """Unknown backends, options the backend rejects and unknown strategies, with paths."""
    config = parse_config({"sessions": [
        _session("a", options={"fail_connects": "x"}),
        {"id": "b", "backend": "nope"},
        _session("c", policy={"strategies": {"network": "no-such-strategy"}}),
    ]})
    problems = [str(e) for e in check_with_plugins(config, discover_plugins())]
    assert problems[0] == "sessions[0].options.fail_connects: has the wrong type str"
    assert problems[1].startswith("sessions[1].backend: unknown backend 'nope'; known: ")
    assert problems[2].startswith(
        "sessions[2].policy.strategies.network: unknown strategy 'no-such-strategy'; known: "
    )


def test_load_config_toml_errors(tmp_path: Path) -> None:
    """Missing files and bad TOML are config errors, not tracebacks."""
    with pytest.raises(InvalidConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[sessions]\n")
    with pytest.raises(InvalidConfigError, match="not valid TOML"):
        load_config(bad)


def test_example_config_is_valid() -> None:
    """examples/tether.toml loads and passes the plugin checks for the backends installed."""
    path = Path(__file__).parent.parent / "examples" / "tether.toml"
    config = load_config(path)
    assert config.sessions
    registry = discover_plugins()
    problems = [e for e in check_with_plugins(config, registry) if not e.path.endswith(".backend")]
    assert problems == []


def test_structure_session_for_control() -> None:
    """The /control register command uses the same structuring, rooted at `session`."""
    with pytest.raises(InvalidConfigError) as info:
        structure_session({"id": "a", "backend": "scripted", "policy": {"multiplier": 0.5}})
    assert [str(e) for e in info.value.errors] == [
        "session.policy.multiplier: must be >= 1 (delays never shrink), got 0.5"
    ]
    assert isinstance(info.value, ConfigError)


def test_full_file(tmp_path: Path) -> None:
    """A realistic file round-trips into specs."""
    path = tmp_path / "t.toml"
    path.write_text(textwrap.dedent("""
        [server]
        port = 0
        [store]
        durable = true
        [[sessions]]
        id = "web"
        backend = "scripted"
        options = { drop_after = 1.5 }
        [sessions.policy]
        max_retries = 3
        jitter = "equal"
    """))
    config = load_config(path)
    assert config.server.port == 0
    assert config.store.durable is True
    assert config.sessions[0].options == {"drop_after": 1.5}
    assert config.sessions[0].policy.max_retries == 3


def test_forever_is_how_toml_says_retry_without_end(tmp_path: Path) -> None:
    """TOML has no null: ``max_retries = "forever"`` is `None`; any other string names the choices."""
    path = tmp_path / "t.toml"
    path.write_text('[[sessions]]\nid = "a"\nbackend = "scripted"\n[sessions.policy]\nmax_retries = "forever"\n')
    assert load_config(path).sessions[0].policy.max_retries is None
    assert _problems({"sessions": [_session("a", policy={"max_retries": "always"})]}) == [
        "sessions[0].policy.max_retries: must be a whole number >= 0 or \"forever\" (retry without end), got 'always'"
    ]
