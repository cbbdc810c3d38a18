"""The daemon's TOML config, structured by our own cattrs converter.

Every bad field is reported, each with its path (``sessions[3].policy.max_delay:
must be >= base_delay (2.0), got 1.0``): cattrs collects the errors of every
field (``detailed_validation``), ``cattrs.transform_error`` walks them into
paths, and tether's own validators supply the words. Scalars are structured
strictly (``"5"`` is not a number, ``1`` is not true), unlike cattrs' defaults.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, final

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ..engine._plugins import PluginRegistry
from ..rules._errors import ConfigError
from ..rules._policy import ReconnectPolicy
from ..rules._spec import SessionSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_SEP = "\x1f"
"""Separates a problem from its sub-path inside a transform_error line."""


class _Problem(ValueError):
    """A field's value is wrong; `subpath` is relative to the field (``network`` in strategies)."""

    def __init__(self, problem: str, subpath: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.subpath = subpath


def _is_loopback_host(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


@attrs.frozen(kw_only=True)
class ServerConfig:
    """Where the event server listens and how it guards the door."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = attrs.field(default=8765)
    """0 picks a free port (tests); clients find it in the state directory's daemon.json."""
    allow_remote: bool = False
    """Listening on a non-loopback address needs this, on purpose."""
    auth: bool = True
    """False is only accepted on loopback."""
    max_message_size: int = 64 * 1024
    subscriber_buffer: int = 1_000
    """Events buffered per /events connection before it is told it lagged."""

    @port.validator
    def _check_port(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 0 <= value <= 65535:
            raise ConfigError("port", f"must be between 0 and 65535, got {value}")

    def __attrs_post_init__(self) -> None:
        if self.max_message_size < 1024:
            raise ConfigError("max_message_size", f"must be >= 1024, got {self.max_message_size}")
        if self.subscriber_buffer < 1:
            raise ConfigError("subscriber_buffer", f"must be >= 1, got {self.subscriber_buffer}")
        if not _is_loopback_host(self.host) and not self.allow_remote:
            raise ConfigError(
                "host", f"{self.host!r} is not a loopback address; set allow_remote = true to listen on it"
            )
        if not self.auth and not _is_loopback_host(self.host):
            raise ConfigError("auth", "can only be turned off on a loopback address")


@attrs.frozen(kw_only=True)
class StoreConfig:
    """The snapshot store (SQLite in the state directory unless `path` says otherwise)."""

    enabled: bool = True
    path: str | None = None
    durable: bool = False
    """fsync every batch (synchronous=FULL) instead of WAL's NORMAL."""
    flush_interval: float = 1.0

    def __attrs_post_init__(self) -> None:
        if math.isnan(self.flush_interval) or self.flush_interval <= 0:
            raise ConfigError("flush_interval", f"must be > 0, got {self.flush_interval!r}")


@attrs.frozen(kw_only=True)
class Defaults:
    """Values every session starts from; a session's own table overrides them key by key."""

    policy: Mapping[str, Any] = attrs.field(factory=dict)


@final
@attrs.frozen(kw_only=True)
class TetherConfig:
    """A whole config file, validated."""

    state_dir: str | None = None
    server: ServerConfig = attrs.field(factory=ServerConfig)
    store: StoreConfig = attrs.field(factory=StoreConfig)
    defaults: Defaults = attrs.field(factory=Defaults)
    sessions: tuple[SessionSpec, ...] = ()


class InvalidConfigError(ConfigError):
    """A config has one or more bad fields; `errors` names each one with its path."""

    def __init__(self, source: str, errors: list[ConfigError]) -> None:
        self.source = source
        self.errors = tuple(errors)
        lines = "\n".join(f"  {e}" for e in self.errors)
        count = len(self.errors)
        super().__init__("", f"{source}: {count} problem{'s' if count != 1 else ''}\n{lines}")


# -- strict scalars ------------------------------------------------------------------------------


def _strict_bool(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise _Problem(f"must be true or false, got {value!r}")
    return value


def _strict_int(value: object, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Problem(f"must be a whole number, got {value!r}")
    return value


def _strict_float(value: object, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Problem(f"must be a number, got {value!r}")
    return float(value)


def _strict_str(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise _Problem(f"must be a string, got {value!r}")
    return value


def _optional_str(value: object, _: type) -> str | None:
    return None if value is None else _strict_str(value, str)


def _table(value: object, _: type) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _Problem(f"must be a table, got {value!r}")
    return dict(value)


def _checked_field(
    attribute: attrs.Attribute[Any], structure: Callable[[Any, Any], Any]
) -> Callable[[Any, Any], Any]:
    """Hand a raw value to the class's own converter and validator, so the words are tether's.

    A field holding an attrs class (a session's policy) is structured first.
    """
    nested = attribute.type if attribute.type is not None and attrs.has(attribute.type) else None
    raw: Any = attribute.converter
    takes_field = isinstance(raw, attrs.Converter)
    convert: Callable[..., Any] | None = raw.converter if takes_field else raw

    def hook(value: Any, _: Any) -> Any:
        if nested is not None:
            value = structure(value, nested)
        try:
            if convert is not None:
                value = convert(value, None, attribute) if takes_field else convert(value)
            if attribute.validator is not None:
                attribute.validator(None, attribute, value)
        except ConfigError as exc:
            sub = exc.path[len(attribute.name):].lstrip(".") if exc.path.startswith(attribute.name) else ""
            raise _Problem(exc.problem, sub) from None
        return value

    return hook


def _tables_only(structure: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _Problem(f"must be a table, got {value!r}")
        return structure(value, type_)

    return hook


def _table_class(converter: cattrs.Converter, cls: type[Any], *, own_validators: bool = False) -> None:
    """Structure `cls` from a table, unknown keys rejected.

    With `own_validators`, each field goes through the class's own converter
    and validator (tether's wording), then the class is called (cross-field checks).
    """
    attrs.resolve_types(cls)
    overrides = (
        {a.name: override(struct_hook=_checked_field(a, converter.structure)) for a in attrs.fields(cls)}
        if own_validators
        else {}
    )
    fn = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **overrides)  # type: ignore[arg-type]
    converter.register_structure_hook(cls, _tables_only(fn))


def _sessions(converter: cattrs.Converter) -> Callable[[Any, Any], tuple[SessionSpec, ...]]:
    inner = converter.get_structure_hook(list[SessionSpec])

    def hook(value: Any, _: Any) -> tuple[SessionSpec, ...]:
        if not isinstance(value, list):
            raise _Problem("must be an array of tables ([[sessions]])")
        return tuple(inner(value, list[SessionSpec]))

    return hook


def make_config_converter() -> cattrs.Converter:
    """Our converter for config files: strict scalars, unknown keys are errors."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(str | None, _optional_str)
    converter.register_structure_hook_func(lambda t: t == Mapping[str, Any], _table)
    _table_class(converter, ReconnectPolicy, own_validators=True)
    _table_class(converter, SessionSpec, own_validators=True)
    converter.register_structure_hook_func(lambda t: t == tuple[SessionSpec, ...], _sessions(converter))
    for cls in (ServerConfig, StoreConfig, Defaults, TetherConfig):
        _table_class(converter, cls)
    return converter


_CONVERTER = make_config_converter()


# -- errors -------------------------------------------------------------------------------------


def _describe(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, _Problem):
        return f"{exc.problem}{_SEP}{exc.subpath}"
    if isinstance(exc, ConfigError):
        return f"{exc.problem}{_SEP}{exc.path}"
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        fields = sorted(exc.extra_fields)
        return f"unknown field{'s' if len(fields) > 1 else ''}: {', '.join(fields)}"
    return cattrs.v.format_exception(exc, type_)


def config_errors(exc: BaseException, root: str = "") -> list[ConfigError]:
    """Each problem in a structuring error as a `ConfigError` with its full path."""
    errors = []
    for line in cattrs.transform_error(exc, path=root, format_exception=_describe):
        message, _, path = line.rpartition(" @ ")
        problem, _, sub = message.partition(_SEP)
        full = ".".join(p for p in (path.lstrip("."), sub) if p)
        errors.append(ConfigError(full, problem))
    return errors


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


def structure_session(data: object, *, path: str = "session") -> SessionSpec:
    """One session table (the /control register command), errors with paths under `path`."""
    try:
        spec: SessionSpec = _CONVERTER.structure(data, SessionSpec)
    except Exception as exc:
        raise InvalidConfigError(path, config_errors(exc, f".{path}")) from None
    return spec


def check_with_plugins(config: TetherConfig, registry: PluginRegistry) -> list[ConfigError]:
    """What only the plugins can say: unknown backends and strategies, bad backend options."""
    errors: list[ConfigError] = []
    for index, spec in enumerate(config.sessions):
        errors.extend(check_spec(spec, registry, f"sessions[{index}]"))
    return errors


def check_spec(spec: SessionSpec, registry: PluginRegistry, where: str) -> list[ConfigError]:
    """A spec's backend and strategies exist, and the backend accepts its options."""
    errors: list[ConfigError] = []
    backend = registry.backends.get(spec.backend)
    if backend is None:
        known = ", ".join(sorted(registry.backends)) or "(none)"
        failure = registry.failure("tether.backends", spec.backend)
        why = f" (its plugin failed to load: {failure.error})" if failure else ""
        problem = f"unknown backend {spec.backend!r}{why}; known: {known}"
        errors.append(ConfigError(f"{where}.backend", problem))
    else:
        try:
            backend.validate(spec)
        except ConfigError as exc:
            errors.append(ConfigError(".".join(p for p in (f"{where}.options", exc.path) if p), exc.problem))
        except Exception as exc:
            errors.append(ConfigError(f"{where}.options", f"backend {spec.backend!r} rejected them: {exc}"))
    for reason, name in spec.policy.strategies.items():
        if name not in registry.strategies:
            known = ", ".join(sorted(registry.strategies)) or "(none)"
            problem = f"unknown strategy {name!r}; known: {known}"
            errors.append(ConfigError(f"{where}.policy.strategies.{reason.value}", problem))
    return errors
