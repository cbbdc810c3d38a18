"""The error hierarchy, drawn once so callers know what to catch::

    TetherError
    ├── ConfigError            bad spec, policy or config value (names the path)
    │   └── InvalidConfigError  every bad field of one config or table, each with its path
    ├── PluginError            a plugin failed to load or breaks the contract
    ├── UnknownBackendError    a spec names a backend nobody registered
    ├── UnknownStrategyError   a policy names a strategy nobody registered
    ├── SessionNotFoundError   no session with that id
    ├── DuplicateSessionError  a session with that id is already registered
    ├── SupervisorClosedError  the supervisor is shutting down or closed
    ├── CursorError            an output cursor the session's log cannot serve
    ├── SnapshotError          one session's stored snapshot cannot be read or written
    ├── StoreError             the snapshot store itself is unusable (names the file)
    │   └── CorruptStoreError  damaged or foreign database file, left untouched
    └── LinkError              why a link could not be opened or was lost
        ├── AuthError          credentials refused: never retried
        ├── HostKeyError       host key unknown or changed: never retried
        ├── ReattachUnavailableError  nothing left to re-attach to
        └── StrategyNotApplicableError  this strategy cannot serve this backend

A `LinkError` carries a typed `DisconnectReason`, so the supervisor never has
to grep a message to decide what happened (docs/reference-design.md, lesson 9).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._reasons import DisconnectReason


class TetherError(Exception):
    """Base class of every error tether raises on purpose."""


class ConfigError(TetherError, ValueError):
    """A configuration value is invalid; `path` says where (``sessions[3].policy.max_delay``)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class InvalidConfigError(ConfigError):
    """A config has one or more bad fields; `errors` names each one with its path."""

    def __init__(self, source: str, errors: Sequence[ConfigError]) -> None:
        self.source = source
        self.errors = tuple(errors)
        lines = "\n".join(f"  {e}" for e in self.errors)
        count = len(self.errors)
        super().__init__("", f"{source}: {count} problem{'s' if count != 1 else ''}\n{lines}")


class PluginError(TetherError):
    """A plugin could not be loaded or does not satisfy the plugin contract."""


def _known_list(known: Iterable[str]) -> str:
    names = sorted(known)
    return ", ".join(names) if names else "(none)"


class UnknownBackendError(TetherError, LookupError):
    """A spec names a backend that no plugin provides."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown backend {name!r}; known backends: {_known_list(self.known)}")


class UnknownStrategyError(TetherError, LookupError):
    """A policy or a forced reconnect names a strategy that no plugin provides."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown strategy {name!r}; known strategies: {_known_list(self.known)}")


class SessionNotFoundError(TetherError, LookupError):
    """No session with this id is registered."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"no session {session_id!r} is registered")


class DuplicateSessionError(TetherError):
    """A session with this id is already registered."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"session {session_id!r} is already registered")


class SupervisorClosedError(TetherError):
    """The supervisor is closing or closed and takes no more work."""


class CursorError(TetherError, ValueError):
    """A read of a session's output log asked for what it cannot serve: a negative cursor,
    one past anything the log handed out, or a cursor taken from another log."""


class LinkError(TetherError):
    """A link failed to open or was lost, for a typed `reason`."""

    default_reason: DisconnectReason = DisconnectReason.BACKEND_ERROR

    def __init__(
        self,
        detail: str = "",
        *,
        reason: DisconnectReason | None = None,
        exit_code: int | None = None,
        signal: int | None = None,
    ) -> None:
        self.reason = reason if reason is not None else self.default_reason
        self.detail = detail
        self.exit_code = exit_code
        self.signal = signal
        super().__init__(f"{self.reason.value}: {detail}" if detail else self.reason.value)


class AuthError(LinkError):
    """The peer refused our credentials. Retrying cannot help."""

    default_reason = DisconnectReason.AUTH


class HostKeyError(LinkError):
    """The peer's host key is unknown or changed. Retrying could help an attacker."""

    default_reason = DisconnectReason.HOST_KEY


class ReattachUnavailableError(LinkError):
    """There is no surviving program to re-attach to (session-restore cannot work)."""

    default_reason = DisconnectReason.REMOTE_CLOSED


class StrategyNotApplicableError(LinkError):
    """The strategy cannot serve this backend (ssh-reconnect on a local process)."""

    default_reason = DisconnectReason.BACKEND_ERROR


class SnapshotError(TetherError):
    """A stored snapshot cannot be read (bad JSON, bad shape, newer schema); names the session."""

    def __init__(self, session_id: str, problem: str) -> None:
        self.session_id = session_id
        self.problem = problem
        super().__init__(f"snapshot of session {session_id!r}: {problem}")


class StoreError(TetherError):
    """The store itself is unusable (corrupt or foreign database file, failed transaction).

    `location` names the file (or database) and `problem` says what is wrong.
    Distinct from `SnapshotError`, which is about one session's row.
    """

    def __init__(self, location: str, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"{location}: {problem}")


class CorruptStoreError(StoreError):
    """The database file is damaged or is not a tether database; it was left untouched."""


class RunNotFoundError(TetherError, LookupError):
    """No run with this token is pending or finished on the session (or it was forgotten)."""
