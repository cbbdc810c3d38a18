"""docs/plugins.md documents every member of the plugin contract, and its example plugin works.

Like datasette's test_docs: adding a protocol member, a reason or a mode
without documenting it fails here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tether import (
    Backend,
    ConnectMode,
    DisconnectReason,
    Feature,
    Link,
    LinkRequest,
    RecoveryContext,
    Strategy,
    TargetProbe,
)

DOC = Path(__file__).parent.parent / "docs" / "plugins.md"
TEXT = DOC.read_text()
CODE = re.findall(r"```(\w+)\n(.*?)```", TEXT, flags=re.DOTALL)


def protocol_members(protocol: type) -> set[str]:
    """Attributes and methods a Protocol declares (the contract, whatever typing version)."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n, v in vars(protocol).items() if callable(v) and (not n.startswith("_") or n == "__call__")}
    return names


def public_members(cls: type) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")}


CONTRACT = sorted(
    {(f"Backend.{m}", m) for m in protocol_members(Backend)}
    | {(f"Link.{m}", m) for m in protocol_members(Link)}
    | {(f"Strategy.{m}", m) for m in protocol_members(Strategy)}
    | {(f"TargetProbe.{m}", m) for m in protocol_members(TargetProbe)}
    | {(f"LinkRequest.{f.name}", f.name) for f in attrs.fields(LinkRequest)}
    | {(f"RecoveryContext.{m}", m) for m in public_members(RecoveryContext)}
    | {(f"DisconnectReason.{r.name}", r.value) for r in DisconnectReason}
    | {(f"ConnectMode.{m.name}", m.value) for m in ConnectMode}
    | {(f"Feature.{f.name}", f.value) for f in Feature}
)


def test_the_contract_is_not_empty() -> None:
    """The introspection finds the members we know of, so the parametrized test means something."""
    names = {what for what, _ in CONTRACT}
    assert {"Backend.open_link", "Backend.features", "Link.probe", "Strategy.__call__",
            "LinkRequest.deadline", "RecoveryContext.connect", "DisconnectReason.AUTH",
            "ConnectMode.REATTACH", "TargetProbe.probe_target"} <= names


@pytest.mark.parametrize(("what", "token"), CONTRACT, ids=[what for what, _ in CONTRACT])
def test_member_is_documented(what: str, token: str) -> None:
    """Every contract member appears in docs/plugins.md as code (`name` or `name(...)`)."""
    assert re.search(rf"`{re.escape(token)}[`(]", TEXT), f"{what} ({token!r}) is missing from {DOC.name}"


def test_entry_points_snippet_matches_the_example() -> None:
    """The pyproject snippet parses and names the classes the example defines, by their names."""
    (toml,) = [code for lang, code in CODE if lang == "toml" and "entry-points" in code]
    eps = tomllib.loads(toml)["project"]["entry-points"]
    module = CODE_BY_ROLE["plugin"]
    for group in ("tether.backends", "tether.strategies"):
        for name, value in eps[group].items():
            cls = value.split(":")[1]
            assert f"class {cls}:" in module
            assert f'name = "{name}"' in module


CODE_BY_ROLE = {
    "plugin": next(code for lang, code in CODE if lang == "python" and "class TcpBackend" in code),
    "tests": next(code for lang, code in CODE if lang == "python" and "BackendContract)" in code),
}


def test_example_plugin_passes_the_contract_suites(tmp_path: Path) -> None:
    """The minimal plugin, as printed, passes BackendContract and StrategyContract against a real socket."""
    package = tmp_path / "tether_tcp"
    package.mkdir()
    (package / "__init__.py").write_text(CODE_BY_ROLE["plugin"])
    (tmp_path / "test_tcp_contract.py").write_text(CODE_BY_ROLE["tests"])
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\nfilterwarnings = error\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "10 passed, 3 skipped" in result.stdout, result.stdout[-2000:]  # hanging spec; restart, reattach


def test_console_checks_example_passes_on_a_real_pty(tmp_path: Path) -> None:
    """The console checks example, as printed, passes against the process backend's real bash."""
    pytest.importorskip("tether_process", reason="the process plugin is not installed")
    (example,) = [code for lang, code in CODE if lang == "python" and "check_runs" in code]
    (tmp_path / "test_console_example.py").write_text(example)
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\nfilterwarnings = error\n")
    home = tmp_path / "home"  # bash must not read the developer's ~/.bashrc
    home.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "TERM": "xterm"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout, result.stdout[-2000:]
