"""The daemon's TOML config file: its tables, defaults merged into sessions, and `tether check`.

Structured by the strict converter core (`tether.rules._structure`), so every
bad field is reported with its path (``sessions[3].policy.max_delay: must be
>= base_delay (2.0), got 1.0``), and in one pass: each top-level key, each
table and each session is structured on its own, so one bad section never
hides the problems of another, and the plugins check every session whose
backend can be named, even one with other problems (`check_config`). An
unknown key says which known key it most likely meant.
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
from ..rules._limits import ConnectLimits, limit_value
from ..rules._paths import DB_FILENAME
from ..rules._policy import ReconnectPolicy
from ..rules._spec import SessionSpec
from ..rules._structure import (
    FieldProblem,
    config_errors,
    make_strict_converter,
    register_table_class,
    unknown_key,
)
from ..server._settings import ServerSettings
from ..store._pg_connection import check_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STORE_URL_ENV = "TETHER_STORE_URL"


@final
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

    def sqlite_path(self, state_dir: Path) -> Path:
        """The SQLite file: `path`, else ``tether.sqlite3`` in the state directory."""
        return Path(self.path) if self.path else state_dir / DB_FILENAME


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
    connect_limits: ConnectLimits = attrs.field(factory=ConnectLimits)
    """From the file's ``connect_limit`` (every target) and ``[connect_limits]`` (per target)."""
    sessions: tuple[SessionSpec, ...] = ()


TOP_LEVEL_KEYS = ("state_dir", "connect_limit", "connect_limits", "server", "store", "defaults", "sessions")
"""The keys a config file may have, in the order `tether check` reports them."""


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
    for cls in (ServerSettings, StoreConfig):
        register_table_class(converter, cls, own_validators=True, check_types=True)
    register_table_class(converter, Defaults)
    return converter


_CONVERTER = make_config_converter()


# -- loading ------------------------------------------------------------------------------------


def _merge_defaults(raw: object, defaults: Mapping[str, Any]) -> object:
    """A session's policy table laid over the defaults' (raw dicts, before structuring)."""
    if defaults and isinstance(raw, Mapping) and isinstance(raw.get("policy", {}), Mapping):
        return {**raw, "policy": {**defaults, **raw.get("policy", {})}}
    return raw


def _structured(value: object, cls: Any, path: str, errors: list[ConfigError]) -> Any:
    """`value` structured as `cls`, or None with its problems added to `errors`."""
    try:
        return _CONVERTER.structure(value, cls)
    except Exception as exc:
        errors.extend(config_errors(exc, f".{path}"))
        return None


def _policy_defaults(raw: object, errors: list[ConfigError]) -> Mapping[str, Any]:
    """``[defaults.policy]``: checked once, at its own path; only its good keys reach the sessions
    (so a bad default is reported once, not again in every session)."""
    if not isinstance(raw, Mapping):
        errors.append(ConfigError("defaults", f"must be a table, got {raw!r}"))
        return {}
    for key in raw:
        if key != "policy":
            errors.append(ConfigError(f"defaults.{key}", unknown_key(str(key), ["policy"])))
    policy = raw.get("policy", {})
    if not isinstance(policy, Mapping):
        errors.append(ConfigError("defaults.policy", f"must be a table, got {policy!r}"))
        return {}
    good = dict(policy)
    while good:  # again without the bad keys: a cross-field rule (max_delay >= base_delay) speaks last
        found: list[ConfigError] = []
        _structured(good, ReconnectPolicy, "defaults.policy", found)
        errors.extend(found)
        bad = {e.path.split(".")[2] for e in found if e.path.count(".") >= 2}
        if not found or not bad & set(good):
            break
        good = {key: value for key, value in good.items() if key not in bad}
    return good


def _salvaged(raw: Mapping[str, Any], problems: list[ConfigError], where: str) -> SessionSpec | None:
    """A session with problems, its bad fields set to defaults, so the plugins can still check the rest."""
    bad = {e.path[len(where) + 1:].split(".")[0].split("[")[0] for e in problems if e.path.startswith(where + ".")}
    if any(not e.path.startswith(where + ".") for e in problems) or "backend" in bad:
        return None  # not even a table with a backend name
    try:
        return SessionSpec(
            id=raw["id"] if "id" not in bad and isinstance(raw.get("id"), str) else "session",
            backend=raw["backend"],
            options=raw.get("options", {}) if "options" not in bad else {},
        )
    except (ConfigError, KeyError, TypeError):
        return None


def _sessions_of(
    raw: object, defaults: Mapping[str, Any], registry: PluginRegistry | None, errors: list[ConfigError]
) -> list[SessionSpec]:
    if not isinstance(raw, list):
        errors.append(ConfigError("sessions", "must be an array of tables ([[sessions]])"))
        return []
    specs: list[SessionSpec] = []
    first: dict[str, int] = {}
    for index, table in enumerate(raw):
        where = f"sessions[{index}]"
        found: list[ConfigError] = []
        spec = _structured(_merge_defaults(table, defaults), SessionSpec, where, found)
        sid = table.get("id") if isinstance(table, Mapping) else None
        if isinstance(sid, str) and sid:
            if sid in first:
                found.append(ConfigError(f"{where}.id", f"{sid!r} is already used by sessions[{first[sid]}]"))
            else:
                first[sid] = index
        if registry is not None:
            checked = spec if spec is not None else _salvaged(table, found, where) if isinstance(table, Mapping) \
                else None
            if checked is not None:
                replaced_policy = spec is None
                found.extend(e for e in check_spec(checked, registry, where)
                             if not (replaced_policy and e.path.startswith(f"{where}.policy")))
        errors.extend(sorted(found, key=lambda e: _FIELD_ORDER.get(e.path[len(where) + 1:].split(".")[0], 9)))
        if spec is not None:
            specs.append(spec)
    return specs


_FIELD_ORDER = {"id": 0, "backend": 1, "options": 2, "policy": 3}


def check_config(
    data: Mapping[str, Any], registry: PluginRegistry | None = None
) -> tuple[TetherConfig | None, list[ConfigError]]:
    """Every problem of a parsed config file in one pass, in file order, each with its path;
    with a `registry`, what the plugins say too. The config when there is no problem."""
    errors: list[ConfigError] = []
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            errors.append(ConfigError(str(key), unknown_key(str(key), TOP_LEVEL_KEYS)))
    fields: dict[str, Any] = {}
    if "state_dir" in data:
        fields["state_dir"] = _structured(data["state_dir"], str | None, "state_dir", errors)
    limits: dict[str, Any] = {}
    for key, name, read in (("connect_limit", "default", limit_value), ("connect_limits", "per_target", None)):
        if key in data:
            try:
                limits[name] = read(data[key], key) if read else ConnectLimits(per_target=data[key]).per_target
            except ConfigError as exc:
                errors.append(exc)
    fields["connect_limits"] = ConnectLimits(**limits)
    for name, cls in (("server", ServerSettings), ("store", StoreConfig)):
        if name in data:
            fields[name] = _structured(data[name], cls, name, errors)
    defaults = _policy_defaults(data["defaults"], errors) if "defaults" in data else {}
    if "sessions" in data:
        fields["sessions"] = tuple(_sessions_of(data["sessions"], defaults, registry, errors))
    order = {key: index for index, key in enumerate(data)}
    errors.sort(key=lambda e: order.get(_top_key(e.path), -1))
    if errors:
        return None, errors
    if "defaults" in data:
        fields["defaults"] = Defaults(policy=dict(defaults))
    return TetherConfig(**fields), []


def _top_key(path: str) -> str:
    return path.split(".")[0].split("[")[0]


def parse_config(data: Mapping[str, Any], *, source: str = "config") -> TetherConfig:
    """A validated config from a parsed TOML document; `InvalidConfigError` lists every bad field."""
    config, errors = check_config(data)
    if config is None:
        raise InvalidConfigError(source, errors)
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
    """Everything `tether check` (and `tether run`) reports, in one `InvalidConfigError`."""
    config, errors = check_config(_read_toml(path), registry)
    if config is None:
        raise InvalidConfigError(str(path), errors)
    return config


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
