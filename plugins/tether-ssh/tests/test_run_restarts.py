"""`run` tokens across a restart of the supervisor, over a real sshd (the same SQLite file).

The run is typed, the supervisor stops before it finishes, and a new one
starts on the same store. With the remote shell kept in tmux, the re-attached
shell's pane log replays what it printed meanwhile: `wait_run` answers with
the command's status and output. A plain ssh shell ended with its connection:
the new shell cannot finish it, and `wait_run` says the restart replaced it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.testing import wait_for_prompt

from .conftest import Sshd, ssh_spec, stored_ssh_supervisor

RESTART_REPLACED = "the shell was replaced by a new program when tether restarted, before the command finished"


async def test_a_run_token_outlives_a_supervisor_restart(sshd: Sshd, persist: dict[str, Any], tmp_path: Path) -> None:
    tmux = bool(persist)
    path = tmp_path / "tether.sqlite3"
    async with stored_ssh_supervisor(path) as sup:
        await sup.register(ssh_spec(sshd, **persist))
        await wait_for_prompt(sup, "s1")
        started = await sup.run("s1", "sleep 1; echo done-$((3+4)); (exit 5)", budget=0.2)
        assert not started.done
    async with stored_ssh_supervisor(path) as sup:
        outcome = await sup.wait_run("s1", started.token, budget=30)
        assert outcome.done, outcome
        if tmux:
            assert (outcome.exit_status, outcome.lost) == (5, None), outcome
            shown = sup.read("s1", outcome.output_start, outcome.output_stop - outcome.output_start)
            assert (shown.data, shown.losses) == (b"done-7\r\n", ()), shown
        else:
            assert (outcome.exit_status, outcome.lost) == (None, RESTART_REPLACED), outcome
        await sup.unregister("s1")  # tmux: end the kept shell with the test
