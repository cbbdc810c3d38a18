"""`tether watch` across daemon restarts (SIGTERM, kill -9): it keeps running, says each restart, and
shows every event of each new run from #1 - no gap is ever silent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from .daemon import Daemon, running, wait_for

pytestmark = pytest.mark.slow


def _config(tmp_path: Path) -> Path:
    """Sessions that drop every 0.3 s: the daemon publishes events all the time, also while the
    watcher is away and in the first moments of a new run (where a silent resume would skip)."""
    lines = []
    for i in range(3):
        lines += ["[[sessions]]", f'id = "s{i}"', 'backend = "scripted"', "options = { drop_after = 0.3 }",
                  "[sessions.policy]", "base_delay = 0.05", "max_delay = 0.1", 'max_retries = "forever"']
    path = tmp_path / "tether.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Watcher:
    """A real `tether watch --json` child; its lines are collected as they come."""

    def __init__(self, state: Path, *args: str) -> None:
        env = {**os.environ, "TETHER_STATE_DIR": str(state)}
        self.process = subprocess.Popen([sys.executable, "-m", "tether", "watch", "--json", *args], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.items: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.items.append(json.loads(line))

    def events(self, boot: str) -> list[dict[str, Any]]:
        return [i for i in list(self.items) if i.get("boot") == boot and "seq" in i]

    def notices(self) -> list[dict[str, Any]]:
        return [i for i in list(self.items) if i["type"] == "restarted"]

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=30)
        self._reader.join(timeout=5)
        return self.process.returncode, err


def _boot(daemon: Daemon) -> str:
    status = daemon.cli("watch", "--json", "--since", "0", "--count", "1").stdout
    return str(json.loads(status)["boot"])


def _contiguous_from(seqs: list[int], first: int) -> bool:
    return seqs == list(range(first, first + len(seqs)))


def test_watch_reports_each_restart_and_misses_nothing_silently(tmp_path: Path) -> None:
    """SIGTERM then kill -9: the one watcher reports both restarts, naming the runs and where it was,
    and shows each new run's events from #1 with no gap; within a run no seq is skipped."""
    state = tmp_path / "state"
    with running(state, _config(tmp_path)) as daemon:
        daemon.start()
        boots = [_boot(daemon)]
        watcher = Watcher(state)
        try:
            wait_for(lambda: len(watcher.events(boots[0])) >= 5, what="the watcher to follow the first run")
            for how in ("SIGTERM", "SIGKILL"):
                daemon.stop(how)
                seen_at_stop = [e["seq"] for e in watcher.events(boots[-1])]
                daemon.start()
                boots.append(_boot(daemon))
                wait_for(lambda: len(watcher.events(boots[-1])) >= 10,
                         what=f"the watcher to follow the run after {how}")
                notice = watcher.notices()[-1]
                assert (notice["previous_boot"], notice["boot"]) == (boots[-2], boots[-1])
                # the watcher may still have been writing the old run's last events when the daemon
                # was gone; the notice comes after all of them, so read them now
                seen_before = [e["seq"] for e in watcher.events(boots[-2])]
                assert seen_before[: len(seen_at_stop)] == seen_at_stop
                assert notice["since"] == seen_before[-1], "the notice says where the watcher was"
                assert notice["replay_from"] == 1 and notice["missed"] == 0
                assert "the daemon restarted" in notice["message"]
        finally:
            code, err = watcher.stop()
    assert code == 0, err
    assert len(watcher.notices()) == 2, watcher.notices()
    first = [e["seq"] for e in watcher.events(boots[0])]
    assert _contiguous_from(first, first[0]), f"a seq was skipped in the first run: {first}"
    for boot in boots[1:]:
        seqs = [e["seq"] for e in watcher.events(boot)]
        assert _contiguous_from(seqs, 1), f"run {boot} was not shown from #1 without a gap: {seqs[:20]}"
    order = [i.get("boot") if i["type"] != "restarted" else "restarted" for i in watcher.items]
    assert order.index("restarted") == order.index(boots[1]) - 1, "the notice comes before the new run's events"
    assert "retrying in" in err and "reconnected to" in err


def test_watch_since_a_run_that_is_gone_says_so_first(tmp_path: Path) -> None:
    """`tether watch --since N --boot B` after B ended: the first line is the restart notice, then the
    new run from #1; without --boot the old behaviour stays (this run's numbers)."""
    state = tmp_path / "state"
    with running(state, _config(tmp_path)) as daemon:
        daemon.start()
        old = _boot(daemon)
        daemon.stop("SIGTERM")
        daemon.start()
        new = _boot(daemon)
        lines = daemon.cli("watch", "--json", "--since", "999999", "--boot", old, "--count", "3").stdout
        items = [json.loads(line) for line in lines.splitlines()]
        assert items[0]["type"] == "restarted" and (items[0]["previous_boot"], items[0]["boot"]) == (old, new)
        assert items[0]["since"] == 999999
        assert [(i["boot"], i["seq"]) for i in items[1:]] == [(new, 1), (new, 2)]
        same = daemon.cli("watch", "--json", "--since", "1", "--boot", new, "--count", "1").stdout
        assert json.loads(same)["seq"] == 2, "a resume within the same run continues where it says"
        usage = daemon.cli("watch", "--boot", new, check=False)
        assert usage.returncode == 2 and "--boot names the run --since counts in" in usage.stderr
