"""Why an ssh link ended, from ssh's exit status and ssh's *own* stderr. Pure.

Only the client's diagnostics (its stderr pipe) are read here, never what
the remote program printed on the pty: a remote ``echo "Permission denied"``
is output, not a verdict. OpenSSH exits 255 for every failure of its own and
with the remote command's status otherwise, so a status other than 255 is
always the remote program's doing.
"""

from __future__ import annotations

import re

from tether import AuthError, Disconnect, DisconnectReason, HostKeyError, LinkError

SSH_FAILURE = 255
"""OpenSSH's exit status for its own errors (and, rarely, a remote program's 255)."""

_BENIGN = re.compile(
    r"^(Warning: Permanently added .* to the list of known hosts\.?"
    r"|Pseudo-terminal will not be allocated.*"
    r"|debug\d: .*"
    r"|\s*)$"
)
"""Lines that never mean failure; they are dropped before matching and from details."""

_TABLE: tuple[tuple[re.Pattern[str], DisconnectReason], ...] = (
    # Host keys first: "Host key verification failed." can follow other lines.
    (re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed"
                r"|host key is known for .* you have requested strict checking"
                r"|Host key for .* has changed"), DisconnectReason.HOST_KEY),
    (re.compile(r"Permission denied \(|Too many authentication failures"
                r"|No more authentication methods to try"), DisconnectReason.AUTH),
    (re.compile(r"Connection refused|Connection reset|Connection timed out|Operation timed out"
                r"|No route to host|Network is unreachable|Timeout, server .* not responding"
                r"|closed by remote host|Broken pipe|Could not resolve hostname"
                r"|Temporary failure in name resolution|kex_exchange_identification"
                r"|Connection closed by .* port \d+|Connection reset by .* port \d+"
                r"|banner exchange|Software caused connection abort"), DisconnectReason.NETWORK),
    (re.compile(r"^(Shared c|C)onnection to .* closed\.$"), DisconnectReason.REMOTE_CLOSED),
)
"""First match wins; what ssh says, per FAULTS.md, mapped to a typed reason."""


_CHANNEL_REFUSED = re.compile(
    r"Session open refused by peer|Master refused session request|session request failed"
)
"""A shared connection's master (or sshd behind it, past its MaxSessions) refused a channel."""


def channel_refused(stderr: str) -> bool:
    """Whether a shared-connection client was refused its channel (so another connection is needed)."""
    return _CHANNEL_REFUSED.search(stderr) is not None


def meaningful_lines(stderr: str) -> list[str]:
    """ssh's stderr without carriage returns and benign warnings."""
    lines = (line.strip("\r").strip() for line in stderr.splitlines())
    return [line for line in lines if not _BENIGN.match(line)]


def _detail(lines: list[str], limit: int = 400) -> str:
    text = "; ".join(lines)
    return text if len(text) <= limit else "..." + text[-limit:]


def classify_exit(returncode: int, stderr: str, *, connected: bool) -> Disconnect:
    """The typed reason an ssh client process ended.

    `connected` says whether the remote shell had come up (the ready marker
    was seen): a non-255 status before that means the remote side could not
    start the shell (spawn-failed); after it, the remote program exited.
    """
    lines = meaningful_lines(stderr)
    if returncode < 0:
        return Disconnect(
            DisconnectReason.BACKEND_ERROR, _detail([f"ssh killed by signal {-returncode}", *lines]),
            signal=-returncode,
        )
    if returncode != SSH_FAILURE:
        reason = DisconnectReason.PROCESS_EXIT if connected else DisconnectReason.SPAWN_FAILED
        return Disconnect(reason, _detail(lines), exit_code=returncode)
    for pattern, reason in _TABLE:
        for line in lines:
            if pattern.search(line):
                return Disconnect(reason, _detail(lines), exit_code=returncode)
    return Disconnect(
        DisconnectReason.BACKEND_ERROR, _detail(lines) or "ssh failed without a message",
        exit_code=returncode,
    )


def error_for(disconnect: Disconnect, extra: str = "") -> LinkError:
    """The most specific `LinkError` for a failed connect (auth and host key are never retried)."""
    detail = "; ".join(part for part in (disconnect.detail, extra) if part)
    if disconnect.reason is DisconnectReason.AUTH:
        return AuthError(detail, exit_code=disconnect.exit_code)
    if disconnect.reason is DisconnectReason.HOST_KEY:
        return HostKeyError(detail, exit_code=disconnect.exit_code)
    return LinkError(
        detail, reason=disconnect.reason, exit_code=disconnect.exit_code, signal=disconnect.signal
    )
