"""The readiness probe's cheap half: does the target answer with an SSH identification string?

A TCP connect plus the server's first line (``SSH-2.0-OpenSSH_9.2p1 ...``,
RFC 4253 section 4.2) says sshd is up and accepting, without a key exchange,
without authenticating and without a shell: what the engine's readiness
gate needs while a host is down, on its own short schedule. Where the
connection really goes is asked of ssh itself (``ssh -G``: the user's
config may rename the host, change the port or go through a proxy).
"""

from __future__ import annotations

import attrs
import trio

from tether import DisconnectReason, LinkError

from ._command import resolve_argv
from ._options import SshOptions

GREETING_LIMIT = 8192
"""Bytes read looking for the identification line (servers may send other lines first)."""


@attrs.frozen
class Route:
    """Where ssh would connect for these options."""

    hostname: str
    port: int
    proxied: bool
    """A ProxyCommand or ProxyJump is in effect: a direct TCP probe would test the wrong thing."""


def parse_route(config: str) -> Route:
    """`ssh -G` output (``keyword value`` lines) to a `Route`."""
    values: dict[str, str] = {}
    for line in config.splitlines():
        keyword, _, value = line.strip().partition(" ")
        if keyword and keyword.lower() not in values:
            values[keyword.lower()] = value.strip()
    proxied = any(values.get(k, "none").lower() != "none" for k in ("proxycommand", "proxyjump"))
    return Route(hostname=values.get("hostname", ""), port=int(values.get("port", "22")), proxied=proxied)


async def resolve_route(opts: SshOptions) -> Route:
    """Ask ssh where it would connect (``ssh -G``, no network); `LinkError` if ssh refuses the config."""
    try:
        result = await trio.run_process(
            resolve_argv(opts), stdin=b"", capture_stdout=True, capture_stderr=True, check=False
        )
    except OSError as exc:
        raise LinkError(f"cannot run {opts.ssh_path}: {exc}", reason=DisconnectReason.SPAWN_FAILED) from exc
    if result.returncode != 0:
        said = result.stderr.decode("utf-8", errors="replace").strip()
        raise LinkError(f"ssh -G failed: {said}", reason=DisconnectReason.BACKEND_ERROR)
    route = parse_route(result.stdout.decode("utf-8", errors="replace"))
    if not route.hostname:
        raise LinkError("ssh -G named no hostname", reason=DisconnectReason.BACKEND_ERROR)
    return route


def identification(received: bytes) -> str | None:
    """The server's ``SSH-`` line, once a whole one has arrived; None while it has not."""
    for raw in received.split(b"\n")[:-1]:
        line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        if line.startswith("SSH-"):
            return line
    return None


async def read_greeting(hostname: str, port: int) -> str:
    """Connect and read the identification line; `LinkError` (network) if there is none.

    The caller bounds the time. The connection is closed right after, before
    any key exchange: sshd logs it as a connection closed during banner exchange.
    """
    where = f"{hostname}:{port}"
    try:
        stream = await trio.open_tcp_stream(hostname, port)
    except OSError as exc:
        raise LinkError(f"connect to {where}: {_why(exc)}", reason=DisconnectReason.NETWORK) from exc
    received = b""
    async with stream:
        while len(received) < GREETING_LIMIT:
            try:
                chunk = await stream.receive_some(GREETING_LIMIT - len(received))
            except (OSError, trio.BrokenResourceError) as exc:
                raise LinkError(f"{where} broke the connection: {exc}", reason=DisconnectReason.NETWORK) from exc
            if not chunk:
                break
            received += chunk
            line = identification(received)
            if line is not None:
                if not line.startswith(("SSH-2.0-", "SSH-1.99-")):
                    raise LinkError(f"{where} speaks an SSH version ssh cannot use: {line[:80]!r}",
                                    reason=DisconnectReason.NETWORK)
                return line
    shown = received[:80].decode("utf-8", errors="replace")
    raise LinkError(
        f"{where} closed without an SSH identification" + (f" (it said {shown!r})" if shown else ""),
        reason=DisconnectReason.NETWORK,
    )


def _why(exc: OSError) -> str:
    """The operating system's own words (``Connection refused``), not trio's summary of its attempts."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        nested = getattr(cause, "exceptions", None)
        cause = nested[0] if nested else cause.__cause__
    return str(exc)
