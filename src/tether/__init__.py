"""tether keeps console sessions alive: it notices a dropped link, classifies why,
retries with jittered backoff, restores the session's state and tells you every step.
"""

from __future__ import annotations

from ._backoff import backoff_schedule as backoff_schedule
from ._backoff import ideal_delay as ideal_delay
from ._backoff import retry_delay as retry_delay
from ._bus import EventBus as EventBus
from ._bus import Subscription as Subscription
from ._classify import classify as classify
from ._config import InvalidConfigError as InvalidConfigError
from ._config import ServerConfig as ServerConfig
from ._config import StoreConfig as StoreConfig
from ._config import TetherConfig as TetherConfig
from ._config import load_config as load_config
from ._config import parse_config as parse_config
from ._contract import PLUGIN_API_VERSION as PLUGIN_API_VERSION
from ._contract import Backend as Backend
from ._contract import ConnectMode as ConnectMode
from ._contract import Feature as Feature
from ._contract import Link as Link
from ._contract import LinkRequest as LinkRequest
from ._contract import Strategy as Strategy
from ._convert import event_from_dict as event_from_dict
from ._convert import event_to_dict as event_to_dict
from ._convert import make_event_converter as make_event_converter
from ._errors import AuthError as AuthError
from ._errors import ConfigError as ConfigError
from ._errors import DuplicateSessionError as DuplicateSessionError
from ._errors import HostKeyError as HostKeyError
from ._errors import LinkError as LinkError
from ._errors import PluginError as PluginError
from ._errors import ReattachUnavailableError as ReattachUnavailableError
from ._errors import SessionNotFoundError as SessionNotFoundError
from ._errors import StrategyNotApplicableError as StrategyNotApplicableError
from ._errors import SupervisorClosedError as SupervisorClosedError
from ._errors import TetherError as TetherError
from ._errors import UnknownBackendError as UnknownBackendError
from ._errors import UnknownStrategyError as UnknownStrategyError
from ._events import EVENT_TYPES as EVENT_TYPES
from ._events import Event as Event
from ._events import HealthCheckFailed as HealthCheckFailed
from ._events import Lagged as Lagged
from ._events import PluginFailed as PluginFailed
from ._events import ReconnectFailed as ReconnectFailed
from ._events import ReconnectScheduled as ReconnectScheduled
from ._events import ReconnectStarted as ReconnectStarted
from ._events import ReconnectSucceeded as ReconnectSucceeded
from ._events import RetriesExhausted as RetriesExhausted
from ._events import SessionConnected as SessionConnected
from ._events import SessionDisconnected as SessionDisconnected
from ._events import SessionFailed as SessionFailed
from ._events import SessionOutput as SessionOutput
from ._events import SessionRegistered as SessionRegistered
from ._events import SessionUnregistered as SessionUnregistered
from ._events import StrategyAttempted as StrategyAttempted
from ._filters import EventFilter as EventFilter
from ._plugins import BACKENDS_GROUP as BACKENDS_GROUP
from ._plugins import STRATEGIES_GROUP as STRATEGIES_GROUP
from ._plugins import PluginFailure as PluginFailure
from ._plugins import PluginInfo as PluginInfo
from ._plugins import PluginRegistry as PluginRegistry
from ._plugins import check_backend as check_backend
from ._plugins import check_strategy as check_strategy
from ._plugins import discover_plugins as discover_plugins
from ._policy import DEFAULT_STRATEGIES as DEFAULT_STRATEGIES
from ._policy import Jitter as Jitter
from ._policy import ReconnectPolicy as ReconnectPolicy
from ._reasons import Disconnect as Disconnect
from ._reasons import DisconnectReason as DisconnectReason
from ._recovery import RecoveryContext as RecoveryContext
from ._server import ServerSettings as ServerSettings
from ._server import serve_events as serve_events
from ._snapshot import DEFAULT_SECRET_PATTERNS as DEFAULT_SECRET_PATTERNS
from ._snapshot import MIGRATIONS as MIGRATIONS
from ._snapshot import REDACTED as REDACTED
from ._snapshot import SNAPSHOT_SCHEMA_VERSION as SNAPSHOT_SCHEMA_VERSION
from ._snapshot import SessionSnapshot as SessionSnapshot
from ._snapshot import SnapshotError as SnapshotError
from ._snapshot import drop_redacted as drop_redacted
from ._snapshot import make_snapshot_converter as make_snapshot_converter
from ._snapshot import redact_env as redact_env
from ._snapshot import redact_options as redact_options
from ._snapshot import redact_snapshot as redact_snapshot
from ._snapshot import snapshot_from_dict as snapshot_from_dict
from ._snapshot import snapshot_to_dict as snapshot_to_dict
from ._spec import SessionSpec as SessionSpec
from ._sqlite_store import SqliteStore as SqliteStore
from ._sqlite_store import default_state_dir as default_state_dir
from ._sqlite_store import default_store_path as default_store_path
from ._sqlite_store import open_sqlite_store as open_sqlite_store
from ._state import Attempt as Attempt
from ._state import Episode as Episode
from ._state import EpisodeOutcome as EpisodeOutcome
from ._state import PreservedState as PreservedState
from ._state import SessionState as SessionState
from ._state import SessionStatus as SessionStatus
from ._stats import SupervisorStats as SupervisorStats
from ._store import CorruptStoreError as CorruptStoreError
from ._store import LoadReport as LoadReport
from ._store import MemoryStore as MemoryStore
from ._store import SnapshotStore as SnapshotStore
from ._store import StoreError as StoreError
from ._store import StoreStats as StoreStats
from ._strategies import ForceReconnect as ForceReconnect
from ._strategies import ProcessRestart as ProcessRestart
from ._strategies import SessionRestore as SessionRestore
from ._strategies import SimpleReconnect as SimpleReconnect
from ._strategies import SshReconnect as SshReconnect
from ._strategies import StateRecovery as StateRecovery
from ._supervisor import Supervisor as Supervisor
from ._supervisor import open_supervisor as open_supervisor

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "AuthError",
    "BACKENDS_GROUP",
    "Backend",
    "ConfigError",
    "ConnectMode",
    "CorruptStoreError",
    "DEFAULT_SECRET_PATTERNS",
    "DEFAULT_STRATEGIES",
    "Disconnect",
    "DisconnectReason",
    "DuplicateSessionError",
    "EVENT_TYPES",
    "Episode",
    "EpisodeOutcome",
    "Event",
    "EventBus",
    "EventFilter",
    "Feature",
    "ForceReconnect",
    "HealthCheckFailed",
    "HostKeyError",
    "InvalidConfigError",
    "Jitter",
    "Lagged",
    "Link",
    "LinkError",
    "LinkRequest",
    "LoadReport",
    "MIGRATIONS",
    "MemoryStore",
    "PLUGIN_API_VERSION",
    "PluginError",
    "PluginFailed",
    "PluginFailure",
    "PluginInfo",
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
    "RetriesExhausted",
    "SNAPSHOT_SCHEMA_VERSION",
    "STRATEGIES_GROUP",
    "ServerConfig",
    "ServerSettings",
    "SessionConnected",
    "SessionDisconnected",
    "SessionFailed",
    "SessionNotFoundError",
    "SessionOutput",
    "SessionRegistered",
    "SessionRestore",
    "SessionSnapshot",
    "SessionSpec",
    "SessionState",
    "SessionStatus",
    "SessionUnregistered",
    "SimpleReconnect",
    "SnapshotError",
    "SnapshotStore",
    "SqliteStore",
    "SshReconnect",
    "StateRecovery",
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
    "TetherConfig",
    "TetherError",
    "UnknownBackendError",
    "UnknownStrategyError",
    "backoff_schedule",
    "check_backend",
    "check_strategy",
    "classify",
    "default_state_dir",
    "default_store_path",
    "discover_plugins",
    "drop_redacted",
    "event_from_dict",
    "event_to_dict",
    "ideal_delay",
    "load_config",
    "make_event_converter",
    "make_snapshot_converter",
    "open_sqlite_store",
    "open_supervisor",
    "parse_config",
    "redact_env",
    "redact_options",
    "redact_snapshot",
    "retry_delay",
    "serve_events",
    "snapshot_from_dict",
    "snapshot_to_dict",
]
