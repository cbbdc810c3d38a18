"""Options, the ssh command line, the remote command and the stream scanners: pure pieces."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import tether
from tether import CwdReport, OscScanner
from tether_ssh import SshBackend, parse_options, remote_command, ssh_argv, tmux_name
from tether_ssh._command import Markers, PaneLogPlan, shell_launcher, write_integration
from tether_ssh._panelog import start_offset
from tether_ssh._scan import MarkerScanner

BASE = {"host": "example.org"}


def _argv(**options: object) -> list[str]:
    return ssh_argv(
        parse_options({**BASE, **options}), connect_timeout=4.5, keepalive_interval=1.0, command="CMD"
    )


def _o(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]


def test_policy_maps_onto_ssh_options() -> None:
    """ConnectTimeout, ServerAlive*, BatchMode from the policy; strict host keys; no multiplexing."""
    argv = _argv(port=2222, user="me", server_alive_count_max=2)
    opts = _o(argv)
    assert "BatchMode=yes" in opts
    assert "StrictHostKeyChecking=yes" in opts
    assert "ConnectTimeout=5" in opts
    assert "ServerAliveInterval=1" in opts and "ServerAliveCountMax=2" in opts
    assert "ControlMaster=no" in opts and "ControlPath=none" in opts
    assert argv[:4] == ["ssh", "-tt", "-e", "none"]
    assert argv[-3:] == ["--", "example.org", "CMD"]
    assert argv[argv.index("-p"):argv.index("-p") + 2] == ["-p", "2222"]


def test_accept_new_only_when_asked_and_keepalive_off() -> None:
    """accept-new is opt-in; keepalive 0 sets no ServerAlive option."""
    opts = _o(ssh_argv(parse_options({**BASE, "accept_new_host_keys": True}), connect_timeout=1,
                       keepalive_interval=0, command="x"))
    assert "StrictHostKeyChecking=accept-new" in opts
    assert not [o for o in opts if o.startswith("ServerAlive")]


def test_accept_new_learns_into_a_file_strict_sessions_never_read() -> None:
    """ssh writes learnt keys into the first UserKnownHostsFile: a sidecar a strict session never reads."""
    strict = _o(_argv(known_hosts_file="/k/hosts"))
    assert 'UserKnownHostsFile="/k/hosts"' in strict
    tofu = _o(_argv(known_hosts_file="/k/hosts", accept_new_host_keys=True))
    assert 'UserKnownHostsFile="/k/hosts.tether-accepted" "/k/hosts"' in tofu
    assert not [o for o in _o(_argv()) if o.startswith("UserKnownHostsFile")]  # ssh's config decides
    default_tofu = _o(_argv(accept_new_host_keys=True))
    assert (
        'UserKnownHostsFile="~/.ssh/known_hosts.tether-accepted" "~/.ssh/known_hosts" "~/.ssh/known_hosts2"'
        in default_tofu
    )


def test_ssh_parses_the_known_hosts_list(tmp_path: object) -> None:
    """The quoted list survives ssh's own option parser (ssh -G), spaces in paths included."""
    opts = _o(_argv(known_hosts_file=f"{tmp_path}/a b", accept_new_host_keys=True))
    (line,) = [o for o in opts if o.startswith("UserKnownHostsFile")]
    out = subprocess.run(["ssh", "-G", "-F", "/dev/null", "-o", line, "h"], capture_output=True,
                         text=True, check=True).stdout
    assert f"userknownhostsfile {tmp_path}/a b.tether-accepted {tmp_path}/a b\n" in out


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({}, "host"),
        ({**BASE, "extra_options": ["StrictHostKeyChecking=no"]}, "extra_options[0]"),
        ({**BASE, "extra_options": ["nonsense"]}, "extra_options[0]"),
        ({**BASE, "persist": "screen"}, "persist"),
        ({**BASE, "port": 0}, "port"),
        ({**BASE, "env": {"1BAD": "x"}}, "env.1BAD"),
        ({**BASE, "colour": "red"}, "colour"),
        ({**BASE, "accept_new_host_keys": "yes"}, "accept_new_host_keys"),
        ({"host": "-oProxyCommand=evil"}, "host"),
        ({**BASE, "known_hosts_file": '/k/"x'}, "known_hosts_file"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, object], path: str) -> None:
    """validate() fails with the path of the bad option, never later at connect time."""
    spec = tether.SessionSpec(id="x", backend="ssh", options=options)
    with pytest.raises(tether.ConfigError) as info:
        SshBackend().validate(spec)
    assert info.value.path == path


def test_target_is_host_and_port() -> None:
    """The connect limit is keyed per host:port."""
    backend = SshBackend()
    assert backend.target(tether.SessionSpec(id="a", backend="ssh", options=BASE)) == "example.org:22"
    spec = tether.SessionSpec(id="a", backend="ssh", options={"host": "::1", "port": 2200})
    assert backend.target(spec) == "[::1]:2200"


def test_tmux_name_is_stable_and_safe() -> None:
    """Same id, same name; ids differing only in characters tmux forbids do not collide."""
    assert tmux_name("a.b") == tmux_name("a.b")
    assert tmux_name("a.b") != tmux_name("a:b")
    assert "." not in tmux_name("a.b") and ":" not in tmux_name("a:b")


def _sh(script: str, home: Path | None = None) -> str:
    """`script`'s output under sh, with a login shell that is neither bash nor zsh (and `home`)."""
    env = {**os.environ, "SHELL": "/bin/sh", **({"HOME": str(home)} if home is not None else {})}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False, env=env).stdout


def test_launcher_is_valid_posix_sh(tmp_path: object) -> None:
    """The launcher enters the cwd and exports env (checked by running it, shell swapped for env)."""
    script = shell_launcher("/tmp", {"A": "it's"}, integration=True).replace(
        'exec "${SHELL:-/bin/sh}" -l', 'pwd; printf "%s" "$A"'
    )
    assert _sh(script) == "/tmp\nit's"


@pytest.mark.parametrize("shell", ["bash", "zsh", "sh"])
def test_the_login_shell_starts_with_the_integration_files(tmp_path: Path, shell: str) -> None:
    """The files are written once under the remote HOME (0700) and the login shell is started on
    them: bash as ``--rcfile FILE -i``, zsh as a login shell in our ZDOTDIR; another shell as before."""
    fake = tmp_path / shell
    fake.write_text('#!/bin/sh\nprintf "%s|" "$0" "$@" "ZDOTDIR=${ZDOTDIR:-}"\n')
    fake.chmod(0o755)
    env = {"HOME": str(tmp_path / "home"), "SHELL": str(fake), "PATH": os.environ["PATH"]}
    script = f"{write_integration()}; {shell_launcher(None, {}, integration=True)}"
    for _ in range(2):  # the second connect finds the files in place
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=True).stdout
        files = tmp_path / "home" / ".cache" / "tether"
        assert (files.stat().st_mode & 0o777) == 0o700
        args = out.split("|")
        if shell == "bash":
            assert args[1] == "--rcfile" and args[3] == "-i", args
            assert Path(args[2]).read_text() == tether.bash_rcfile(login=True)
        elif shell == "zsh":
            assert args[1] == "-l" and args[2].startswith("ZDOTDIR=" + str(files)), args
            zdot = Path(args[2].removeprefix("ZDOTDIR="))
            assert {p.name: p.read_text() for p in zdot.iterdir()} == tether.zsh_dotfiles()
        else:
            assert args[1:3] == ["-l", "ZDOTDIR="], args
    assert len(list(files.iterdir())) == 2, "one bash rc file, one zsh directory"


def test_remote_commands_per_mode(tmp_path: Path) -> None:
    """none: marker then shell; tmux: attach-or-create, replace, or attach-or-GONE."""
    markers = Markers("abc")
    none = parse_options(BASE)
    tmux = parse_options({**BASE, "persist": "tmux", "tmux_socket": "sock"})
    cmd = remote_command(none, tether.ConnectMode.FRESH, markers, handle=None, cwd=None, env={})
    assert _sh(cmd.replace('exec "${SHELL:-/bin/sh}" -l', "true"), tmp_path).encode() == markers.ready
    fresh = remote_command(tmux, tether.ConnectMode.FRESH, markers, handle="h", cwd=None, env={})
    assert "has-session -t =h" in fresh and "tmux -L sock new-session -d -e " in fresh and " -s h " in fresh
    assert fresh.index("new-session") < fresh.index("TETHER-READY") < fresh.index("attach-session -t =h")
    restart = remote_command(tmux, tether.ConnectMode.RESTART, markers, handle="h", cwd="/x", env={})
    assert "kill-session -t =h" in restart
    # the replacement exists before the old session goes: the tmux server never has none left
    assert restart.index("-s h-new-abc") < restart.index("kill-session -t =h")
    assert restart.index("kill-session") < restart.index("rename-session -t =h-new-abc h") < restart.index("attach")
    reattach = remote_command(tmux, tether.ConnectMode.REATTACH, markers, handle="h", cwd=None, env={})
    assert "has-session -t =h" in reattach and "TETHER-GONE-abc" in reattach


def test_marker_found_across_chunk_splits() -> None:
    """A marker split over reads is still found; what follows it is handed back."""
    ready = Markers("n1").ready
    data = b"noise" + ready + b"$ prompt"
    for cut in range(1, len(data)):
        scanner = MarkerScanner((ready, Markers("n1").gone))
        after = scanner.feed(data[:cut]) + scanner.feed(data[cut:])
        assert scanner.found == ready
        assert after == b"$ prompt"
        assert bytes(scanner.before) == b"noise"


def test_osc7_reports_across_chunk_splits() -> None:
    """OSC 7 (BEL or ST terminated) yields the path, however the stream was cut (the core scanner)."""
    data = b"a\x1b]7;file://box/tmp/my%20dir\x07b\x1b]7;file://box/root\x1b\\c"
    for cut in range(len(data) + 1):
        scanner = OscScanner()
        found = scanner.feed(data[:cut])[1] + scanner.feed(data[cut:])[1]
        assert [f.event for f in found] == [CwdReport("/tmp/my dir", "box"), CwdReport("/root", "box")]


def _pane_plan(resume: tether.PeerMark | None = None) -> PaneLogPlan:
    return PaneLogPlan("s1-0123456789ab", 4096, resume)


@pytest.mark.parametrize("mode", list(tether.ConnectMode))
def test_pane_log_commands_are_valid_sh_in_every_mode(mode: tether.ConnectMode) -> None:
    """With a pane log the remote command still parses (``sh -n``), creates the log only where it
    creates the session, and has both ways out: PANE (follow the log) or READY (an older session)."""
    tmux = parse_options({**BASE, "persist": "tmux", "tmux_socket": "sock"})
    cmd = remote_command(tmux, mode, Markers("abc"), handle="h", cwd="/x", env={"A": "b"}, pane=_pane_plan())
    assert subprocess.run(["sh", "-n", "-c", cmd], capture_output=True, check=False).returncode == 0, cmd
    assert "TETHER-PANE-abc" in cmd and "TETHER-READY-abc" in cmd
    assert ("pipe-pane -I -O" in cmd) == (mode is not tether.ConnectMode.REATTACH)
    assert cmd.count("show-options -qv -t =h: @tether-pane-log") == 1
    if mode is not tether.ConnectMode.REATTACH:
        assert cmd.index("pipe-pane") < cmd.index("TETHER-PANE-abc")  # the log exists before "ready"


@pytest.mark.parametrize(
    ("resume", "created", "fallback", "expected"),
    [
        (tether.PeerMark("ssh-pane:s1-0123456789ab", 4321), "", "end", "4321"),  # our stream: resume there
        (tether.PeerMark("ssh-pane:other", 4321), "", "end", "end"),  # another program: its end
        (tether.PeerMark("ssh-pane:other", 4321), "1", "end", "0"),  # a program this connect started
        (tether.PeerMark("tmux-pane:s1-0123456789ab", 9), "", "0", "0"),  # not an ssh pane log at all
        (None, "", "end", "end"),
        (None, "1", "end", "0"),
    ],
)
def test_the_follower_starts_where_the_output_log_stands(
    resume: tether.PeerMark | None, created: str, fallback: str, expected: str
) -> None:
    script = f"L=/tmp/x/s1-0123456789ab; c={created}; {start_offset(resume, fallback)}; printf %s \"$S\""
    assert _sh(script) == expected
