"""`tether.structure_options`: the strict converter the core offers plugins, and what the three
plugins' users see through it (every bad option at once, each with its key, a did-you-mean)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

import tether
from tether import ConfigError, InvalidConfigError, structure_options

from .journeys.daemon import tether_command


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ConfigError(attribute.name, f"must be >= 1, got {value}")


def _env(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError("env.X", "must be text")
    return dict(value)


@attrs.frozen(kw_only=True)
class Options:
    host: str
    port: int = attrs.field(default=22, validator=_positive)
    verbose: bool = False
    env: Mapping[str, str] = attrs.field(factory=dict, converter=_env)
    ratio: float = 1.0

    def __attrs_post_init__(self) -> None:
        if self.host == "localhost" and self.port == 22:
            raise ConfigError("port", "22 on localhost is taken by sshd here")


def test_a_good_table_structures() -> None:
    assert structure_options(Options, {"host": "h", "port": 2, "ratio": 2}) == Options(host="h", port=2, ratio=2.0)


@pytest.mark.parametrize(("options", "path", "problem"), [
    ({"host": "h", "port": "22"}, "port", "must be a whole number, got '22'"),
    ({"host": "h", "port": 0}, "port", "must be >= 1, got 0"),
    ({"host": "h", "verbose": 1}, "verbose", "must be true or false, got 1"),
    ({"host": "h", "env": {"A": 1}}, "env.X", "must be text"),
    ({"host": "h", "prot": 2}, "prot", "unknown option; did you mean port?"),
    ({"host": "h", "banana": 2}, "banana", "unknown option; known: env, host, port, ratio, verbose"),
    ({"host": "h", "port": None}, "port", "must not be null (leave the option out)"),
    ({}, "host", "required field missing"),
    ({"host": "localhost"}, "port", "22 on localhost is taken by sshd here"),
])
def test_one_problem_is_a_config_error_at_its_key(options: dict[str, Any], path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        structure_options(Options, options)
    assert not isinstance(info.value, InvalidConfigError)
    assert (info.value.path, info.value.problem) == (path, problem)


def test_several_problems_are_all_named_at_once() -> None:
    with pytest.raises(InvalidConfigError) as info:
        structure_options(Options, {"port": -1, "verbose": "yes", "colour": "red"})
    assert sorted(str(e) for e in info.value.errors) == [
        "colour: unknown option; known: env, host, port, ratio, verbose",
        "host: required field missing",
        "port: must be >= 1, got -1",
        "verbose: must be true or false, got 'yes'",
    ]


@pytest.mark.parametrize(("backend", "options", "expected"), [
    ("process", {"argv": ["sh"], "rws": 3, "cols": 0, "persist": "screen"}, [
        "options.cols: must be a whole number from 1 to 10000, got 0",
        "options.persist: must be \"none\" or \"tmux\", got 'screen'",
        "options.rws: unknown option; did you mean rows?",
    ]),
    ("ssh", {"host": "-oProxyCommand=x", "port": 0, "extra_options": ["BatchMode=no"]}, [
        "options.extra_options[0]: BatchMode is managed by tether: BatchMode is always yes (no prompts a daemon "
        "could not answer)",
        "options.host: is not a host name, got '-oProxyCommand=x'",
        "options.port: must be a whole number from 1 to 65535, got 0",
    ]),
    ("websocket", {"url": "ws://h/", "rows": 0, "ping_interval": -1, "adaptr": "raw"}, [
        "options.adaptr: unknown option; did you mean adapter?",
        "options.ping_interval: must be >= 0 and finite, got -1",
        "options.rows: must be a whole number from 1 to 10000, got 0",
    ]),
])
def test_each_plugin_names_every_bad_option(backend: str, options: dict[str, Any], expected: list[str]) -> None:
    """Through the one spec-against-plugins check (what register, /control and tether check use)."""
    registry = tether.discover_plugins(allow=[backend])
    if backend not in registry.backends:
        pytest.skip(f"tether-{backend} is not installed")
    spec = tether.SessionSpec(id="s", backend=backend, options=options)
    assert sorted(str(e) for e in registry.check_spec(spec)) == expected


def test_tether_check_shows_every_bad_option_of_a_session(tmp_path: Path) -> None:
    """The real command: three bad options of one process session, three lines."""
    pytest.importorskip("tether_process")
    config = tmp_path / "t.toml"
    config.write_text('[[sessions]]\nid = "sh"\nbackend = "process"\n'
                      'options = { argv = ["sh"], rws = 3, cols = 0, persist = "screen" }\n')
    result = tether_command("check", str(config), state=tmp_path / "state")
    assert result.returncode == 2
    assert [line.strip() for line in result.stderr.splitlines()[1:]] == [
        "sessions[0].options.cols: must be a whole number from 1 to 10000, got 0",
        "sessions[0].options.persist: must be \"none\" or \"tmux\", got 'screen'",
        "sessions[0].options.rws: unknown option; did you mean rows?",
    ]
