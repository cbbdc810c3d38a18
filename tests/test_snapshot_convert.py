"""Snapshots round-trip through dicts and JSON, migrate forward, refuse newer schemas, and lose secrets."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.rules._errors import ConfigError, SnapshotError
from tether.rules._policy import Jitter, ReconnectPolicy
from tether.rules._reasons import Disconnect, DisconnectReason
from tether.rules._secrets import (
    DEFAULT_SECRET_PATTERNS,
    REDACTED,
    drop_redacted,
    redact_command,
    redact_env,
    redact_options,
)
from tether.rules._snapshots import SessionSnapshot
from tether.rules._spec import SessionSpec
from tether.rules._state import Attempt, Episode, EpisodeOutcome, PreservedState, SessionState, SessionStatus
from tether.store import _codec as _snapshot
from tether.store._codec import (
    MIGRATIONS,
    SNAPSHOT_SCHEMA_VERSION,
    make_snapshot_converter,
    migrate,
    snapshot_from_dict,
    snapshot_to_dict,
)


def redact_snapshot(snapshot: SessionSnapshot) -> SessionSnapshot:
    """The reference meaning of redaction, on the objects: what a store must read back."""
    spec = attrs.evolve(snapshot.spec, options=redact_options(snapshot.spec.options))
    state = snapshot.state
    if state.preserved is not None:
        preserved = state.preserved
        preserved = attrs.evolve(
            preserved,
            env=redact_env(preserved.env),
            extra=redact_env(preserved.extra),
            last_command=redact_command(preserved.last_command) if preserved.last_command is not None else None,
        )
        state = attrs.evolve(state, preserved=preserved)
    return attrs.evolve(snapshot, spec=spec, state=state)


# -- strategies -------------------------------------------------------------------------------------

_seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
_epoch = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)
_small = st.integers(min_value=0, max_value=10_000)
_text = st.text(max_size=12)
_json_scalar = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text
)
_json = st.recursive(
    _json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,15}", fullmatch=True)
_reasons = st.sampled_from(DisconnectReason)
_env = st.dictionaries(_text, _text, max_size=4)


@st.composite
def _policies(draw: st.DrawFn) -> ReconnectPolicy:
    base = draw(_seconds)
    return ReconnectPolicy(
        enabled=draw(st.booleans()),
        max_retries=draw(st.none() | _small),
        base_delay=base,
        max_delay=base + draw(_seconds),
        multiplier=draw(st.floats(min_value=1, max_value=10)),
        jitter=draw(st.sampled_from(Jitter)),
        connect_timeout=draw(st.floats(min_value=0.001, max_value=1e4)),
        health_check_interval=draw(_seconds),
        keepalive_interval=draw(_seconds),
        auto_reconnect=draw(st.booleans()),
        preserve_state=draw(st.booleans()),
        stable_after=draw(_seconds),
        history_limit=draw(_small),
        strategies=draw(st.dictionaries(_reasons, st.text(min_size=1, max_size=12), max_size=4)),
    )


_disconnects = st.builds(
    Disconnect,
    reason=_reasons,
    detail=_text,
    exit_code=st.none() | st.integers(-255, 255),
    signal=st.none() | st.integers(1, 64),
)
_attempts = st.builds(
    Attempt,
    number=st.integers(1, 100),
    strategy=_text,
    started_at=_epoch,
    duration=_seconds,
    success=st.booleans(),
    error=st.none() | _text,
    reason=st.none() | _reasons,
    used_strategy=st.none() | _text,
)
_episodes = st.builds(
    Episode,
    number=st.integers(1, 1000),
    disconnect=_disconnects,
    started_at=_epoch,
    outcome=st.sampled_from(EpisodeOutcome),
    attempts_made=_small,
    attempts=st.lists(_attempts, max_size=3).map(tuple),
    ended_at=st.none() | _epoch,
    recovery_time=st.none() | _seconds,
)
_preserved = st.builds(
    PreservedState,
    cwd=st.none() | _text,
    env=_env,
    last_command=st.none() | _text,
    handle=st.none() | _text,
    extra=_env,
)


@st.composite
def snapshots(draw: st.DrawFn) -> SessionSnapshot:
    sid = draw(_ids)
    spec = SessionSpec(
        id=sid,
        backend=draw(st.text(min_size=1, max_size=10)),
        options=draw(st.dictionaries(_text, _json, max_size=4)),
        policy=draw(_policies()),
    )
    state = SessionState(
        id=sid,
        backend=spec.backend,
        target=draw(_text),
        status=draw(st.sampled_from(SessionStatus)),
        status_since=draw(_epoch),
        episode=draw(st.none() | _episodes),
        history=tuple(draw(st.lists(_episodes, max_size=3))),
        preserved=draw(st.none() | _preserved),
        last_disconnect=draw(st.none() | _disconnects),
        connected_at=draw(st.none() | _epoch),
        next_attempt_at=draw(st.none() | _epoch),
        episodes_total=draw(_small),
        episodes_recovered=draw(_small),
        episodes_failed=draw(_small),
    )
    return SessionSnapshot(spec=spec, state=state, saved_at=draw(_epoch))


def _through_json(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(data))
    return result


def sample(session_id: str = "web-1", **preserved: Any) -> SessionSnapshot:
    """A mid-backoff session with one failed attempt, one past episode and preserved state."""
    drop = Disconnect(DisconnectReason.NETWORK, "connection reset")
    attempt = Attempt(
        number=1, strategy="simple-reconnect", started_at=100.0, duration=0.25, success=False,
        error="refused", reason=DisconnectReason.NETWORK,
    )
    episode = Episode(number=2, disconnect=drop, started_at=99.0, attempts_made=1, attempts=(attempt,))
    past = attrs.evolve(episode, number=1, outcome=EpisodeOutcome.RECOVERED, ended_at=50.0, recovery_time=1.5)
    spec = SessionSpec(
        id=session_id,
        backend="scripted",
        options={"target": "host-a", "env": {"LANG": "C"}},
        policy=ReconnectPolicy(strategies={"network": "force-reconnect"}),
    )
    state = SessionState(
        id=session_id, backend="scripted", target="host-a", status=SessionStatus.BACKING_OFF,
        status_since=100.25, episode=episode, history=(past,),
        preserved=PreservedState(**({"cwd": "/srv", "env": {"LANG": "C"}, "handle": "tmux:1"} | preserved)),
        last_disconnect=drop, connected_at=None, next_attempt_at=102.0,
        episodes_total=2, episodes_recovered=1, episodes_failed=0,
    )
    return SessionSnapshot(spec=spec, state=state, saved_at=100.5)


# -- round trips --------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_any_snapshot_round_trips_through_json_unredacted(snapshot: SessionSnapshot) -> None:
    """Every field, enum and mapping survives dict -> JSON -> dict -> snapshot unchanged."""
    data = _through_json(snapshot_to_dict(snapshot, secret_patterns=()))
    assert data["schema"] == SNAPSHOT_SCHEMA_VERSION
    assert snapshot_from_dict(data) == snapshot


@settings(max_examples=100, deadline=None)
@given(snapshots())
def test_redacted_snapshot_round_trips_to_its_redacted_self(snapshot: SessionSnapshot) -> None:
    """What a store keeps reads back as exactly the redacted snapshot, and redaction is idempotent."""
    redacted = redact_snapshot(snapshot)
    assert snapshot_from_dict(_through_json(snapshot_to_dict(snapshot))) == redacted
    assert redact_snapshot(redacted) == redacted


def test_enums_and_reason_keys_are_plain_values() -> None:
    """Stored dicts hold enum values (readable by other tools and a PostgreSQL jsonb column)."""
    data = snapshot_to_dict(sample())
    assert data["state"]["status"] == "backing-off"
    assert data["state"]["episode"]["outcome"] == "ongoing"
    assert data["state"]["episode"]["disconnect"]["reason"] == "network"
    assert data["spec"]["policy"]["jitter"] == "full"
    assert data["spec"]["policy"]["strategies"] == {"network": "force-reconnect"}
    back = snapshot_from_dict(data)
    assert back.spec.policy.strategies == {DisconnectReason.NETWORK: "force-reconnect"}
    assert back.state.status is SessionStatus.BACKING_OFF


def test_converter_is_our_own() -> None:
    """Each call makes a fresh converter; cattrs' global converter is never touched."""
    import cattrs

    first, second = make_snapshot_converter(), make_snapshot_converter()
    assert first is not second
    assert first is not cattrs.global_converter


# -- errors -----------------------------------------------------------------------------------------------


def test_newer_schema_is_refused_not_guessed() -> None:
    data = snapshot_to_dict(sample())
    data["schema"] = 7
    with pytest.raises(SnapshotError) as info:
        snapshot_from_dict(data)
    assert info.value.session_id == "web-1"
    assert info.value.problem == "written by a newer tether (schema 7 > 1); upgrade tether to read it"
    assert str(info.value) == (
        "snapshot of session 'web-1': written by a newer tether (schema 7 > 1); upgrade tether to read it"
    )


@pytest.mark.parametrize("schema", [None, "1", True, 1.0])
def test_missing_or_bad_schema_is_an_error(schema: object) -> None:
    data = snapshot_to_dict(sample())
    if schema is None:
        del data["schema"]
    else:
        data["schema"] = schema
    with pytest.raises(SnapshotError, match="has no valid schema version"):
        snapshot_from_dict(data)


def test_bad_field_names_the_session_and_the_path() -> None:
    data = snapshot_to_dict(sample())
    data["state"]["episode"]["number"] = "two"
    with pytest.raises(SnapshotError) as info:
        snapshot_from_dict(data, session_id="web-1")
    assert str(info.value) == (
        "snapshot of session 'web-1': does not match schema 1: "
        "invalid value for type, expected int @ $.state.episode.number"
    )


def test_invalid_policy_carries_the_validators_message() -> None:
    data = snapshot_to_dict(sample())
    data["spec"]["policy"]["max_delay"] = 0.5
    with pytest.raises(SnapshotError, match=r"max_delay: must be >= base_delay .* @ \$\.spec\.policy"):
        snapshot_from_dict(data)


def test_unknown_keys_are_an_error() -> None:
    data = snapshot_to_dict(sample())
    data["state"]["mood"] = "grumpy"
    with pytest.raises(SnapshotError, match=r"extra fields found \(mood\) @ \$\.state"):
        snapshot_from_dict(data)


def test_row_key_must_match_the_snapshot() -> None:
    with pytest.raises(SnapshotError, match="stored under 'other' but describes session 'web-1'"):
        snapshot_from_dict(snapshot_to_dict(sample()), session_id="other")


def test_spec_and_state_must_be_the_same_session() -> None:
    snap = sample()
    with pytest.raises(ConfigError, match=r"state\.id"):
        SessionSnapshot(spec=snap.spec, state=attrs.evolve(snap.state, id="other"), saved_at=1.0)


# -- migrations ---------------------------------------------------------------------------------------------


def _as_v0(data: dict[str, Any]) -> dict[str, Any]:
    """A made-up schema 0: ``saved_at`` was ``saved`` and the status was upper case."""
    old = dict(data, schema=0)
    old["saved"] = old.pop("saved_at")
    old["state"] = dict(old["state"], status=old["state"]["status"].upper())
    return old


def _v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
    data["saved_at"] = data.pop("saved")
    data["state"] = dict(data["state"], status=data["state"]["status"].lower())
    return data


def test_old_schema_is_migrated_forward() -> None:
    old = _as_v0(snapshot_to_dict(sample()))
    assert snapshot_from_dict(old, migrations={0: _v0_to_v1}) == sample()
    assert old["schema"] == 0, "the caller's dict is not changed"


def test_old_schema_without_a_migration_is_an_error() -> None:
    assert 0 not in MIGRATIONS
    with pytest.raises(TypeError):
        MIGRATIONS[0] = _v0_to_v1  # type: ignore[index]
    with pytest.raises(SnapshotError, match="schema 0 is too old: no migration from 0 to 1"):
        snapshot_from_dict(_as_v0(snapshot_to_dict(sample())))


def test_migrations_run_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_snapshot, "SNAPSHOT_SCHEMA_VERSION", 3)
    steps: list[int] = []

    def step(n: int) -> Any:
        def run(data: dict[str, Any]) -> dict[str, Any]:
            assert data["schema"] == n
            steps.append(n)
            return data

        return run

    assert migrate({"schema": 0}, migrations={n: step(n) for n in (2, 0, 1)})["schema"] == 3
    assert steps == [0, 1, 2]


def test_a_failing_migration_names_the_session() -> None:
    def broken(data: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("gone")

    with pytest.raises(SnapshotError, match="'web-1': migration from schema 0 failed"):
        snapshot_from_dict(_as_v0(snapshot_to_dict(sample())), migrations={0: broken})


# -- redaction ----------------------------------------------------------------------------------------------


def test_redact_env_default_patterns_are_case_insensitive() -> None:
    env = {
        "API_TOKEN": "t", "db_password": "p", "PASSWD": "p", "AWS_SECRET_ACCESS_KEY": "k",
        "Credentials_File": "c", "HTTP_AUTHORIZATION": "a", "GITHUB_TOKEN": "g", "PATH": "/bin", "LANG": "C",
    }
    assert redact_env(env) == {name: REDACTED for name in env if name not in ("PATH", "LANG")} | {
        "PATH": "/bin", "LANG": "C",
    }
    assert set(DEFAULT_SECRET_PATTERNS) >= {"TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH"}


def test_redact_env_patterns_are_configurable() -> None:
    assert redact_env({"PIN": "1234", "API_TOKEN": "t"}, patterns=["pin"]) == {"PIN": REDACTED, "API_TOKEN": "t"}
    assert redact_env({"API_TOKEN": "t"}, patterns=()) == {"API_TOKEN": "t"}


def test_redact_options_walks_nested_tables_and_lists() -> None:
    options = {
        "host": "db",
        "password": "hunter2",
        "headers": {"Authorization": "Bearer abc", "Accept": "json"},
        "env": {"API_TOKEN": "t", "TERM": "xterm"},
        "hops": [{"host": "jump", "token": {"nested": "x"}}],
    }
    assert redact_options(options) == {
        "host": "db",
        "password": REDACTED,
        "headers": {"Authorization": REDACTED, "Accept": "json"},
        "env": {"API_TOKEN": REDACTED, "TERM": "xterm"},
        "hops": [{"host": "jump", "token": REDACTED}],
    }
    assert options["password"] == "hunter2", "the input is not changed"


def test_redact_command_hides_secret_assignments() -> None:
    assert redact_command("export API_TOKEN=abc; ls") == "export API_TOKEN=[redacted]; ls"
    assert redact_command("PASSWORD='a b' psql && X=1 make") == "PASSWORD=[redacted] psql && X=1 make"
    assert redact_command("make test") == "make test"


def test_snapshot_to_dict_redacts_env_options_and_command() -> None:
    snap = sample(env={"API_TOKEN": "s3cr3t", "LANG": "C"}, last_command="export MY_SECRET=zzz")
    snap = attrs.evolve(
        snap, spec=attrs.evolve(snap.spec, options={"env": {"DB_PASSWORD": "pw"}, "token": "tk", "target": "h"})
    )
    text = json.dumps(snapshot_to_dict(snap))
    for secret in ("s3cr3t", "pw\"", "tk\"", "zzz"):
        assert secret not in text
    back = snapshot_from_dict(json.loads(text))
    assert back.state.preserved is not None
    assert back.state.preserved.env == {"API_TOKEN": REDACTED, "LANG": "C"}
    assert back.spec.options == {"env": {"DB_PASSWORD": REDACTED}, "token": REDACTED, "target": "h"}
    assert drop_redacted(back.state.preserved.env) == {"LANG": "C"}
    assert snap.state.preserved is not None and snap.state.preserved.env["API_TOKEN"] == "s3cr3t"


def test_a_declared_spec_round_trips_redacted_and_bad_text_names_the_session() -> None:
    """A spec alone (a session declared to a shared store before anyone ran it): JSON with a schema."""
    import tether
    from tether.store._codec import decode_spec, encode_spec

    spec = tether.SessionSpec(id="db1", backend="ssh", options={"host": "db1", "password": "hunter2"})
    text = encode_spec(spec, tether.DEFAULT_SECRET_PATTERNS)
    assert "hunter2" not in text
    back = decode_spec("db1", text)
    assert back.options == {"host": "db1", "password": tether.REDACTED} and back.backend == "ssh"
    with pytest.raises(tether.SnapshotError, match="session 'db1': spec is not valid JSON"):
        decode_spec("db1", "{")
    with pytest.raises(tether.SnapshotError, match="stored under 'other'"):
        decode_spec("other", text)
    with pytest.raises(tether.SnapshotError, match="spec does not match schema 1"):
        decode_spec("db1", '{"schema": 1, "id": "db1"}')
