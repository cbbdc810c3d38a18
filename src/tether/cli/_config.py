"""The daemon's TOML config file: its tables, defaults merged into sessions, and `tether check`.

Structured by the strict converter core (`tether.rules._structure`), so every
bad field is reported with its path (``sessions[3].policy.max_delay: must be
>= base_delay (2.0), got 1.0``).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, final

import attrs
import cattrs

from ..engine._plugins import PluginRegistry
from ..rules._errors import ConfigError, InvalidConfigError
from ..rules._policy import ReconnectPolicy
from ..rules._spec import SessionSpec
from ..rules._structure import FieldProblem, config_errors, make_strict_converter, register_table_class
from ..server._settings import ServerSettings
from ..store._pg_connection import check_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STORE_URL_ENV = "TETHER_STORE_URL"


@attrs.frozen(kw_only=True)
class StoreConfig:
    """The snapshot store: SQLite in the state directory unless `path` says otherwise, or PostgreSQL
    shared by several tether processes when `url` (or ``$TETHER_STORE_URL``) names one (docs/cluster.md)."""

    enabled: bool = True
    path: str | None = None
    url: str | None = None
    """``postgresql://...``: the shared store; the file's value wins over ``$TETHER_STORE_URL``."""
    lease_ttl: float = 15.0
    """With `url`: seconds a process's lease lasts; its sessions move within about this after it dies."""
    durable: bool = False
    """fsync every batch (synchronous=FULL) instead of WAL's NORMAL."""
    flush_interval: float = 1.0

    def __attrs_post_init__(self) -> None:
        if math.isnan(self.flush_interval) or self.flush_interval <= 0:
            raise ConfigError("flush_interval", f"must be > 0, got {self.flush_interval!r}")
        if math.isnan(self.lease_ttl) or self.lease_ttl <= 0:
            raise ConfigError("lease_ttl", f"must be > 0, got {self.lease_ttl!r}")
        if self.url is not None:
            if self.path is not None:
                raise ConfigError("url", "give either path (SQLite) or url (PostgreSQL), not both")
            check_url(self.url, "url")

    def store_url(self) -> str | None:
        """The PostgreSQL URL to use: `url`, else ``$TETHER_STORE_URL`` (unless `path` picks SQLite)."""
        if self.url is not None:
            return self.url
        if self.path is not None:
            return None
        from_env = os.environ.get(STORE_URL_ENV) or None
        return check_url(from_env, f"${STORE_URL_ENV}") if from_env else None


@attrs.frozen(kw_only=True)
class Defaults:
    """Values every session starts from; a session's own table overrides them key by key."""

    policy: Mapping[str, Any] = attrs.field(factory=dict)


@final
@attrs.frozen(kw_only=True)
class TetherConfig:
    """A whole config file, validated."""

    state_dir: str | None = None
    server: ServerSettings = attrs.field(factory=ServerSettings)
    store: StoreConfig = attrs.field(factory=StoreConfig)
    defaults: Defaults = attrs.field(factory=Defaults)
    sessions: tuple[SessionSpec, ...] = ()


def _sessions(converter: cattrs.Converter) -> Callable[[Any, Any], tuple[SessionSpec, ...]]:
    inner = converter.get_structure_hook(list[SessionSpec])

    def hook(value: Any, _: Any) -> tuple[SessionSpec, ...]:
        if not isinstance(value, list):
            raise FieldProblem("must be an array of tables ([[sessions]])")
        return tuple(inner(value, list[SessionSpec]))

    return hook


def make_config_converter() -> cattrs.Converter:
    """Our converter for config files: the strict core plus the file's own tables."""
    converter = make_strict_converter()
    converter.register_structure_hook_func(lambda t: t == tuple[SessionSpec, ...], _sessions(converter))
    for cls in (ServerSettings, StoreConfig, Defaults, TetherConfig):
        register_table_class(converter, cls)
    return converter


_CONVERTER = make_config_converter()


# -- loading ------------------------------------------------------------------------------------


def _merge_defaults(raw_sessions: object, defaults: Mapping[str, Any]) -> object:
    """Each session's policy table laid over the defaults' (raw dicts, before structuring)."""
    if not defaults or not isinstance(raw_sessions, list):
        return raw_sessions
    merged = []
    for raw in raw_sessions:
        if isinstance(raw, Mapping) and isinstance(raw.get("policy", {}), Mapping):
            raw = {**raw, "policy": {**defaults, **raw.get("policy", {})}}
        merged.append(raw)
    return merged


def _duplicate_ids(sessions: tuple[SessionSpec, ...]) -> list[ConfigError]:
    first: dict[str, int] = {}
    errors = []
    for index, spec in enumerate(sessions):
        if spec.id in first:
            problem = f"{spec.id!r} is already used by sessions[{first[spec.id]}]"
            errors.append(ConfigError(f"sessions[{index}].id", problem))
        else:
            first.setdefault(spec.id, index)
    return errors


def parse_config(data: Mapping[str, Any], *, source: str = "config") -> TetherConfig:
    """A validated config from a parsed TOML document; `InvalidConfigError` lists every bad field."""
    data = dict(data)
    defaults = data.get("defaults", {})
    policy_defaults: Mapping[str, Any] = {}
    if isinstance(defaults, Mapping) and isinstance(defaults.get("policy"), Mapping):
        policy_defaults = defaults["policy"]
        try:
            _CONVERTER.structure(dict(policy_defaults), ReconnectPolicy)
        except Exception as exc:
            raise InvalidConfigError(source, config_errors(exc, ".defaults.policy")) from None
    if "sessions" in data:
        data["sessions"] = _merge_defaults(data["sessions"], policy_defaults)
    try:
        config = _CONVERTER.structure(data, TetherConfig)
    except Exception as exc:
        raise InvalidConfigError(source, config_errors(exc)) from None
    duplicates = _duplicate_ids(config.sessions)
    if duplicates:
        raise InvalidConfigError(source, duplicates)
    return config


def _read_toml(path: str | Path) -> dict[str, Any]:
    source = str(path)
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise InvalidConfigError(source, [ConfigError("", "no such file")]) from None
    except OSError as exc:
        raise InvalidConfigError(source, [ConfigError("", f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfigError(source, [ConfigError("", f"not valid TOML: {exc}")]) from None
    return data


def load_config(path: str | Path) -> TetherConfig:
    """Read and validate a TOML config file."""
    return parse_config(_read_toml(path), source=str(path))


def check_config_file(path: str | Path, registry: PluginRegistry) -> TetherConfig:
    """Everything `tether check` reports: structural problems and, for every session that
    structured, what the plugins say, all in one `InvalidConfigError`."""
    data = _read_toml(path)
    try:
        config = parse_config(data, source=str(path))
    except InvalidConfigError as exc:
        errors = list(exc.errors)
        raw_sessions = data.get("sessions")
        if isinstance(raw_sessions, list):
            defaults = data.get("defaults", {})
            policy = defaults.get("policy", {}) if isinstance(defaults, Mapping) else {}
            merged = _merge_defaults(raw_sessions, policy if isinstance(policy, Mapping) else {})
            assert isinstance(merged, list)
            for index, raw in enumerate(merged):
                where = f"sessions[{index}]"
                try:
                    spec = _CONVERTER.structure(raw, SessionSpec)
                except Exception:
                    continue
                errors.extend(check_spec(spec, registry, where))
        raise InvalidConfigError(str(path), sorted(errors, key=_path_order)) from None
    problems = check_with_plugins(config, registry)
    if problems:
        raise InvalidConfigError(str(path), problems)
    return config


def _path_order(error: ConfigError) -> tuple[int, str]:
    """Sessions in index order, then everything else."""
    if error.path.startswith("sessions["):
        index = error.path[len("sessions["):].partition("]")[0]
        if index.isdigit():
            return int(index), ""
    return -1, error.path


def check_with_plugins(config: TetherConfig, registry: PluginRegistry) -> list[ConfigError]:
    """What only the plugins can say: unknown backends and strategies, bad backend options."""
    errors: list[ConfigError] = []
    for index, spec in enumerate(config.sessions):
        errors.extend(check_spec(spec, registry, f"sessions[{index}]"))
    return errors


def config_notes(config: TetherConfig, registry: PluginRegistry) -> list[ConfigError]:
    """The backends' advice on a config that passed: each note with its path (`tether check` prints them)."""
    notes: list[ConfigError] = []
    for index, spec in enumerate(config.sessions):
        notes.extend(ConfigError(f"sessions[{index}].{n.path}", n.problem) for n in registry.notes_for(spec))
    return notes


def check_spec(spec: SessionSpec, registry: PluginRegistry, where: str) -> list[ConfigError]:
    """What the plugins say about one session of the file, with paths under `where`."""
    return [ConfigError(f"{where}.{e.path}", e.problem) for e in registry.check_spec(spec)]
