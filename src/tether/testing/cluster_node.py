"""One cluster node as a real process, for tests and benchmarks: ``python -m tether.testing.cluster_node``.

A `Coordinator` driving a `StandInMember` over a `PostgresStore`, with the
supervision log of `tether.testing._cluster`. It prints one JSON object per
line on stdout: ``{"ready": NODE_ID}`` once joined, then ``{"status": ...}``
every ``--report`` seconds, and ``{"stopped": ...}`` after a clean stop
(SIGTERM or SIGINT releases every session with its fence before exiting).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from ..cluster._coordinator import Coordinator, open_coordinator
from ..engine._gc import ManagedCollector
from ..rules._cluster import LeaseTiming
from ..rules._spec import SessionSpec
from ..store._postgres import PostgresStore
from ._cluster import StandInMember, SupervisionLog, machine_clock, session_ids


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tether.testing.cluster_node")
    parser.add_argument("--url", required=True)
    parser.add_argument("--name", required=True, help="this node's name in the supervision log")
    parser.add_argument("--host", help="host name the node claims as (pinned sessions); default the real one")
    parser.add_argument("--log", help="supervision log (JSON lines)")
    parser.add_argument("--ttl", type=float, default=3.0)
    parser.add_argument("--poll", type=float)
    parser.add_argument("--margin", type=float)
    parser.add_argument("--declare", type=int, default=0, help="declare this many scripted sessions first")
    parser.add_argument("--flush-interval", type=float, default=0.2)
    parser.add_argument("--churn", type=float, default=0.2)
    parser.add_argument("--claim-batch", type=int, default=500)
    parser.add_argument("--report", type=float, default=0.5)
    parser.add_argument("--no-self-fence", action="store_true", help="trust the database's fence alone")
    parser.add_argument("--log-level", default="warning")
    return parser


def _status(coordinator: Coordinator, member: StandInMember, store: PostgresStore) -> dict[str, Any]:
    stats = store.stats()
    return {
        "node": coordinator.node_id,
        "owned": len(coordinator.owned),
        "held": len(member.sessions),
        "t": machine_clock(),
        "coordinator": attrs.asdict(coordinator.stats),
        "writes": stats.writes,
        "rows_written": stats.rows_written,
        "write_seconds": stats.write_seconds,
        "fenced": member.fenced,
        "write_failures": member.write_failures,
        "lease_left": coordinator.lease.remaining(),
    }


def _say(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


async def _node(args: argparse.Namespace) -> None:
    log = SupervisionLog(args.log, node=args.name)
    store = PostgresStore(args.url, application_name=f"tether store {args.name}")
    await store.open()
    member = StandInMember(store, log=log, flush_interval=args.flush_interval, churn=args.churn)
    timing = LeaseTiming(ttl=args.ttl, poll=args.poll, margin=args.margin)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals, ManagedCollector() as collector:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector.run)  # as the daemon does: no multi-second full collections
            await nursery.start(member.run)
            options: dict[str, Any] = {
                "timing": timing,
                "claim_batch": args.claim_batch,
                "self_fence": not args.no_self_fence,
            }
            if args.host:
                options["host"] = args.host
            async with open_coordinator(args.url, member, store=store, **options) as coordinator:
                if args.declare:
                    specs = [SessionSpec(id=sid, backend="scripted") for sid in session_ids(args.declare)]
                    await coordinator.declare(specs)
                _say({"ready": coordinator.node_id, "t": machine_clock()})
                with trio.move_on_after(1e9):
                    async with trio.open_nursery() as inner:

                        async def report() -> None:
                            while True:
                                await trio.sleep(args.report)
                                _say({"status": _status(coordinator, member, store)})

                        inner.start_soon(report)
                        async for _ in signals:
                            inner.cancel_scope.cancel()
                            break
                log.event("stopping")
            await member.flush()
            _say({"stopped": _status(coordinator, member, store), "t": machine_clock()})
            nursery.cancel_scope.cancel()
    await store.aclose()
    log.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {args.name} %(name)s %(levelname)s %(message)s")
    trio.run(_node, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
