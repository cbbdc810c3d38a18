"""Spec options are validated at register time, naming the bad key."""

from __future__ import annotations

from typing import Any

import pytest

import tether
from tether_process import ProcessBackend, ProcessOptions


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({}, "argv"),
        ({"argv": ["a"], "command": "b"}, "argv"),
        ({"argv": "bash -l"}, "argv"),
        ({"argv": []}, "argv"),
        ({"command": "  "}, "command"),
        ({"argv": ["a"], "rows": 0}, "rows"),
        ({"argv": ["a"], "cols": True}, "cols"),
        ({"argv": ["a"], "persist": "screen"}, "persist"),
        ({"argv": ["a"], "env": {"A=B": "x"}}, "env.A=B"),
        ({"argv": ["a"], "env": {"A": 1}}, "env.A"),
        ({"argv": ["a"], "shell_integration": "yes"}, "shell_integration"),
        ({"argv": ["a"], "colour": 1}, "colour"),
    ],
)
def test_bad_options_name_their_key(options: dict[str, Any], path: str) -> None:
    """Each bad option is a ConfigError whose path is the option's key."""
    with pytest.raises(tether.ConfigError) as info:
        ProcessOptions.from_options(options)
    assert info.value.path == path


def test_env_value_is_never_echoed_in_errors() -> None:
    """An env value may be a secret: the error names the variable, not the value."""
    with pytest.raises(tether.ConfigError) as info:
        ProcessOptions.from_options({"argv": ["a"], "env": {"TOKEN": "s3cret\0"}})
    assert "s3cret" not in str(info.value)


def test_command_runs_through_sh() -> None:
    """A command line with shell syntax becomes /bin/sh -c, so the syntax works."""
    for line in ("echo hi | cat", "cd /srv && bash", "FOO=1 bash", "bash -c 'x'", "exit 3", "ls $HOME"):
        assert ProcessOptions.from_options({"command": line}).argv == ("/bin/sh", "-c", line), line
        assert ProcessOptions.from_options({"command": line}).under_sh


def test_a_plain_command_runs_as_its_words() -> None:
    """Plain words need no shell: `bash -i` runs as bash itself, so the integration reaches it."""
    assert ProcessOptions.from_options({"command": "bash -i"}).argv == ("bash", "-i")
    words = ProcessOptions.from_options({"command": "  python3 app.py --port=8 "}).argv
    assert words == ("python3", "app.py", "--port=8")
    assert not ProcessOptions.from_options({"command": "zsh"}).under_sh


def test_notes_say_what_a_sh_command_loses() -> None:
    """`tether check` advice: a shell line loses the integration; rerun without a shell does nothing."""
    backend = ProcessBackend()

    def notes(**options: object) -> list[tuple[str, str]]:
        return backend.notes(tether.SessionSpec(id="n", backend="process", options=options))

    (note,) = notes(command="cd /srv && bash")
    assert note[0] == "command" and note[1].startswith("runs under /bin/sh -c: a shell it starts gets no tether")
    assert notes(command="bash -i") == [] and notes(argv=["zsh", "-l"], rerun_last_command=True) == []
    assert notes(command="bash -l") == [
        ("command", "a login bash (-l) reads its profile, not an rc file tether can add: no tether integration "
                    "(cwd only from /proc, no rerun, no run)"),
    ]
    assert notes(argv=["python3"], rerun_last_command=True) == [
        ("rerun_last_command", "has no effect: only bash and zsh report their commands"),
    ]


async def test_register_reports_the_options_path() -> None:
    """The supervisor prefixes the backend's path with options."""
    registry = tether.PluginRegistry()
    registry.add_backend(ProcessBackend())
    async with tether.open_supervisor(registry=registry) as sup:
        with pytest.raises(tether.ConfigError) as info:
            await sup.register(tether.SessionSpec(id="x", backend="process", options={"argv": ["a"], "rows": -1}))
    assert info.value.path == "options.rows"


def test_entry_point_registers_the_backend() -> None:
    """Plugin discovery finds `process` through the tether.backends entry point."""
    registry = tether.discover_plugins(allow=["process"])
    assert isinstance(registry.backends["process"], ProcessBackend)
    info = next(p for p in registry.loaded if p.name == "process")
    assert info.distribution == "tether-process"
