"""What each tool does, against tether's client (`tether.DaemonClient`), inside its call's deadline.

Every tool about one session answers with the session's `status` and a
`cursor`, and, when the caller passed a cursor, `since_cursor`: what the
session went through since (`tether_mcp._continuity`). A cursor only moves
past output the result showed: read_output moves it to what it read,
run_command past the command's output; the others hand back the caller's
position (or, without one, the end of the output before the call), with
what the session went through brought up to date.

The session's state is read after the tool's own request, so `since_cursor`
covers everything up to the answer, and the new cursor's knowledge starts
where that report ends: a drop is reported once, never lost between calls.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Concatenate, ParamSpec, TypeVar, final

import attrs
import trio

import tether
from tether import (
    CursorError,
    DaemonClient,
    LinkError,
    LogRead,
    Loss,
    RunNotFoundError,
    RunOutcome,
    RunResult,
    SessionState,
    SessionStatus,
    WaitResult,
)

from . import _continuity as continuity
from ._access import TetherAccess
from ._cursor import Cursor, RunToken
from ._secrets import SecretBook, resolve_reference
from ._text import Format, Rendered, render
from ._tooldefs import (
    CloseSessionArgs,
    InterruptArgs,
    ListSessionsArgs,
    OpenSessionArgs,
    ReadOutputArgs,
    ReconnectArgs,
    ResizeArgs,
    RunCommandArgs,
    SendInputArgs,
    WaitCommandArgs,
    WaitForArgs,
)

T = TypeVar("T")
P = ParamSpec("P")

PROMPT_WAIT = 10.0
"""A shell gets this long to show a prompt before `run` gives up (one just started shows its first)."""
PROMPT_TAIL = 4096
"""How much of the output's end is searched for tether's prompt (a prompt line is shorter)."""
SCAN_CHUNK = 1024 * 1024
ANY_OUTPUT = r"[\s\S]"
_DONE_MARK = r"\x1b\]133;D[^\x07\x1b]*tether="
"""The start of a run's D mark, up to its nonce (`tether.encode_shell_mark`)."""
_PROMPT_BYTES = re.compile(re.escape(tether.encode_shell_mark("A")[:-1]) + rb";[^\x07\x1b]*tether-shell=")
"""tether's prompt mark (OSC 133;A with ``tether-shell=``), up to the shell's name."""
_COMMAND_START = tether.encode_shell_mark("C")[:-1]


class NotRunError(tether.TetherError):
    """run_command could not start the command (the message says why)."""


@final
@attrs.frozen
class Call:
    """One tool call: its deadline (trio time) and how much of it to keep for answering."""

    deadline: float
    margin: float

    def remaining(self) -> float:
        """Seconds the call's waits may still take (what is left before its deadline, less the margin)."""
        return max(0.0, self.deadline - self.margin - trio.current_time())


@attrs.frozen
class _Seen:
    state: SessionState
    log: LogRead
    """A one-byte read: its `log_id` and `end` (where new output will land)."""
    at_ms: int


def _now_ms() -> int:
    return int(time.time() * 1000)


@final
class Tools:
    def __init__(self, access: TetherAccess, secrets: SecretBook) -> None:
        self.access = access
        self.secrets = secrets

    # -- plumbing ---------------------------------------------------------------------------------

    async def _ask(self, fn: Callable[[DaemonClient], Awaitable[T]], *, retry: bool, what: str) -> T:
        return await self.access.call(fn, retry=retry, what=what)

    async def _via(self, what: str, retry: bool, method: Callable[Concatenate[DaemonClient, P], Awaitable[T]],
                   /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`method` of the client with these arguments (bound now: safe inside a loop)."""
        return await self.access.call(lambda c: method(c, *args, **kwargs), retry=retry, what=what)

    async def _state(self, sid: str) -> SessionState:
        page = await self._ask(lambda c: c.status_page(sessions=[sid]), retry=True, what="report the session")
        return page.sessions[0]

    async def _seen(self, sid: str) -> _Seen:
        """The session's state and its log's identity and end, read together."""
        box: dict[str, Any] = {}

        async def state() -> None:
            box["state"] = await self._state(sid)

        async def end() -> None:
            box["log"] = await self._ask(lambda c: c.read(sid, None, 1), retry=True, what="read the output")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(state)
            nursery.start_soon(end)
        return _Seen(box["state"], box["log"], _now_ms())

    def _cursor(self, seen: _Seen, position: int) -> Cursor:
        return Cursor(seen.log.log_id, position, seen.state.attempts_total, seen.at_ms)

    def _session_fields(self, seen: _Seen, given: Cursor | None, position: int) -> dict[str, Any]:
        """What every result about one session says: its status, a cursor, and what happened since the caller's."""
        fields: dict[str, Any] = {
            "session_id": seen.state.id,
            "status": seen.state.status.value,
            "cursor": self._cursor(seen, position).encode(),
        }
        if given is not None:
            fields["since_cursor"] = continuity.since(seen.state, given, seen.log.log_id).to_dict()
        return fields

    def _position(self, given: Cursor | None, seen_before: _Seen) -> int:
        """The caller's position when it still names this log, else the end before the call."""
        if given is not None and given.log == seen_before.log.log_id:
            return given.position
        return seen_before.log.end

    def _render(self, read: LogRead, fmt: str) -> Rendered:
        return render(read.pieces(), Format(fmt), more_may_follow=True, may_hold_all=read.next >= read.end,
                      scrub=self.secrets.scrub_bytes)

    # -- the tools -------------------------------------------------------------------------------

    async def list_sessions(self, a: ListSessionsArgs, call: Call) -> dict[str, Any]:
        async def fetch(client: DaemonClient) -> list[SessionState]:
            states: list[SessionState] = []
            async for state in client.sessions(statuses=list(a.status), page_size=min(a.limit + 1, 1000)):
                states.append(state)
                if len(states) > a.limit:
                    break
            return states

        states = await self._ask(fetch, retry=True, what="list the sessions")
        more = len(states) > a.limit
        states = states[: a.limit]
        logs: dict[str, LogRead] = {}
        limiter = trio.CapacityLimiter(8)

        async def end(sid: str) -> None:
            async with limiter:
                with contextlib.suppress(tether.SessionNotFoundError):  # closed meanwhile
                    logs[sid] = await self._ask(lambda c: c.read(sid, None, 1), retry=True, what="read the output")

        async with trio.open_nursery() as nursery:
            for state in states:
                nursery.start_soon(end, state.id)
        at = _now_ms()
        sessions = [_describe(state, logs.get(state.id), at) for state in states]
        return {"sessions": sessions, "more": more, "tether": self._where()}

    def _where(self) -> dict[str, Any]:
        return {"mode": self.access.mode, "at": self.access.where}

    async def open_session(self, a: OpenSessionArgs, call: Call) -> dict[str, Any]:
        self.secrets.learn_table(a.session)
        await self._ask(lambda c: c.register(a.session), retry=False, what="open the session")
        sid = str(a.session["id"])
        waited: WaitResult | None = None
        if a.wait_connected:
            budget = call.remaining()
            waited = await self._ask(lambda c: c.wait(sid, connected=True, budget=budget), retry=True,
                                     what="wait for the connection")
        seen = await self._seen(sid)
        start = seen.log.since  # a read from None starts at the oldest output kept
        result = {**self._session_fields(seen, None, start), "session": _describe(seen.state, seen.log, seen.at_ms)}
        if waited is not None and not waited.satisfied:
            result["note"] = (f"not connected yet ({seen.state.status.value}); tether keeps trying: wait_for "
                              "connected, or list_sessions to see why")
        return result

    async def close_session(self, a: CloseSessionArgs, call: Call) -> dict[str, Any]:
        await self._ask(lambda c: c.unregister(a.session_id), retry=False, what="close the session")
        return {"session_id": a.session_id, "closed": True}

    async def send_input(self, a: SendInputArgs, call: Call) -> dict[str, Any]:
        given = Cursor.decode(a.cursor) if a.cursor else None
        before = await self._seen(a.session_id)
        data: bytes | None = None
        text: str | None = None
        keys: list[str] | None = None
        if a.secret is not None:
            value = resolve_reference(a.secret)
            self.secrets.add(value)
            data = value.encode("utf-8") + (b"\r" if a.enter else b"")
        elif a.text is not None:
            text = a.text + ("\r" if a.enter else "")
        else:
            keys = [*(a.keys or ()), *(["enter"] if a.enter else [])]
        sent = await self._ask(lambda c: c.send(a.session_id, data, text=text, keys=keys), retry=False,
                               what="send the input")
        seen = await self._seen(a.session_id)
        return {**self._session_fields(seen, given, self._position(given, before)), "sent_bytes": sent}

    async def interrupt(self, a: InterruptArgs, call: Call) -> dict[str, Any]:
        given = Cursor.decode(a.cursor) if a.cursor else None
        before = await self._seen(a.session_id)
        await self._ask(lambda c: c.interrupt(a.session_id), retry=False, what="interrupt")
        seen = await self._seen(a.session_id)
        return {**self._session_fields(seen, given, self._position(given, before)), "interrupted": True}

    async def resize(self, a: ResizeArgs, call: Call) -> dict[str, Any]:
        given = Cursor.decode(a.cursor) if a.cursor else None
        before = await self._seen(a.session_id)
        await self._ask(lambda c: c.resize(a.session_id, a.rows, a.cols), retry=True, what="resize")
        seen = await self._seen(a.session_id)
        return {**self._session_fields(seen, given, self._position(given, before)), "rows": a.rows, "cols": a.cols}

    async def read_output(self, a: ReadOutputArgs, call: Call) -> dict[str, Any]:
        given = Cursor.decode(a.cursor) if a.cursor else None
        sid = a.session_id
        if a.wait > 0 and given is not None:
            budget = min(a.wait, call.remaining())
            position = given.position
            with contextlib.suppress(CursorError):  # another log: the read below says so
                await self._ask(lambda c: c.wait(sid, pattern=ANY_OUTPUT, since=position, budget=budget),
                                retry=True, what="wait for output")
        read = await self._read(sid, given, a.max_bytes, call)
        seen = await self._seen(sid)
        shown = self._render(read, a.format)
        next_position = read.next - shown.held_back
        result = self._session_fields(seen, given, next_position)
        result.update(_output_fields(shown, a.format))
        result.update({
            "range": [read.since, next_position],
            "more": next_position < read.end,
            "losses": [_loss(loss) for loss in read.losses],
        })
        return result

    async def _read(self, sid: str, given: Cursor | None, max_bytes: int, call: Call) -> LogRead:
        """From the caller's cursor; from the oldest output kept when it has none, or when its log is
        not the session's log any more (the result's since_cursor says replaced)."""
        if given is not None and await self._until_readable(sid, given, call):
            read = await self._via("read the output", True, DaemonClient.read, sid, given.position, max_bytes)
            if read.log_id == given.log:
                return read
        return await self._via("read the output", True, DaemonClient.read, sid, None, max_bytes)

    async def _until_readable(self, sid: str, at: Cursor, call: Call) -> bool:
        """Wait until the session's log can serve `at` (False: it is another log now).

        Right after tether restarted, output past the log's last reservation becomes readable once
        the reservation is written down (the store's next flush, half a second by default), so a
        cursor handed out then may be briefly ahead of what a read can serve.
        """
        delay = 0.02
        while True:
            head = await self._via("read the output", True, DaemonClient.read, sid, None, 1)
            if head.log_id != at.log:
                return False
            if at.position <= max(head.end, head.since):
                return True
            if call.remaining() < delay:
                raise CursorError(f"cursor position {at.position} is ahead of what the session's log serves yet "
                                  f"({head.end}): tether is writing it down; try again in a moment")
            await trio.sleep(delay)  # nothing wakes a reader when a reservation is written down
            delay = min(0.25, delay * 2)

    async def wait_for(self, a: WaitForArgs, call: Call) -> dict[str, Any]:
        given = Cursor.decode(a.cursor) if a.cursor else None
        sid = a.session_id
        before = await self._seen(sid)
        start = self._position(given, before)
        if a.pattern is not None:
            await self._until_readable(sid, Cursor(before.log.log_id, start, 0, 0), call)
        budget = call.remaining() if a.timeout is None else min(a.timeout, call.remaining())
        if a.pattern is not None:
            pattern = a.pattern
            waited = await self._ask(lambda c: c.wait(sid, pattern=pattern, since=start, budget=budget),
                                     retry=True, what="wait for the pattern")
        elif a.quiet is not None:
            quiet = a.quiet
            waited = await self._ask(lambda c: c.wait(sid, quiet=quiet, budget=budget), retry=True,
                                     what="wait for quiet")
        else:
            waited = await self._ask(lambda c: c.wait(sid, connected=True, budget=budget), retry=True,
                                     what="wait for the connection")
        seen = await self._seen(sid)
        result = self._session_fields(seen, given, start)
        result["satisfied"] = waited.satisfied
        if a.pattern is not None:
            if waited.satisfied and waited.match_start is not None and waited.match_stop is not None:
                result["match"] = self.secrets.scrub(waited.match)
                result["match_range"] = [waited.match_start, waited.match_stop]
                result["after_match"] = self._cursor(seen, waited.match_stop).encode()
            else:
                result["searched_to"] = waited.cursor
            if waited.losses:
                result["losses"] = [_loss(loss) for loss in waited.losses]
        return result

    async def run_command(self, a: RunCommandArgs, call: Call) -> dict[str, Any]:
        given = Cursor.decode(a.cursor) if a.cursor else None
        sid = a.session_id
        before = await self._seen(sid)
        if before.state.status is not SessionStatus.CONNECTED:
            budget = call.remaining()
            await self._ask(lambda c: c.wait(sid, connected=True, budget=budget), retry=True,
                            what="wait for the connection")
            before = await self._seen(sid)
        start_cursor = self._cursor(before, before.log.end)
        outcome = await self._start_run(sid, a.command, call)
        token = RunToken(sid, outcome.token, start_cursor)
        return await self._run_result(token, outcome, given, a.max_output_bytes, a.format, call)

    async def _start_run(self, sid: str, command: str, call: Call) -> RunOutcome:
        """`run`, once the shell showed a prompt: tether drives a shell only after its integration
        reported one on the current link. A shell just started shows its first prompt by itself; one
        re-attached at an idle prompt shows nothing new, so it is asked for one (Enter on an empty
        line) when the log ends at tether's prompt."""
        deadline = trio.current_time() + min(PROMPT_WAIT, call.remaining())
        asked = False
        delay = 0.02
        while True:
            try:
                return await self._via("run the command", False, DaemonClient.run, sid, command,
                                       budget=call.remaining())
            except LinkError as exc:
                if "integration" not in str(exc) or trio.current_time() + delay > deadline:
                    raise NotRunError(_not_run(sid, exc)) from None
            if not asked:
                asked = True
                if await self._at_idle_prompt(sid):
                    await self._via("ask the shell for a prompt", False, DaemonClient.send, sid, b"\r")
            # `run` refuses at once, typing nothing, until the prompt is seen; a pattern wait would not
            # wake for output held back until tether writes its reservation down (see `_until_readable`)
            await trio.sleep(delay)
            delay = min(0.25, delay * 2)

    async def _at_idle_prompt(self, sid: str) -> bool:
        """True when the session's output ends at tether's prompt: no command started after it, no gap."""
        head = await self._via("read the output", True, DaemonClient.read, sid, None, 1)
        tail = await self._via("read the output", True, DaemonClient.read, sid,
                               max(head.since, head.end - PROMPT_TAIL), PROMPT_TAIL)
        data = bytearray()
        for piece in tail.pieces():
            if isinstance(piece, Loss):  # what came before a gap may have been another program's
                data.clear()
            else:
                data += piece[1]
        prompts = list(_PROMPT_BYTES.finditer(data))
        return bool(prompts) and _COMMAND_START not in data[prompts[-1].end():]

    async def wait_command(self, a: WaitCommandArgs, call: Call) -> dict[str, Any]:
        token = RunToken.decode(a.token)
        sid = token.session_id
        budget = call.remaining() if a.timeout is None else min(a.timeout, call.remaining())
        try:
            outcome = await self._ask(lambda c: c.wait_run(sid, token.nonce, budget=0), retry=True,
                                      what="look for the command")
            if not outcome.done:
                seen = await self._seen(sid)
                if continuity.since(seen.state, token.before, seen.log.log_id).link is continuity.Link.REPLACED:
                    return await self._lost(token, seen)
                outcome = await self._ask(lambda c: c.wait_run(sid, token.nonce, budget=budget), retry=True,
                                          what="wait for the command")
        except RunNotFoundError:  # tether restarted (or forgot it): its marks are still in the log
            return await self._recover(token, a, call, budget)
        return await self._run_result(token, outcome, None, a.max_output_bytes, a.format, call)

    async def _recover(self, token: RunToken, a: WaitCommandArgs, call: Call, budget: float) -> dict[str, Any]:
        """The run's outcome from its marks in the log, waiting for them while the shell it runs in lives."""
        sid = token.session_id
        deadline = trio.current_time() + budget
        scanner = tether.OscScanner(position=token.before.position)
        tracker = tether.RunTracker(token.nonce, token.before.position)
        position = token.before.position
        while True:
            if not await self._until_readable(sid, token.before.at(position), call):
                return await self._lost(token, await self._seen(sid))
            read = await self._via("read the output", True, DaemonClient.read, sid, position, SCAN_CHUNK)
            result = _scan(read, scanner, tracker)
            position = read.next
            if result is not None:
                outcome = RunOutcome(token=token.nonce, done=True, exit_status=result.status,
                                     output_start=result.output_start, output_stop=result.output_stop,
                                     started=result.started)
                return await self._run_result(token, outcome, None, a.max_output_bytes, a.format, call)
            if position < read.end:
                continue
            seen = await self._seen(sid)
            if continuity.since(seen.state, token.before, seen.log.log_id).link is continuity.Link.REPLACED:
                return await self._lost(token, seen)
            left = deadline - trio.current_time()
            if left <= 0:
                return await self._run_result(token, RunOutcome(token=token.nonce, done=False), None,
                                              a.max_output_bytes, a.format, call)
            mark = _DONE_MARK + token.nonce
            since = max(token.before.position, position - 256)
            await self._via("wait for the command", True, DaemonClient.wait, sid, pattern=mark, since=since,
                            budget=left)

    async def _lost(self, token: RunToken, seen: _Seen) -> dict[str, Any]:
        report = continuity.since(seen.state, token.before, seen.log.log_id)
        result = self._session_fields(seen, token.before, seen.log.end)
        result.update({
            "done": True, "outcome": "lost", "exit_status": None, "token": token.encode(),
            "note": "the shell this command ran in was replaced before it finished, so the command died with it "
                    f"and its exit status is unknown: {report.detail}",
        })
        return result

    async def _run_result(self, token: RunToken, outcome: RunOutcome, given: Cursor | None, max_bytes: int,
                          fmt: str, call: Call) -> dict[str, Any]:
        sid = token.session_id
        if not outcome.done:
            seen = await self._seen(sid)
            result = self._session_fields(seen, given, given.position if given else token.before.position)
            result.update({
                "done": False, "outcome": "running", "token": token.encode(),
                "note": "still running: call wait_command with this token (it works after restarts too); "
                        "interrupt stops it",
            })
            return result
        if outcome.lost is not None:  # the daemon saw its shell end or be replaced: it can never finish
            return await self._lost(token, await self._seen(sid))
        start, stop = outcome.output_start, outcome.output_stop
        shown_from = max(start, stop - max_bytes)
        pieces: list[tuple[int, bytes] | Loss] = []
        read: LogRead | None = None
        if stop > shown_from and await self._until_readable(sid, token.before.at(stop), call):
            read = await self._ask(lambda c: c.read(sid, shown_from, min(stop - shown_from, SCAN_CHUNK),
                                                    log_id=token.before.log),
                                   retry=True, what="read the command's output")
            pieces = _clip(read.pieces(), shown_from, stop, trim_partial_char=shown_from > start)
        seen = await self._seen(sid)
        rendered = render(pieces, Format(fmt), more_may_follow=False, scrub=self.secrets.scrub_bytes)
        result = self._session_fields(seen, given, stop)
        result.update({
            "done": True, "outcome": "finished", "exit_status": outcome.exit_status,
            "output": rendered.text,
            **{k: v for k, v in _output_fields(rendered, fmt).items() if k != "text"},
            "output_range": [start, stop],
            "output_omitted_bytes": shown_from - start,
            "output_cursor": Cursor(token.before.log, start, token.before.attempts, token.before.seen_at_ms).encode(),
            "losses": [_loss(p) for p in pieces if isinstance(p, Loss)],
        })
        if not outcome.started:
            result["note"] = ("the command's start mark was lost with output nobody saw: its output range runs "
                              "from where it was typed")
        return result

    async def reconnect(self, a: ReconnectArgs, call: Call) -> dict[str, Any]:
        given = Cursor.decode(a.cursor) if a.cursor else None
        sid = a.session_id
        before = await self._seen(sid)
        attempt: tether.Attempt | None = None
        done = False
        with trio.move_on_after(call.remaining()):
            attempt = await self._ask(lambda c: c.force_reconnect(sid, a.strategy, wait=True), retry=False,
                                      what="reconnect")
            done = True
        seen = await self._seen(sid)
        result = self._session_fields(seen, given, self._position(given, before))
        if attempt is not None:
            result["attempt"] = _attempt(attempt)
        elif not done:
            result["note"] = "the attempt has not answered yet; tether goes on: wait_for connected"
        return result


# -- shaping results -----------------------------------------------------------------------------


def _not_run(sid: str, exc: LinkError) -> str:
    text = str(exc)
    if "integration" in text:
        return (f"session {sid!r} has no shell that run_command can drive: it needs bash or zsh with tether's "
                "integration (backend process with command \"bash\" or \"zsh\", ssh whose login shell is one, or "
                "websocket on a Jupyter Server whose terminals run one; shell_integration on), and its prompt did "
                "not appear; use send_input and read_output instead")
    return f"cannot run the command: {text}"


def _output_fields(shown: Rendered, fmt: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"format": fmt, "encoding": shown.encoding, "exact": shown.exact, "text": shown.text}
    if shown.invalid_bytes:
        fields["invalid_bytes"] = shown.invalid_bytes
    if shown.redacted:
        fields["redacted"] = shown.redacted
    return fields


def _loss(loss: Loss) -> dict[str, Any]:
    return {"start": loss.start, "stop": loss.stop, "kind": loss.kind.value, "size": loss.size}


def _attempt(attempt: tether.Attempt) -> dict[str, Any]:
    return {
        "success": attempt.success,
        "strategy": attempt.used_strategy or attempt.strategy,
        "same_program": attempt.same_program,
        "duration": round(attempt.duration, 3),
        "error": attempt.error,
        "reason": attempt.reason.value if attempt.reason is not None else None,
    }


def _describe(state: SessionState, log: LogRead | None, at_ms: int) -> dict[str, Any]:
    preserved = state.preserved
    extra = dict(preserved.extra) if preserved is not None else {}
    described: dict[str, Any] = {
        "id": state.id,
        "status": state.status.value,
        "backend": state.backend,
        "target": state.target,
        "cwd": preserved.cwd if preserved is not None else None,
        "shell": extra.get("shell"),
        "pid": int(extra["pid"]) if str(extra.get("pid", "")).isdigit() else None,
        "connected_at": state.connected_at,
        "reconnects": state.episodes_recovered,
        "recent_reconnects": list(continuity.recent(state)),
    }
    if state.last_disconnect is not None:
        drop = state.last_disconnect
        described["last_drop"] = {"reason": drop.reason.value, "detail": drop.detail, "exit_code": drop.exit_code,
                                  "signal": drop.signal}
    if state.failure is not None:
        described["failure"] = {"reason": state.failure.reason.value, "detail": state.failure.detail}
    if log is not None:
        described["cursor"] = Cursor(log.log_id, log.end, state.attempts_total, at_ms).encode()
        described["output_end"] = log.end
    return described


def _clip(pieces: Iterable[tuple[int, bytes] | Loss], low: int, high: int, *,
          trim_partial_char: bool) -> list[tuple[int, bytes] | Loss]:
    """The pieces inside ``[low, high)``; with `trim_partial_char`, without a UTF-8 character cut at `low`."""
    out: list[tuple[int, bytes] | Loss] = []
    for piece in pieces:
        if isinstance(piece, Loss):
            if piece.stop > low and piece.start < high:
                out.append(piece.clip(low, high))
            continue
        position, data = piece
        begin, end = max(position, low), min(position + len(data), high)
        if begin < end:
            out.append((begin, data[begin - position : end - position]))
    if trim_partial_char and out and not isinstance(out[0], Loss):
        position, data = out[0]
        cut = 0
        while cut < min(3, len(data)) and data[cut] & 0xC0 == 0x80:
            cut += 1
        out[0] = (position + cut, data[cut:])
    return out


def _scan(read: LogRead, scanner: tether.OscScanner, tracker: tether.RunTracker) -> RunResult | None:
    for piece in read.pieces():
        if isinstance(piece, Loss):
            continue
        position, data = piece
        _, found = scanner.feed(data, at=position)
        result = tracker.observe(found)
        if result is not None:
            return result
    return None


def tool_table(tools: Tools) -> dict[str, Callable[[Any, Call], Awaitable[dict[str, Any]]]]:
    return {
        "list_sessions": tools.list_sessions,
        "open_session": tools.open_session,
        "close_session": tools.close_session,
        "send_input": tools.send_input,
        "interrupt": tools.interrupt,
        "read_output": tools.read_output,
        "wait_for": tools.wait_for,
        "run_command": tools.run_command,
        "wait_command": tools.wait_command,
        "reconnect": tools.reconnect,
        "resize": tools.resize,
    }

