"""Developer tasks: tests, lint, typecheck, demo, bench. ``nox -s tests`` is what CI runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox
import tomllib

nox.options.sessions = ["lint", "typecheck", "imports", "tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())


def _with_test_extra(path: Path) -> str:
    """``path[test]`` when the distribution declares a test extra, else ``path``."""
    project = tomllib.loads((path / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return f"{path}[test]" if "test" in extras else str(path)


def _install_all(session: nox.Session) -> None:
    session.install("-e", _with_test_extra(ROOT))
    for plugin in PLUGINS:
        session.install("-e", _with_test_extra(plugin))


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite: core, every plugin, real peers (sshd, tmux, Jupyter) where installed."""
    _install_all(session)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "plugins", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the core and every plugin's package, as Python 3.10 (the oldest we support)."""
    _install_all(session)
    session.install("mypy", "exceptiongroup", "tomli")  # what 3.10 imports instead of the 3.11 builtins
    session.run("mypy", "-p", "tether")
    for plugin in PLUGINS:
        session.run("mypy", "--strict", "--python-version", "3.10", str(plugin / "src"))


@nox.session
def imports(session: nox.Session) -> None:
    """The import contract (pyproject.toml, [tool.importlinter]): layers, pure rules, no backend in the core."""
    _install_all(session)
    session.install("import-linter")
    session.run("lint-imports")


@nox.session
def demo(session: nox.Session) -> None:
    """Watch tether detect, back off, recover and restore a few local sessions."""
    _install_all(session)
    session.run("tether", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Supervision overhead across thousands of sessions, the cluster, then SSH outage recovery against
    autossh (benchmarks/outage.py: a real sshd, so root and openssh-server); ``-- --quick`` for a smoke run."""
    _install_all(session)
    session.install("-e", f"{ROOT}[postgres]")
    session.install("matplotlib", "psutil")
    session.run("python", "benchmarks/run.py", *session.posargs)
    sessions = "3000" if "--quick" in session.posargs else "30000"
    session.run("python", "benchmarks/cluster.py", "--sessions", sessions, "--claim-batch", "2000")
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/output.py", *quick)
    session.run("python", "benchmarks/console.py", *quick)
    if shutil.which("valgrind") is None and os.geteuid() == 0:
        session.run("apt-get", "install", "-y", "-qq", "valgrind", external=True)
    session.run("python", "benchmarks/instructions.py", *quick)
    if shutil.which("autossh") is None and os.geteuid() == 0:
        session.run("apt-get", "install", "-y", "-qq", "autossh", external=True)
    session.run("python", "benchmarks/outage.py", *session.posargs)
