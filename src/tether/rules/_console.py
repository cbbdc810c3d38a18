"""One session's output as the engine keeps it: the log, the marks found in it, the runs waiting. Pure.

The engine owns one `ConsoleOutput` per session and calls it from exactly
three places: the link's ``report_output`` / ``report_output_at`` (every
chunk), its ``run`` (to get the line to type and a tracker), and its
flusher (through `log`). Marks are scanned on the bytes the log actually
took, at the positions it gave them, so a replayed duplicate can never
complete a run twice and a run's output range is a range of the log.

Runs outlive the process: a snapshot keeps the pending ones as `PendingRun`
(nonce and log positions, never the command, which may hold a secret) and
the finished ones nobody has collected yet (`SavedRuns`). A restored session
scans its restored log for their marks once (what arrived after the last
snapshot but before the last log write), then waits for the rest from the
program, if the program survived (a re-attach replays what it printed
meanwhile); a new program answers them as lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, final

import attrs

from ._errors import ConfigError
from ._osc import (
    Found,
    OscScanner,
    RunResult,
    RunTracker,
    ShellMark,
    encode_shell_mark,
    new_nonce,
    run_line,
    valid_nonce,
)
from ._output import Loss, OutputLog, PeerMark
from ._state import SessionStatus

IDLE_PROMPT_WINDOW: Final = 4096
"""How far back `ConsoleOutput.at_idle_prompt` looks for the shell's last prompt."""
_PROMPT_PREFIX: Final = encode_shell_mark("A")[:-1] + b";"
_RUN_START: Final = encode_shell_mark("C")[:-1]

MAX_PENDING_RUNS: Final = 64
"""Runs a session keeps waiting for their D mark; the oldest is given up past this."""


@final
class ConsoleOutput:
    """The output log of one session, with the escape marks in it and the runs that wait on them."""

    __slots__ = ("_old_end", "_previous_shell", "_restored", "_runs", "_scanner", "awaiting_prompt", "log", "shell")

    def __init__(self, log: OutputLog) -> None:
        self.log = log
        self.shell: str | None = None
        """The shell whose tether integration last reported a prompt (``133;A;tether-shell``):
        `run` needs one. Cleared when the link ends; a re-attached program gets it back."""
        self._previous_shell: str | None = None
        self.awaiting_prompt = False
        """A new program started and has not shown its first prompt yet (`run` waits for it a
        little; a re-attached program shows none by itself)."""
        self._scanner = OscScanner(position=log.end)
        self._runs: dict[str, RunTracker] | None = None
        self._restored = False
        """The pending runs came from a snapshot and no link has shown their program since."""
        self._old_end: int | None = None
        """Where the last program's output ended (its link ended, or the log was restored), until
        the next link says whether it is the same program: a new one's first bytes may come first."""

    def output(self, data: bytes) -> tuple[int, list[RunResult]]:
        """A plain chunk: where it landed, and the runs it completed."""
        position = self.log.append(data)
        return position, self._scan(data, position)

    def output_at(self, mark: PeerMark, data: bytes) -> tuple[int, bytes, list[RunResult]]:
        """A numbered chunk: where its new bytes landed, the new bytes, and the runs they completed."""
        position, new = self.log.append_at(mark, data)
        return position, new, self._scan(new, position) if new else []

    def start_run(self, command: str, *, nonce: str | None = None) -> tuple[bytes, RunTracker]:
        """The line to type for `command` and the tracker that will hold its result.

        Register before sending, so a fast command's marks are never missed.
        """
        nonce = nonce if nonce is not None else new_nonce()
        line = run_line(command, nonce)
        if self._runs is None:
            self._runs = {}
        while len(self._runs) >= MAX_PENDING_RUNS:
            del self._runs[next(iter(self._runs))]
        tracker = RunTracker(nonce, sent_at=self.log.end)
        self._runs[nonce] = tracker
        return line, tracker

    def forget_run(self, nonce: str) -> None:
        """Stop tracking a run (its caller gave up on it)."""
        if self._runs is not None:
            self._runs.pop(nonce, None)

    def lose_runs(self, why: str, *, restored_why: str | None = None) -> list[RunResult]:
        """Every run still waiting, given up: the program that would have finished it is gone.

        `restored_why` is the reason given instead when the runs came from a snapshot and no
        link showed their program since (it was replaced across tether's restart)."""
        runs, self._runs = self._runs or {}, None
        if self._restored and restored_why is not None:
            why = restored_why
        self._restored = False
        end = self.log.end if self._old_end is None else min(self.log.end, self._old_end)
        return [
            RunResult(nonce, None, start, max(start, end), tracker.started_at is not None, lost=why)
            for nonce, tracker in runs.items()
            for start in (tracker.started_at if tracker.started_at is not None else tracker.sent_at,)
        ]

    def pending_runs(self) -> tuple[PendingRun, ...]:
        """The runs waiting for their end mark, as a snapshot keeps them (oldest first)."""
        if not self._runs:
            return ()
        return tuple(PendingRun(t.nonce, t.sent_at, t.started_at) for t in self._runs.values())

    def restore_runs(self, pending: Iterable[PendingRun]) -> list[RunResult]:
        """Wait again for the runs a snapshot kept; returns those whose end mark the restored log
        already holds (written down after the snapshot that still had them pending).

        Their marks are looked for once in the log from where each was typed; from then on, in
        the output that arrives, as for any run. Until a link shows the same program again they
        count as restored (`lose_runs`' `restored_why`).
        """
        trackers = [RunTracker(run.nonce, run.sent_at, run.started_at) for run in pending]
        if not trackers:
            return []
        if self._runs is None:
            self._runs = {}
        for tracker in trackers[-MAX_PENDING_RUNS:]:
            self._runs[tracker.nonce] = tracker
        self._restored = True
        self._old_end = self.log.end
        return self._rescan(min(t.started_at if t.started_at is not None else t.sent_at for t in trackers))

    def _rescan(self, since: int) -> list[RunResult]:
        """Feed the kept log from `since` to the runs waiting (not to the prompt tracking: the
        shell that printed those prompts may be gone)."""
        log = self.log
        scanner = OscScanner(position=max(since, log.start))
        cursor = scanner.position
        done: list[RunResult] = []
        while cursor < log.readable_end and self._runs:
            read = log.read(cursor, 1 << 16)
            for piece in read.pieces():
                if isinstance(piece, tuple):
                    _, found = scanner.feed(piece[1], at=piece[0])
                    if found:
                        done += self._observe(found)
            if read.next <= cursor:
                break
            cursor = read.next
        return done

    def link_ended(self) -> None:
        """The link is gone: until the next one says whether its program is the same, no shell is
        known (the next link's own prompt may come before that)."""
        self._previous_shell, self.shell = self.shell, None
        self._old_end = self.log.end

    def reattached(self) -> None:
        """The new link carries the same program: it keeps the shell it had, and runs restored
        from a snapshot are live runs again (`lose_runs`)."""
        if self.shell is None:
            self.shell = self._previous_shell
        self._previous_shell = None
        self._restored = False
        self._old_end = None

    def program_replaced(self) -> None:
        """A new program took the session over: `run` waits for its first prompt (unless it
        already showed one on this link)."""
        self._previous_shell = None
        self._old_end = None
        self.awaiting_prompt = self.shell is None

    def at_idle_prompt(self, window: int = IDLE_PROMPT_WINDOW) -> bool:
        """Whether the log ends at tether's prompt with nothing started after it: the last
        `window` bytes hold a prompt mark, and after it no gap, no run and no line ending
        (what a command typed and entered would echo)."""
        log = self.log
        start = max(log.start, log.end - window)
        if start >= log.end:
            return False
        data = bytearray()
        for piece in log.read(start, window).pieces():
            if isinstance(piece, Loss):  # what came before a gap may have been another program's
                data.clear()
            else:
                data += piece[1]
        at = data.rfind(_PROMPT_PREFIX)
        if at < 0 or data.find(b"tether-shell=", at) < 0:
            return False
        after = bytes(data[at:])
        after = after[after.find(b"\x07") + 1 :]
        return b"\n" not in after and _RUN_START not in after

    def _scan(self, data: bytes, position: int) -> list[RunResult]:
        _, found = self._scanner.feed(data, at=position)
        if not found:
            return []
        self._note_prompt(found)
        return self._observe(found)

    def _observe(self, found: list[Found]) -> list[RunResult]:
        if not self._runs:
            return []
        done = []
        for nonce, tracker in list(self._runs.items()):
            result = tracker.observe(found)
            if result is not None:
                done.append(result)
                del self._runs[nonce]
        return done

    def _note_prompt(self, found: list[Found]) -> None:
        for item in found:
            mark = item.event
            if isinstance(mark, ShellMark) and mark.kind == "A" and mark.shell:
                self.shell = mark.shell
                self.awaiting_prompt = False


@final
@attrs.frozen(kw_only=True)
class WaitResult:
    """How a `wait` ended."""

    satisfied: bool
    """True: the condition held (matched, went quiet, connected). False: the time budget ran out."""
    cursor: int
    """Where to read or wait from next: after the match, or how far the output was read."""
    match_start: int | None = None
    match_stop: int | None = None
    """The log range of the match (pattern waits)."""
    match: str = ""
    """The matched text (decoded as UTF-8 with replacement)."""
    losses: tuple[Loss, ...] = ()
    """Losses met on the way: the pattern may have been inside one."""
    status: SessionStatus = SessionStatus.CONNECTING


@final
@attrs.frozen(kw_only=True)
class RunOutcome:
    """What `run` (or `wait_run`) says."""

    token: str
    """The run's nonce: wait on it again if `done` is False."""
    done: bool
    exit_status: int | None = None
    output_start: int = 0
    output_stop: int = 0
    """``[output_start, output_stop)``: the command's output in the session's log."""
    started: bool = True
    lost: str | None = None
    """Why the run can never finish, when its program ended or was replaced before its end mark
    (`done` is then True, `exit_status` None, and the range is the output it had printed)."""


def _offset(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 0:
        raise ConfigError(attribute.name, f"must be a log position >= 0, got {value}")


def _nonce(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not valid_nonce(value):
        raise ConfigError(attribute.name, f"must be 8-64 lowercase hex digits, got {value!r}")


@final
@attrs.frozen
class PendingRun:
    """A run waiting for its end mark, as a snapshot keeps it: its nonce and where it lies in the
    log. Never the command: it may hold a secret, and finishing the run does not need it."""

    nonce: str = attrs.field(validator=_nonce)
    sent_at: int = attrs.field(validator=_offset)
    """The log position when its line was typed."""
    started_at: int | None = attrs.field(default=None, validator=_offset)
    """Just past its C mark (where its output starts), once seen."""


@final
@attrs.frozen(kw_only=True)
class SavedRuns:
    """The runs of one session a restart must not forget: those still waiting for their end mark,
    and those finished whose outcome no `wait_run` has collected yet (oldest first)."""

    pending: tuple[PendingRun, ...] = ()
    finished: tuple[RunResult, ...] = ()
