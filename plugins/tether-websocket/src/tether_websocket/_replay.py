"""De-duplicate what a server replays on re-attach against what tether already has. Pure.

terminado sends its buffered output (the last ~1000 chunks) to every new
client. tether's history and that replay are both windows on the same
stream: the replay starts somewhere and runs to now, the history ended when
the link dropped. So either the whole history occurs inside the replay, or a
suffix of the history is a prefix of the replay; what follows is new.
"""

from __future__ import annotations


def _overlap(history: bytes, replay: bytes) -> int:
    """Length of the longest prefix of `replay` that is a suffix of `history` (KMP, linear)."""
    limit = min(len(history), len(replay))
    if limit == 0:
        return 0
    pattern = replay[:limit]
    text = history[-limit:]
    failure = [0] * len(pattern)
    k = 0
    for i in range(1, len(pattern)):
        while k and pattern[i] != pattern[k]:
            k = failure[k - 1]
        if pattern[i] == pattern[k]:
            k += 1
        failure[i] = k
    k = 0
    for byte in text:
        while k and byte != pattern[k]:
            k = failure[k - 1]
        if byte == pattern[k]:
            k += 1
            if k == len(pattern):  # the whole pattern matched; only possible at the very end
                break
    return k


def new_part(history: bytes, replay: bytes) -> bytes:
    """The part of `replay` tether has not seen yet.

    With no overlap at all the replay is returned whole: showing a line twice
    beats losing output.
    """
    if not history or not replay:
        return replay
    at = replay.rfind(history)
    if at >= 0:
        return replay[at + len(history):]
    return replay[_overlap(history, replay):]
