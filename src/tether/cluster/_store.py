"""The store a cluster member's supervisor is given: claims bring sessions in, not a start-up load.

A supervisor restores every stored snapshot when it opens; in a cluster that
would start every session in the database on every node, unfenced. Wrapped
in `ClusterStore`, the PostgreSQL store answers `load_all` with nothing (the
coordinator hands each claimed session to `register` with its state and
fence instead) and passes every write through unchanged, fences and all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import final

import trio

from ..rules._output import LogFlush
from ..rules._snapshots import LoadReport, SessionSnapshot, StoreStats, WriteResult
from ..store._postgres import PostgresStore


@final
class ClusterStore:
    """A `SnapshotStore` for a cluster member: writes go to `store`; `load_all` is empty by design."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def load_all(self) -> LoadReport:
        await trio.lowlevel.checkpoint()
        return LoadReport(())

    async def write(
        self,
        snapshots: Sequence[SessionSnapshot],
        deleted: Sequence[str] = (),
        *,
        fences: Mapping[str, int] | None = None,
        logs: Sequence[LogFlush] = (),
    ) -> WriteResult:
        return await self.store.write(snapshots, deleted, fences=fences, logs=logs)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()  # the store is the caller's to close

    def stats(self) -> StoreStats:
        return self.store.stats()
