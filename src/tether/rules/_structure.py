"""Strict structuring of tables into attrs classes, with every bad field named by its path.

The one converter core that the config file, the ``/control`` register
command and the plugins' option tables share (`structure_options`, public as
``tether.structure_options``). Scalars are structured
strictly (``"5"`` is not a number, ``1`` is not true), unknown keys are
errors with a "did you mean" when a known key is close, and every field's
problem is collected in one pass (``detailed_validation``), each as a
`ConfigError` whose path reads like ``sessions[3].policy.max_delay``.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._errors import ConfigError, InvalidConfigError
from ._policy import Jitter, ReconnectPolicy
from ._reasons import DisconnectReason
from ._spec import SessionSpec

T = TypeVar("T")

_SEP = "\x1f"
"""Separates a problem from its sub-path inside a transform_error line."""
_EACH = "\x1e"
"""Separates the problems of one exception that stand for several fields (unknown keys)."""


class FieldProblem(ValueError):
    """A field's value is wrong; `subpath` is relative to the field (``network`` in strategies)."""

    def __init__(self, problem: str, subpath: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.subpath = subpath


# -- strict scalars ------------------------------------------------------------------------------


def _strict_bool(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise FieldProblem(f"must be true or false, got {value!r}")
    return value


def _strict_int(value: object, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldProblem(f"must be a whole number, got {value!r}")
    return value


def _strict_float(value: object, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldProblem(f"must be a number, got {value!r}")
    return float(value)


def _strict_str(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise FieldProblem(f"must be a string, got {value!r}")
    return value


def _optional_str(value: object, _: type) -> str | None:
    return None if value is None else _strict_str(value, str)


def _table(value: object, _: type) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise FieldProblem(f"must be a table, got {value!r}")
    return dict(value)


def _checked_field(
    attribute: attrs.Attribute[Any], structure: Callable[[Any, Any], Any], *, check_types: bool = False
) -> Callable[[Any, Any], Any]:
    """Hand a raw value to the class's own converter and validator, so the words are tether's.

    A field holding an attrs class (a session's policy) is structured first;
    with `check_types`, so is a field without a converter of its own (its
    validator can then rely on the type: ``port = "x"`` is not a whole number).
    """
    nested = attribute.type if attribute.type is not None and attrs.has(attribute.type) else None
    raw: Any = attribute.converter
    takes_field = isinstance(raw, attrs.Converter)
    convert: Callable[..., Any] | None = raw.converter if takes_field else raw
    typed = check_types and nested is None and convert is None and attribute.type is not None

    def hook(value: Any, _: Any) -> Any:
        if nested is not None:
            value = structure(value, nested)
        elif typed:
            value = structure(value, attribute.type)
        try:
            if convert is not None:
                value = convert(value, None, attribute) if takes_field else convert(value)
            if attribute.validator is not None:
                attribute.validator(None, attribute, value)
        except ConfigError as exc:
            sub = exc.path[len(attribute.name):].lstrip(".") if exc.path.startswith(attribute.name) else ""
            raise FieldProblem(exc.problem, sub) from None
        return value

    return hook


def _tables_only(structure: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, Mapping):
            raise FieldProblem(f"must be a table, got {value!r}")
        return structure(value, type_)

    return hook


def register_table_class(
    converter: cattrs.Converter, cls: type[Any], *, own_validators: bool = False, check_types: bool = False
) -> None:
    """Structure `cls` from a table, unknown keys rejected.

    With `own_validators`, each field goes through the class's own converter
    and validator (tether's wording), then the class is called (cross-field
    checks); `check_types` first gives a field without a converter the strict
    type check of its annotation (for validators that assume the type).
    """
    attrs.resolve_types(cls)
    overrides = (
        {a.name: override(struct_hook=_checked_field(a, converter.structure, check_types=check_types))
         for a in attrs.fields(cls)}
        if own_validators
        else {}
    )
    fn = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **overrides)  # type: ignore[arg-type]
    converter.register_structure_hook(cls, _tables_only(fn))


def make_strict_converter() -> cattrs.Converter:
    """A converter with strict scalars, unknown keys rejected, policy and session tables known."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(str | None, _optional_str)
    converter.register_structure_hook_func(lambda t: t == Mapping[str, Any], _table)
    register_table_class(converter, ReconnectPolicy, own_validators=True)
    register_table_class(converter, SessionSpec, own_validators=True)
    return converter


_CONVERTER = make_strict_converter()


# -- errors -------------------------------------------------------------------------------------


def _describe(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, FieldProblem):
        return f"{exc.problem}{_SEP}{exc.subpath}"
    if isinstance(exc, ConfigError):
        return f"{exc.problem}{_SEP}{exc.path}"
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        known = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        return _EACH.join(f"{unknown_key(key, known)}{_SEP}{key}" for key in sorted(exc.extra_fields))
    return cattrs.v.format_exception(exc, type_)


def unknown_key(key: str, known: Iterable[str], *, noun: str = "field", list_known: bool = False) -> str:
    """``unknown field``, with the known key it most likely meant (``max_retires``: max_retries);
    with `list_known` and no close key, the known ones."""
    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
    if close:
        return f"unknown {noun}; did you mean {close[0]}?"
    return f"unknown {noun}; known: {', '.join(names)}" if list_known and names else f"unknown {noun}"


def _join(path: str, sub: str) -> str:
    """``a.b`` and ``c`` is ``a.b.c``; ``a`` and ``[0]`` is ``a[0]``."""
    if not path or not sub:
        return path or sub
    return path + sub if sub.startswith("[") else f"{path}.{sub}"


def config_errors(exc: BaseException, root: str = "") -> list[ConfigError]:
    """Each problem in a structuring error as a `ConfigError` with its full path
    (an unknown key is named at its own path: ``defaults.policy.max_retires``)."""
    errors = []
    for line in cattrs.transform_error(exc, path=root, format_exception=_describe):
        message, _, path = line.rpartition(" @ ")
        for part in message.split(_EACH):
            problem, _, sub = part.partition(_SEP)
            errors.append(ConfigError(_join(path.lstrip("."), sub), problem))
    return errors


@functools.cache
def _options_converter(cls: type[Any]) -> cattrs.Converter:
    converter = make_strict_converter()
    register_table_class(converter, cls, own_validators=True, check_types=True)
    return converter


def structure_options(cls: type[T], options: object) -> T:
    """A plugin's options table as `cls` (an attrs class), checked as strictly as tether checks its own.

    Each field is structured strictly by its annotation (``"5"`` is not a
    whole number, ``1`` is not true) unless it has an attrs converter of its
    own, then goes through its converter and validator (whose `ConfigError`
    words are kept, their path under the field's). An unknown key is refused
    with the known key it most likely meant (or the known ones, when none is
    close); a missing field without a default is named; a key given as null
    is refused (TOML cannot say null; a JSON table leaves the key out). Then
    the class is built, so its ``__attrs_post_init__`` can check fields
    against each other. Every problem is reported at once: one is raised as
    the `ConfigError` it is (``rows: must be ...``), several as an
    `InvalidConfigError` listing each with its path in the table.
    """
    errors = [ConfigError(str(key), "must not be null (leave the option out)")
              for key, value in (options.items() if isinstance(options, Mapping) else ()) if value is None]
    if not errors:
        try:
            return _options_converter(cast(Hashable, cls)).structure(options, cls)
        except Exception as exc:
            errors = config_errors(exc)
    known = [a.name for a in attrs.fields(cast(Any, cls))]
    errors = [
        ConfigError(e.path, unknown_key(e.path, known, noun="option", list_known=True))
        if e.problem.startswith("unknown field") and "." not in e.path else e
        for e in errors
    ]
    if len(errors) == 1:
        raise errors[0]
    raise InvalidConfigError("options", errors)


def _make_table_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    for enum_type in (Jitter, DisconnectReason):
        converter.register_unstructure_hook(enum_type, lambda e: e.value)
    return converter


_TABLES = _make_table_converter()


def session_table(spec: SessionSpec) -> dict[str, Any]:
    """`spec` as the table `structure_session` reads back (a ``[[sessions]]`` entry, in JSON types)."""
    table: dict[str, Any] = _TABLES.unstructure(spec)
    policy = table["policy"]
    policy["strategies"] = {reason.value: name for reason, name in spec.policy.strategies.items()}
    return table


def structure_at(converter: cattrs.Converter, data: object, cls: type[T], path: str) -> T:
    """`data` as a `cls`, or one `InvalidConfigError` naming every bad field under `path`."""
    try:
        value: T = converter.structure(data, cls)
    except Exception as exc:
        raise InvalidConfigError(path, config_errors(exc, f".{path}")) from None
    return value


def structure_session(data: object, *, path: str = "session") -> SessionSpec:
    """One session table (the /control register command), errors with paths under `path`."""
    return structure_at(_CONVERTER, data, SessionSpec, path)
