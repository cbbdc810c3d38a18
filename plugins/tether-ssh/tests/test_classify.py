"""The exit classifier, table-driven with what OpenSSH really prints (FAULTS.md)."""

from __future__ import annotations

import pytest

import tether
from tether_ssh import classify_exit, error_for

R = tether.DisconnectReason
BENIGN = "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.\r\n"

CASES = [
    # (status, ssh's stderr, connected, reason)
    (255, "Timeout, server 127.0.0.1 not responding.\r\n", True, R.NETWORK),
    (255, "client_loop: send disconnect: Broken pipe\r\n", True, R.NETWORK),
    (255, "Connection to 127.0.0.1 closed by remote host.\r\n", True, R.NETWORK),
    (255, "ssh: connect to host 127.0.0.1 port 2222: Connection refused\r\n", False, R.NETWORK),
    (255, "Connection timed out during banner exchange\r\nConnection to 127.0.0.1 port 2222 timed out\r\n",
     False, R.NETWORK),
    (255, "ssh: connect to host 10.1.1.1 port 22: Connection timed out\n", False, R.NETWORK),
    (255, "ssh: connect to host 10.1.1.1 port 22: No route to host\n", False, R.NETWORK),
    (255, "ssh: connect to host 10.1.1.1 port 22: Network is unreachable\n", False, R.NETWORK),
    (255, "kex_exchange_identification: read: Connection reset by peer\r\n"
          "Connection reset by 127.0.0.1 port 2222\r\n", False, R.NETWORK),
    (255, "kex_exchange_identification: Connection closed by remote host\r\n"
          "Connection closed by 127.0.0.1 port 2222\r\n", False, R.NETWORK),
    (255, "ssh: Could not resolve hostname nowhere.invalid: Name or service not known\n", False, R.NETWORK),
    (255, "root@127.0.0.1: Permission denied (publickey).\r\n", False, R.AUTH),
    (255, BENIGN + "root@127.0.0.1: Permission denied (publickey,password).\r\n", False, R.AUTH),
    (255, "Received disconnect from 127.0.0.1 port 2222:2: Too many authentication failures\r\n",
     False, R.AUTH),
    (255, "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
          "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
          "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
          "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n"
          "Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.\n"
          "Host key verification failed.\n", False, R.HOST_KEY),
    (255, "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\n"
          "Host key verification failed.\n", False, R.HOST_KEY),
    (255, "Connection to 127.0.0.1 closed.\r\n", True, R.REMOTE_CLOSED),
    (0, "Connection to 127.0.0.1 closed.\r\n", True, R.PROCESS_EXIT),
    (3, "", True, R.PROCESS_EXIT),
    (127, "", False, R.SPAWN_FAILED),
    (255, "command-line line 0: Bad configuration option: frobnicate\n", False, R.BACKEND_ERROR),
    (255, "", True, R.BACKEND_ERROR),
    (-9, "", True, R.BACKEND_ERROR),
]


@pytest.mark.parametrize(("status", "stderr", "connected", "reason"), CASES)
def test_classify_exit(status: int, stderr: str, connected: bool, reason: tether.DisconnectReason) -> None:
    """Each real ssh message maps to the reason that picks the right recovery."""
    found = classify_exit(status, stderr, connected=connected)
    assert found.reason is reason
    if status >= 0:
        assert found.exit_code == status
    else:
        assert found.signal == -status


def test_benign_warning_alone_is_not_a_failure_reason() -> None:
    """'Permanently added' never becomes the verdict, nor part of the detail."""
    found = classify_exit(0, BENIGN, connected=True)
    assert found.reason is R.PROCESS_EXIT
    assert "Permanently added" not in found.detail


def test_remote_status_wins_over_stderr_words() -> None:
    """A non-255 status is the remote program's, whatever ssh printed alongside."""
    found = classify_exit(1, "Connection to 127.0.0.1 closed by remote host.\r\n", connected=True)
    assert found.reason is R.PROCESS_EXIT


@pytest.mark.parametrize(
    ("reason", "cls"),
    [(R.AUTH, tether.AuthError), (R.HOST_KEY, tether.HostKeyError), (R.NETWORK, tether.LinkError)],
)
def test_error_for_is_typed(reason: tether.DisconnectReason, cls: type[tether.LinkError]) -> None:
    """Connect failures become the most specific LinkError; auth and host key are not retryable."""
    err = error_for(tether.Disconnect(reason, "why", exit_code=255), "more")
    assert type(err) is cls
    assert err.reason is reason
    assert err.detail == "why; more"
    assert tether.classify(err).reason is reason
