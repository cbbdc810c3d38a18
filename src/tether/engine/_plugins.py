"""Plugin discovery through entry points, once, at start.

Each entry point is loaded under its own ``try``: a plugin that fails to
import, returns the wrong type or targets another plugin API version is
recorded (group, name, distribution, version, error) and skipped, and every
other plugin still loads. ``strict=True`` turns any failure into an error.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any, final

import attrs
import importlib_metadata

from ..contract._plugin import PLUGIN_API_VERSION, Backend, Feature, Strategy
from ..rules._errors import ConfigError, InvalidConfigError, PluginError, UnknownBackendError, UnknownStrategyError
from ..rules._secret_refs import has_refs, validation_view
from ..rules._spec import SessionSpec

BACKENDS_GROUP = "tether.backends"
STRATEGIES_GROUP = "tether.strategies"


@final
@attrs.frozen(kw_only=True)
class PluginInfo:
    """One plugin that loaded."""

    group: str
    name: str
    distribution: str
    version: str
    value: str
    """The entry point's target, ``module:attribute``."""


@final
@attrs.frozen(kw_only=True)
class PluginFailure:
    """One plugin that did not load, and why."""

    group: str
    name: str
    distribution: str
    version: str
    error: str


def _check_api(obj: object, what: str) -> None:
    api = getattr(obj, "plugin_api", PLUGIN_API_VERSION)
    if isinstance(api, bool) or api != PLUGIN_API_VERSION:
        raise PluginError(f"{what} targets tether plugin API {api!r}; this tether speaks {PLUGIN_API_VERSION}")


def check_backend(obj: object, expected_name: str | None = None) -> Backend:
    """`obj` if it satisfies the backend contract; `PluginError` saying what is missing if not."""
    _check_api(obj, f"backend {getattr(obj, 'name', type(obj).__name__)!r}")
    missing = [
        a for a in ("name", "features", "default_strategies", "validate", "target", "open_link") if not hasattr(obj, a)
    ]
    if missing:
        raise PluginError(f"{type(obj).__name__} is not a backend: missing {', '.join(missing)}")
    assert isinstance(obj, Backend)
    if not isinstance(obj.name, str) or not obj.name:
        raise PluginError(f"{type(obj).__name__}.name must be a non-empty string")
    if expected_name is not None and obj.name != expected_name:
        raise PluginError(f"entry point {expected_name!r} loads a backend named {obj.name!r}")
    if not all(isinstance(f, Feature) for f in obj.features):
        raise PluginError(f"{obj.name}: features must be tether.Feature values")
    if not inspect.isfunction(getattr(type(obj), "open_link", None)) and not callable(obj.open_link):
        raise PluginError(f"{obj.name}: open_link must be callable")
    return obj


def check_strategy(obj: object, expected_name: str | None = None) -> Strategy:
    """`obj` if it satisfies the strategy contract; `PluginError` if not."""
    _check_api(obj, f"strategy {getattr(obj, 'name', type(obj).__name__)!r}")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"{type(obj).__name__} is not a strategy: it needs a string `name`")
    call = getattr(obj, "__call__", None)  # noqa: B004 - we need the bound method to inspect it
    if call is None or not inspect.iscoroutinefunction(call):
        raise PluginError(f"strategy {name!r} must be an async callable taking a RecoveryContext")
    if expected_name is not None and name != expected_name:
        raise PluginError(f"entry point {expected_name!r} loads a strategy named {name!r}")
    assert isinstance(obj, Strategy)
    return obj


def _instantiate(loaded: Any) -> object:
    """Entry points name a factory (usually the class); call it with no arguments."""
    if inspect.isclass(loaded) or (callable(loaded) and not hasattr(loaded, "name")):
        return loaded()
    return loaded


def spec_for_checks(spec: SessionSpec) -> SessionSpec:
    """`spec` as a plugin may see it before secrets resolve: references stand in as placeholders
    (the spec itself when it has none, which is nearly always: no copy)."""
    return attrs.evolve(spec, options=validation_view(spec.options)) if has_refs(spec.options) else spec


@final
class PluginRegistry:
    """The backends and strategies available to a supervisor, and what failed to load."""

    def __init__(self) -> None:
        self.backends: dict[str, Backend] = {}
        self.strategies: dict[str, Strategy] = {}
        self.loaded: list[PluginInfo] = []
        self.failures: list[PluginFailure] = []

    def add_backend(self, backend: object) -> Backend:
        """Register a backend object directly (library use, tests); checked like a plugin."""
        checked = check_backend(backend)
        self.backends[checked.name] = checked
        return checked

    def add_strategy(self, strategy: object) -> Strategy:
        """Register a strategy object directly; checked like a plugin."""
        checked = check_strategy(strategy)
        self.strategies[checked.name] = checked
        return checked

    def backend(self, name: str) -> Backend:
        """The backend called `name`, or an error listing the known ones (and why a broken one is absent)."""
        try:
            return self.backends[name]
        except KeyError:
            raise UnknownBackendError(name, self.backends) from self._failure_for(BACKENDS_GROUP, name)

    def strategy(self, name: str) -> Strategy:
        """The strategy called `name`, or an error listing the known ones."""
        try:
            return self.strategies[name]
        except KeyError:
            raise UnknownStrategyError(name, self.strategies) from self._failure_for(STRATEGIES_GROUP, name)

    def distribution(self, group: str, name: str) -> str:
        """The distribution that provides plugin `name` ("(direct)" for objects added in code)."""
        info = next((i for i in self.loaded if i.group == group and i.name == name), None)
        return info.distribution if info is not None else "(direct)"

    def notes_for(self, spec: SessionSpec) -> list[ConfigError]:
        """What the backend advises about a valid `spec` (a ``notes(spec)`` method is optional):
        things that work, but not the way the user may expect. Paths as in `check_spec`."""
        backend = self.backends.get(spec.backend)
        notes = getattr(backend, "notes", None)
        if notes is None:
            return []
        try:
            found = list(notes(spec))
        except Exception:  # advice must never break a check that passed
            return []
        return [ConfigError(f"options.{path}" if path else "options", text) for path, text in found]

    def check_spec(self, spec: SessionSpec) -> list[ConfigError]:
        """Everything the plugins say about `spec`, each problem with its path inside the spec.

        The one check behind `register`, `/control` and `tether check`: the
        backend exists and accepts the options (secret references stand in as
        placeholders), and every strategy the policy names exists.
        """
        errors: list[ConfigError] = []
        backend = self.backends.get(spec.backend)
        if backend is None:
            failure = self.failure(BACKENDS_GROUP, spec.backend)
            why = f" (its plugin failed to load: {failure.error})" if failure else ""
            known = ", ".join(sorted(self.backends)) or "(none)"
            close = difflib.get_close_matches(spec.backend, sorted(self.backends), n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close and not failure else ";"
            errors.append(ConfigError("backend", f"unknown backend {spec.backend!r}{why}{hint} known: {known}"))
        else:
            view = spec_for_checks(spec)
            try:
                backend.validate(view)
                backend.target(view)
            except InvalidConfigError as exc:  # a backend that reports every bad option at once
                errors += [ConfigError(f"options.{e.path}" if e.path else "options", e.problem) for e in exc.errors]
            except ConfigError as exc:
                errors.append(ConfigError(f"options.{exc.path}" if exc.path else "options", exc.problem))
            except Exception as exc:
                errors.append(ConfigError("options", f"backend {spec.backend!r} rejected them: {exc}"))
        for reason, name in spec.policy.strategies.items():
            if name not in self.strategies:
                failure = self.failure(STRATEGIES_GROUP, name)
                why = f" (its plugin failed to load: {failure.error})" if failure else ""
                known = ", ".join(sorted(self.strategies)) or "(none)"
                errors.append(
                    ConfigError(f"policy.strategies.{reason.value}", f"unknown strategy {name!r}{why}; known: {known}")
                )
        return errors

    def failure(self, group: str, name: str) -> PluginFailure | None:
        """Why the plugin `name` in `group` failed to load, if it did."""
        return next((f for f in self.failures if f.group == group and f.name == name), None)

    def _failure_for(self, group: str, name: str) -> PluginError | None:
        failure = self.failure(group, name)
        if failure is None:
            return None
        return PluginError(f"plugin {name!r} from {failure.distribution} failed to load: {failure.error}")


def discover_plugins(*, allow: Iterable[str] | None = None, strict: bool = False) -> PluginRegistry:
    """Load every backend and strategy entry point (or only those named in `allow`)."""
    registry = PluginRegistry()
    allowed = None if allow is None else frozenset(allow)
    groups: Mapping[str, Any] = {BACKENDS_GROUP: check_backend, STRATEGIES_GROUP: check_strategy}
    for group, check in groups.items():
        for ep in importlib_metadata.entry_points(group=group):
            if allowed is not None and ep.name not in allowed:
                continue
            dist = ep.dist
            dist_name = dist.name if dist is not None else "(unknown)"
            version = dist.version if dist is not None else "(unknown)"
            try:
                loaded = ep.load()
                _check_api(loaded, f"plugin {ep.name!r}")  # before building it: its constructor may differ
                obj = check(_instantiate(loaded), ep.name)
            except Exception as exc:
                failure = PluginFailure(
                    group=group,
                    name=ep.name,
                    distribution=dist_name,
                    version=version,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if strict:
                    raise PluginError(
                        f"plugin {ep.name!r} ({group}) from {dist_name} {version} failed: {failure.error}"
                    ) from exc
                registry.failures.append(failure)
                continue
            target = registry.backends if group == BACKENDS_GROUP else registry.strategies
            if ep.name in target:
                registry.failures.append(
                    PluginFailure(
                        group=group,
                        name=ep.name,
                        distribution=dist_name,
                        version=version,
                        error="another distribution already registered this name",
                    )
                )
                continue
            target[ep.name] = obj
            registry.loaded.append(
                PluginInfo(group=group, name=ep.name, distribution=dist_name, version=version, value=ep.value)
            )
    return registry
