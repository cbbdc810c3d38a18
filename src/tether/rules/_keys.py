"""Named keys for ``send``: what a terminal sends for ctrl-c, enter, the arrows. Pure.

The bytes are xterm's in normal (not application) cursor mode, which shells,
readline and most full-screen programs accept. Names are case-insensitive;
``ctrl-x`` may also be written ``C-x`` (tmux's spelling) or ``^x``.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ._errors import ConfigError


def _ctrl_keys() -> dict[str, bytes]:
    keys = {f"ctrl-{letter}": bytes([i + 1]) for i, letter in enumerate(string.ascii_lowercase)}
    keys.update({
        "ctrl-@": b"\x00", "ctrl-space": b"\x00", "ctrl-[": b"\x1b", "ctrl-\\": b"\x1c",
        "ctrl-]": b"\x1d", "ctrl-^": b"\x1e", "ctrl-_": b"\x1f", "ctrl-?": b"\x7f",
    })
    return keys


def _function_keys() -> dict[str, bytes]:
    keys = {f"f{n}": b"\x1bO" + bytes([ord("P") + n - 1]) for n in range(1, 5)}
    for n, code in zip(range(5, 13), (15, 17, 18, 19, 20, 21, 23, 24), strict=True):
        keys[f"f{n}"] = f"\x1b[{code}~".encode()
    return keys


KEYS: Mapping[str, bytes] = MappingProxyType({
    "enter": b"\r", "tab": b"\t", "escape": b"\x1b", "esc": b"\x1b", "space": b" ", "backspace": b"\x7f",
    "up": b"\x1b[A", "down": b"\x1b[B", "right": b"\x1b[C", "left": b"\x1b[D",
    "home": b"\x1b[H", "end": b"\x1b[F", "insert": b"\x1b[2~", "delete": b"\x1b[3~",
    "pageup": b"\x1b[5~", "pagedown": b"\x1b[6~",
    **_ctrl_keys(),
    **_function_keys(),
})
"""Every key name `encode_keys` knows, in its canonical spelling, and its bytes."""

INTERRUPT = KEYS["ctrl-c"]
"""What ``interrupt`` sends (the terminal's default VINTR)."""


def _canonical(name: str) -> str:
    lowered = name.strip().lower()
    if lowered.startswith("c-") and len(lowered) > 2:
        return "ctrl-" + lowered[2:]
    if lowered.startswith("^") and len(lowered) == 2:
        return "ctrl-" + lowered[1:]
    return lowered


def encode_keys(names: Iterable[str], *, path: str = "keys") -> bytes:
    """The bytes for a sequence of key names; `ConfigError` names the first unknown one."""
    out = bytearray()
    for index, name in enumerate(names):
        key = KEYS.get(_canonical(name)) if isinstance(name, str) else None
        if key is None:
            raise ConfigError(
                f"{path}[{index}]",
                f"unknown key {name!r}; known: {', '.join(k for k in KEYS if not k.startswith(('ctrl-', 'f')))}, "
                "ctrl-a..ctrl-z (or C-x, ^x), f1..f12",
            )
        out += key
    return bytes(out)
