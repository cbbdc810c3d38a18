"""Turn whatever a backend or strategy raised into a typed `Disconnect`. Pure."""

from __future__ import annotations

import socket
import sys

import trio

from ._errors import LinkError
from ._reasons import Disconnect, DisconnectReason

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup


def _leaf(exc: BaseException) -> BaseException:
    """The first non-cancellation leaf of an exception group (nurseries wrap errors)."""
    while isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if not isinstance(e, trio.Cancelled)]
        if not leaves:
            return exc.exceptions[0]
        exc = leaves[0]
    return exc


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The lone non-cancellation error in a group (recursively), if there is exactly one."""
    leaves = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
    if len(leaves) != 1:
        return None
    leaf = leaves[0]
    return single_error(leaf) if isinstance(leaf, BaseExceptionGroup) else leaf


def describe_error(exc: BaseException) -> str:
    """A one-line description of an error, without the group wrapping."""
    leaf = _leaf(exc)
    text = str(leaf)
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__


def classify(exc: BaseException) -> Disconnect:
    """The typed reason behind `exc`. Anything unrecognised is a backend error (retryable)."""
    leaf = _leaf(exc)
    if isinstance(leaf, LinkError):
        return Disconnect(leaf.reason, leaf.detail, leaf.exit_code, leaf.signal)
    if isinstance(leaf, (trio.TooSlowError, TimeoutError)):
        return Disconnect(DisconnectReason.TIMEOUT, describe_error(leaf))
    if isinstance(leaf, (ConnectionError, socket.gaierror, trio.BrokenResourceError)):
        return Disconnect(DisconnectReason.NETWORK, describe_error(leaf))
    return Disconnect(DisconnectReason.BACKEND_ERROR, describe_error(leaf))
