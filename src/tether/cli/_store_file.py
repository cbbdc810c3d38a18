"""``tether store check / repair / release``: a way forward for a damaged or partly unreadable SQLite file.

`check` only reads (it works beside a running daemon); `repair` moves the file
aside, keeping it as it is, and copies every row SQLite can still read into a
fresh one; `release` saves a kept row to ``released/`` and then deletes it.
Repair and release take the store's owner lock, so they refuse to run under a
live daemon. The work is `tether.store._maintenance`; this module finds the
file and says what happened.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from ..rules._errors import ConfigError
from ..rules._paths import resolve_state_dir
from ..store._maintenance import RELEASED_DIR, RepairReport, check_store, release_rows, repair_store
from ._config import TetherConfig, load_config

FILE_ACTIONS = ("check", "repair", "release")
EXIT_OK = 0
EXIT_PROBLEM = 1


def add_file_actions(actions: Any, common: argparse.ArgumentParser) -> None:
    """The SQLite file's actions under ``tether store``."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--db", metavar="FILE", help="the SQLite file (default: the config's [store] path, "
                       "else tether.sqlite3 in the state directory)")
    where.add_argument("--json", action="store_true", help="machine-readable output")
    check = actions.add_parser("check", parents=[common, where],
                               help="check the SQLite file: readable, a tether database, which rows are kept aside "
                               "(read-only: works beside a running daemon)")
    check.add_argument("config", nargs="?", help="TOML config whose state_dir and [store] path to use")
    repair = actions.add_parser("repair", parents=[common, where],
                                help="move a damaged SQLite file aside (kept as it is) and copy every readable row "
                                "into a fresh one (stop the daemon first)")
    repair.add_argument("config", nargs="?", help="TOML config whose state_dir and [store] path to use")
    release = actions.add_parser("release", parents=[common, where],
                                 help="save stored sessions' rows (those kept aside as unreadable) to released/, "
                                 "then delete them (stop the daemon first)")
    release.add_argument("ids", nargs="+", metavar="ID", help="session id")
    release.add_argument("--config", help="TOML config whose state_dir and [store] path to use")


def sqlite_file(args: argparse.Namespace) -> Path:
    """The file these commands work on, found as `tether run` finds it."""
    if args.db:
        return Path(args.db)
    config = load_config(args.config) if args.config else TetherConfig()
    if config.store.store_url():
        raise ConfigError("store", "this config's store is PostgreSQL ([store] url or $TETHER_STORE_URL): check, "
                          "repair and release work on the SQLite file; `tether store status` shows kept rows there")
    return config.store.sqlite_path(resolve_state_dir(args.state_dir, config.state_dir))


def suggest(action: str, *ids: str, config: str | None = None, state_dir: str | None = None,
            db: str | None = None) -> str:
    """The command line that runs `action` on the same file (for the messages that name it)."""
    words = ["tether", "store", action, *ids]
    if db:
        words += ["--db", db]
    else:
        if config:
            words += ["--config", config] if action == "release" else [config]
        if state_dir:
            words += ["--state-dir", state_dir]
    return shlex.join(words)


def run_file_action(args: argparse.Namespace) -> int:
    path = sqlite_file(args)
    if args.store_command == "check":
        return _check(path, args)
    if args.store_command == "repair":
        report = repair_store(path)
        if args.json:
            print(json.dumps({"db": str(path), "moved_to": report.moved_to, "copied": report.copied,
                              "lost": report.lost, "log_rows": report.log_rows,
                              "unreadable_tables": list(report.unreadable_tables)}))
        else:
            print(f"{path}: repaired. The old file is kept as it was at {report.moved_to}.\n"
                  f"Copied {report.copied} session row{'s' if report.copied != 1 else ''} and {report.log_rows} "
                  f"output-log rows into a fresh file{_losses(report)}.")
        return EXIT_PROBLEM if "sessions" in report.unreadable_tables else EXIT_OK
    released = release_rows(path, args.ids)
    if args.json:
        print(json.dumps({"db": str(path), "released": {sid: str(saved) for sid, saved in released.items()}}))
    else:
        for sid, saved in released.items():
            print(f"{sid}: row saved to {saved}, then deleted from {path}")
    return EXIT_OK


def _losses(report: RepairReport) -> str:
    said = [f"{report.lost} rows could not be read" if report.lost else ""]
    said += [f"the {table} table could not be read at all (only the old file holds its rows)"
             for table in report.unreadable_tables]
    return "; " + "; ".join(s for s in said if s) if any(said) else "; nothing was lost"


def _check(path: Path, args: argparse.Namespace) -> int:
    report = check_store(path)
    config = None if args.db else args.config
    if args.json:
        print(json.dumps({"db": report.path, "ok": report.ok, "problem": report.problem, "rows": report.rows,
                          "unreadable": [{"id": sid, "problem": why} for sid, why in report.unreadable]}))
        return EXIT_OK if report.ok else EXIT_PROBLEM
    if not report.ok:
        print(f"{report.path}: {report.problem}")
        if report.problem != "no such file":
            print("The daemon refuses to start on it. Stop the daemon if it runs, then "
                  f"`{suggest('repair', config=config, state_dir=args.state_dir, db=args.db)}` moves it aside "
                  "(kept as it is) and copies every row still readable into a fresh file.")
        return EXIT_PROBLEM
    rows = f"{report.rows} session row{'s' if report.rows != 1 else ''}"
    if not report.unreadable:
        print(f"{report.path}: ok, {rows}")
        return EXIT_OK
    print(f"{report.path}: ok, {rows}; {len(report.unreadable)} kept aside as unreadable "
          "(a daemon leaves them untouched and runs the others):")
    for sid, why in report.unreadable:
        print(f"  {sid}: {why}")
    command = suggest("release", *(sid for sid, _ in report.unreadable), config=config, state_dir=args.state_dir,
                      db=args.db)
    print(f"Release them with `{command}` (each row is saved to {path.parent / RELEASED_DIR}/ first).")
    return EXIT_OK
