"""The public API is exactly what tether/__init__.py exports: a name added or dropped is a
decision, so it fails here until this list says so."""

from __future__ import annotations

import inspect
import sys

import attrs
import pytest

import tether
import tether.testing

PUBLIC = [
    "Attempt", "AuthError", "AuthRejectedError", "BACKENDS_GROUP", "Backend", "CannotConnectError",
    "CommandMark", "ConfigError", "ConnectMode", "ConnectionLostError", "ConsoleOutput", "CorruptStoreError",
    "CursorError", "CwdReport", "DEFAULT_SECRET_PATTERNS", "DEFAULT_STRATEGIES", "DaemonClient",
    "DaemonEndpoint", "DaemonError", "Disconnect", "DisconnectReason", "DuplicateSessionError", "EVENT_TYPES",
    "Episode", "EpisodeOutcome", "Event", "EventBus", "EventFilter", "EventStream", "Feature",
    "ForceReconnect", "Found", "HandshakeRejectedError", "HealthCheckFailed", "HostKeyError",
    "InvalidConfigError", "Jitter", "KEYS", "LagNotice", "Lagged", "Link", "LinkError", "LinkRequest",
    "LoadReport", "LogLimits", "LogRead", "Loss", "LossKind", "MARK_OSC", "MIGRATIONS", "MemoryStore",
    "OscEvent", "OscScanner", "OutputLog", "PLUGIN_API_VERSION", "PeerMark", "PendingRun", "PluginError",
    "PluginFailed",
    "PluginFailure", "PluginInfo", "PluginMisbehaved", "PluginRegistry", "PreservedState", "ProcessRestart",
    "REDACTED", "ReattachUnavailableError", "ReconnectFailed", "ReconnectPolicy", "ReconnectScheduled",
    "ReconnectStarted", "ReconnectSucceeded", "RecoveryContext", "RequestError", "RestartNotice", "RetriesExhausted",
    "RunNotFoundError", "RunOutcome", "RunResult", "RunTracker", "SNAPSHOT_SCHEMA_VERSION", "STRATEGIES_GROUP",
    "SavedRuns", "ServerSettings", "SessionBrief", "SessionConnected", "SessionDisconnected", "SessionFailed",
    "SessionMoved", "SessionNotFoundError", "SessionOutput", "SessionRegistered", "SessionRestore",
    "SessionSnapshot", "SessionSpec", "SessionState", "SessionStatus", "SessionSurvivor",
    "SessionUnregistered", "ShellMark", "ShellName", "SimpleReconnect", "SnapshotError", "SnapshotStore", "SqliteStore",
    "SshReconnect", "StateRecovery", "StatusPage", "StatusSummary", "StoreConfig", "StoreError", "StoreStats",
    "Strategy", "StrategyAttempted", "StrategyNotApplicableError", "Subscription", "Supervisor",
    "SupervisorClosedError", "SupervisorStats", "TargetDown", "TargetProbe", "TargetUp", "TetherConfig",
    "TetherError", "UnknownBackendError", "UnknownMessage", "UnknownStrategyError", "WaitResult",
    "WriteResult", "backoff_schedule", "bash_rcfile", "check_backend", "check_strategy", "classify",
    "default_state_dir",
    "default_store_path", "discover_plugins", "drop_redacted", "encode_keys", "encode_mark", "encode_osc7",
    "encode_shell_mark", "event_from_dict", "event_to_dict", "find_daemon", "ideal_delay", "input_from_dict",
    "input_to_dict", "load_config", "make_event_converter", "make_snapshot_converter", "new_nonce",
    "open_client", "open_events", "open_sqlite_store", "open_supervisor", "parse_config", "parse_mark",
    "parse_osc7", "parse_shell_mark", "read_from_dict", "read_to_dict", "redact_env", "redact_options",
    "retry_delay", "run_line", "serve_events", "snapshot_from_dict", "snapshot_to_dict", "structure_options",
    "typed_integration", "zsh_dotfiles",
]

TESTING = [
    "BackendContract", "Ledger", "LinkRecorder", "Marked", "Script", "ScriptedBackend", "ScriptedLink", "Span",
    "StrategyContract", "check_continues", "check_resize", "check_runs", "check_wait_pattern", "count_markers",
    "count_open_fds", "count_tasks", "make_link_request", "print_marker", "read_span", "require_peer",
    "wait_connected", "wait_for_prompt", "wait_for_status", "wait_reconnected", "wait_until",
]


def test_the_public_names_are_exactly_these() -> None:
    assert tether.__all__ == PUBLIC


def test_the_testing_names_are_exactly_these() -> None:
    assert tether.testing.__all__ == TESTING


@pytest.mark.parametrize("module", [tether, tether.testing])
def test_every_exported_name_resolves_and_is_public(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert names == sorted(names)
    assert not [n for n in names if n.startswith("_")]
    for name in names:
        assert hasattr(module, name), name


@pytest.mark.skipif(sys.version_info < (3, 11), reason="typing.final sets __final__ from Python 3.11")
def test_value_classes_are_final_unless_tether_subclasses_them() -> None:
    """A user subclassing SessionSpec or an event class would break on the next release's
    field change; only the bases tether itself extends (Event, errors) stay open."""
    classes = [getattr(tether, n) for n in tether.__all__ if inspect.isclass(getattr(tether, n))]
    bases = {base for cls in classes for base in cls.__mro__[1:]}
    open_values = [
        c.__name__ for c in classes if attrs.has(c) and c not in bases and not getattr(c, "__final__", False)
    ]
    assert open_values == []
    assert not getattr(tether.Event, "__final__", False)
