"""tether keeps console sessions alive: it notices a dropped link, classifies why,
retries with jittered backoff, restores the session's state and tells you every step.
"""

from __future__ import annotations

from .cli._config import StoreConfig as StoreConfig
from .cli._config import TetherConfig as TetherConfig
from .cli._config import load_config as load_config
from .cli._config import parse_config as parse_config
from .contract._plugin import PLUGIN_API_VERSION as PLUGIN_API_VERSION
from .contract._plugin import Backend as Backend
from .contract._plugin import ConnectMode as ConnectMode
from .contract._plugin import Feature as Feature
from .contract._plugin import Link as Link
from .contract._plugin import LinkRequest as LinkRequest
from .contract._plugin import RecoveryContext as RecoveryContext
from .contract._plugin import Strategy as Strategy
from .contract._plugin import TargetProbe as TargetProbe
from .engine._bus import EventBus as EventBus
from .engine._bus import Subscription as Subscription
from .engine._plugins import BACKENDS_GROUP as BACKENDS_GROUP
from .engine._plugins import STRATEGIES_GROUP as STRATEGIES_GROUP
from .engine._plugins import PluginFailure as PluginFailure
from .engine._plugins import PluginInfo as PluginInfo
from .engine._plugins import PluginRegistry as PluginRegistry
from .engine._plugins import check_backend as check_backend
from .engine._plugins import check_strategy as check_strategy
from .engine._plugins import discover_plugins as discover_plugins
from .engine._strategies import ForceReconnect as ForceReconnect
from .engine._strategies import ProcessRestart as ProcessRestart
from .engine._strategies import SessionRestore as SessionRestore
from .engine._strategies import SimpleReconnect as SimpleReconnect
from .engine._strategies import SshReconnect as SshReconnect
from .engine._strategies import StateRecovery as StateRecovery
from .engine._supervisor import Supervisor as Supervisor
from .engine._supervisor import open_supervisor as open_supervisor
from .rules._backoff import backoff_schedule as backoff_schedule
from .rules._backoff import ideal_delay as ideal_delay
from .rules._backoff import retry_delay as retry_delay
from .rules._classify import classify as classify
from .rules._console import ConsoleOutput as ConsoleOutput
from .rules._console import PendingRun as PendingRun
from .rules._console import RunOutcome as RunOutcome
from .rules._console import SavedRuns as SavedRuns
from .rules._console import WaitResult as WaitResult
from .rules._errors import AuthError as AuthError
from .rules._errors import ConfigError as ConfigError
from .rules._errors import CorruptStoreError as CorruptStoreError
from .rules._errors import CursorError as CursorError
from .rules._errors import DuplicateSessionError as DuplicateSessionError
from .rules._errors import HostKeyError as HostKeyError
from .rules._errors import InvalidConfigError as InvalidConfigError
from .rules._errors import LinkError as LinkError
from .rules._errors import PluginError as PluginError
from .rules._errors import ReattachUnavailableError as ReattachUnavailableError
from .rules._errors import RunNotFoundError as RunNotFoundError
from .rules._errors import SessionNotFoundError as SessionNotFoundError
from .rules._errors import SnapshotError as SnapshotError
from .rules._errors import StoreError as StoreError
from .rules._errors import StrategyNotApplicableError as StrategyNotApplicableError
from .rules._errors import SupervisorClosedError as SupervisorClosedError
from .rules._errors import TetherError as TetherError
from .rules._errors import UnknownBackendError as UnknownBackendError
from .rules._errors import UnknownStrategyError as UnknownStrategyError
from .rules._events import EVENT_TYPES as EVENT_TYPES
from .rules._events import Event as Event
from .rules._events import HealthCheckFailed as HealthCheckFailed
from .rules._events import Lagged as Lagged
from .rules._events import PluginFailed as PluginFailed
from .rules._events import PluginMisbehaved as PluginMisbehaved
from .rules._events import ReconnectFailed as ReconnectFailed
from .rules._events import ReconnectScheduled as ReconnectScheduled
from .rules._events import ReconnectStarted as ReconnectStarted
from .rules._events import ReconnectSucceeded as ReconnectSucceeded
from .rules._events import RetriesExhausted as RetriesExhausted
from .rules._events import SessionConnected as SessionConnected
from .rules._events import SessionDisconnected as SessionDisconnected
from .rules._events import SessionFailed as SessionFailed
from .rules._events import SessionMoved as SessionMoved
from .rules._events import SessionOutput as SessionOutput
from .rules._events import SessionRegistered as SessionRegistered
from .rules._events import SessionSurvivor as SessionSurvivor
from .rules._events import SessionUnregistered as SessionUnregistered
from .rules._events import StrategyAttempted as StrategyAttempted
from .rules._events import TargetDown as TargetDown
from .rules._events import TargetUp as TargetUp
from .rules._filters import EventFilter as EventFilter
from .rules._integration import ShellName as ShellName
from .rules._integration import bash_rcfile as bash_rcfile
from .rules._integration import typed_integration as typed_integration
from .rules._integration import zsh_dotfiles as zsh_dotfiles
from .rules._keys import KEYS as KEYS
from .rules._keys import encode_keys as encode_keys
from .rules._osc import MARK_OSC as MARK_OSC
from .rules._osc import CommandMark as CommandMark
from .rules._osc import CwdReport as CwdReport
from .rules._osc import Found as Found
from .rules._osc import OscEvent as OscEvent
from .rules._osc import OscScanner as OscScanner
from .rules._osc import RunResult as RunResult
from .rules._osc import RunTracker as RunTracker
from .rules._osc import ShellMark as ShellMark
from .rules._osc import encode_mark as encode_mark
from .rules._osc import encode_osc7 as encode_osc7
from .rules._osc import encode_shell_mark as encode_shell_mark
from .rules._osc import new_nonce as new_nonce
from .rules._osc import parse_mark as parse_mark
from .rules._osc import parse_osc7 as parse_osc7
from .rules._osc import parse_shell_mark as parse_shell_mark
from .rules._osc import run_line as run_line
from .rules._output import LogLimits as LogLimits
from .rules._output import LogRead as LogRead
from .rules._output import Loss as Loss
from .rules._output import LossKind as LossKind
from .rules._output import OutputLog as OutputLog
from .rules._output import PeerMark as PeerMark
from .rules._paths import default_state_dir as default_state_dir
from .rules._policy import DEFAULT_STRATEGIES as DEFAULT_STRATEGIES
from .rules._policy import Jitter as Jitter
from .rules._policy import ReconnectPolicy as ReconnectPolicy
from .rules._reasons import Disconnect as Disconnect
from .rules._reasons import DisconnectReason as DisconnectReason
from .rules._secrets import DEFAULT_SECRET_PATTERNS as DEFAULT_SECRET_PATTERNS
from .rules._secrets import REDACTED as REDACTED
from .rules._secrets import drop_redacted as drop_redacted
from .rules._secrets import redact_env as redact_env
from .rules._secrets import redact_options as redact_options
from .rules._snapshots import LoadReport as LoadReport
from .rules._snapshots import SessionSnapshot as SessionSnapshot
from .rules._snapshots import SnapshotStore as SnapshotStore
from .rules._snapshots import StoreStats as StoreStats
from .rules._snapshots import WriteResult as WriteResult
from .rules._spec import SessionSpec as SessionSpec
from .rules._state import Attempt as Attempt
from .rules._state import Episode as Episode
from .rules._state import EpisodeOutcome as EpisodeOutcome
from .rules._state import PreservedState as PreservedState
from .rules._state import SessionState as SessionState
from .rules._state import SessionStatus as SessionStatus
from .rules._stats import SupervisorStats as SupervisorStats
from .rules._status import SessionBrief as SessionBrief
from .rules._status import StatusPage as StatusPage
from .rules._status import StatusSummary as StatusSummary
from .rules._structure import structure_options as structure_options
from .rules._wire import event_from_dict as event_from_dict
from .rules._wire import event_to_dict as event_to_dict
from .rules._wire import input_from_dict as input_from_dict
from .rules._wire import input_to_dict as input_to_dict
from .rules._wire import make_event_converter as make_event_converter
from .rules._wire import read_from_dict as read_from_dict
from .rules._wire import read_to_dict as read_to_dict
from .server._client import AuthRejectedError as AuthRejectedError
from .server._client import CannotConnectError as CannotConnectError
from .server._client import ConnectionLostError as ConnectionLostError
from .server._client import DaemonClient as DaemonClient
from .server._client import DaemonEndpoint as DaemonEndpoint
from .server._client import DaemonError as DaemonError
from .server._client import EventStream as EventStream
from .server._client import HandshakeRejectedError as HandshakeRejectedError
from .server._client import LagNotice as LagNotice
from .server._client import RequestError as RequestError
from .server._client import RestartNotice as RestartNotice
from .server._client import UnknownMessage as UnknownMessage
from .server._client import find_daemon as find_daemon
from .server._client import open_client as open_client
from .server._client import open_events as open_events
from .server._server import serve_events as serve_events
from .server._settings import ServerSettings as ServerSettings
from .store._codec import MIGRATIONS as MIGRATIONS
from .store._codec import SNAPSHOT_SCHEMA_VERSION as SNAPSHOT_SCHEMA_VERSION
from .store._codec import make_snapshot_converter as make_snapshot_converter
from .store._codec import snapshot_from_dict as snapshot_from_dict
from .store._codec import snapshot_to_dict as snapshot_to_dict
from .store._memory import MemoryStore as MemoryStore
from .store._sqlite import SqliteStore as SqliteStore
from .store._sqlite import default_store_path as default_store_path
from .store._sqlite import open_sqlite_store as open_sqlite_store

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "AuthError",
    "AuthRejectedError",
    "BACKENDS_GROUP",
    "Backend",
    "CannotConnectError",
    "CommandMark",
    "ConfigError",
    "ConnectMode",
    "ConnectionLostError",
    "ConsoleOutput",
    "CorruptStoreError",
    "CursorError",
    "CwdReport",
    "DEFAULT_SECRET_PATTERNS",
    "DEFAULT_STRATEGIES",
    "DaemonClient",
    "DaemonEndpoint",
    "DaemonError",
    "Disconnect",
    "DisconnectReason",
    "DuplicateSessionError",
    "EVENT_TYPES",
    "Episode",
    "EpisodeOutcome",
    "Event",
    "EventBus",
    "EventFilter",
    "EventStream",
    "Feature",
    "ForceReconnect",
    "Found",
    "HandshakeRejectedError",
    "HealthCheckFailed",
    "HostKeyError",
    "InvalidConfigError",
    "Jitter",
    "KEYS",
    "LagNotice",
    "Lagged",
    "Link",
    "LinkError",
    "LinkRequest",
    "LoadReport",
    "LogLimits",
    "LogRead",
    "Loss",
    "LossKind",
    "MARK_OSC",
    "MIGRATIONS",
    "MemoryStore",
    "OscEvent",
    "OscScanner",
    "OutputLog",
    "PLUGIN_API_VERSION",
    "PeerMark",
    "PendingRun",
    "PluginError",
    "PluginFailed",
    "PluginFailure",
    "PluginInfo",
    "PluginMisbehaved",
    "PluginRegistry",
    "PreservedState",
    "ProcessRestart",
    "REDACTED",
    "ReattachUnavailableError",
    "ReconnectFailed",
    "ReconnectPolicy",
    "ReconnectScheduled",
    "ReconnectStarted",
    "ReconnectSucceeded",
    "RecoveryContext",
    "RequestError",
    "RestartNotice",
    "RetriesExhausted",
    "RunNotFoundError",
    "RunOutcome",
    "RunResult",
    "RunTracker",
    "SNAPSHOT_SCHEMA_VERSION",
    "STRATEGIES_GROUP",
    "SavedRuns",
    "ServerSettings",
    "SessionBrief",
    "SessionConnected",
    "SessionDisconnected",
    "SessionFailed",
    "SessionMoved",
    "SessionNotFoundError",
    "SessionOutput",
    "SessionRegistered",
    "SessionRestore",
    "SessionSnapshot",
    "SessionSpec",
    "SessionState",
    "SessionStatus",
    "SessionSurvivor",
    "SessionUnregistered",
    "ShellMark",
    "ShellName",
    "SimpleReconnect",
    "SnapshotError",
    "SnapshotStore",
    "SqliteStore",
    "SshReconnect",
    "StateRecovery",
    "StatusPage",
    "StatusSummary",
    "StoreConfig",
    "StoreError",
    "StoreStats",
    "Strategy",
    "StrategyAttempted",
    "StrategyNotApplicableError",
    "Subscription",
    "Supervisor",
    "SupervisorClosedError",
    "SupervisorStats",
    "TargetDown",
    "TargetProbe",
    "TargetUp",
    "TetherConfig",
    "TetherError",
    "UnknownBackendError",
    "UnknownMessage",
    "UnknownStrategyError",
    "WaitResult",
    "WriteResult",
    "backoff_schedule",
    "bash_rcfile",
    "check_backend",
    "check_strategy",
    "classify",
    "default_state_dir",
    "default_store_path",
    "discover_plugins",
    "drop_redacted",
    "encode_keys",
    "encode_mark",
    "encode_osc7",
    "encode_shell_mark",
    "event_from_dict",
    "event_to_dict",
    "find_daemon",
    "ideal_delay",
    "input_from_dict",
    "input_to_dict",
    "load_config",
    "make_event_converter",
    "make_snapshot_converter",
    "new_nonce",
    "open_client",
    "open_events",
    "open_sqlite_store",
    "open_supervisor",
    "parse_config",
    "parse_mark",
    "parse_osc7",
    "parse_shell_mark",
    "read_from_dict",
    "read_to_dict",
    "redact_env",
    "redact_options",
    "retry_delay",
    "run_line",
    "serve_events",
    "snapshot_from_dict",
    "snapshot_to_dict",
    "structure_options",
    "typed_integration",
    "zsh_dotfiles",
]
