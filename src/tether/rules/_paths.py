"""Where tether keeps its state: one rule for the daemon, the store and every client command.

``--state-dir``, else the config's ``state_dir``, else ``$TETHER_STATE_DIR``,
else the platform's user state directory (``~/.local/state/tether`` on Linux).
Reads the environment, touches no file.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import platformdirs

STATE_DIR_ENV = "TETHER_STATE_DIR"
DB_FILENAME = "tether.sqlite3"


def default_state_dir() -> Path:
    """``$TETHER_STATE_DIR``, else the user's state directory."""
    override = os.environ.get(STATE_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_state_dir("tether"))


def resolve_state_dir(explicit: str | os.PathLike[str] | None = None, configured: str | None = None) -> Path:
    """The state directory: the flag, else the config's value, else `default_state_dir`."""
    if explicit is not None:
        return Path(explicit)
    if configured:
        return Path(os.path.expanduser(configured))
    return default_state_dir()


@attrs.frozen
class StatePaths:
    """The files in one state directory."""

    root: Path

    @property
    def database(self) -> Path:
        return self.root / DB_FILENAME

    @property
    def token(self) -> Path:
        return self.root / "token"

    @property
    def daemon_file(self) -> Path:
        return self.root / "daemon.json"
