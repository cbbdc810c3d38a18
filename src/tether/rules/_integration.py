"""tether's shell integration for bash and zsh: the text every backend loads into a shell. Pure.

One body per shell defines a prompt hook that prints
(see `tether.rules._osc`):

* OSC 7 with the working directory, and ``OSC 133;A;tether-shell=NAME``:
  tether's integration is at a prompt (`run` needs this);
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

A body installs its hook once: loading it again (a re-attached terminal that
is given it a second time) changes nothing.

How a body gets into a shell is the backend's business, with the start-up
files here: `bash_rcfile` (``bash --rcfile``: load the user's own start-up
first, as an interactive or a login shell would), `zsh_dotfiles` (a
``ZDOTDIR`` whose files load the user's own), or `typed_integration` (one line
typed into a shell that already started, e.g. a Jupyter terminal, whose kind it can
leave to the shell).
"""

from __future__ import annotations

import base64
from typing import Final, Literal

from ._osc import MARK_OSC

ShellName = Literal["bash", "zsh"]

_ENCODE = r"""__tether_enc() {
  local s=$1
  s=${s//'%'/%25}; s=${s//';'/%3B}; s=${s//$'\a'/%07}; s=${s//$'\e'/%1B}
  s=${s//$'\n'/%0A}; s=${s//$'\r'/%0D}
  REPLY=$s
}
"""
"""``__tether_enc``: percent-encode what would end or split a mark (the same in bash and zsh)."""

_RUN_REST = r"""  __tether_nonce=$1
  __tether_last=$2
  shift 2
  __tether_osc "133;C;tether=$__tether_nonce"
  eval "$__tether_last"
  builtin set -- "$?"
  __tether_osc "133;D;$1;tether=$__tether_nonce"
  unset __tether_nonce
  return "$1"
}
"""
"""The body of ``__tether_run`` after its nonce check: C mark, the command in the shell itself,
D mark with its status (the same in bash and zsh)."""

_BASH_BODY = _ENCODE + r"""__tether_osc() { builtin printf '\033]%s\007' "$1"; }
__tether_run() {
  case $1 in ''|*[!0-9a-f]*) return 2 ;; esac
""" + _RUN_REST + r"""__tether_prompt() {
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
case ";${PROMPT_COMMAND:-};" in
  *";__tether_prompt;"*) ;;
  *) PROMPT_COMMAND="__tether_prompt${PROMPT_COMMAND:+;$PROMPT_COMMAND}" ;;
esac
""".replace("@MARK@", str(MARK_OSC))

_ZSH_BODY = _ENCODE + r"""__tether_osc() { builtin printf '\033]%s\007' "$1" }
__tether_run() {
  [[ -n $1 && $1 != *[^0-9a-f]* ]] || return 2
""" + _RUN_REST + r"""__tether_preexec() { __tether_cmd=$1 }
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

_BASH_USER_RC = r"""if [ -n "${TETHER_USER_RCFILE:-}" ]; then
  [ -r "$TETHER_USER_RCFILE" ] && . "$TETHER_USER_RCFILE"
elif [ -r "$HOME/.bashrc" ]; then
  . "$HOME/.bashrc"
fi
unset TETHER_USER_RCFILE
"""
"""What an interactive bash reads (the user's rc file, or the one they named)."""

_BASH_USER_LOGIN = r"""[ -r /etc/profile ] && . /etc/profile
for __tether_f in "$HOME/.bash_profile" "$HOME/.bash_login" "$HOME/.profile"; do
  if [ -r "$__tether_f" ]; then . "$__tether_f"; break; fi
done
unset __tether_f
"""
"""What a login bash reads (``bash -l``: /etc/profile, then the first of the user's profiles),
for a shell that must start as ``bash --rcfile`` to load the integration (an ssh login)."""

_ZSH_ENV = r"""# tether shell integration (zsh): load the user's .zshenv from their own ZDOTDIR.
__tether_zdotdir=$ZDOTDIR
ZDOTDIR=${TETHER_USER_ZDOTDIR:-$HOME}
[ -r "$ZDOTDIR/.zshenv" ] && . "$ZDOTDIR/.zshenv"
TETHER_USER_ZDOTDIR=$ZDOTDIR
ZDOTDIR=$__tether_zdotdir
unset __tether_zdotdir
"""

_ZSH_PROFILE = r"""# tether shell integration (zsh): a login shell's .zprofile is the user's own.
[ -r "${TETHER_USER_ZDOTDIR:-$HOME}/.zprofile" ] && . "${TETHER_USER_ZDOTDIR:-$HOME}/.zprofile"
"""

_ZSH_RC = r"""# tether shell integration (zsh): cwd (OSC 7), finished commands (OSC 6973), run marks (OSC 133).
ZDOTDIR=${TETHER_USER_ZDOTDIR:-$HOME}
unset TETHER_USER_ZDOTDIR
[ -r "$ZDOTDIR/.zshrc" ] && . "$ZDOTDIR/.zshrc"
"""
"""Back in the user's ZDOTDIR after this file, so a login shell's .zlogin is theirs too."""

_HEADER: Final = (
    "# tether shell integration ({shell}): cwd (OSC 7), finished commands (OSC 6973), run marks (OSC 133).\n"
)


def bash_rcfile(*, login: bool = False) -> str:
    """An rc file for ``bash --rcfile``: the user's own start-up first, then the integration.

    ``login=True`` reads what ``bash -l`` would (bash ignores ``--rcfile`` in a
    login shell, so a login must be emulated to load the integration).
    """
    return _HEADER.format(shell="bash") + (_BASH_USER_LOGIN if login else _BASH_USER_RC) + _BASH_BODY


def zsh_dotfiles() -> dict[str, str]:
    """Files for a ``ZDOTDIR`` of tether's: each loads the user's own (from
    ``TETHER_USER_ZDOTDIR``, else ``$HOME``), and .zshrc adds the integration."""
    return {".zshenv": _ZSH_ENV, ".zprofile": _ZSH_PROFILE, ".zshrc": _ZSH_RC + _ZSH_BODY}


def typed_integration(shell: ShellName | None = None) -> str:
    """One line that installs the integration into a `shell` that is already running.

    It starts with a space (``HISTCONTROL=ignorespace`` keeps it out of the
    history) and carries the body base64-encoded, so its echo holds no escape
    byte and no mark. It ends with a carriage return (the Enter key).

    ``shell=None`` is for a shell whose kind is not known (a Jupyter terminal
    runs the server's ``shell_command``): the line carries both bodies and the
    shell itself picks by ``$BASH_VERSION`` / ``$ZSH_VERSION``; any other shell
    (sh, dash) runs two false tests and nothing else. It stays below a
    terminal's line limit (`CANONICAL_LINE_LIMIT`), so a shell without line
    editing reads it whole instead of waiting for the rest of a cut quote.
    """
    if shell is not None:
        return f" {_eval_body(shell)}\r"
    bash, zsh = _eval_body("bash"), _eval_body("zsh")
    return f" test -n \"$BASH_VERSION\" && {bash}; test -n \"$ZSH_VERSION\" && {zsh} || true\r"


CANONICAL_LINE_LIMIT: Final = 4095
"""Bytes a Linux terminal in canonical mode (a shell without line editing, like dash) keeps of one
input line (``N_TTY_BUF_SIZE`` less the newline); the rest of a longer line is dropped."""


def _eval_body(shell: ShellName) -> str:
    body = _BASH_BODY if shell == "bash" else _ZSH_BODY
    encoded = base64.b64encode(body.encode()).decode()
    return f"eval \"$(printf %s {encoded} | base64 -d)\""
