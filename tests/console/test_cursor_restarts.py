"""A cursor across the supervisor's own restart, in the engine with a real SQLite file.

The scripted backend echoes what is sent, so each test knows every byte the
console printed. Real time: the supervisor's flusher runs on its own schedule
(0.01 s here) and the tests wait on conditions, never on luck.
"""

from __future__ import annotations

from pathlib import Path

import trio

import tether
from tether.testing import wait_until


def echo(sid: str = "s") -> tether.SessionSpec:
    return tether.SessionSpec(id=sid, backend="scripted")


async def connected(sup: tether.Supervisor, sid: str = "s") -> None:
    await wait_until(lambda: sup.state(sid).status is tether.SessionStatus.CONNECTED, timeout=10, step=0.01)


async def test_a_clean_stop_after_a_quiet_spell_continues_the_log_exactly(tmp_path: Path) -> None:
    """Output, a flush (its head reserves positions ahead), nothing new, a clean stop: the next
    start continues at the same end, and a cursor taken before reads on; the only loss is the one
    position that says tether was away (unseen, size unknown), never an ``unsaved`` range as if
    it had been killed."""
    path = tmp_path / "tether.sqlite3"
    async with tether.open_sqlite_store(path) as store, \
            tether.open_supervisor(store=store, flush_interval=0.01) as sup:
        await sup.register(echo())
        await connected(sup)
        await sup.send("s", b"before the stop\n")
        assert await sup.flush()
        cursor = sup.read("s", 0).next
        assert cursor == len(b"before the stop\n")
    async with tether.open_sqlite_store(path) as store, \
            tether.open_supervisor(store=store, flush_interval=0.01) as sup:
        await connected(sup)
        await sup.send("s", b"after\n")
        with trio.fail_after(10):
            read = await sup.read_next("s", cursor, budget=10)
        away = tether.Loss(cursor, cursor + 1, tether.LossKind.UNSEEN, None)
        assert (read.since, read.losses, read.data) == (cursor, (away,), b"after\n")
        everything = sup.read("s", 0)
        assert everything.data == b"before the stop\nafter\n" and everything.losses == (away,)


async def test_read_next_waits_for_output_and_says_when_the_session_goes(tmp_path: Path) -> None:
    """read_next parks until output arrives past the cursor (no polling: it returns as soon as the
    echo lands), answers an empty read when its budget runs out, and raises once unregistered."""
    async with tether.open_supervisor() as sup:
        await sup.register(echo())
        await connected(sup)
        end = sup.read("s").end
        with trio.fail_after(5):
            empty = await sup.read_next("s", end, budget=0.05)
        assert (empty.since, empty.next, empty.data) == (end, end, b"")
        async with trio.open_nursery() as nursery:
            got: list[tether.LogRead] = []

            async def reader() -> None:
                got.append(await sup.read_next("s", end, budget=10))

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await sup.send("s", b"x")
        assert got[0].data == b"x"
        async with trio.open_nursery() as nursery:
            failures: list[BaseException] = []

            async def waiter() -> None:
                try:
                    await sup.read_next("s", got[0].next, budget=10)
                except tether.SessionNotFoundError as exc:
                    failures.append(exc)

            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(5):
                await sup.unregister("s")
        assert len(failures) == 1
