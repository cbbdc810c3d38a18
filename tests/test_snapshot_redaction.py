"""Redacting on the converter's dicts gives exactly what redacting the snapshot objects gives."""

from __future__ import annotations

import time

import tether
from tether.store._codec import make_snapshot_converter

from .test_snapshot_convert import redact_snapshot


def _snapshot() -> tether.SessionSnapshot:
    spec = tether.SessionSpec(
        id="s1",
        backend="ssh",
        options={
            "host": "h",
            "password": "hunter2",
            "headers": {"Authorization": "Bearer abc", "X-Trace": "1"},
            "hops": [{"host": "a", "api_key": "k"}],
            "env": {"GITHUB_TOKEN": "t", "LANG": "C"},
        },
    )
    state = tether.SessionState(
        id="s1", backend="ssh", target="h:22", status=tether.SessionStatus.CONNECTED, status_since=1.0,
        episode=None, history=(),
        preserved=tether.PreservedState(
            cwd="/srv", env={"DB_PASSWORD": "p", "EDITOR": "vi"}, last_command="export API_TOKEN=xyz && make",
            extra={"session_key": "k", "pid": "42"},
        ),
        last_disconnect=None, connected_at=1.0, next_attempt_at=None,
        episodes_total=0, episodes_recovered=0, episodes_failed=0,
    )
    return tether.SessionSnapshot(spec=spec, state=state, saved_at=time.time())


def test_fast_path_matches_the_object_redaction() -> None:
    snap = _snapshot()
    expected = {"schema": tether.SNAPSHOT_SCHEMA_VERSION, **make_snapshot_converter().unstructure(
        redact_snapshot(snap), tether.SessionSnapshot
    )}
    assert tether.snapshot_to_dict(snap) == expected
    text = repr(expected)
    for secret in ("hunter2", "Bearer abc", "'k'", "GITHUB_TOKEN': 't'", "xyz", "DB_PASSWORD': 'p'"):
        assert secret not in text


def test_the_callers_snapshot_is_untouched() -> None:
    snap = _snapshot()
    tether.snapshot_to_dict(snap)
    assert snap.spec.options["password"] == "hunter2"
    assert snap.state.preserved is not None and snap.state.preserved.env["DB_PASSWORD"] == "p"
