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
