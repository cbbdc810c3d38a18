"""Conformance suites a plugin runs against itself, like trio's ``check_two_way_stream``.

A plugin subclasses `BackendContract` (or `StrategyContract`) in one of its
test modules and provides fixtures; pytest collects the inherited tests::

    class TestMyBackendContract(BackendContract):
        @pytest.fixture
        def tether_backend_factory(self):
            return MyBackend                      # a Backend, or a no-argument factory

        @pytest.fixture
        def tether_backend_spec(self):
            return SessionSpec(id="contract", backend="mine", options={...})

Optional fixtures (defined on the class or in a conftest) widen the suite:
``tether_backend_failing_spec`` (a connect that fails, e.g. a refused port),
``tether_backend_hanging_spec`` (a black-holed target: the connect never
completes by itself; give it a short ``connect_timeout``) and
``tether_backend_closing_spec`` (a link that ends by itself soon after it
opens, e.g. a shell that exits).

Why a base class and not a ``pytest_plugins`` entry: pytest refuses
``pytest_plugins`` in any conftest but the rootdir's, and tether runs every
plugin's tests from its own root; a class also lets one plugin run the suite
for several backends, and its name shows which one failed.

This module imports pytest only inside the tests, so ``tether.testing`` stays
importable without it.
"""

from __future__ import annotations

import gc
import inspect
import math
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs
import trio
import trio.testing

from ..contract._plugin import ConnectMode, Feature, Link, LinkRequest
from ..engine._plugins import PluginRegistry, check_backend, check_strategy
from ..engine._recovery import backstop_grace
from ..engine._strategies import (
    ForceReconnect,
    ProcessRestart,
    SessionRestore,
    SimpleReconnect,
    SshReconnect,
    StateRecovery,
)
from ..engine._supervisor import open_supervisor
from ..rules._classify import classify
from ..rules._errors import LinkError
from ..rules._events import ReconnectFailed, ReconnectSucceeded
from ..rules._policy import Jitter, ReconnectPolicy
from ..rules._reasons import Disconnect, DisconnectReason
from ..rules._spec import SessionSpec
from ..rules._state import PreservedState, SessionStatus
from ._scripted import ScriptedBackend

if TYPE_CHECKING:
    from ..contract._plugin import Backend, Strategy
    from ..engine._supervisor import Supervisor


@attrs.define(eq=False)
class LinkRecorder:
    """Captures what a backend reports through a `LinkRequest`'s callbacks."""

    closed: list[Disconnect] = attrs.field(factory=list)
    output: bytearray = attrs.field(factory=bytearray)
    states: list[PreservedState] = attrs.field(factory=list)
    _closed_event: trio.Event = attrs.field(factory=trio.Event)

    def report_closed(self, disconnect: Disconnect) -> None:
        self.closed.append(disconnect)
        self._closed_event.set()

    def report_output(self, data: bytes) -> None:
        self.output += data

    def report_state(self, state: PreservedState) -> None:
        self.states.append(state)

    async def wait_closed(self) -> Disconnect:
        """The first `Disconnect` the backend reported, once it has."""
        await self._closed_event.wait()
        return self.closed[0]


def make_link_request(
    spec: SessionSpec,
    *,
    mode: ConnectMode = ConnectMode.FRESH,
    state: PreservedState | None = None,
    history: bytes = b"",
    connect_timeout: float | None = None,
    keepalive_interval: float | None = None,
) -> tuple[LinkRequest, LinkRecorder]:
    """A `LinkRequest` as the supervisor would build it, and a recorder of its callbacks.

    Call it inside Trio: the deadline is ``trio.current_time() + connect_timeout``
    (the spec's policy value unless given).
    """
    timeout = spec.policy.connect_timeout if connect_timeout is None else connect_timeout
    recorder = LinkRecorder()
    request = LinkRequest(
        spec=spec, mode=mode, state=state, history=history,
        deadline=trio.current_time() + timeout, connect_timeout=timeout,
        keepalive_interval=(
            spec.policy.keepalive_interval if keepalive_interval is None else keepalive_interval
        ),
        report_closed=recorder.report_closed, report_output=recorder.report_output,
        report_state=recorder.report_state,
    )
    return request, recorder


def count_open_fds() -> int | None:
    """Open file descriptors of this process, or None where /proc or /dev/fd is missing."""
    for where in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(where):
            gc.collect()  # a dropped, unclosed object's fd is a leak only if it survives GC
            return len(os.listdir(where))
    return None


def count_tasks() -> int:
    """Live Trio tasks in this run, found by walking the task tree from the root."""
    root = trio.lowlevel.current_root_task()
    assert root is not None, "count_tasks must run inside trio.run"
    todo = [root]
    count = 0
    while todo:
        task = todo.pop()
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


_F = TypeVar("_F", bound=Callable[..., Any])


def _default_fixture(fn: _F) -> _F:
    """A suite default a subclass overrides; a plain method where pytest is missing."""
    try:
        import pytest
    except ImportError:  # pragma: no cover - nothing collects the suites without pytest
        return fn
    return cast("_F", pytest.fixture(fn))


def _make_backend(value: object) -> Backend:
    """The fixture may hold a backend or a no-argument factory (usually the class)."""
    if inspect.isclass(value) or not hasattr(value, "open_link"):
        assert callable(value), f"tether_backend_factory must be a Backend or a factory, got {value!r}"
        value = value()
    return check_backend(value)


def _make_strategy(value: object) -> Strategy:
    if inspect.isclass(value):
        value = value()
    return check_strategy(value)


class BackendContract:
    """The backend contract as tests. Subclass as ``Test...`` and provide the fixtures.

    Required: ``tether_backend_factory`` and ``tether_backend_spec`` (on the
    subclass or in a conftest; async fixtures are fine). The optional specs
    default to None here, so define them on the subclass: a conftest fixture
    would be shadowed by these defaults. Timing bounds are real seconds
    (backends do real I/O); override the class attributes if your peer is slow.
    """

    @_default_fixture
    def tether_backend_failing_spec(self) -> SessionSpec | None:
        """A spec whose connect fails (a refused port, a missing program)."""
        return None

    @_default_fixture
    def tether_backend_hanging_spec(self) -> SessionSpec | None:
        """A spec whose connect never completes by itself; give it a short connect_timeout."""
        return None

    @_default_fixture
    def tether_backend_closing_spec(self) -> SessionSpec | None:
        """A spec whose link ends by itself soon after it opens."""
        return None

    cancel_bound: float = 2.0
    """Seconds a cancelled connect (or a close) may take to return."""
    close_wait: float = 10.0
    """Seconds to wait for a closing spec's link to end by itself."""

    def _bound(self, spec: SessionSpec) -> float:
        timeout = spec.policy.connect_timeout
        return timeout + backstop_grace(timeout) + self.cancel_bound

    async def test_backend_satisfies_contract(
        self, tether_backend_factory: object, tether_backend_spec: SessionSpec
    ) -> None:
        """check_backend accepts it; its features, defaults, validate and target are well-typed."""
        backend = _make_backend(tether_backend_factory)
        assert all(isinstance(f, Feature) for f in backend.features)
        for reason, strategy in backend.default_strategies.items():
            assert isinstance(reason, DisconnectReason), f"default_strategies key {reason!r}"
            assert isinstance(strategy, str), f"default_strategies[{reason!r}] must be a str"
            assert strategy, f"default_strategies[{reason!r}] is empty"
        assert tether_backend_spec.backend == backend.name, "the spec must name this backend"
        backend.validate(tether_backend_spec)
        target = backend.target(tether_backend_spec)
        assert isinstance(target, str), "target() must return a string"
        assert target, "target() must not be empty"
        await trio.lowlevel.checkpoint()

    async def test_connect_probe_send_close(
        self, tether_backend_factory: object, tether_backend_spec: SessionSpec
    ) -> None:
        """A link opens, probes, reports state, takes input and closes within the bounds."""
        backend = _make_backend(tether_backend_factory)
        request, recorder = make_link_request(tether_backend_spec)
        with trio.fail_after(self._bound(tether_backend_spec)):
            async with _open(backend, request) as link:
                assert isinstance(link, Link), f"open_link yielded {link!r}, not a Link"
                await link.probe()
                state = link.current_state()
                assert state is None or isinstance(state, PreservedState)
                await link.send(b"")
                await link.probe()
        assert len(recorder.closed) <= 1, f"report_closed called {len(recorder.closed)} times"
        _assert_typed(recorder.closed)

    async def test_closing_link_reports_typed_reason(
        self, tether_backend_factory: object, tether_backend_closing_spec: SessionSpec | None
    ) -> None:
        """A link that ends by itself calls report_closed exactly once, with a DisconnectReason."""
        import pytest

        spec = tether_backend_closing_spec
        if spec is None:
            pytest.skip("provide tether_backend_closing_spec (a link that ends by itself) to run this")
        backend = _make_backend(tether_backend_factory)
        link_request, recorder = make_link_request(spec)
        with trio.fail_after(self._bound(spec) + self.close_wait):
            async with _open(backend, link_request):
                disconnect = await recorder.wait_closed()
        assert isinstance(disconnect, Disconnect)
        assert isinstance(disconnect.reason, DisconnectReason)
        assert len(recorder.closed) == 1, f"report_closed called {len(recorder.closed)} times"

    async def test_failing_connect_raises_typed_error(
        self, tether_backend_factory: object, tether_backend_failing_spec: SessionSpec | None
    ) -> None:
        """A connect that cannot succeed raises promptly, with a reason tether can classify."""
        import pytest

        spec = tether_backend_failing_spec
        if spec is None:
            pytest.skip("provide tether_backend_failing_spec (e.g. a refused port) to run this")
        backend = _make_backend(tether_backend_factory)
        link_request, _ = make_link_request(spec)
        with trio.fail_after(self._bound(spec)):
            with pytest.raises(Exception) as caught:  # noqa: PT011 - any error, classified below
                async with _open(backend, link_request) as link:
                    await link.probe()
        why = classify(caught.value)
        assert why.reason is not DisconnectReason.BACKEND_ERROR, (
            f"raise LinkError(reason=...) so tether knows why; got {caught.value!r}"
        )

    async def test_hanging_connect_honours_deadline(
        self, tether_backend_factory: object, tether_backend_hanging_spec: SessionSpec | None
    ) -> None:
        """Against a black-holed target, open_link gives up by LinkRequest.deadline itself."""
        import pytest

        spec = tether_backend_hanging_spec
        if spec is None:
            pytest.skip("provide tether_backend_hanging_spec (a black-holed target) to run this")
        backend = _make_backend(tether_backend_factory)
        link_request, _ = make_link_request(spec)
        timeout = spec.policy.connect_timeout
        error: BaseException | None = None
        with trio.move_on_after(timeout + backstop_grace(timeout) + self.cancel_bound) as scope:
            try:
                async with _open(backend, link_request):
                    pass
            except Exception as exc:
                error = exc
        assert not scope.cancelled_caught, (
            f"open_link ignored its deadline ({timeout}s): apply trio.fail_at(request.deadline)"
        )
        assert error is not None, "a black-holed connect must not succeed"
        assert classify(error).reason in (DisconnectReason.TIMEOUT, DisconnectReason.NETWORK), repr(error)

    async def test_cancel_mid_connect_returns_promptly(
        self,
        tether_backend_factory: object,
        tether_backend_spec: SessionSpec,
        tether_backend_hanging_spec: SessionSpec | None,
    ) -> None:
        """Cancelling the surrounding scope at any point of a connect returns within cancel_bound."""
        spec = tether_backend_hanging_spec or tether_backend_spec
        backend = _make_backend(tether_backend_factory)
        for delay in (0.0, 0.001, 0.01, 0.05, 0.2):
            link_request, _ = make_link_request(spec)
            cancelled_at = math.inf
            async with trio.open_nursery() as nursery:

                scope = await nursery.start(_connect_then_hold, backend, link_request)
                await trio.sleep(delay)
                cancelled_at = trio.current_time()
                scope.cancel()
            took = trio.current_time() - cancelled_at
            assert took < self.cancel_bound, f"cancel after {delay}s took {took:.2f}s to return"

    async def test_no_leaked_tasks_or_fds(
        self, tether_backend_factory: object, tether_backend_spec: SessionSpec
    ) -> None:
        """Opening and closing links, and cancelling connects, leaves no task or fd behind."""
        backend = _make_backend(tether_backend_factory)
        bound = self._bound(tether_backend_spec)

        async def cycle() -> None:
            request, _ = make_link_request(tether_backend_spec)
            with trio.fail_after(bound):
                async with _open(backend, request) as link:
                    await link.probe()
            with trio.CancelScope() as scope:  # a connect cancelled at its first checkpoint
                request, _ = make_link_request(tether_backend_spec)
                scope.cancel()
                async with _open(backend, request):
                    pass

        await cycle()  # warm-up: lazy one-time setup is not a leak
        await trio.testing.wait_all_tasks_blocked()
        fds, tasks = count_open_fds(), count_tasks()
        for _ in range(3):
            await cycle()
        await trio.testing.wait_all_tasks_blocked()
        assert count_tasks() == tasks, "tasks left running after the links closed"
        assert count_open_fds() == fds, "file descriptors left open after the links closed"

    async def test_restart_with_preserved_state(
        self, tether_backend_factory: object, tether_backend_spec: SessionSpec
    ) -> None:
        """A backend with RESTORE_STATE opens a RESTART link from a state it reported."""
        import pytest

        backend = _make_backend(tether_backend_factory)
        if Feature.RESTORE_STATE not in backend.features:
            pytest.skip("backend does not declare Feature.RESTORE_STATE")
        bound = self._bound(tether_backend_spec)
        request, _ = make_link_request(tether_backend_spec)
        with trio.fail_after(bound):
            async with _open(backend, request) as link:
                state = link.current_state() or PreservedState()
        request, _ = make_link_request(tether_backend_spec, mode=ConnectMode.RESTART, state=state)
        with trio.fail_after(bound):
            async with _open(backend, request) as link:
                await link.probe()

    async def test_reattach_is_typed(
        self, tether_backend_factory: object, tether_backend_spec: SessionSpec
    ) -> None:
        """A REATTACH with nothing preserved either re-attaches or raises a typed LinkError."""
        import pytest

        backend = _make_backend(tether_backend_factory)
        if Feature.REATTACH not in backend.features:
            pytest.skip("backend does not declare Feature.REATTACH")
        request, _ = make_link_request(tether_backend_spec, mode=ConnectMode.REATTACH)
        with trio.fail_after(self._bound(tether_backend_spec)):
            try:
                async with _open(backend, request) as link:
                    await link.probe()
            except LinkError:
                pass


def _open(backend: Backend, request: LinkRequest) -> AbstractAsyncContextManager[Link]:
    cm = backend.open_link(request)
    assert hasattr(cm, "__aenter__"), "open_link must return an async context manager"
    return cm


async def _connect_then_hold(
    backend: Backend, request: LinkRequest, *, task_status: trio.TaskStatus[trio.CancelScope]
) -> None:
    with trio.CancelScope() as scope:
        task_status.started(scope)
        async with _open(backend, request):
            await trio.sleep_forever()


def _assert_typed(closed: list[Disconnect]) -> None:
    for disconnect in closed:
        assert isinstance(disconnect, Disconnect), f"report_closed got {disconnect!r}"
        assert isinstance(disconnect.reason, DisconnectReason), f"untyped reason {disconnect.reason!r}"


_CONTRACT_POLICY = ReconnectPolicy(
    max_retries=3, base_delay=0.5, max_delay=0.5, jitter=Jitter.NONE, connect_timeout=5.0,
    health_check_interval=0.0, keepalive_interval=0.0,
)


class StrategyContract:
    """The strategy contract as tests, run under MockClock against `ScriptedBackend`.

    Required fixture: ``tether_strategy_factory`` (a Strategy or its class).
    The supervisor gets the six reference strategies too, so a strategy that
    wraps another (through ``ctx.run_strategy``) finds it.
    """

    reason: DisconnectReason = DisconnectReason.NETWORK
    """The drop the strategy is mapped to in these tests."""

    def _registry(self, strategy: Strategy) -> PluginRegistry:
        registry = PluginRegistry()
        for reference in (SimpleReconnect, SessionRestore, ProcessRestart, SshReconnect, StateRecovery,
                          ForceReconnect):
            registry.add_strategy(reference())
        registry.add_strategy(strategy)
        return registry

    def _spec(self, strategy: Strategy, sid: str) -> SessionSpec:
        policy = attrs.evolve(_CONTRACT_POLICY, strategies={self.reason: strategy.name})
        return SessionSpec(id=sid, backend="scripted", policy=policy)

    async def _connected(self, supervisor: Supervisor, spec: SessionSpec) -> None:
        from . import wait_for_status

        await supervisor.register(spec)
        await wait_for_status(supervisor, spec.id, SessionStatus.CONNECTED, timeout=60)

    async def test_strategy_satisfies_contract(self, tether_strategy_factory: object) -> None:
        """check_strategy accepts it."""
        strategy = _make_strategy(tether_strategy_factory)
        assert isinstance(strategy.name, str)
        assert strategy.name
        await trio.lowlevel.checkpoint()

    async def test_success_returns_live_link(
        self, tether_strategy_factory: object, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After a drop, the strategy brings the session back through a real, probed connect."""
        from . import wait_until

        strategy = _make_strategy(tether_strategy_factory)
        backend = ScriptedBackend()
        async with open_supervisor(registry=self._registry(strategy), backends=[backend]) as sup:
            spec = self._spec(strategy, "contract-ok")
            await self._connected(sup, spec)
            backend.drop(spec.id, self.reason)
            await wait_until(lambda: _events(sup, ReconnectSucceeded, spec.id) != [], timeout=60)
            (event,) = _events(sup, ReconnectSucceeded, spec.id)
            assert event.strategy == strategy.name
            assert backend.ledger(spec.id).connects == 2
            assert sup.state(spec.id).status is SessionStatus.CONNECTED

    async def test_failure_raises(
        self, tether_strategy_factory: object, autojump_clock: trio.testing.MockClock
    ) -> None:
        """When every connect fails the strategy raises: no success is reported, the session fails."""
        from . import wait_for_status

        strategy = _make_strategy(tether_strategy_factory)
        backend = ScriptedBackend()
        async with open_supervisor(registry=self._registry(strategy), backends=[backend]) as sup:
            spec = self._spec(strategy, "contract-fail")
            await self._connected(sup, spec)
            backend.fail_next(spec.id, 1_000)
            backend.drop(spec.id, self.reason)
            await wait_for_status(sup, spec.id, SessionStatus.FAILED, timeout=600)
            assert _events(sup, ReconnectSucceeded, spec.id) == []
            failed = _events(sup, ReconnectFailed, spec.id)
            assert len(failed) == _CONTRACT_POLICY.max_retries
            assert all(isinstance(e.reason, DisconnectReason) for e in failed)

    async def test_honours_cancellation(
        self, tether_strategy_factory: object, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A connect that hangs is cut at connect_timeout; unregistering mid-attempt returns at once."""
        from . import wait_until

        strategy = _make_strategy(tether_strategy_factory)
        backend = ScriptedBackend()
        async with open_supervisor(registry=self._registry(strategy), backends=[backend]) as sup:
            spec = self._spec(strategy, "contract-hang")
            await self._connected(sup, spec)
            backend.script(spec.id).hang_connects = 1
            backend.drop(spec.id, self.reason)
            await wait_until(lambda: _events(sup, ReconnectFailed, spec.id) != [], timeout=60)
            timeout = spec.policy.connect_timeout
            (failed,) = _events(sup, ReconnectFailed, spec.id)
            assert failed.reason is DisconnectReason.TIMEOUT
            assert backend.ledger(spec.id).open_links <= 1
            backend.script(spec.id).hang_connects = 1_000
            await wait_until(lambda: backend.ledger(spec.id).connects >= 3, timeout=60)
            with trio.fail_after(backstop_grace(timeout) / 2):
                await sup.unregister(spec.id)
            assert spec.id not in sup.session_ids


def _events(supervisor: Supervisor, cls: type[Any], session_id: str) -> list[Any]:
    return [e for e in supervisor.bus.recent() if isinstance(e, cls) and e.session_id == session_id]


__all__ = [
    "BackendContract",
    "LinkRecorder",
    "StrategyContract",
    "count_open_fds",
    "count_tasks",
    "make_link_request",
]
