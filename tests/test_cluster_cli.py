"""`tether store migrate` and `tether store status` as a user runs them, against a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tether.store._pg_schema import LATEST_VERSION
from tether.testing._postgres import PostgresServer


def tether(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "tether", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, cwd=cwd, check=False)


def test_migrate_then_status_from_the_environment_variable(postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.create_database("t_cli_migrate")
    env = {"TETHER_STORE_URL": url, "TETHER_STATE_DIR": str(tmp_path)}
    first = tether("store", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert f"migrated from version 0 to {LATEST_VERSION}" in first.stdout and "@" in first.stdout
    again = tether("store", "migrate", "--json", env=env)
    assert json.loads(again.stdout)["applied"] == []
    status = tether("store", "status", "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["nodes"] == []


def test_the_config_url_is_used_and_a_missing_one_is_a_usage_error(postgres_server: PostgresServer,
                                                                   tmp_path: Path) -> None:
    url = postgres_server.create_database("t_cli_config")
    config = tmp_path / "tether.toml"
    config.write_text(f'[store]\nurl = "{url}"\n')
    assert tether("store", "migrate", str(config)).returncode == 0
    missing = tether("store", "status", env={"TETHER_STORE_URL": ""})
    assert missing.returncode == 2 and "no PostgreSQL store" in missing.stderr


def test_status_before_migrate_names_the_command_to_run(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("t_cli_unmigrated")
    result = tether("store", "status", "--url", url)
    assert result.returncode == 1 and "run `tether store migrate`" in result.stderr


def test_run_on_an_unmigrated_database_names_the_command_to_run(postgres_server: PostgresServer,
                                                                tmp_path: Path) -> None:
    url = postgres_server.create_database("t_cli_run")
    result = tether("run", "--no-auth", "--port", "0", "--duration", "1",
                    env={"TETHER_STORE_URL": url, "TETHER_STATE_DIR": str(tmp_path)})
    assert result.returncode == 1 and "run `tether store migrate`" in result.stderr
