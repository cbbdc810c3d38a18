"""The six reference strategies, doing real work through the backend (docs/reference-design.md, lesson 1).

Each is registered through tether's own ``tether.strategies`` entry points,
exactly as a third-party strategy would be.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import final

from ..contract._plugin import ConnectMode, Feature, Link, RecoveryContext
from ..rules._errors import LinkError, ReattachUnavailableError, StrategyNotApplicableError
from ..rules._reasons import DisconnectReason


def _require(ctx: RecoveryContext, feature: Feature, strategy: str) -> None:
    if feature not in ctx.features:
        raise StrategyNotApplicableError(
            f"{strategy} needs a backend with {feature.value!r}; {ctx.backend_name!r} has "
            f"{sorted(f.value for f in ctx.features) or 'none'}"
        )


@final
class SimpleReconnect:
    """Open a new link from the spec alone."""

    name = "simple-reconnect"

    @staticmethod
    def applies(ctx: RecoveryContext) -> bool:
        return True

    async def __call__(self, ctx: RecoveryContext) -> Link:
        return await ctx.connect(ConnectMode.FRESH)


@final
class SessionRestore:
    """Re-attach to the program that kept running (tmux, a named terminal, a restored snapshot)."""

    name = "session-restore"

    @staticmethod
    def applies(ctx: RecoveryContext) -> bool:
        """Only with something to re-attach to: a backend that can, and a handle kept."""
        return Feature.REATTACH in ctx.features and ctx.preserved is not None and ctx.preserved.handle is not None

    async def __call__(self, ctx: RecoveryContext) -> Link:
        _require(ctx, Feature.REATTACH, self.name)
        if ctx.preserved is None or ctx.preserved.handle is None:
            raise ReattachUnavailableError("no handle to re-attach to was preserved")
        return await ctx.connect(ConnectMode.REATTACH)


@final
class ProcessRestart:
    """Start the program afresh in the preserved cwd with the preserved env."""

    name = "process-restart"

    @staticmethod
    def applies(ctx: RecoveryContext) -> bool:
        return Feature.RESTORE_STATE in ctx.features

    async def __call__(self, ctx: RecoveryContext) -> Link:
        _require(ctx, Feature.RESTORE_STATE, self.name)
        return await ctx.connect(ConnectMode.RESTART)


@final
class SshReconnect:
    """Reopen a remote link: re-attach to the remote program if it survived, else restore state."""

    name = "ssh-reconnect"

    @staticmethod
    def applies(ctx: RecoveryContext) -> bool:
        return Feature.REMOTE in ctx.features

    async def __call__(self, ctx: RecoveryContext) -> Link:
        _require(ctx, Feature.REMOTE, self.name)
        if Feature.REATTACH in ctx.features and ctx.preserved is not None and ctx.preserved.handle:
            try:
                return await ctx.connect(ConnectMode.REATTACH)
            except ReattachUnavailableError:
                pass
        if Feature.RESTORE_STATE in ctx.features:
            return await ctx.connect(ConnectMode.RESTART)
        return await ctx.connect(ConnectMode.FRESH)


@final
class StateRecovery:
    """Restart with the preserved state, then replay the output history to subscribers."""

    name = "state-recovery"

    @staticmethod
    def applies(ctx: RecoveryContext) -> bool:
        return Feature.RESTORE_STATE in ctx.features

    async def __call__(self, ctx: RecoveryContext) -> Link:
        _require(ctx, Feature.RESTORE_STATE, self.name)
        link = await ctx.connect(ConnectMode.RESTART)
        ctx.replay_history()
        return link


FORCE_ORDER = ("session-restore", "ssh-reconnect", "process-restart", "state-recovery", "simple-reconnect")
"""Most state-preserving first; simple-reconnect last because it restores nothing
(docs/reference-design.md, lesson 10)."""

_APPLIES: dict[str, Callable[[RecoveryContext], bool]] = {
    cls.name: cls.applies for cls in (SessionRestore, SshReconnect, ProcessRestart, StateRecovery, SimpleReconnect)
}
"""Which reference strategies can serve a context, asked before one is announced and run."""


@final
class ForceReconnect:
    """Try the other strategies in turn, skipping those the backend cannot serve.

    A strategy that cannot apply (ssh-reconnect to a local program, a
    re-attach with no handle kept) is skipped before it is announced, so the
    ``reconnect.strategy`` events name only what was really tried. Reports the
    one that worked through ``ctx.used_strategy``; if all fail, the error
    lists what each said, with the most specific reason they share
    (`common_reason`): every one refused by a host that is down is ``network``,
    so the session is treated as the network failure it is. Auth and host-key
    failures stop the chain.
    """

    name = "force-reconnect"

    async def __call__(self, ctx: RecoveryContext) -> Link:
        errors: list[str] = []
        reasons: list[DisconnectReason | None] = []
        for name in FORCE_ORDER:
            applies = _APPLIES.get(name)
            if applies is not None and not applies(ctx):
                continue
            try:
                return await ctx.run_strategy(name)
            except StrategyNotApplicableError:
                continue
            except ReattachUnavailableError as exc:  # nothing to re-attach to: says nothing of the target
                errors.append(f"{name}: {exc}")
            except LinkError as exc:
                if not exc.reason.retryable:
                    raise
                errors.append(f"{name}: {exc}")
                reasons.append(exc.reason)
            except Exception as exc:  # one strategy's bug must not end the chain
                errors.append(f"{name}: {exc!r}")
                reasons.append(None)
        if not errors:
            raise LinkError("no strategy applies", reason=DisconnectReason.BACKEND_ERROR)
        raise LinkError(
            "every strategy failed: " + "; ".join(errors),
            reason=common_reason(reasons) if reasons else DisconnectReason.REMOTE_CLOSED,
        )


_UNREACHABLE = frozenset({DisconnectReason.NETWORK, DisconnectReason.TIMEOUT})


def common_reason(reasons: list[DisconnectReason | None]) -> DisconnectReason:
    """The most specific reason shared by every failure (None: an untyped error, a bug).

    All the same: that one. Network and timeout mixed (refused here, timed out
    there): network, the target is unreachable either way. Anything else, or
    any bug among them: backend-error, which claims nothing it does not know.
    """
    if not reasons or None in reasons:
        return DisconnectReason.BACKEND_ERROR
    distinct = {r for r in reasons if r is not None}
    if len(distinct) == 1:
        return distinct.pop()
    if distinct <= _UNREACHABLE:
        return DisconnectReason.NETWORK
    return DisconnectReason.BACKEND_ERROR
