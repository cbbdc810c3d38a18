"""How a shell started on our pty loads tether's shell integration (`tether.bash_rcfile`,
`tether.zsh_dotfiles`): bash through ``--rcfile``, zsh through a ``ZDOTDIR`` of ours.

Inside tmux the integration's sequences are sent as they are: tether reads the
pane's own output (its pipe-pane log, see `_panelog`), not what tmux draws.
"""

from __future__ import annotations

import hashlib
import os

from tether import bash_rcfile, zsh_dotfiles


def shell_kind(argv: tuple[str, ...]) -> str | None:
    """``bash`` or ``zsh`` when argv starts one of them, else None (integration does not apply)."""
    name = os.path.basename(argv[0])
    if name.startswith("-"):
        name = name[1:]
    return name if name in ("bash", "zsh") else None


def integration_blocked(argv: tuple[str, ...]) -> str | None:
    """Why the integration cannot load into this bash or zsh (None: it can)."""
    if shell_kind(argv) != "bash":
        return None
    options = argv[1:]
    if any(a in ("--rcfile", "--init-file", "--norc", "--posix") for a in options):
        return "bash was given its own start-up (--rcfile, --norc or --posix)"
    login = "--login" in options or any(a.startswith("-") and not a.startswith("--") and "l" in a for a in options)
    if login or os.path.basename(argv[0]).startswith("-"):
        return "a login bash (-l) reads its profile, not an rc file tether can add"
    if any(a == "-c" or (a.startswith("-") and not a.startswith("--") and "c" in a) for a in options):
        return "bash -c runs a command, not an interactive shell"
    return None


def _write_once(directory: str, name: str, text: str) -> str:
    """Write `text` under a content-hashed name (so versions never clash); return its path."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = os.path.join(directory, f"{name}-{digest}")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    return path


def integrate(argv: tuple[str, ...], env: dict[str, str], directory: str) -> tuple[str, ...]:
    """argv (and `env`, changed in place) that load the integration; unchanged for other programs.

    `directory` must be private to this user (the backend's runtime dir).
    """
    kind = shell_kind(argv)
    if kind == "bash":
        if integration_blocked(argv) is not None:
            return argv  # the user chose their own start-up, or bash will not read ours
        rc = _write_once(directory, "bashrc", bash_rcfile())
        return (argv[0], "--rcfile", rc, *argv[1:])
    if kind == "zsh":
        files = zsh_dotfiles()
        zdot = os.path.join(directory, "zsh-" + hashlib.sha256("".join(files.values()).encode()).hexdigest()[:12])
        os.makedirs(zdot, mode=0o700, exist_ok=True)
        for name, text in files.items():
            path = os.path.join(zdot, name)
            if not os.path.exists(path):
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(text)
        if "ZDOTDIR" in env:
            env["TETHER_USER_ZDOTDIR"] = env["ZDOTDIR"]
        env["ZDOTDIR"] = zdot
        return argv
    return argv
