"""tether's backend conformance suite, run against the process backend (plain and tmux)."""

from __future__ import annotations

import shutil
import sys

import pytest

from tether import SessionSpec
from tether.testing import BackendContract
from tether_process import ProcessBackend

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ptys and /proc: Linux")


class TestProcessBackendContract(BackendContract):
    @pytest.fixture
    def tether_backend_factory(self, backend: ProcessBackend) -> ProcessBackend:
        return backend

    @pytest.fixture
    def tether_backend_spec(self) -> SessionSpec:
        return SessionSpec(id="contract", backend="process", options={"argv": ["cat"]})

    @pytest.fixture
    def tether_backend_failing_spec(self) -> SessionSpec:
        return SessionSpec(id="missing", backend="process", options={"argv": ["/nonexistent/tether-prog"]})

    @pytest.fixture
    def tether_backend_closing_spec(self) -> SessionSpec:
        return SessionSpec(id="exits", backend="process", options={"command": "sleep 0.2; exit 3"})


class TestProcessTmuxBackendContract(BackendContract):
    """The same contract with the program inside a private tmux server."""

    @pytest.fixture(autouse=True)
    def _tmux(self) -> None:
        if shutil.which("tmux") is None:
            pytest.skip("tmux not installed")

    @pytest.fixture
    def tether_backend_factory(self, backend: ProcessBackend) -> ProcessBackend:
        return backend

    @pytest.fixture
    def tether_backend_spec(self) -> SessionSpec:
        return SessionSpec(id="contract", backend="process", options={"argv": ["cat"], "persist": "tmux"})

    @pytest.fixture
    def tether_backend_failing_spec(self) -> SessionSpec:
        return SessionSpec(
            id="missing", backend="process", options={"argv": ["/nonexistent/tether-prog"], "persist": "tmux"}
        )

    @pytest.fixture
    def tether_backend_closing_spec(self) -> SessionSpec:
        return SessionSpec(
            id="exits", backend="process", options={"command": "sleep 0.2; exit 3", "persist": "tmux"}
        )
