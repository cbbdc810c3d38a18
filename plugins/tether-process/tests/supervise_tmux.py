"""A tiny tether daemon for the crash test: start a tmux-persisted bash, report, wait to be killed.

Run as ``python supervise_tmux.py RUNTIME_DIR WORKDIR MARKER``. Prints one JSON
line with the preserved handle and the program's pid once the shell is in
WORKDIR with MARKER set, then sleeps until SIGKILL.
"""

from __future__ import annotations

import json
import sys

import trio

import tether
from tether.testing import wait_until
from tether_process import ProcessBackend


async def main(runtime_dir: str, workdir: str, marker: str) -> None:
    backend = ProcessBackend(runtime_dir=runtime_dir)
    async with tether.open_supervisor(backends=[backend]) as sup:
        spec = tether.SessionSpec(id="crash", backend="process", options={"argv": ["bash"], "persist": "tmux"})
        await sup.register(spec)
        await wait_until(lambda: sup.state("crash").status is tether.SessionStatus.CONNECTED, timeout=20)
        await sup.send("crash", f"cd {workdir}; MARKER={marker}\r".encode())

        def settled() -> bool:
            preserved = sup.state("crash").preserved
            return preserved is not None and preserved.cwd == workdir and bool(preserved.last_command)

        await wait_until(settled, timeout=20)
        preserved = sup.state("crash").preserved
        assert preserved is not None
        print(json.dumps({"handle": preserved.handle, "pid": backend.links["crash"].pid, "cwd": preserved.cwd}))
        sys.stdout.flush()
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])
