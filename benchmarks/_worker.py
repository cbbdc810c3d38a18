"""One benchmark measurement in this (fresh) process; prints one JSON object on its last line.

    python benchmarks/_worker.py WORKLOAD IMPL N [--tracemalloc] [--jitter full] [--gc-freeze] ...

IMPL is ``tether``, ``naive-asyncio`` or ``trio-floor``. Every implementation
runs the same schedule: N sessions come up, then the workload's drops,
failures and recoveries happen; the harness measures from outside with
time.perf_counter, resource.getrusage and psutil (tracemalloc only when asked,
in its own process, because it slows everything down).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import math
import os
import random
import resource
import sys
import time
import tracemalloc
from collections import Counter

import psutil

# Storm policy, shared by every implementation.
BASE, MULT, CAP, FAILS = 0.010, 2.0, 0.100, 3
IDEAL_STORM = sum(min(CAP, BASE * MULT**i) for i in range(FAILS))  # 0.07 s: 0 + 10 + 20 + 40 ms
PROBE_EVERY = 10.0  # idle: health check interval (seconds), jittered 0.5-1.0 first, +-10 % after
IDLE_SETTLE = 5.0
IDLE_WINDOW = 10.0
TRICKLE_RATE = 1000
TRICKLE_SECONDS = 10.0
TRICKLE_SETTLE = 2.0  # seconds at rest after bring-up, so the trickle measures steady state, not bring-up's tail

PROC = psutil.Process()


class GcTimer:
    """Time spent in the cyclic GC, per generation, via gc.callbacks."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._t = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            g = info["generation"]
            self.seconds[g] += time.perf_counter() - self._t
            self.count[g] += 1

    def snap(self) -> tuple[float, list[int]]:
        return sum(self.seconds), list(self.count), [round(s, 3) for s in self.seconds]


GC = GcTimer()


def rss() -> int:
    return PROC.memory_info().rss


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def ideal_delay(failures: int, rng: random.Random, jitter: str) -> float:
    ideal = min(CAP, BASE * MULT ** (failures - 1))
    return rng.uniform(0.0, ideal) if jitter == "full" else ideal


def buckets_peak(times: list[float], width: float = 0.010) -> tuple[int, float]:
    """Most connects that landed in one `width` bucket, and the mean over busy buckets."""
    if not times:
        return 0, 0.0
    t0 = min(times)
    c = Counter(int((t - t0) / width) for t in times)
    return max(c.values()), len(times) / len(c)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


# ======================================================================================
# tether
# ======================================================================================


def tether_main(args: argparse.Namespace) -> dict:
    import trio

    import tether
    from tether.testing import ScriptedBackend

    class TimedBackend(ScriptedBackend):
        """The scripted backend, timestamping every connect (perf_counter)."""

        def __init__(self) -> None:
            super().__init__()
            self.connect_times: list[float] | None = None
            self.drop_at: dict[str, float] = {}
            self.first_attempt: list[float] = []

        def open_link(self, request):  # type: ignore[override]
            now = time.perf_counter()
            if self.connect_times is not None:
                self.connect_times.append(now)
            if self.drop_at:
                t = self.drop_at.pop(request.spec.id, None)
                if t is not None:
                    self.first_attempt.append(now - t)
            return super().open_link(request)

    n = args.n
    jitter = tether.Jitter.FULL if args.jitter == "full" else tether.Jitter.NONE
    policy = tether.ReconnectPolicy(
        base_delay=BASE, multiplier=MULT, max_delay=CAP, jitter=jitter, max_retries=FAILS + 2,
        health_check_interval=PROBE_EVERY if args.workload == "idle" else 0.0,
        keepalive_interval=60.0 if args.workload == "idle" else 0.0,
        stable_after=0.0, connect_timeout=15.0,
    )
    specs = [tether.SessionSpec(id=f"s{i}", backend="scripted", policy=policy) for i in range(n)]
    ids = [s.id for s in specs]
    out: dict = {}
    connect_limit = None if args.connect_limit == 0 else args.connect_limit

    async def all_connected(sup: tether.Supervisor, timeout: float = 600.0) -> None:
        with trio.fail_after(timeout):
            while sup.stats().sessions_by_status.get("connected", 0) < n:
                await trio.sleep(0.005)

    async def main() -> None:
        backend = TimedBackend()
        gc.collect()
        rss0 = rss()
        if args.tracemalloc:
            tracemalloc.start()
        t0 = time.perf_counter()
        cm = tether.open_supervisor(backends=[backend], connect_limit=connect_limit, gc_policy=args.gc_policy)
        sup = await cm.__aenter__()
        exc_info: tuple = (None, None, None)
        try:
            await sup.register_many(specs)
            await all_connected(sup)
            out["register_s"] = time.perf_counter() - t0
            if args.gc_freeze:
                gc.collect()
                gc.freeze()
            if args.gc_off:
                gc.disable()
            if args.workload == "idle":
                await idle(sup, rss0)
            elif args.workload == "storm":
                await storm(sup, backend)
            elif args.workload == "trickle":
                await trickle(sup, backend)
            elif args.workload == "cancel-unregister":
                await cancel_unregister(sup)
            elif args.workload == "cancel-exit":
                t1, c1 = time.perf_counter(), cpu()
        except BaseException:
            exc_info = sys.exc_info()
            raise
        finally:
            await cm.__aexit__(*exc_info)
        if args.workload == "cancel-exit":
            out["cancel_s"] = time.perf_counter() - t1
            out["cpu_s"] = cpu() - c1

    async def idle(sup: tether.Supervisor, rss0: int) -> None:
        if args.tracemalloc:
            gc.collect()
            cur, _ = tracemalloc.get_traced_memory()
            out["tracemalloc_bytes_per_session"] = cur / n
            return
        gc.collect()
        out["rss_bytes_per_session"] = (rss() - rss0) / n
        out["rss_mb"] = rss() / 2**20
        await trio.sleep(IDLE_SETTLE)
        probes0 = sum(backend_ledger_probes(sup))
        c0, t0 = cpu(), time.perf_counter()
        await trio.sleep(IDLE_WINDOW)
        dt = time.perf_counter() - t0
        out["idle_cpu_fraction"] = (cpu() - c0) / dt
        out["probes_per_s"] = (sum(backend_ledger_probes(sup)) - probes0) / dt

    def backend_ledger_probes(sup: tether.Supervisor) -> list[int]:
        b = sup.registry.backend("scripted")
        return [lg.probes for lg in b._ledgers.values()]

    async def storm(sup: tether.Supervisor, backend: TimedBackend) -> None:
        backend.connect_times = []
        c0 = cpu()
        wall0 = time.time()
        t0 = time.perf_counter()
        for sid in ids:
            backend.fail_next(sid, FAILS)
            backend.drop(sid)
        out["drop_loop_s"] = time.perf_counter() - t0
        with trio.fail_after(600):
            while sup.stats().successful_reconnections < n:
                await trio.sleep(0.02)
        stats = sup.stats()
        done = stats.last_reconnection or time.time()
        out["storm_wall_s"] = done - wall0
        out["overhead_s"] = done - wall0 - IDEAL_STORM
        out["cpu_s"] = cpu() - c0
        out["peak_rss_mb"] = peak_rss() / 2**20
        out["attempts"] = stats.total_attempts
        out["connects"] = len(backend.connect_times)
        out["peak_connects_per_10ms"], out["mean_connects_per_busy_10ms"] = buckets_peak(
            backend.connect_times
        )
        out["spurious_timeouts"] = stats.disconnections_by_reason.get("timeout", 0)
        out["expected_attempts"] = n * (FAILS + 1)

    async def trickle(sup: tether.Supervisor, backend: TimedBackend) -> None:
        await trio.sleep(TRICKLE_SETTLE)
        total = int(TRICKLE_RATE * TRICKLE_SECONDS)
        c0 = cpu()
        start = time.perf_counter()
        i = lost = 0
        while i < total:
            due = min(total, int((time.perf_counter() - start) * TRICKLE_RATE) + 1)
            while i < due:
                sid = ids[i % n]
                backend.drop_at[sid] = time.perf_counter()
                if not backend.drop(sid):  # still reconnecting from its last drop: nothing to drop
                    backend.drop_at.pop(sid, None)
                    lost += 1
                i += 1
            await trio.sleep(0.001)
        out["drops_on_a_session_not_yet_back"] = lost
        with trio.fail_after(120):
            while sup.stats().successful_reconnections < total - lost:
                await trio.sleep(0.005)
        lat = backend.first_attempt
        out.update(
            drops=total, measured=len(lat), p50_ms=pct(lat, 0.5) * 1e3, p99_ms=pct(lat, 0.99) * 1e3,
            max_ms=max(lat) * 1e3, cpu_s=cpu() - c0, wall_s=time.perf_counter() - start,
        )

    async def cancel_unregister(sup: tether.Supervisor) -> None:
        c0, t0 = cpu(), time.perf_counter()
        if args.workers == 0:  # the bulk API: stop all, wait once
            await sup.unregister_many(ids)
        elif args.workers == 1:
            for sid in ids:
                await sup.unregister(sid)
        else:
            async def worker(chunk: list[str]) -> None:
                for sid in chunk:
                    await sup.unregister(sid)

            async with trio.open_nursery() as nursery:
                for k in range(args.workers):
                    nursery.start_soon(worker, ids[k :: args.workers])
        out["cancel_s"] = time.perf_counter() - t0
        out["cpu_s"] = cpu() - c0
        assert not sup.session_ids
        t1 = time.perf_counter()
        out["then_exit_s"] = -t1  # completed below by caller's exit; keep simple

    trio.run(main)
    out.pop("then_exit_s", None)
    return out


# ======================================================================================
# naive-asyncio: what a Python user would write, one task per session with a retry loop
# ======================================================================================


def asyncio_main(args: argparse.Namespace) -> dict:
    n = args.n
    out: dict = {}
    rng = random.Random(1)
    connect_times: list[float] | None = None
    first_attempt: list[float] = []
    state = {"connected": 0, "recovered": 0, "last_ok": 0.0, "attempts": 0, "probes": 0}

    class Sess:
        __slots__ = ("dropped_at", "fail", "waiter")

        def __init__(self) -> None:
            self.fail = 0
            self.waiter: asyncio.Future | None = None
            self.dropped_at: float | None = None

    async def connect(s: Sess) -> None:
        state["attempts"] += 1
        now = time.perf_counter()
        if connect_times is not None:
            connect_times.append(now)
        if s.dropped_at is not None:
            first_attempt.append(now - s.dropped_at)
            s.dropped_at = None
        await asyncio.sleep(0)
        if s.fail > 0:
            s.fail -= 1
            raise ConnectionError("scripted")

    async def probe(s: Sess) -> None:
        state["probes"] += 1
        await asyncio.sleep(0)

    probe_every = PROBE_EVERY if args.workload == "idle" else None

    async def run(s: Sess) -> None:
        loop = asyncio.get_running_loop()
        first = True
        while True:
            failures = 0
            while True:
                try:
                    await connect(s)
                    break
                except ConnectionError:
                    failures += 1
                    if failures > FAILS + 2:
                        return
                    await asyncio.sleep(ideal_delay(failures, rng, args.jitter))
            if first:
                state["connected"] += 1
                first = False
            else:
                state["recovered"] += 1
                state["last_ok"] = time.time()
            # watch: wait for a drop, probing on the health interval
            s.waiter = loop.create_future()
            timeout = probe_every * rng.uniform(0.5, 1.0) if probe_every else None
            while True:
                try:
                    await asyncio.wait_for(s.waiter, timeout)
                    break  # dropped
                except asyncio.TimeoutError:
                    s.waiter = loop.create_future()
                    await probe(s)
                    timeout = probe_every * rng.uniform(0.9, 1.1)
            s.waiter = None

    def drop(s: Sess, fails: int = 0) -> None:
        s.fail = fails
        if s.waiter is not None and not s.waiter.done():
            s.waiter.set_result(None)

    async def main() -> None:
        nonlocal connect_times
        gc.collect()
        rss0 = rss()
        if args.tracemalloc:
            tracemalloc.start()
        t0 = time.perf_counter()
        sessions = [Sess() for _ in range(n)]
        tasks = [asyncio.create_task(run(s)) for s in sessions]
        while state["connected"] < n:
            await asyncio.sleep(0.005)
        out["register_s"] = time.perf_counter() - t0
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        if args.gc_off:
            gc.disable()
        w = args.workload
        if w == "idle":
            gc.collect()
            if args.tracemalloc:
                out["tracemalloc_bytes_per_session"] = tracemalloc.get_traced_memory()[0] / n
            else:
                out["rss_bytes_per_session"] = (rss() - rss0) / n
                out["rss_mb"] = rss() / 2**20
                await asyncio.sleep(IDLE_SETTLE)
                p0, c0, t1 = state["probes"], cpu(), time.perf_counter()
                await asyncio.sleep(IDLE_WINDOW)
                dt = time.perf_counter() - t1
                out["idle_cpu_fraction"] = (cpu() - c0) / dt
                out["probes_per_s"] = (state["probes"] - p0) / dt
        elif w == "storm":
            connect_times = []
            c0, wall0, t1 = cpu(), time.time(), time.perf_counter()
            for s in sessions:
                drop(s, FAILS)
            out["drop_loop_s"] = time.perf_counter() - t1
            while state["recovered"] < n:
                await asyncio.sleep(0.02)
            out["storm_wall_s"] = state["last_ok"] - wall0
            out["overhead_s"] = state["last_ok"] - wall0 - IDEAL_STORM
            out["cpu_s"] = cpu() - c0
            out["peak_rss_mb"] = peak_rss() / 2**20
            out["connects"] = len(connect_times)
            out["peak_connects_per_10ms"], out["mean_connects_per_busy_10ms"] = buckets_peak(connect_times)
        elif w == "trickle":
            await asyncio.sleep(TRICKLE_SETTLE)
            total = int(TRICKLE_RATE * TRICKLE_SECONDS)
            c0, start, i = cpu(), time.perf_counter(), 0
            while i < total:
                due = min(total, int((time.perf_counter() - start) * TRICKLE_RATE) + 1)
                while i < due:
                    s = sessions[i % n]
                    s.dropped_at = time.perf_counter()
                    drop(s)
                    i += 1
                await asyncio.sleep(0.001)
            while state["recovered"] < total:
                await asyncio.sleep(0.005)
            lat = first_attempt
            out.update(
                drops=total, measured=len(lat), p50_ms=pct(lat, 0.5) * 1e3, p99_ms=pct(lat, 0.99) * 1e3,
                max_ms=max(lat) * 1e3, cpu_s=cpu() - c0, wall_s=time.perf_counter() - start,
            )
        elif w.startswith("cancel"):
            c0, t1 = cpu(), time.perf_counter()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            out["cancel_s"] = time.perf_counter() - t1
            out["cpu_s"] = cpu() - c0
            return
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    return out


# ======================================================================================
# trio-floor: one bare trio task per session with trio.sleep, no bookkeeping
# ======================================================================================


def trio_floor_main(args: argparse.Namespace) -> dict:
    import trio

    n = args.n
    out: dict = {}
    rng = random.Random(1)
    state = {"connected": 0, "recovered": 0, "last_ok": 0.0, "probes": 0}
    connect_times: list[float] = []
    first_attempt: list[float] = []
    storm = trio.Event()
    drop_at: dict[int, float] = {}
    events: list[trio.Event] = []
    w = args.workload

    async def run(i: int) -> None:
        state["connected"] += 1
        if w == "idle":
            await trio.sleep(PROBE_EVERY * rng.uniform(0.5, 1.0))
            while True:
                state["probes"] += 1
                await trio.lowlevel.checkpoint()
                await trio.sleep(PROBE_EVERY * rng.uniform(0.9, 1.1))
        elif w == "storm":
            await storm.wait()
            for failures in range(1, FAILS + 1):
                connect_times.append(time.perf_counter())
                await trio.lowlevel.checkpoint()
                await trio.sleep(ideal_delay(failures, rng, args.jitter))
            connect_times.append(time.perf_counter())
            await trio.lowlevel.checkpoint()
            state["recovered"] += 1
            state["last_ok"] = time.time()
            await trio.sleep_forever()
        elif w == "trickle":
            while True:
                await events[i].wait()
                events[i] = trio.Event()
                first_attempt.append(time.perf_counter() - drop_at.pop(i))
                await trio.lowlevel.checkpoint()
                state["recovered"] += 1
        else:
            await trio.sleep_forever()

    async def main() -> None:
        gc.collect()
        rss0 = rss()
        if args.tracemalloc:
            tracemalloc.start()
        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            if w == "trickle":
                events.extend(trio.Event() for _ in range(n))
            for i in range(n):
                nursery.start_soon(run, i)
            while state["connected"] < n:
                await trio.sleep(0.005)
            await trio.sleep(0.01)
            out["register_s"] = time.perf_counter() - t0
            if args.gc_freeze:
                gc.collect()
                gc.freeze()
            if args.gc_off:
                gc.disable()
            if w == "idle":
                gc.collect()
                if args.tracemalloc:
                    out["tracemalloc_bytes_per_session"] = tracemalloc.get_traced_memory()[0] / n
                else:
                    out["rss_bytes_per_session"] = (rss() - rss0) / n
                    out["rss_mb"] = rss() / 2**20
                    await trio.sleep(IDLE_SETTLE)
                    p0, c0, t1 = state["probes"], cpu(), time.perf_counter()
                    await trio.sleep(IDLE_WINDOW)
                    dt = time.perf_counter() - t1
                    out["idle_cpu_fraction"] = (cpu() - c0) / dt
                    out["probes_per_s"] = (state["probes"] - p0) / dt
            elif w == "storm":
                c0, wall0, t1 = cpu(), time.time(), time.perf_counter()
                storm.set()
                out["drop_loop_s"] = time.perf_counter() - t1
                while state["recovered"] < n:
                    await trio.sleep(0.02)
                out["storm_wall_s"] = state["last_ok"] - wall0
                out["overhead_s"] = state["last_ok"] - wall0 - IDEAL_STORM
                out["cpu_s"] = cpu() - c0
                out["peak_rss_mb"] = peak_rss() / 2**20
                out["connects"] = len(connect_times)
                out["peak_connects_per_10ms"], out["mean_connects_per_busy_10ms"] = buckets_peak(
                    connect_times
                )
            elif w == "trickle":
                await trio.sleep(TRICKLE_SETTLE)
                total = int(TRICKLE_RATE * TRICKLE_SECONDS)
                c0, start, i = cpu(), time.perf_counter(), 0
                while i < total:
                    due = min(total, int((time.perf_counter() - start) * TRICKLE_RATE) + 1)
                    while i < due:
                        k = i % n
                        drop_at[k] = time.perf_counter()
                        events[k].set()
                        i += 1
                    await trio.sleep(0.001)
                while state["recovered"] < total:
                    await trio.sleep(0.005)
                lat = first_attempt
                out.update(
                    drops=total, measured=len(lat), p50_ms=pct(lat, 0.5) * 1e3,
                    p99_ms=pct(lat, 0.99) * 1e3, max_ms=max(lat) * 1e3, cpu_s=cpu() - c0,
                    wall_s=time.perf_counter() - start,
                )
            c1, t1 = cpu(), time.perf_counter()
            nursery.cancel_scope.cancel()
        if w.startswith("cancel"):
            out["cancel_s"] = time.perf_counter() - t1
            out["cpu_s"] = cpu() - c1

    trio.run(main)
    return out


# ======================================================================================
# events: EventBus fan-out in process
# ======================================================================================


def events_main(args: argparse.Namespace) -> dict:
    import trio

    from tether import EventBus, ReconnectStarted

    subs_n = args.subscribers
    total = args.n
    out: dict = {"subscribers": subs_n, "events": total}

    # 1) publish + get_nowait, drained in batches (no task switches)
    bus = EventBus(10_000)
    subs = [bus.subscribe(buffer=2_000) for _ in range(subs_n)]
    batch = 1_000
    t0 = time.perf_counter()
    got = 0
    for start in range(0, total, batch):
        for k in range(start, min(total, start + batch)):
            bus.publish(ReconnectStarted, session_id="s1", episode=1, attempt=k, strategy="simple-reconnect")
        for sub in subs:
            while sub.get_nowait() is not None:
                got += 1
    dt = time.perf_counter() - t0
    assert got == total * subs_n, (got, total, subs_n)
    out["nowait_events_per_s"] = total / dt
    out["nowait_deliveries_per_s"] = got / dt

    # 2) one reader task per subscriber awaiting get(); publisher yields every batch
    async def main() -> None:
        bus = EventBus(10_000)
        subs = [bus.subscribe(buffer=2_000) for _ in range(subs_n)]
        counts = [0] * subs_n

        async def reader(i: int) -> None:
            sub = subs[i]
            while counts[i] < total:
                await sub.get()
                counts[i] += 1

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(subs_n):
                nursery.start_soon(reader, i)
            for start in range(0, total, batch):
                for k in range(start, min(total, start + batch)):
                    bus.publish(
                        ReconnectStarted, session_id="s1", episode=1, attempt=k, strategy="simple-reconnect"
                    )
                while any(sub.pending > batch // 2 for sub in subs):
                    await trio.sleep(0)
        dt = time.perf_counter() - t0
        out["async_events_per_s"] = total / dt
        out["async_deliveries_per_s"] = sum(counts) / dt
        out["lagged"] = sum(1 for s in subs if s._missed)

    trio.run(main)
    return out


# ======================================================================================
# events over the WebSocket server on loopback (clients in this same process and trio loop)
# ======================================================================================


def events_ws_main(args: argparse.Namespace) -> dict:
    import trio
    from trio_websocket import open_websocket_url

    import tether
    from tether.server._server import serve_events
    from tether.server._settings import ServerSettings
    from tether.testing import ScriptedBackend

    subs_n, total = args.subscribers, args.n
    batch = args.batch
    out: dict = {"subscribers": subs_n, "events": total, "batch": batch,
                 "note": "clients share the server's process and trio loop"}
    buffer = 10_000

    async def main() -> None:
        async with tether.open_supervisor(backends=[ScriptedBackend()], connect_limit=None) as sup:  # noqa: SIM117
            async with trio.open_nursery() as nursery:
                port = await nursery.start(
                    functools.partial(serve_events, token=None), sup,
                    ServerSettings(port=0, subscriber_buffer=buffer),
                )
                counts = [0] * subs_n
                lagged = [0]
                frames = [0]
                ready = [0]
                all_ready = trio.Event()

                async def client(i: int) -> None:
                    query = "type=reconnect.*" + (f"&batch={batch}" if batch else "")
                    async with open_websocket_url(f"ws://127.0.0.1:{port}/events?{query}") as ws:
                        ready[0] += 1
                        if ready[0] == subs_n:
                            all_ready.set()
                        while counts[i] < total:
                            msg = await ws.get_message()
                            frames[0] += 1
                            items = json.loads(msg) if batch else [json.loads(msg)]
                            for item in items:
                                if item["type"] == "lagged":
                                    lagged[0] += 1
                                else:
                                    counts[i] += 1

                async with trio.open_nursery() as clients:
                    for i in range(subs_n):
                        clients.start_soon(client, i)
                    await all_ready.wait()
                    while sup.bus.subscriber_count < subs_n:
                        await trio.sleep(0.01)
                    t0 = time.perf_counter()
                    chunk = 200
                    for start in range(0, total, chunk):
                        for k in range(start, min(total, start + chunk)):
                            sup.bus.publish(
                                tether.ReconnectStarted, session_id="s1", episode=1, attempt=k,
                                strategy="simple-reconnect",
                            )
                        while any(sub.pending > buffer // 2 for sub in list(sup.bus._subscribers)):
                            await trio.sleep(0.001)
                    await trio.sleep(0)
                dt = time.perf_counter() - t0
                out["ws_events_per_s"] = total / dt
                out["ws_deliveries_per_s"] = sum(counts) / dt
                out["ws_frames_per_s"] = frames[0] / dt
                out["lagged_frames"] = lagged[0]
                nursery.cancel_scope.cancel()

    trio.run(main)
    return out


# ======================================================================================
# snapshots: session state changes persisted to SQLite through the store
# ======================================================================================


def snapshots_main(args: argparse.Namespace) -> dict:
    import tempfile

    import trio

    import tether
    from tether.rules._snapshots import SessionSnapshot
    from tether.store._sqlite import open_sqlite_store
    from tether.testing import ScriptedBackend

    n = args.n
    out: dict = {"sessions": n}

    async def main() -> None:
        policy = tether.ReconnectPolicy(health_check_interval=0.0, keepalive_interval=0.0)
        specs = [tether.SessionSpec(id=f"s{i}", backend="scripted", policy=policy) for i in range(n)]
        async with tether.open_supervisor(backends=[ScriptedBackend()], connect_limit=None) as sup:
            await sup.register_many(specs)
            while sup.stats().sessions_by_status.get("connected", 0) < n:
                await trio.sleep(0.01)
            by_id = {s.id: s for s in specs}
            t0 = time.perf_counter()
            snaps = [SessionSnapshot(spec=by_id[sid], state=st, saved_at=time.time()) for sid, st in sup.states().items()]
            out["build_snapshots_per_s"] = n / (time.perf_counter() - t0)
            with tempfile.TemporaryDirectory() as tmp:
                for durable in (False, True):
                    for batch in (1000, 1):
                        rows = snaps if batch > 1 else snaps[: min(n, 300)]
                        async with open_sqlite_store(os.path.join(tmp, f"t{durable}{batch}.db"), durable=durable) as store:
                            t0 = time.perf_counter()
                            for k in range(0, len(rows), batch):
                                await store.write(rows[k : k + batch])
                            dt = time.perf_counter() - t0
                            st = store.stats()
                        key = f"{'durable' if durable else 'default'}_batch{batch}"
                        out[f"{key}_rows_per_s"] = len(rows) / dt
                        out[f"{key}_bytes_per_row"] = st.bytes_per_session

    trio.run(main)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("workload")
    p.add_argument("impl")
    p.add_argument("n", type=int)
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--jitter", default="none")
    p.add_argument("--gc-freeze", action="store_true", help="gc.collect(); gc.freeze() once all are up")
    p.add_argument("--gc-off", action="store_true", help="gc.disable() once all are up")
    p.add_argument("--connect-limit", type=int, default=0, help="0 = None (no limiter)")
    p.add_argument(
        "--gc-policy", default="managed", choices=("managed", "default"),
        help="tether's open_supervisor(gc_policy=...): managed is what the daemon runs with",
    )
    p.add_argument("--workers", type=int, default=1, help="cancel-unregister: tasks calling unregister; 0 = unregister_many")
    p.add_argument("--subscribers", type=int, default=1)
    p.add_argument("--batch", type=int, default=0, help="events-ws: ?batch=N (0 = one event per frame)")
    p.add_argument("--idle-scale", type=float, default=1.0, help="scale the probe interval and idle windows")
    p.add_argument("--trickle-seconds", type=float, default=10.0)
    args = p.parse_args()
    global PROBE_EVERY, IDLE_SETTLE, IDLE_WINDOW, TRICKLE_SECONDS
    PROBE_EVERY *= args.idle_scale
    IDLE_SETTLE *= args.idle_scale
    IDLE_WINDOW *= args.idle_scale
    TRICKLE_SECONDS = args.trickle_seconds
    if args.workload == "events":
        res = events_main(args)
    elif args.workload == "events-ws":
        res = events_ws_main(args)
    elif args.workload == "snapshots":
        res = snapshots_main(args)
    elif args.impl == "tether":
        res = tether_main(args)
    elif args.impl == "naive-asyncio":
        res = asyncio_main(args)
    elif args.impl == "trio-floor":
        res = trio_floor_main(args)
    else:
        raise SystemExit(f"unknown impl {args.impl}")
    res["max_rss_mb"] = peak_rss() / 2**20
    res["gc_s_total"], res["gc_collections"], res["gc_s_by_gen"] = GC.snap()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
