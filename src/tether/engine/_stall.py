"""The loop-stall watchdog: when plugin code holds the event loop, say for how long and whose code it was.

Every session shares one thread and one event loop: a plugin that calls
``time.sleep`` (or any blocking call) in async code stops all of them. A
heartbeat task wakes every `interval`; a watcher thread notices when it is
late past `threshold` and samples the loop thread's stack while the stall
lasts (it cannot run tether code then, only read frames). When the loop is
back, the heartbeat reports the stall: its length, the module that was
running, the distribution that ships it and, when the frames show one, the
session whose task it was. The hot path pays nothing: no instrument, no
per-step hook.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, final

import attrs
import importlib_metadata
import trio

logger = logging.getLogger("tether.watchdog")

_OURS = ("tether", "trio", "trio_websocket", "outcome", "sniffio", "threading", "asyncio", "contextlib", "attrs")


@attrs.frozen(kw_only=True)
class Stall:
    """One stall of the event loop."""

    seconds: float
    module: str
    """The innermost module that was running that is neither tether nor trio (or ``unknown``)."""
    distribution: str
    session_id: str
    backend: str


def _top(module: str) -> str:
    return module.partition(".")[0]


_distributions: dict[str, list[str]] | None = None


def distribution_of_module(module: str) -> str:
    """The installed distribution that ships `module` (``unknown`` when none does)."""
    global _distributions
    if _distributions is None:
        _distributions = dict(importlib_metadata.packages_distributions())
    names = _distributions.get(_top(module))
    return names[0] if names else "unknown"


def _locate(frame: FrameType | None) -> tuple[str, str, str]:
    """(module, session id, backend) of a sampled stack, innermost frame first."""
    module = ""
    session_id = backend = ""
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if not module and name and _top(name) not in _OURS and name != "__main__" and not name.startswith("_"):
            module = name
        if not session_id and _top(name) == "tether":
            session = frame.f_locals.get("session")
            sid = getattr(session, "sid", None)
            if isinstance(sid, str):
                session_id = sid
                backend = str(getattr(getattr(session, "backend", None), "name", ""))
        frame = frame.f_back
    return module or "unknown", session_id, backend


@final
class LoopWatchdog:
    """Reports each stall of the loop longer than `threshold` seconds to `on_stall`."""

    def __init__(self, threshold: float, on_stall: Callable[[Stall], None], *, interval: float | None = None) -> None:
        self.threshold = threshold
        self.interval = interval if interval is not None else min(0.1, threshold / 4)
        self._on_stall = on_stall
        self._beat = time.monotonic()
        self._sample: tuple[str, str, str] | None = None
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()
        self.stalls = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._loop_thread = threading.get_ident()
        watcher = threading.Thread(target=self._watch, name="tether loop watchdog", daemon=True)
        watcher.start()
        task_status.started()
        try:
            while True:
                before = time.monotonic()
                self._beat = before
                await trio.sleep(self.interval)
                late = time.monotonic() - before - self.interval
                if late > self.threshold:
                    self._report(late)
        finally:
            self._stop.set()

    def _report(self, seconds: float) -> None:
        module, session_id, backend = self._sample or ("unknown", "", "")
        self._sample = None
        self.stalls += 1
        stall = Stall(seconds=seconds, module=module, distribution=distribution_of_module(module),
                      session_id=session_id, backend=backend)
        self._on_stall(stall)

    def _watch(self) -> None:
        """In its own thread: sample the loop's stack while the heartbeat is late."""
        sampled_beat = -1.0
        while not self._stop.wait(self.interval):
            beat = self._beat
            if time.monotonic() - beat > self.threshold and beat != sampled_beat:
                frames: Any = sys._current_frames()
                self._sample = _locate(frames.get(self._loop_thread))
                sampled_beat = beat
