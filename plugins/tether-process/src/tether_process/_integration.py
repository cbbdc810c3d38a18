"""Shell integration: make bash and zsh report their cwd, finished commands and `run` marks.

The shell reads a small rc file of ours (bash ``--rcfile``, zsh ``ZDOTDIR``)
that first loads the user's own rc file, then adds a prompt hook that prints
(see `tether.rules._osc`):

* OSC 7 with the working directory, and ``OSC 133;A;tether-shell=NAME``:
  tether's integration is at a prompt;
* tether's command mark (OSC 6973) for each finished command, so a restart can
  type it again (commands the shell keeps out of its history, e.g. with
  ``HISTCONTROL=ignorespace``, are not reported);
* for `run`: the engine types ``__tether_run NONCE $'COMMAND'`` (see
  `tether.run_line`). The function prints ``OSC 133;C;tether=NONCE``, runs
  the command with ``eval`` in the shell itself (so ``cd`` and ``export``
  stick), and prints ``OSC 133;D;STATUS;tether=NONCE`` right after it, before
  any prompt machinery (zsh's PROMPT_SP filler) can write. A run cut short
  (ctrl-c aborts the function) is ended by the prompt hook with the status
  the shell saw. The typed line holds no escape byte, no tab and no newline,
  so its echo can never pass for a mark, and every command has its own nonce.

Inside tmux the sequences are sent as they are: tether reads the pane's own
output (its pipe-pane log, see `_panelog`), not what tmux draws.
"""

from __future__ import annotations

import hashlib
import os

from tether import MARK_OSC

BASH_RC = r"""# tether shell integration (bash): cwd (OSC 7), finished commands (OSC 6973), run marks (OSC 133).
if [ -n "${TETHER_USER_RCFILE:-}" ]; then
  [ -r "$TETHER_USER_RCFILE" ] && . "$TETHER_USER_RCFILE"
elif [ -r "$HOME/.bashrc" ]; then
  . "$HOME/.bashrc"
fi
unset TETHER_USER_RCFILE
__tether_enc() {
  local s=$1
  s=${s//'%'/%25}; s=${s//';'/%3B}; s=${s//$'\a'/%07}; s=${s//$'\e'/%1B}
  s=${s//$'\n'/%0A}; s=${s//$'\r'/%0D}
  REPLY=$s
}
__tether_osc() { builtin printf '\033]%s\007' "$1"; }
__tether_run() {
  case $1 in ''|*[!0-9a-f]*) return 2 ;; esac
  __tether_nonce=$1
  __tether_last=$2
  shift 2
  __tether_osc "133;C;tether=$__tether_nonce"
  eval "$__tether_last"
  builtin set -- "$?"
  __tether_osc "133;D;$1;tether=$__tether_nonce"
  unset __tether_nonce
  return "$1"
}
__tether_prompt() {
  local st=$? line num
  if [ -n "${__tether_nonce:-}" ]; then  # a run cut short (ctrl-c aborted __tether_run)
    __tether_osc "133;D;$st;tether=$__tether_nonce"
    unset __tether_nonce
  fi
  line=$(HISTTIMEFORMAT= builtin history 1 2>/dev/null)
  line=${line#"${line%%[! ]*}"}
  num=${line%%[!0-9]*}
  if [ -n "$num" ] && [ "$num" != "${__tether_hist:-}" ]; then
    if [ -n "${__tether_ready:-}" ]; then
      if [ -n "${__tether_last+x}" ]; then
        line=$__tether_last  # a run: the command itself, not the __tether_run line
      else
        line=${line#"$num"}
        line=${line#"${line%%[!	 ]*}"}
      fi
      __tether_enc "$line"
      __tether_osc "@MARK@;cmd;$st;$REPLY"
    fi
    __tether_hist=$num
  fi
  unset __tether_last
  __tether_ready=1
  __tether_enc "$PWD"
  __tether_osc "7;file://${HOSTNAME:-}$REPLY"
  __tether_osc "133;A;tether-shell=bash"
  return $st
}
PROMPT_COMMAND="__tether_prompt${PROMPT_COMMAND:+;$PROMPT_COMMAND}"
""".replace("@MARK@", str(MARK_OSC))

ZSH_ENV = r"""# tether shell integration (zsh): load the user's .zshenv from their own ZDOTDIR.
__tether_zdotdir=$ZDOTDIR
ZDOTDIR=${TETHER_USER_ZDOTDIR:-$HOME}
[ -r "$ZDOTDIR/.zshenv" ] && . "$ZDOTDIR/.zshenv"
TETHER_USER_ZDOTDIR=$ZDOTDIR
ZDOTDIR=$__tether_zdotdir
unset __tether_zdotdir
"""

ZSH_RC = r"""# tether shell integration (zsh): cwd (OSC 7), finished commands (OSC 6973), run marks (OSC 133).
ZDOTDIR=${TETHER_USER_ZDOTDIR:-$HOME}
unset TETHER_USER_ZDOTDIR
[ -r "$ZDOTDIR/.zshrc" ] && . "$ZDOTDIR/.zshrc"
__tether_enc() {
  local s=$1
  s=${s//'%'/%25}; s=${s//';'/%3B}; s=${s//$'\a'/%07}; s=${s//$'\e'/%1B}
  s=${s//$'\n'/%0A}; s=${s//$'\r'/%0D}
  REPLY=$s
}
__tether_osc() { builtin printf '\033]%s\007' "$1" }
__tether_run() {
  [[ -n $1 && $1 != *[^0-9a-f]* ]] || return 2
  __tether_nonce=$1
  __tether_last=$2
  shift 2
  __tether_osc "133;C;tether=$__tether_nonce"
  eval "$__tether_last"
  builtin set -- "$?"
  __tether_osc "133;D;$1;tether=$__tether_nonce"
  unset __tether_nonce
  return "$1"
}
__tether_preexec() { __tether_cmd=$1 }
__tether_precmd() {
  local st=$?
  if [[ -n ${__tether_nonce:-} ]]; then  # a run cut short (ctrl-c aborted __tether_run)
    __tether_osc "133;D;$st;tether=$__tether_nonce"
    unset __tether_nonce
  fi
  if [[ -n ${__tether_cmd+x} ]]; then
    # a run: the command itself, not the __tether_run line
    __tether_enc "${__tether_last-$__tether_cmd}"
    __tether_osc "@MARK@;cmd;$st;$REPLY"
    unset __tether_cmd
  fi
  unset __tether_last
  __tether_enc "$PWD"
  __tether_osc "7;file://${HOST:-}$REPLY"
  __tether_osc "133;A;tether-shell=zsh"
  return $st
}
autoload -Uz add-zsh-hook
add-zsh-hook preexec __tether_preexec
add-zsh-hook precmd __tether_precmd
""".replace("@MARK@", str(MARK_OSC))


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
        rc = _write_once(directory, "bashrc", BASH_RC)
        return (argv[0], "--rcfile", rc, *argv[1:])
    if kind == "zsh":
        zdot = os.path.join(directory, "zsh-" + hashlib.sha256((ZSH_ENV + ZSH_RC).encode()).hexdigest()[:12])
        os.makedirs(zdot, mode=0o700, exist_ok=True)
        for name, text in ((".zshenv", ZSH_ENV), (".zshrc", ZSH_RC)):
            path = os.path.join(zdot, name)
            if not os.path.exists(path):
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(text)
        if "ZDOTDIR" in env:
            env["TETHER_USER_ZDOTDIR"] = env["ZDOTDIR"]
        env["ZDOTDIR"] = zdot
        return argv
    return argv
