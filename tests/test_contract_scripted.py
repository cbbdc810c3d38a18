"""tether's own ScriptedBackend and reference strategies pass the plugin contract suites."""

from __future__ import annotations

import pytest

from tether import ReconnectPolicy, SessionSpec, SimpleReconnect
from tether.testing import BackendContract, ScriptedBackend, StrategyContract

_FAST = ReconnectPolicy(connect_timeout=1.0)


class TestScriptedBackendContract(BackendContract):
    @pytest.fixture
    def tether_backend_factory(self) -> type[ScriptedBackend]:
        return ScriptedBackend

    @pytest.fixture
    def tether_backend_spec(self) -> SessionSpec:
        return SessionSpec(id="contract", backend="scripted")

    @pytest.fixture
    def tether_backend_failing_spec(self) -> SessionSpec:
        return SessionSpec(id="refused", backend="scripted", options={"fail_connects": 1})

    @pytest.fixture
    def tether_backend_hanging_spec(self) -> SessionSpec:
        """connect_delay honours the deadline, as a black-holed TCP connect should."""
        return SessionSpec(id="blackhole", backend="scripted", options={"connect_delay": 60}, policy=_FAST)

    @pytest.fixture
    def tether_backend_closing_spec(self) -> SessionSpec:
        return SessionSpec(id="exits", backend="scripted", options={"drop_after": 0.2})


class TestSimpleReconnectContract(StrategyContract):
    @pytest.fixture
    def tether_strategy_factory(self) -> type[SimpleReconnect]:
        return SimpleReconnect


def _suite() -> BackendContract:
    suite = BackendContract()
    suite.cancel_bound = 0.3
    return suite


async def test_suite_catches_a_connect_that_ignores_its_deadline() -> None:
    """The hanging-connect check fails a backend that hangs past LinkRequest.deadline."""
    spec = SessionSpec(id="x", backend="scripted", options={"hang_connects": 1},
                       policy=ReconnectPolicy(connect_timeout=0.2))
    with pytest.raises(AssertionError, match="ignored its deadline"):
        await _suite().test_hanging_connect_honours_deadline(ScriptedBackend, spec)


async def test_suite_catches_an_unclassified_connect_error() -> None:
    """The failing-connect check fails a backend that raises something tether cannot classify."""
    spec = SessionSpec(id="x", backend="scripted", options={"raise_connects": 1})
    with pytest.raises(AssertionError, match="raise LinkError"):
        await _suite().test_failing_connect_raises_typed_error(ScriptedBackend, spec)


async def test_suite_catches_a_spec_for_another_backend() -> None:
    """The shape check insists the spec names the backend under test."""
    with pytest.raises(AssertionError, match="the spec must name this backend"):
        await _suite().test_backend_satisfies_contract(ScriptedBackend, SessionSpec(id="x", backend="ssh"))
