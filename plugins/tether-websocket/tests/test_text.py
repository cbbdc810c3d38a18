"""Replay de-duplication, OSC 7 tracking, the restore line, redaction and options. Pure."""

from __future__ import annotations

from typing import Any

import pytest

import tether
from tether import OscScanner
from tether_websocket import WebSocketBackend, parse_options
from tether_websocket._link import newest_cwd
from tether_websocket._redact import redact
from tether_websocket._replay import new_part
from tether_websocket._shell import LINE_LIMIT, restore_line, setup_lines


@pytest.mark.parametrize(
    ("history", "replay", "new"),
    [
        (b"", b"abc", b"abc"),
        (b"abc", b"", b""),
        (b"prompt$ ls\r\nfile\r\n$ ", b"file\r\n$ more", b"more"),  # replay starts inside the history
        (b"ls\r\n", b"old stuff ls\r\nnew", b"new"),  # history wholly inside a longer replay
        (b"abc", b"abc", b""),  # nothing happened while away
        (b"xyz", b"abc", b"abc"),  # no overlap: keep everything
        (b"aaaa", b"aab", b"b"),  # self-overlapping prefixes
    ],
)
def test_new_part(history: bytes, replay: bytes, new: bytes) -> None:
    """Only what tether has not seen is reported after a re-attach."""
    assert new_part(history, replay) == new


def test_cwd_tracking_handles_split_sequences() -> None:
    """An OSC 7 report split across chunks is still seen (the core scanner); the newest one wins."""
    scanner = OscScanner()

    def feed(data: bytes) -> str | None:
        return newest_cwd(scanner.feed(data)[1])

    assert feed(b"out\x1b]7;file://host/tmp/a%20") is None
    assert feed(b"b\x07$ ") == "/tmp/a b"
    assert feed(b"\x1b") is None
    assert feed(b"]7;file:///srv\x1b\\") == "/srv"
    assert feed(b"\x1b]7;file://h/one\x07\x1b]7;file://h/two\x07") == "/two"
    assert feed(b"\x1b]7;http://h/x\x07") is None


def test_restore_line_quotes() -> None:
    """Env and cwd are shell-quoted; the line starts with a space to stay out of history."""
    line = restore_line(cwd="/tmp/it's", env={"A": "x y"})
    assert line == " export A='x y'; cd '/tmp/it'\"'\"'s'\r"
    assert restore_line(cwd=None, env={}) is None



def test_redact() -> None:
    """Known secrets, token= query values and auth headers are masked."""
    text = "GET ws://h/?token=abc&x=1 Authorization: token zzz also sekrit"
    assert redact(text, ["sekrit"]) == "GET ws://h/?token=***&x=1 Authorization: token *** also ***"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "url: give exactly one of url"),
        ({"url": "ws://h/", "base_url": "http://h/"}, "url: give exactly one of url"),
        ({"url": "http://h/"}, "url: must be a ws:// or wss:// URL"),
        ({"url": "ws://h/?token=s3cret"}, None),
        ({"base_url": "ws://h/"}, "base_url: must be an http:// or https:// URL"),
        ({"url": "ws://h/", "terminal": "1"}, "terminal: only applies with base_url"),
        ({"url": "ws://h/", "ping_interval": -1}, "ping_interval: must be >= 0"),
        ({"url": "ws://h/", "close_timeout": 0}, "close_timeout: must be > 0"),
        ({"url": "ws://h/", "env": {"1X": "a"}}, "env.1X: is not a valid shell variable name"),
        ({"url": "ws://h/", "colour": 1}, "colour: unknown option"),
        ({"url": "ws://h/", "rows": True}, "rows: must be a whole number"),
        ({"url": "ws://h/", "shell_integration": True, "track_cwd": True}, "track_cwd: is the old name"),
    ],
)
def test_options(options: dict[str, Any], message: str | None) -> None:
    """A bad option is a ConfigError naming it, and never echoes a secret."""
    if message is None:
        assert parse_options(options).url == options["url"]
        return
    with pytest.raises(tether.ConfigError) as info:
        parse_options(options)
    assert str(info.value).startswith(message)
    assert "s3cret" not in str(info.value)


def test_options_repr_hides_the_token() -> None:
    """The token and headers stay out of the options' repr (and so out of logs)."""
    parsed = parse_options({"base_url": "http://h/", "token": "s3cret", "headers": {"Cookie": "c00kie"}})
    assert "s3cret" not in repr(parsed) and "c00kie" not in repr(parsed)
    assert parsed.redact("x s3cret c00kie") == "x *** ***"


@pytest.mark.parametrize(
    ("options", "installs"),
    [
        ({"base_url": "http://h/"}, True),
        ({"url": "ws://h/"}, False),
        ({"url": "ws://h/", "shell_integration": True}, True),
        ({"base_url": "http://h/", "shell_integration": False}, False),
        ({"url": "ws://h/", "track_cwd": True}, True),  # the old name still works
        ({"base_url": "http://h/", "track_cwd": False}, False),
    ],
)
def test_shell_integration_option(options: dict[str, Any], installs: bool) -> None:
    """On by default in Jupyter mode, off for a plain URL; ``track_cwd`` is read as its old name."""
    assert parse_options(options).installs_integration is installs


def test_check_notes_the_old_option_name() -> None:
    """`tether check` says ``track_cwd`` is the old name of ``shell_integration``."""
    registry = tether.PluginRegistry()
    registry.add_backend(WebSocketBackend())
    old = tether.SessionSpec(id="s", backend="websocket", options={"base_url": "http://h/", "track_cwd": True})
    new = tether.SessionSpec(id="s", backend="websocket", options={"base_url": "http://h/", "shell_integration": True})
    (note,) = registry.notes_for(old)
    assert str(note).startswith("options.track_cwd: is the old name of shell_integration"), str(note)
    assert registry.notes_for(new) == []


def test_setup_is_one_line_when_it_fits() -> None:
    """Restore and integration are typed as one line (no typeahead echoed twice), two when together
    they would pass a canonical-mode terminal's line limit, and nothing when there is nothing to do."""
    restore, integration = " cd /x\r", tether.typed_integration()
    assert setup_lines(restore, integration) == [" cd /x;" + integration]
    assert setup_lines(None, integration) == [integration]
    assert setup_lines(restore, None) == [restore]
    assert setup_lines(None, None) == []
    assert 3500 < len(integration) < LINE_LIMIT  # the README: about 3.8 KB
    long = restore_line(cwd="/x", env={"BIG": "v" * (LINE_LIMIT - len(integration))})
    assert setup_lines(long, integration) == [long, integration]
