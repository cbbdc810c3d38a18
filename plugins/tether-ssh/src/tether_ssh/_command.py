"""The ssh command line and the remote command it runs. Pure: strings in, strings out.

How a connect is known to be up without reading prompts: the remote command
first prints a marker carrying a random nonce (``RS TETHER-READY-<nonce> RS``)
and only then execs the shell or ``tmux attach``. The marker can only appear
after authentication succeeded and the remote side started our command, and
the nonce means no earlier output or other session can fake it. A re-attach
whose tmux session is gone prints a GONE marker instead, so "nothing to
re-attach to" is an answer, not a timeout.
"""

from __future__ import annotations

import hashlib
import math
import shlex
from collections.abc import Mapping

import attrs

from tether import ConnectMode, PeerMark, bash_rcfile, zsh_dotfiles

from . import _panelog
from ._options import SshOptions

_RS = "\\036"
"""ASCII record separator (printf octal escape): invisible and never typed by a user."""

OSC7_HOOK = (
    'if [ -n "$TMUX" ]; then '
    "printf '\\033Ptmux;\\033\\033]7;file://%s%s\\007\\033\\\\' \"${HOSTNAME:-}\" \"$PWD\"; "
    "else printf '\\033]7;file://%s%s\\007' \"${HOSTNAME:-}\" \"$PWD\"; fi"
)
"""Exported as PROMPT_COMMAND: bash reports its cwd (OSC 7) before every prompt; inside
tmux the report is wrapped for passthrough. Exported, so nested bash shells report too."""


@attrs.frozen
class Markers:
    """The byte strings the remote command prints, for one connect."""

    nonce: str

    @property
    def ready(self) -> bytes:
        return f"\x1eTETHER-READY-{self.nonce}\x1e".encode()

    @property
    def pane(self) -> bytes:
        """Ready, and what follows is the pane log's records (`tether_ssh._panestream`)."""
        return f"\x1eTETHER-PANE-{self.nonce}\x1e".encode()

    @property
    def gone(self) -> bytes:
        return f"\x1eTETHER-GONE-{self.nonce}\x1e".encode()

    def _printf(self, word: str) -> str:
        return f"printf '{_RS}TETHER-{word}-{self.nonce}{_RS}'"


def shell_launcher(cwd: str | None, env: Mapping[str, str], integration: bool) -> str:
    """POSIX sh that enters `cwd`, exports `env` and execs the user's login shell.

    With `integration`, a bash or zsh login shell starts with tether's shell
    integration when `write_integration` put its files in place; any other shell
    (or a home where they could not be written) gets the OSC 7 cwd hook only.
    """
    parts: list[str] = []
    if cwd:
        parts.append(f"cd -- {shlex.quote(cwd)} 2>/dev/null")
    parts.extend(f"export {name}={shlex.quote(value)}" for name, value in env.items())
    if integration:
        parts.append(_start_integrated())
        parts.append(f"export PROMPT_COMMAND={shlex.quote(OSC7_HOOK)}")
    parts.append('exec "${SHELL:-/bin/sh}" -l')
    return "; ".join(parts)


INTEGRATION_DIR = "TETHER_INTEGRATION_DIR"
"""Where `write_integration` put the start-up files, for the launcher: a shell variable in a
plain connect, and given to a tmux pane with ``new-session -e`` (a tmux server keeps the
environment it started with, which may name another HOME)."""

_FILES_DIR = '"${XDG_CACHE_HOME:-$HOME/.cache}/tether"'
"""Where the integration's start-up files go on the remote host (0700, per user)."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _integration_names() -> tuple[str, str]:
    """The bash rc file and zsh ZDOTDIR names: content-hashed, so versions never clash."""
    return f"bashrc-login-{_digest(bash_rcfile(login=True))}", f"zsh-{_digest(''.join(zsh_dotfiles().values()))}"


def write_integration() -> str:
    """Remote sh that writes the integration's start-up files once per version and sets
    `INTEGRATION_DIR` to their directory (left unset when they could not be written)."""
    rcfile, zdot = _integration_names()
    files = [(rcfile, bash_rcfile(login=True))]
    files += [(f"{zdot}/{name}", text) for name, text in zsh_dotfiles().items()]
    writes = " && ".join(
        f'{{ [ -r "$d/{path}" ] || {{ printf %s {shlex.quote(text)} > "$d/{path}.$$" && '
        f'mv -f "$d/{path}.$$" "$d/{path}"; }}; }}'
        for path, text in files
    )
    return (
        f"{INTEGRATION_DIR}=$(d={_FILES_DIR}; (umask 077; mkdir -p \"$d/{zdot}\" && {writes}) >/dev/null 2>&1 "
        '&& printf %s "$d")'
    )


def _start_integrated() -> str:
    """sh that execs a bash or zsh login shell with tether's integration, when its files are there.

    bash ignores ``--rcfile`` in a login shell, so it starts as ``bash --rcfile``
    with an rc file that reads what a login would (`tether.bash_rcfile`); zsh
    starts as a login shell with a ZDOTDIR of ours whose files load the user's own.
    """
    rcfile, zdot = _integration_names()
    d = f'"${{{INTEGRATION_DIR}:-}}"'
    return (
        f"__tether_d={d}; unset {INTEGRATION_DIR}; "
        'case "${SHELL:-}" in '
        f'*/bash) [ -n "$__tether_d" ] && [ -r "$__tether_d/{rcfile}" ] && '
        f'exec "$SHELL" --rcfile "$__tether_d/{rcfile}" -i ;; '
        f'*/zsh) [ -n "$__tether_d" ] && [ -r "$__tether_d/{zdot}/.zshrc" ] && '
        f'export TETHER_USER_ZDOTDIR="${{ZDOTDIR:-$HOME}}" ZDOTDIR="$__tether_d/{zdot}" && exec "$SHELL" -l ;; '
        "esac; unset __tether_d"
    )


def _tmux(opts: SshOptions) -> str:
    return "tmux" + (f" -L {shlex.quote(opts.tmux_socket)}" if opts.tmux_socket else "")


def kill_tmux_command(opts: SshOptions, handle: str) -> str:
    """Remote sh that ends the tmux session `handle` (and the programs in it), if it exists."""
    return f"{_tmux(opts)} kill-session -t ={shlex.quote(handle)} 2>/dev/null; exit 0"


@attrs.frozen
class PaneLogPlan:
    """The pane log side of one tmux connect: the name a new log gets, and where to resume."""

    stream: str
    """The log directory (peer stream) name, if this connect starts the program."""
    total_bytes: int
    resume: PeerMark | None
    """`tether.LinkRequest.resume`: the output log's position in its peer stream."""


def remote_command(
    opts: SshOptions,
    mode: ConnectMode,
    markers: Markers,
    *,
    handle: str | None,
    cwd: str | None,
    env: Mapping[str, str],
    pane: PaneLogPlan | None = None,
) -> str:
    """What ssh asks the remote side to run for this connect mode.

    persist="none": marker, then the shell (FRESH and RESTART differ only in
    the cwd/env given). persist="tmux": the session is created detached
    *before* the marker, so "ready" means the remote program exists. FRESH
    reuses a session of that name (never destroying a running program);
    RESTART replaces it; REATTACH attaches or prints GONE. With `pane`, a
    session this connect creates gets a pane log (`_panelog`), and a session
    that has one is followed from `pane.resume` after the PANE marker; a
    session without one (an older tether's) is attached as before.
    """
    launcher = shell_launcher(cwd, env, opts.shell_integration)
    ready = markers._printf("READY")
    if opts.persist == "none" or handle is None:
        return f"{write_integration()}; {ready}; {launcher}" if opts.shell_integration else f"{ready}; {launcher}"
    tmux = _tmux(opts)
    name = shlex.quote(handle)
    check = (
        "command -v tmux >/dev/null 2>&1 || "
        "{ echo 'tether: tmux is not installed on the remote host' >&2; exit 127; }"
    )
    passthrough = f"{tmux} set-option -p -t ={name}: allow-passthrough on >/dev/null 2>&1"
    attach = f"{ready}; exec {tmux} attach-session -t ={name}"
    exists = f"{tmux} has-session -t ={name} 2>/dev/null"
    if pane is not None:
        start = _panelog.start_offset(pane.resume, "end" if mode is ConnectMode.REATTACH else "0")
        attach = (
            f"{_panelog.find_log(tmux, handle)}; if {_panelog.usable()}; then {start}; "
            f"{markers._printf('PANE')}; {_panelog.attach_following(tmux, handle)}\n"
            f"else {attach}; fi"
        )

    prepare = f"{write_integration()}; " if opts.shell_integration else ""
    handover = f' -e "{INTEGRATION_DIR}=${{{INTEGRATION_DIR}:-}}"' if opts.shell_integration else ""

    def create(session: str) -> str:
        if pane is None:
            return f"{tmux} new-session -d{handover} -s {shlex.quote(session)} {shlex.quote(launcher)} || exit 1"
        start = _panelog.start_with_log(
            tmux, session, launcher, _panelog.new_gate(), opts.rows, opts.cols, options=handover
        )
        return (
            f"c=1; {_panelog.create_log(pane.stream, pane.total_bytes)}; {start} || "
            f"{{ {tmux} kill-session -t ={shlex.quote(session)} 2>/dev/null; exit 1; }}"
        )

    if mode is ConnectMode.REATTACH:
        return f"{check}; {exists} || {{ {markers._printf('GONE')}; exit 0; }}; {attach}"
    if mode is ConnectMode.RESTART:
        # The new session first, then the old one goes: killing the server's last session
        # makes the server exit, and a new-session racing that exit fails ("server exited
        # unexpectedly"). The server never drops to zero sessions this way.
        fresh = f"{handle}-new-{markers.nonce}"
        replace = (
            f"{create(fresh)}; "
            f"{tmux} kill-session -t ={name} 2>/dev/null; "
            f"{tmux} rename-session -t ={shlex.quote(fresh)} {name} || exit 1"
        )
        return f"{check}; {prepare}{replace}; {passthrough}; {attach}"
    return f"{check}; {exists} || {{ {prepare}{create(handle)}; }}; {passthrough}; {attach}"

ACCEPTED_SUFFIX = ".tether-accepted"
"""Keys an ``accept_new_host_keys`` session learns go to ``<known_hosts>.tether-accepted``."""
DEFAULT_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
"""OpenSSH's own default UserKnownHostsFile."""


def known_hosts_files(opts: SshOptions) -> tuple[str, ...] | None:
    """The UserKnownHostsFile list for this session; None leaves ssh's config in charge.

    A strict session reads only the trusted file(s). An ``accept-new`` session
    reads the trusted file(s) too, but ssh writes a learnt key into the *first*
    file listed, so that one is a separate ``.tether-accepted`` file that no
    strict session ever reads: trust-on-first-use by one session can never make
    a strict session (sharing the same known_hosts) accept an unvouched key.
    """
    trusted = (opts.known_hosts_file,) if opts.known_hosts_file else DEFAULT_USER_KNOWN_HOSTS
    if not opts.accept_new_host_keys:
        return trusted if opts.known_hosts_file else None
    return (trusted[0] + ACCEPTED_SUFFIX, *trusted)


def _connection_options(opts: SshOptions, *, connect_timeout: float, keepalive_interval: float) -> list[str]:
    """What decides the connection itself (config, policy knobs, host keys, identity, port, user)."""
    argv: list[str] = []
    if opts.config_file:
        argv += ["-F", opts.config_file]
    argv += [
        "-o", "BatchMode=yes",
        "-o", f"StrictHostKeyChecking={'accept-new' if opts.accept_new_host_keys else 'yes'}",
        "-o", f"ConnectTimeout={max(1, math.ceil(connect_timeout))}",
    ]
    if keepalive_interval > 0:
        argv += [
            "-o", f"ServerAliveInterval={max(1, round(keepalive_interval))}",
            "-o", f"ServerAliveCountMax={opts.server_alive_count_max}",
        ]
    files = known_hosts_files(opts)
    if files is not None:
        argv += ["-o", "UserKnownHostsFile=" + " ".join(f'"{f}"' for f in files)]
    if opts.identity_file:
        argv += ["-i", opts.identity_file]
    if opts.port is not None:
        argv += ["-p", str(opts.port)]
    if opts.user:
        argv += ["-l", opts.user]
    return argv


def _extras(opts: SshOptions) -> list[str]:
    argv: list[str] = []
    for extra in opts.extra_options:
        argv += ["-o", extra]
    return argv


def ssh_argv(
    opts: SshOptions,
    *,
    connect_timeout: float,
    keepalive_interval: float,
    command: str,
    tty: bool = True,
    control_path: str | None = None,
) -> list[str]:
    """The ssh client's argv: the user's config still applies; the policy's knobs override it.

    ``-tt`` forces a remote pty (our stdin is a pty, stderr a pipe); ``-e none``
    so input is never read as an escape. Without `control_path` the link is its
    own connection (``ControlMaster=no``, ``ControlPath=none``: a ControlMaster in the
    user's config never applies). With it, ssh opens a channel on that shared
    connection; ``ProxyCommand=false`` because ssh falls back to a login of its own
    when the master refuses (sshd's MaxSessions) or is gone, and a refused channel
    must be an answer tether sees, not a surprise login.
    """
    argv = [opts.ssh_path, "-tt" if tty else "-T", "-e", "none"]
    argv += _connection_options(opts, connect_timeout=connect_timeout, keepalive_interval=keepalive_interval)
    if control_path is None:
        argv += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
    else:
        argv += ["-o", "ControlMaster=no", "-o", f"ControlPath={control_path}", "-o", "ProxyCommand=false"]
    argv += _extras(opts)
    argv += ["--", opts.host, command]
    return argv


def master_argv(
    opts: SshOptions,
    *,
    connect_timeout: float,
    keepalive_interval: float,
    control_path: str,
    log_path: str,
    linger: int,
) -> list[str]:
    """A shared connection: ``ssh -N`` as ControlMaster, backgrounding itself once it listens.

    With ``ControlPersist`` the foreground ssh exits 0 only after authentication
    succeeded and the control socket is listening, so its exit is the readiness
    signal; the background master then ends `linger` seconds after its last channel
    (also after a crash of tether: nothing is left running for good). ``-E`` sends
    what it logs (errors, ``Timeout, server ... not responding``) to `log_path`, where
    the classifier reads it; a login banner is not logged there.
    """
    argv = [opts.ssh_path, "-N", "-E", log_path]
    argv += _connection_options(opts, connect_timeout=connect_timeout, keepalive_interval=keepalive_interval)
    argv += [
        "-o", "ControlMaster=yes", "-o", f"ControlPath={control_path}", "-o", f"ControlPersist={linger}",
    ]
    argv += _extras(opts)
    argv += ["--", opts.host]
    return argv


def control_argv(opts: SshOptions, control_path: str, operation: str) -> list[str]:
    """``ssh -O check|exit`` against one master's socket (only the socket is used)."""
    return [opts.ssh_path, "-F", "/dev/null", "-o", f"ControlPath={control_path}", "-O", operation, "--", opts.host]


def resolve_argv(opts: SshOptions) -> list[str]:
    """``ssh -G``: the configuration ssh would use for this session; no connection is made."""
    argv = [opts.ssh_path, "-G"]
    argv += _connection_options(opts, connect_timeout=1, keepalive_interval=0)
    argv += _extras(opts)
    argv += ["--", opts.host]
    return argv
