"""The remote pane log of ``persist = "tmux"``: the program's own bytes, numbered, kept beside it.

What a re-attach shows of a program that ran on while tether was away is,
without this, only tmux's redraw of its screen. So the remote tmux session
pipes its pane's output (``pipe-pane -O``) into GNU ``split``, which cuts it
into segment files of a fixed size (``seg.000000000``, ...): the byte at peer
offset X is in segment ``X // size`` at ``X % size``. Each new segment's
filter removes the one `SEGMENTS_KEPT` back, so the log is bounded on the
remote disk even while no tether reads it, and it belongs to the tmux
session: it ends (and its directory goes) with the program. The same layout
as tether-process's local pane log; the remote side is shell text because
the remote host has no tether, only what a stock Debian host has (sh,
coreutils, tmux). It is duplicated, not shared:
tether-process's pane log is private to that plugin and read by Python.

A connect then runs, in its one ssh channel (so sshd's MaxSessions still
counts sessions), a *follower*: it sends the log from the offset tether asks
for as records (`tether_ssh._panestream`) and keeps following with ``tail -f``
(inotify, no polling) until tether goes. So
`tether.LinkRequest.report_output_at` gets exactly the bytes tether missed,
each with its peer offset, and a range the log trimmed becomes an exact loss
downstream. No tmux client is attached: what a client draws is not the
program's output, and a client on the channel's terminal would mix its
drawing into the records. Input takes the other direction of the same pipe:
``pipe-pane -I`` feeds the pane from a FIFO in the log directory, which the
channel's ``cat`` writes into, exactly as typed; when the channel ends, the
FIFO only loses a writer (an EOF there would type nothing, and a terminal
proxy such as ``script`` would type Ctrl-D into the program). The window
takes the channel terminal's size at connect and at every SIGWINCH
(``resize-window``).

Everything here is text for the remote shell: pure, built once per connect.
"""

from __future__ import annotations

import re
import secrets
import shlex

from tether import PeerMark

SEGMENTS_KEPT = 4
DEFAULT_PANE_LOG_BYTES = 256 * 1024
"""Remote disk per tmux session (its temp directory): 1,000 sessions that fill it hold 256 MB."""
FORMAT_VERSION = 1
"""Written into each log directory; a follower refuses a layout it does not know."""
TMUX_OPTION = "@tether-pane-log"
"""The tmux session's user option that names its log directory (so a re-attach finds it)."""
STREAM_PREFIX = "ssh-pane:"
"""Peer streams are ``ssh-pane:<directory name>``: one per program, never reused."""
LINGER = 5
"""Seconds the log outlives its program, so a follower still reading can send the last bytes."""

_FILTER = """\
n=${FILE##*.}
old=$((1$n - 1000000000 - @KEPT@))
if [ "$old" -ge 0 ]; then o=$(printf 'seg.%09d' "$old"); rm -f "$o" "$o.w"; fi
: > "$FILE"
echo $$ > "$FILE.p" && mv -f "$FILE.p" "$FILE.w"
exec cat >> "$FILE"
"""
"""One segment's writer (split sets $FILE): trim the one SEGMENTS_KEPT back, create the
segment, then record the writer's pid (``seg.N.w``, atomically): a follower reads a segment
only once its pid file exists, and follows it until that writer is gone."""

_PIPE = """\
cd "${0%/*}" || exit 1
exec 3<> input
cat <&3 &
i=$!
split -b @BYTES@ -d -a 9 --filter='. ./filter.sh' - seg. > /dev/null
kill $i
: > ended
sleep @LINGER@
cd / && rm -rf -- "${0%/*}"
"""
"""What ``pipe-pane -I -O`` runs: the FIFO ``input`` into the pane (held open for reading and
writing, so it never ends while the program lives), the pane's output cut into segments; when the
pane is gone, ``ended``, and after `LINGER` the log is removed. Nothing else may write to stdout:
it is the pane's input."""

_FOLLOW = r"""tether_follow() {
cd "$1" 2>/dev/null && read v seg < format && [ "$v" = @VERSION@ ] || return 1
s=$2 e=0
for w in seg.?????????.w; do :; done
if [ -e "$w" ]; then
p=${w%.w}; z=$(wc -c < "$p" 2>/dev/null) || z=0; e=$(((1${p#seg.} - 1000000000) * seg + ${z:-0}))
fi
if [ "$s" = end ] || [ "$s" -gt "$e" ]; then s=$e; fi
printf '\036S %s\n' "${1##*/}"
i=$((s / seg)) o=$((s % seg)) d=0.05
while :; do
f=$(printf 'seg.%09d' "$i")
w=$(cat "$f.w" 2>/dev/null)
if [ -n "$w" ] && command exec 3< "$f"; then
d=0.05
printf '\036D %d %d\n' "$s" $((seg - o))
if [ -e "$(printf 'seg.%09d.w' $((i + 1)))" ]; then
tail -c +$((o + 1)) <&3
elif tail -c +$((o + 1)) -f -s 0.1 --pid="$w" "$f"; then
[ "$(wc -c <&3)" -lt "$seg" ] && return 0
else
tail -c +$((o + 1)) <&3
fi
exec 3<&-
i=$((i + 1)); o=0; s=$((i * seg))
continue
fi
set -- seg.?????????.w
if [ -e "$1" ]; then
p=${1%.w}; k=$((1${p#seg.} - 1000000000))
if [ "$k" -gt "$i" ]; then i=$k o=0 s=$((k * seg)); continue; fi
fi
[ -e ended ] || [ ! -e format ] && return 0
sleep $d
case $d in 0.05) d=0.1;; 0.1) d=0.2;; 0.2) d=0.5;; *) d=1;; esac
done
}"""
"""Send the log from peer offset $2 (or its end) as records: ``RS S name LF`` once, then per
segment ``RS D offset length LF`` and exactly `length` bytes (only the program's last segment is
short, and nothing follows it). A complete segment is sent as it is; the newest is followed with
``tail -f`` until its writer exits (it is full, or the program ended). A segment trimmed before it
was read is skipped: the next record's offset says how much, and tether records the loss. Returns
once the program's output has all been sent (``ended``, or the log is gone). Waits for a segment
not yet written back off from 0.05 s to 1 s (only at a boundary, where split opens the next
segment as soon as a byte for it comes: within a segment, tail's inotify wakes it)."""


def stream_name(session_id: str) -> str:
    """A fresh log directory name (the peer stream's name) for a new program of `session_id`."""
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", session_id)[:24]
    return f"{slug}-{secrets.token_hex(6)}"


def _script(template: str, **values: object) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", str(value))
    return template


def create_log(stream: str, total_bytes: int, linger: int = LINGER) -> str:
    """Remote sh, run before the session `name` is created: make its log directory (0700, in a
    private per-user directory under the temp directory), write the scripts, set ``$L`` to it."""
    segment = max(1, total_bytes // SEGMENTS_KEPT)
    files = {
        "format": f"{FORMAT_VERSION} {segment}\n",
        "filter.sh": _script(_FILTER, KEPT=SEGMENTS_KEPT),
        "pipe.sh": _script(_PIPE, BYTES=segment, LINGER=linger),
    }
    writes = "; ".join(f"printf %s {shlex.quote(text)} > \"$L\"/{file}" for file, text in files.items())
    return (
        'b=${TMPDIR:-/tmp}; case $b in /*) ;; *) b=/tmp;; esac; case $b in *[!A-Za-z0-9/._-]*) b=/tmp;; esac; '
        'b="$b/tether-ssh-$(id -u)"; mkdir -m 700 "$b" 2>/dev/null; '
        '[ -d "$b" ] && [ ! -h "$b" ] && [ -O "$b" ] && [ "$(stat -c %a "$b")" = 700 ] || '
        "{ echo \"tether: $b must be a directory of ours with mode 0700\" >&2; exit 1; }; "
        f'L="$b"/{shlex.quote(stream)}; mkdir -m 700 "$L" && mkfifo -m 600 "$L"/input || exit 1; {writes}'
    )


def start_with_log(tmux: str, name: str, launcher: str, gate: str, rows: int, cols: int, *, options: str = "") -> str:
    """The tmux command that starts session `name` with its pane piped to and from ``$L``
    (`options`: more new-session options, e.g. ``-e VAR=value``).

    The pane waits on a ``wait-for`` channel that the same tmux command signals once the pipe is
    in place, so the program's first byte is at offset 0.
    """
    held = f"tmux wait-for {shlex.quote(gate)}; {launcher}"
    target = f"={shlex.quote(name)}:"
    # $L holds only [A-Za-z0-9/._-] (see create_log): nothing tmux expands (# %), nothing to quote
    return (
        f"{tmux} new-session -d{options} -s {shlex.quote(name)} -x {cols} -y {rows} {shlex.quote(held)} \\; "
        f'set-option -t {target} {TMUX_OPTION} "$L" \\; '
        f'pipe-pane -I -O -t {target} "exec sh $L/pipe.sh" \\; wait-for -S {shlex.quote(gate)}'
    )


def new_gate() -> str:
    return f"tether-gate-{secrets.token_hex(4)}"


def find_log(tmux: str, name: str) -> str:
    """Remote sh that sets ``$L`` to the session's log directory, empty when it has none."""
    return f'L=$({tmux} show-options -qv -t ={shlex.quote(name)}: {TMUX_OPTION} 2>/dev/null)'


def usable() -> str:
    """The remote test that the session has a pane log to follow (else: tmux's client, as before)."""
    return '[ -n "$L" ] && [ -r "$L/format" ] && [ -p "$L/input" ]'


def start_offset(resume: PeerMark | None, fallback: str) -> str:
    """Remote sh that sets ``$S``: the offset tether's output log asks for if ``$L`` is its stream,
    else 0 for a program this connect started (``$c`` = 1), else `fallback` (``0`` or ``end``)."""
    ours = resume is not None and resume.stream.startswith(STREAM_PREFIX)
    if resume is None or not ours:
        return f'if [ "$c" = 1 ]; then S=0; else S={fallback}; fi'
    name = shlex.quote(resume.stream[len(STREAM_PREFIX):])
    return f'if [ "${{L##*/}}" = {name} ]; then S={resume.offset}; elif [ "$c" = 1 ]; then S=0; else S={fallback}; fi'



def follow_function() -> str:
    """The follower, as a shell function ``tether_follow DIR START`` (START: a peer offset or ``end``)."""
    return _script(_FOLLOW, VERSION=FORMAT_VERSION)


def attach_following(tmux: str, name: str) -> str:
    """Remote sh after the PANE marker: the follower out, the channel's input into the pane.

    The channel's terminal goes raw first, so the records pass untouched and input is not echoed.
    Either direction ending ends the command: the input (the channel closed) or the follower (the
    program ended and all its output was sent); then everything this command started is ended.
    Its status is 0 when the program is gone, 2 when it still runs.
    """
    target = f"={shlex.quote(name)}:"
    return (
        f"{follow_function()}\n"
        "tether_size() { set -- $(stty size 2>/dev/null); "
        f'[ -n "$2" ] && {tmux} resize-window -t {target} -x "$2" -y "$1" >/dev/null 2>&1; }}\n'
        "stty raw -echo 2>/dev/null; e=; trap e=1 USR1; trap tether_size WINCH; tether_size; exec 5<&0; "
        '{ tether_follow "$L" "$S"; kill -USR1 $$; } 2>/dev/null & '
        '{ cat <&5 > "$L"/input; kill -USR1 $$; } 2>/dev/null & '
        "exec 5<&-; "
        'while [ -z "$e" ]; do wait; done; '
        "trap '' TERM USR1 WINCH; kill 0 2>/dev/null; "
        f"{tmux} has-session -t ={shlex.quote(name)} 2>/dev/null && exit 2; exit 0"
    )
