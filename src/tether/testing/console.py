"""Checks for a backend that gives tether a shell: the console ops as a user of the daemon meets them.

A plugin's tests open a supervisor with a session on a real peer and call
these; each fails with what it saw. They use only `Supervisor`'s console
API (``read``, ``read_next``, ``send``, ``wait``, ``run``, ``wait_run``,
``resize``), so what they check is what `tether attach`, `tail`, `exec` and
the MCP tools get::

    await wait_for_prompt(sup, "s1")
    await check_runs(sup, "s1")
    await check_resize(sup, "s1")
    before = await print_marker(sup, "s1", "before")
    await kill_the_link()                            # the backend's own way to drop it
    await check_continues(sup, "s1", before, expect_loss=True)

Markers are printed as ``printf 'M%s\\n' NAME``, so the terminal's echo of
the command line never holds the marker itself: a marker seen twice is a
duplicate, never an echo.
"""

from __future__ import annotations

import attrs
import trio

from ..engine._supervisor import Supervisor
from ..rules._console import WaitResult
from ..rules._output import Loss
from ..rules._state import SessionStatus

PROMPT = r"[$#] $"
"""How a shell's prompt ends (bash and sh as root or not), as a pattern for `Supervisor.wait`."""


@attrs.frozen
class Marked:
    """Where a printed marker is in the log, and the cursor after it."""

    name: str
    cursor: int
    """Everything before this position was read once the marker showed."""
    log_id: str


@attrs.frozen
class Span:
    """Every position from `since` to `next`: the bytes and the losses among them."""

    since: int
    next: int
    data: bytes
    losses: tuple[Loss, ...]


async def read_span(sup: Supervisor, session_id: str, since: int, *, log_id: str | None = None) -> Span:
    """Read from `since` to the readable end, in as many reads as it takes, each from the last ``next``."""
    data = bytearray()
    losses: list[Loss] = []
    cursor = since
    while True:
        read = sup.read(session_id, cursor, 1 << 20, log_id=log_id)
        data += read.data
        losses.extend(read.losses)
        if read.next == cursor:
            await trio.lowlevel.checkpoint()
            return Span(since, cursor, bytes(data), tuple(losses))
        cursor = read.next


async def wait_connected(sup: Supervisor, session_id: str, budget: float = 30.0) -> None:
    """Wait until the session is connected (`Supervisor.wait`, no polling); fail after `budget` seconds."""
    result = await sup.wait(session_id, connected=True, budget=budget)
    assert result.satisfied, f"{session_id} did not connect within {budget}s: {sup.state(session_id).status}"


async def wait_for_prompt(sup: Supervisor, session_id: str, *, since: int | None = None, budget: float = 30.0) -> int:
    """Wait until the session is connected and its shell shows a prompt (after `since`); the cursor."""
    await wait_connected(sup, session_id, budget)
    found = await sup.wait(session_id, pattern=PROMPT, since=since if since is not None else 0, budget=budget)
    assert found.satisfied, f"no prompt from {session_id} within {budget}s: {await _tail(sup, session_id)!r}"
    return found.cursor


async def _tail(sup: Supervisor, session_id: str) -> bytes:
    end = sup.read(session_id, None, 1).end
    return (await read_span(sup, session_id, max(sup.read(session_id, None, 1).since, end - 600))).data


async def print_marker(sup: Supervisor, session_id: str, name: str, *, budget: float = 20.0) -> Marked:
    """Make the shell print marker `name`; where it landed, once it did."""
    since = sup.read(session_id, None, 1).end
    await sup.send(session_id, f"printf 'M%s\\n' {name}\r".encode())
    found = await sup.wait(session_id, pattern=f"M{name}\r?\n", since=since, budget=budget)
    assert found.satisfied, f"marker {name} not printed within {budget}s: {await _tail(sup, session_id)!r}"
    return Marked(name, found.cursor, sup.read(session_id, None, 1).log_id)


def count_markers(data: bytes, name: str) -> int:
    """How many times marker `name` was printed in `data` (its echo does not count)."""
    return data.replace(b"\r\n", b"\n").count(f"M{name}\n".encode())


async def check_continues(
    sup: Supervisor, session_id: str, before: Marked, *, expect_loss: bool | None, budget: float = 30.0
) -> Span:
    """After a drop or a restart: read on from the cursor taken at `before` and make the shell
    print a new marker. The marker shows exactly once, `before`'s never again (no duplicate), and
    losses are there exactly when `expect_loss` says (None: either way); returns what was read."""
    await wait_connected(sup, session_id, budget)
    await sup.wait(session_id, quiet=0.5, budget=budget)  # a new shell has started up: it reads what is typed
    after = await print_marker(sup, session_id, f"{before.name}-after", budget=budget)
    assert after.log_id == before.log_id, "the session's log changed: a cursor could not go on"
    span = await read_span(sup, session_id, before.cursor, log_id=before.log_id)
    assert count_markers(span.data, before.name) == 0, f"{before.name} was delivered twice: {span.data!r}"
    assert count_markers(span.data, after.name) == 1, f"{after.name} not delivered once: {span.data!r}"
    if expect_loss is not None:
        assert bool(span.losses) == expect_loss, f"losses {span.losses} (expected {'some' if expect_loss else 'none'})"
    return span


async def check_runs(sup: Supervisor, session_id: str, *, budget: float = 30.0) -> None:
    """`run`: 0 for ``true``, 1 for ``false``, the exact output range, and a token for a command
    that outlives its budget, which `wait_run` then finishes."""
    ok = await sup.run(session_id, "true", budget=budget)
    failed = await sup.run(session_id, "false", budget=budget)
    assert (ok.done, ok.exit_status) == (True, 0), ok
    assert (failed.done, failed.exit_status) == (True, 1), failed
    printed = await sup.run(session_id, "printf 'one\\ntwo\\n'", budget=budget)
    assert printed.done and printed.exit_status == 0, printed
    out = sup.read(session_id, printed.output_start, printed.output_stop - printed.output_start)
    assert out.data.replace(b"\r\n", b"\n") == b"one\ntwo\n" and not out.losses, out
    slow = await sup.run(session_id, "sleep 1.5; echo slow-done", budget=0.2)
    assert not slow.done and slow.token, slow
    later = await sup.wait_run(session_id, slow.token, budget=budget)
    assert later.done and later.exit_status == 0 and later.token == slow.token, later
    tail = sup.read(session_id, later.output_start, later.output_stop - later.output_start)
    assert tail.data.strip() == b"slow-done", tail


async def check_wait_pattern(sup: Supervisor, session_id: str, *, budget: float = 20.0) -> None:
    """`wait` for a pattern in output that comes while it waits, found at its exact position."""
    since = sup.read(session_id, None, 1).end
    found: list[WaitResult] = []
    async with trio.open_nursery() as nursery:

        async def waiter() -> None:
            found.append(await sup.wait(session_id, pattern=r"tether-(\d+)-found", since=since, budget=budget))

        nursery.start_soon(waiter)
        await sup.send(session_id, b"echo tether-$((6*7))-found\r")
    result = found[0]
    assert result.satisfied and result.match == "tether-42-found", result
    assert result.match_start is not None and result.match_stop == result.match_start + 15
    assert sup.read(session_id, result.match_start, 15).data == b"tether-42-found"


async def check_resize(sup: Supervisor, session_id: str, rows: int = 37, cols: int = 113,
                       *, budget: float = 20.0) -> None:
    """`resize` reaches the program: ``stty size`` prints the new size."""
    await sup.resize(session_id, rows, cols)
    since = sup.read(session_id, None, 1).end
    await sup.send(session_id, b"stty size\r")
    found = await sup.wait(session_id, pattern=rf"[\r\n]{rows} {cols}\r?\n", since=since, budget=budget)
    assert found.satisfied, f"stty size did not say {rows} {cols}: {await _tail(sup, session_id)!r}"
    assert sup.state(session_id).status is SessionStatus.CONNECTED


__all__ = [
    "PROMPT",
    "Marked",
    "Span",
    "check_continues",
    "check_resize",
    "check_runs",
    "check_wait_pattern",
    "count_markers",
    "print_marker",
    "read_span",
    "wait_connected",
    "wait_for_prompt",
]
