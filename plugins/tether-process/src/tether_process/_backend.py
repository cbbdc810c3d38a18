"""`ProcessBackend`: backend ``process`` — open a link per connect mode, close it for sure.

FRESH starts the spec's program; RESTART starts it again in the preserved cwd
with the preserved env (and types the last command again if asked); REATTACH
attaches a new tmux client to the program that kept running (persist = tmux).
A fresh or restarted program replaces the tmux session the state names, so a
session never has two programs.

When does closing a link end a tmux program? A crash of tether runs no code,
so the program survives it. A link that ended (client dropped, program
exited, probe failed), a forced reconnect, or a link torn down by
cancellation (the supervisor shutting down) leaves the program for
session-restore. Only ``unregister`` (``LinkRequest.session_ending``) ends
it. See `_ends_program`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import final

import attrs
import trio

from tether import (
    ConfigError,
    ConnectMode,
    DisconnectReason,
    Feature,
    LinkError,
    LinkRequest,
    ReattachUnavailableError,
    SessionSpec,
)

from . import _panelog, _tmux
from ._integration import integrate, integration_blocked, shell_kind
from ._link import ProcessLink
from ._options import ProcessOptions
from ._pty import PtyProcess, check_startable, spawn_on_pty, terminate
from ._survivor import end_survivor, find_survivor
from ._tmux import TmuxHandle

DEFAULT_STRATEGIES: Mapping[DisconnectReason, str] = {
    DisconnectReason.PROCESS_EXIT: "process-restart",
    DisconnectReason.SPAWN_FAILED: "process-restart",
    # force-reconnect tries session-restore first (tmux: same program, nothing lost) and falls
    # back to process-restart (persist = none, or the tmux session is gone).
    DisconnectReason.REMOTE_CLOSED: "force-reconnect",
    DisconnectReason.HEALTH_CHECK: "force-reconnect",
    DisconnectReason.TIMEOUT: "force-reconnect",
    DisconnectReason.BACKEND_ERROR: "force-reconnect",
    DisconnectReason.NETWORK: "force-reconnect",
    DisconnectReason.FORCED: "force-reconnect",
    DisconnectReason.SUPERVISOR_RESTART: "force-reconnect",
}

_DROPPED_ENV = ("TMUX", "TMUX_PANE")
"""Never inherited: a program that thinks it is inside our daemon's tmux misroutes its reports."""


def default_runtime_dir() -> str:
    """Where sockets and integration files live: per user, private."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return os.path.join(base, "tether-process")
    return os.path.join("/tmp", f"tether-process-{os.getuid()}")


@attrs.frozen
class _Plan:
    """What to start, resolved from the options, the mode and the preserved state."""

    argv: tuple[str, ...]
    cwd: str | None
    env: dict[str, str]
    """The program's whole environment."""
    user_env: dict[str, str]
    """What the spec and tether set on top of it: the part that is preserved."""
    last_command: str | None
    rerun: str | None


@final
class ProcessBackend:
    """Backend ``process``: a local program on a pseudo-terminal, optionally inside tmux."""

    name = "process"
    plugin_api = 1
    features = frozenset({Feature.REATTACH, Feature.RESTORE_STATE})
    default_strategies: Mapping[DisconnectReason, str] = DEFAULT_STRATEGIES

    def __init__(self, runtime_dir: str | None = None) -> None:
        self._runtime_dir = runtime_dir
        self.links: dict[str, ProcessLink] = {}
        """The live link of each session, for callers that want `ProcessLink.set_env` or the pid."""
        self._programs: dict[str, int] = {}
        """The program each session ran last in this process: a re-attach to it is no survivor."""

    # -- the contract -------------------------------------------------------------------------

    def validate(self, spec: SessionSpec) -> None:
        options = ProcessOptions.from_options(spec.options)
        if options.persist == "tmux" and _tmux.tmux_binary() is None:
            raise ConfigError("persist", "tmux is not installed (needed for persist = \"tmux\")")

    def target(self, spec: SessionSpec) -> str:
        return "localhost"

    def notes(self, spec: SessionSpec) -> list[tuple[str, str]]:
        """What works, but not as a user may expect (`tether check` prints these)."""
        options = ProcessOptions.from_options(spec.options)
        found: list[tuple[str, str]] = []
        if options.under_sh:
            found.append((
                "command",
                "runs under /bin/sh -c: a shell it starts gets no tether integration (cwd only from /proc, "
                "no rerun_last_command, no run); use argv = [\"bash\"] or a plain command such as \"bash\"",
            ))
        elif options.shell_integration and (blocked := integration_blocked(options.argv)) is not None:
            where = "command" if "command" in spec.options else "argv"
            found.append((where, f"{blocked}: no tether integration (cwd only from /proc, no rerun, no run)"))
        elif shell_kind(options.argv) is None and options.rerun_last_command:
            found.append(("rerun_last_command", "has no effect: only bash and zsh report their commands"))
        if options.shell_integration is False and options.rerun_last_command:
            found.append(("rerun_last_command", "has no effect with shell_integration = false"))
        return found

    @asynccontextmanager
    async def open_link(self, request: LinkRequest) -> AsyncIterator[ProcessLink]:
        options = ProcessOptions.from_options(request.spec.options)
        plan = self._plan(request, options)
        tmux: TmuxHandle | None = None
        created: TmuxHandle | None = None
        child: PtyProcess | None = None
        link: ProcessLink | None = None
        yielded = ended_on_purpose = False
        try:
            with trio.fail_at(request.deadline):
                if request.mode is not ConnectMode.REATTACH:
                    await _end_survivor(request)
                if options.persist == "tmux":
                    try:
                        tmux, created = await self._prepare_tmux(request, options, plan)
                        program_pid = await _tmux.pane_pid(tmux, plan.env)
                    except OSError as exc:
                        raise _tmux_failure(exc) from exc
                    child = await spawn_on_pty(
                        _tmux.attach_argv(tmux), cwd=None, env=_tmux.client_env(plan.env),
                        rows=options.rows, cols=options.cols,
                    )
                    if program_pid is None:
                        raise _tmux.reattach_error(tmux)
                    if self._programs.get(request.spec.id) != program_pid:
                        _note_adopted(request, program_pid)
                else:
                    if request.mode is ConnectMode.REATTACH:
                        raise ReattachUnavailableError(
                            'persist = "none": the program ended with its link; nothing to re-attach to'
                        )
                    child = await spawn_on_pty(
                        plan.argv, cwd=plan.cwd, env=plan.env, rows=options.rows, cols=options.cols
                    )
                    program_pid = child.pid
            self._programs[request.spec.id] = program_pid
            state = request.state if request.mode is ConnectMode.REATTACH else None
            link = ProcessLink(
                child=child, request=request, program_pid=program_pid,
                cwd=state.cwd if state is not None else plan.cwd, env=plan.user_env,
                last_command=plan.last_command, tmux=tmux, tool_env=plan.env,
                pane_from=_pane_start(request, tmux),
            )
            if plan.rerun:
                await link.send(plan.rerun.encode() + b"\r")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.run_reader)
                nursery.start_soon(link.run_pane_reader)
                nursery.start_soon(link.run_waiter)
                self.links[request.spec.id] = link
                yielded = True
                try:
                    yield link
                    ended_on_purpose = _ends_program(request, link)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            if link is not None and self.links.get(request.spec.id) is link:
                del self.links[request.spec.id]
            if child is not None:
                await terminate(child)
            if ended_on_purpose:
                self._programs.pop(request.spec.id, None)  # that program is gone for good
            doomed = tmux if ended_on_purpose else (created if not yielded else None)
            if doomed is not None:
                await _tmux.kill_server(doomed, plan.env, link.pid if link is not None else None)

    # -- planning ------------------------------------------------------------------------------

    def runtime_dir(self) -> str:
        """The private directory for tmux sockets and integration files (created 0700)."""
        if self._runtime_dir is None:
            self._runtime_dir = default_runtime_dir()
        return _tmux.private_dir(self._runtime_dir)

    def _plan(self, request: LinkRequest, options: ProcessOptions) -> _Plan:
        state = request.state if request.mode is not ConnectMode.FRESH else None
        cwd = options.cwd
        user_env = dict(options.env)
        last_command = rerun = None
        if state is not None:
            if state.cwd and os.path.isdir(state.cwd):
                cwd = state.cwd  # a preserved cwd that has since vanished falls back to the spec's
            user_env.update(state.env)
            last_command = state.last_command
            if request.mode is ConnectMode.RESTART and options.rerun_last_command and last_command:
                rerun = last_command
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env["TERM"] = options.term
        env.update(user_env)
        argv = options.argv
        if options.shell_integration and shell_kind(argv) is not None:
            argv = integrate(argv, env, _tmux.private_dir(os.path.join(self.runtime_dir(), "shell")))
        return _Plan(argv=argv, cwd=cwd, env=env, user_env=user_env, last_command=last_command, rerun=rerun)

    async def _prepare_tmux(
        self, request: LinkRequest, options: ProcessOptions, plan: _Plan
    ) -> tuple[TmuxHandle, TmuxHandle | None]:
        """The handle to attach to, and the one this call created (to end if the connect fails)."""
        old = TmuxHandle.decode(request.state.handle if request.state is not None else None)
        if request.mode is ConnectMode.REATTACH:
            if old is None:
                raise ReattachUnavailableError("no tmux session was preserved")
            if not _tmux.socket_is_private(old.socket):
                raise ReattachUnavailableError(f"refusing {old.socket}: its directory is not private to us")
            if not await _tmux.has_session(old, plan.env):
                raise _tmux.reattach_error(old)
            return old, None
        check_startable(plan.argv, cwd=plan.cwd, env=plan.env)  # tmux would only report an exit
        if old is not None and _tmux.socket_is_private(old.socket):
            await _tmux.kill_server(old, plan.env)  # the new program replaces it
        sockets = _tmux.private_dir(os.path.join(self.runtime_dir(), "tmux"))
        logs = _tmux.private_dir(os.path.join(self.runtime_dir(), "panelog"))
        log = _panelog.create(logs, request.spec.id, options.pane_log_bytes)
        handle = _tmux.new_handle(sockets, request.spec.id, log)
        try:
            await _tmux.new_session(
                handle, plan.argv, cwd=plan.cwd, env=plan.env, rows=options.rows, cols=options.cols,
                history_lines=options.history_lines,
            )
        except BaseException:
            if handle.log is not None:
                handle.log.remove()
            raise
        return handle, handle


async def _end_survivor(request: LinkRequest) -> None:
    """A program from before tether restarted still runs (it ignored SIGHUP): end it, never run two."""
    survivor = find_survivor(request.last_state)
    if survivor is None:
        return
    await end_survivor(survivor)
    request.report_survivor(
        survivor.pid, False, "the program from before the restart was still running; ended its process group"
    )


def _note_adopted(request: LinkRequest, program_pid: int) -> None:
    """Re-attached to the program recorded before the restart: tell the engine it was adopted."""
    survivor = find_survivor(request.last_state)
    if request.mode is ConnectMode.REATTACH and survivor is not None and survivor.pid == program_pid:
        request.report_survivor(program_pid, True, "re-attached to the program tmux kept running")


def _pane_start(request: LinkRequest, tmux: TmuxHandle | None) -> int | None:
    """Where to start reading the pane log: where the session's output log stands in it, else
    (a re-attach with nothing to resume from) its end, else (a new program) its start."""
    if tmux is None or tmux.log is None:
        return None
    resume = request.resume
    if resume is not None and resume.stream == tmux.log.stream:
        return min(resume.offset, tmux.log.end())
    if request.mode is ConnectMode.REATTACH:
        return tmux.log.end()
    return 0


def _tmux_failure(exc: OSError) -> LinkError:
    return LinkError(f"cannot run tmux: {exc.strerror or exc}", reason=DisconnectReason.SPAWN_FAILED)


def _ends_program(request: LinkRequest, link: ProcessLink) -> bool:
    """Whether leaving this (tmux) link on a normal exit should end its program.

    Exactly when the session is being unregistered (``request.session_ending``).
    A forced reconnect, a dropped or failed link and a supervisor shutdown keep
    the program, so session-restore re-attaches to it; a crash runs no code at all.
    """
    return link.tmux is not None and request.session_ending()
