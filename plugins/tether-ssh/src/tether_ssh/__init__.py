"""tether-ssh: keep shells on other machines alive, through the system OpenSSH client.

Backend ``ssh``. Options (``SessionSpec.options``): ``host`` (required),
``port``, ``user``, ``identity_file``, ``extra_options`` (``-o`` strings),
``known_hosts_file``, ``config_file`` (``ssh -F``), ``persist`` (``"none"`` or
``"tmux"``: run the remote shell in tmux so it survives a drop and
``ssh-reconnect`` re-attaches), ``tmux_session``, ``tmux_socket``,
``pane_log_bytes`` (persist = "tmux": the remote pane log's bound, default 256 KiB,
`_panelog`: a re-attach delivers exactly the bytes tether missed),
``shell_integration`` (tether's integration in a bash or zsh login shell: cwd, `run`), ``accept_new_host_keys``
(default false: an unknown host key fails; when true, keys are learnt into
``<known_hosts>.tether-accepted``, which strict sessions never read), ``server_alive_count_max``,
``env``, ``cwd``, ``term``, ``ssh_path``, ``rows``, ``cols``, ``share_connection``
(default true: a channel on a shared connection tether runs per host, `_shared`),
``max_sessions_per_connection`` (default 10, sshd's MaxSessions).

The backend also has ``probe_target`` (`tether.TargetProbe`): the engine's readiness
gate's cheap check that the host answers (`_probe`).
"""

from __future__ import annotations

from ._backend import SshBackend as SshBackend
from ._classify import classify_exit as classify_exit
from ._classify import error_for as error_for
from ._command import remote_command as remote_command
from ._command import ssh_argv as ssh_argv
from ._link import SshLink as SshLink
from ._options import SshOptions as SshOptions
from ._options import parse_options as parse_options
from ._options import tmux_name as tmux_name

__all__ = [
    "SshBackend",
    "SshLink",
    "SshOptions",
    "classify_exit",
    "error_for",
    "parse_options",
    "remote_command",
    "ssh_argv",
    "tmux_name",
]
