"""Secrets that reach the MCP server in tool arguments: never shown again, in a result or a log.

Two ways a secret arrives:

* In a session table given to ``open_session``: a value under a name that
  looks secret (tether's one rule, `tether.DEFAULT_SECRET_PATTERNS`:
  ``API_TOKEN``, ``DB_PASSWORD``, ...), or a reference
  (``{"from_env": "NAME"}``, ``{"from_file": "/path"}``) that tether resolves
  itself just before the program starts. tether keeps literal values out of
  its snapshots, events, logs and replies; a literal is not kept across a
  restart (the session then says which secret is missing), a reference is.
* Typed into a console with ``send_input``'s ``secret``: always a reference,
  resolved here from the environment of ``tether mcp`` (the ``env`` of the
  MCP client's server entry) or from a file, so the agent never holds it.

Every literal value seen either way goes into a `SecretBook`; every result
(output text, error messages) is scrubbed of them before it leaves, so a
program that echoes a password, or an error that quotes a bad value, shows
``[redacted]`` instead. The book lives as long as the server process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any, final

from tether import REDACTED, ConfigError, redact_options

MAX_SECRET_FILE_BYTES = 64 * 1024
REFERENCE_KEYS = ("from_env", "from_file")
MIN_SCRUBBED_LENGTH = 4
"""Shorter values are not scrubbed from output: every "yes" or "1" on a screen would go."""


@final
class SecretBook:
    """The secret values this server was given; `scrub` hides them in anything it returns."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, value: str) -> None:
        if len(value) >= MIN_SCRUBBED_LENGTH:
            self._values.add(value)

    def learn_table(self, table: object) -> None:
        """Note every literal secret in a session table (its options, at any depth)."""
        if not isinstance(table, Mapping):
            return
        options = table.get("options")
        if isinstance(options, Mapping):
            self._learn(options, redact_options(options))
            self._learn_references(options)

    def _learn_references(self, value: object) -> None:
        """The values that references in a table name, as far as this process can read them (an
        embedded supervisor resolves them from this very environment; a daemon mostly from the same)."""
        if isinstance(value, Mapping):
            if len(value) == 1 and next(iter(value)) in REFERENCE_KEYS and isinstance(next(iter(value.values())), str):
                with contextlib.suppress(ConfigError):
                    self.add(resolve_reference(value))
                return
            for inner in value.values():
                self._learn_references(inner)
        elif isinstance(value, list):
            for inner in value:
                self._learn_references(inner)

    def _learn(self, original: object, redacted: object) -> None:
        if isinstance(original, Mapping) and isinstance(redacted, Mapping):
            for key, value in original.items():
                shown = redacted.get(key)
                if shown == REDACTED and value != REDACTED:
                    self._learn_value(value)
                else:
                    self._learn(value, shown)
        elif isinstance(original, list) and isinstance(redacted, list):
            for value, shown in zip(original, redacted, strict=False):
                self._learn(value, shown)

    def _learn_value(self, value: object) -> None:
        if isinstance(value, str):
            self.add(value)
        elif isinstance(value, Mapping):
            for inner in value.values():
                self._learn_value(inner)
        elif isinstance(value, list):
            for inner in value:
                self._learn_value(inner)

    def scrub_bytes(self, data: bytes) -> tuple[bytes, int]:
        """`data` with every known secret replaced by ``[redacted]``; and how many were."""
        count = 0
        for value in self._values:
            raw = value.encode("utf-8")
            found = data.count(raw)
            if found:
                count += found
                data = data.replace(raw, REDACTED.encode())
        return data, count

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def scrub_tree(self, value: Any) -> Any:
        """A result with every string in it scrubbed."""
        if not self._values:
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {k: self.scrub_tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub_tree(v) for v in value]
        return value


def resolve_reference(ref: Mapping[str, str], environ: Mapping[str, str] | None = None) -> str:
    """The value a ``{"from_env": NAME}`` or ``{"from_file": PATH}`` names; `ConfigError` naming the
    reference (never a value) when it cannot be read."""
    env = os.environ if environ is None else environ
    if "from_env" in ref:
        name = ref["from_env"]
        value = env.get(name)
        if value is None:
            raise ConfigError("secret.from_env", f"{name} is not set in the environment of `tether mcp` (set it "
                              "in the MCP client's env for this server)")
        return value
    path = ref["from_file"]
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError("secret.from_file", f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError("secret.from_file", f"{path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("secret.from_file", f"{path} is not UTF-8 text") from None
    return text[:-1] if text.endswith("\n") else text

