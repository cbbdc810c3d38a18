"""force-reconnect reports the most specific reason its strategies' failures share."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

import tether
from tether.engine._strategies import FORCE_ORDER, common_reason

R = tether.DisconnectReason


class _Context:
    """Only what ForceReconnect touches: `run_strategy`, failing as each strategy is told to, and the
    features and preserved handle it asks whether a strategy can apply (here: every one can)."""

    features = frozenset(tether.Feature)
    preserved = tether.PreservedState(handle="kept")

    def __init__(self, failures: Mapping[str, Exception]) -> None:
        self.failures = failures
        self.tried: list[str] = []

    async def run_strategy(self, name: str, *, announce: bool = True) -> tether.Link:
        self.tried.append(name)
        raise self.failures.get(name, tether.StrategyNotApplicableError(f"{name} does not apply"))


def _refused(name: str) -> tether.LinkError:
    return tether.LinkError(f"{name}: Connection refused", reason=R.NETWORK)


@pytest.mark.parametrize(
    ("failures", "reason"),
    [
        ({n: _refused(n) for n in FORCE_ORDER}, R.NETWORK),
        ({"session-restore": tether.ReattachUnavailableError("no handle"),
          "ssh-reconnect": _refused("ssh"), "simple-reconnect": _refused("simple")}, R.NETWORK),
        ({"ssh-reconnect": _refused("ssh"),
          "simple-reconnect": tether.LinkError("slow", reason=R.TIMEOUT)}, R.NETWORK),
        ({"ssh-reconnect": tether.LinkError("slow", reason=R.TIMEOUT),
          "simple-reconnect": tether.LinkError("slow", reason=R.TIMEOUT)}, R.TIMEOUT),
        ({"ssh-reconnect": _refused("ssh"), "simple-reconnect": RuntimeError("a bug")}, R.BACKEND_ERROR),
        ({"ssh-reconnect": _refused("ssh"),
          "simple-reconnect": tether.LinkError("exited", reason=R.PROCESS_EXIT)}, R.BACKEND_ERROR),
        ({"session-restore": tether.ReattachUnavailableError("gone")}, R.REMOTE_CLOSED),
    ],
    ids=["all-network", "reattach-unavailable-is-no-verdict", "network-and-timeout", "all-timeout",
         "a-bug-claims-nothing", "unlike-reasons", "only-reattach"],
)
async def test_the_reason_is_what_every_failure_shares(failures: Mapping[str, Exception],
                                                        reason: tether.DisconnectReason) -> None:
    """Every applicable strategy is tried; the error lists each and carries their common reason."""
    ctx = _Context(failures)
    with pytest.raises(tether.LinkError) as caught:
        await tether.ForceReconnect()(ctx)  # type: ignore[arg-type]
    assert caught.value.reason is reason
    assert ctx.tried == list(FORCE_ORDER)
    for name in failures:
        assert f"{name}:" in str(caught.value)


async def test_auth_ends_the_chain_at_once() -> None:
    """An auth failure is final: no later strategy runs, the AuthError itself comes out."""
    ctx = _Context({"ssh-reconnect": tether.AuthError("denied"), "simple-reconnect": _refused("simple")})
    with pytest.raises(tether.AuthError):
        await tether.ForceReconnect()(ctx)  # type: ignore[arg-type]
    assert ctx.tried == ["session-restore", "ssh-reconnect"]


async def test_nothing_applicable_is_backend_error() -> None:
    with pytest.raises(tether.LinkError, match="no strategy applies") as caught:
        await tether.ForceReconnect()(_Context({}))  # type: ignore[arg-type]
    assert caught.value.reason is R.BACKEND_ERROR


def test_common_reason_of_nothing_claims_nothing() -> None:
    assert common_reason([]) is R.BACKEND_ERROR
    assert common_reason([None]) is R.BACKEND_ERROR
