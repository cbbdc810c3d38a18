"""The final flush of a clean stop is the store's last write for every output log.

Output that lands while the final flush is being written (a shell's prompt
after the last command) wakes the regular flusher; were it to write after the
final flush, the stored head would reserve positions ahead again and the next
start would report a false ``unsaved`` loss. A regular flush in flight when
the final one starts must commit before it, never after.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import attrs
import trio
import trio.testing

import tether
from tether import MemoryStore
from tether.engine._bus import EventBus
from tether.engine._outbox import Outbox
from tether.engine._session import Session
from tether.rules._output import LogFlush, OutputLog
from tether.rules._snapshots import SessionSnapshot, WriteResult
from tether.rules._stats import StatsRecorder
from tether.testing import wait_until


@attrs.define
class _Console:
    log: OutputLog


@attrs.define
class _Session:
    """What `Outbox.output` reads of a session."""

    sid: str
    console: _Console
    waiters: None = None

    def decode(self, data: bytes) -> str:
        return data.decode(errors="replace")


def outbox_with(store: MemoryStore, log: OutputLog) -> Outbox:
    return Outbox(
        EventBus(), StatsRecorder(), store, durable=False, flush_interval=0.0,
        snapshot_of=lambda sid: None, log_of=lambda sid: log if sid == "s" else None, session_ids=lambda: ["s"],
    )


def output(outbox: Outbox, log: OutputLog, data: bytes) -> None:
    session = _Session("s", _Console(log))
    outbox.output(cast(Session, session), log.append(data), data, [])


async def test_a_flush_after_the_final_one_writes_nothing() -> None:
    store, log = MemoryStore(), OutputLog()
    outbox = outbox_with(store, log)
    output(outbox, log, b"before\n")
    assert await outbox.flush()
    assert await outbox.flush(final=True)
    head = store.logs["s"][0]
    assert (head.end, head.reserved) == (7, 7)
    output(outbox, log, b"late prompt $ ")  # arrives before the supervisor seals the outbox
    assert await outbox.flush()  # the regular flusher, woken by it
    assert store.logs["s"][0] == head, "a regular flush overwrote the final head"


async def test_a_regular_flush_in_flight_commits_before_the_final_one() -> None:
    store, log = MemoryStore(), OutputLog()
    outbox = outbox_with(store, log)
    entered, release = trio.Event(), trio.Event()
    heads: list[tuple[int, int]] = []
    write = store.write

    async def slow_first_write(snapshots: Sequence[SessionSnapshot], deleted: Sequence[str] = (),
                               **kwargs: Any) -> WriteResult:
        logs: Sequence[LogFlush] = kwargs.get("logs", ())
        if not heads:
            entered.set()
            await release.wait()
        heads.extend((f.head.end, f.head.reserved) for f in logs)
        return await write(snapshots, deleted, **kwargs)

    store.write = slow_first_write  # type: ignore[method-assign]
    output(outbox, log, b"before\n")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.flush)
        await entered.wait()
        nursery.start_soon(lambda: outbox.flush(final=True))
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert heads == [(7, 7 + log.limits.reserve), (7, 7)]
    assert store.logs["s"][0].reserved == 7


async def test_a_stop_by_cancellation_continues_the_log_exactly(tmp_path: Path) -> None:
    """A daemon stops by cancelling its scope: the sessions end before the final flush runs. A
    log that reserved ahead (flushed, then nothing new) still gets its exact head, so the next
    start reports one unseen position (tether was away), never an ``unsaved`` range."""
    path = tmp_path / "tether.sqlite3"
    with trio.CancelScope() as scope:
        async with tether.open_sqlite_store(path) as store, \
                tether.open_supervisor(store=store, flush_interval=0.01) as sup:
            await sup.register(tether.SessionSpec(id="s", backend="scripted"))
            await wait_until(lambda: sup.state("s").status is tether.SessionStatus.CONNECTED, timeout=10)
            await sup.send("s", b"before\n")
            await wait_until(lambda: sup.read("s", 0).data == b"before\n", timeout=10)
            assert await sup.flush()
            cursor = sup.read("s", 0).next
            scope.cancel()
            await trio.sleep_forever()
    async with tether.open_sqlite_store(path) as store, \
            tether.open_supervisor(store=store, flush_interval=0.01) as sup:
        await wait_until(lambda: sup.state("s").status is tether.SessionStatus.CONNECTED, timeout=10)
        await sup.send("s", b"after\n")
        with trio.fail_after(10):
            read = await sup.read_next("s", cursor, budget=10)
        away = tether.Loss(cursor, cursor + 1, tether.LossKind.UNSEEN, None)
        assert (read.losses, read.data) == ((away,), b"after\n"), read
