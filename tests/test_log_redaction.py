"""One redaction for free text: the values a spec holds secret, log lines and their tracebacks."""

from __future__ import annotations

import io
import logging

import hypothesis
import hypothesis.strategies as st

from tether.cli._logging import JsonFormatter, RedactingFilter
from tether.engine._secrets import known_secrets, remember
from tether.rules._secrets import REDACTED, redact_data, redact_text, secret_values


def test_secret_values_are_the_literals_under_secret_names_at_any_depth() -> None:
    options = {
        "host": "h", "password": "pw-1", "env": {"API_TOKEN": "tk-22", "LANG": "C"},
        "headers": [{"Authorization": "Bearer abcdefgh"}], "auth": {"user": "u-333", "pass": ["x-4444"]},
        "db_secret": {"from_env": "DB"}, "old_key": REDACTED, "empty_key": "",
    }
    assert secret_values(options) == ("Bearer abcdefgh", "x-4444", "tk-22", "u-333", "pw-1")
    assert secret_values(options, ()) == ()


def test_redact_data_scrubs_every_string_of_a_reply() -> None:
    data = {"message": "bad pw-1", "errors": [{"path": "options", "problem": "pw-1?"}], "n": 3}
    assert redact_data(data, ("pw-1",)) == {
        "message": f"bad {REDACTED}", "errors": [{"path": "options", "problem": f"{REDACTED}?"}], "n": 3}


def test_a_logged_traceback_is_scrubbed_of_every_known_secret() -> None:
    remember(["tb-Secr3t-9911"])
    assert "tb-Secr3t-9911" in known_secrets()
    for formatter in (logging.Formatter(), JsonFormatter()):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(RedactingFilter())
        handler.setFormatter(formatter)
        logger = logging.getLogger("tether.test.redaction")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            try:
                raise RuntimeError("refused with tb-Secr3t-9911")
            except RuntimeError:
                logger.exception("call with %s failed", "tb-Secr3t-9911")
        finally:
            logger.removeHandler(handler)
        text = stream.getvalue()
        assert "tb-Secr3t-9911" not in text and "RuntimeError: refused with" in text and "Traceback" in text


PIECES = [*"abkenortsywdBEARTOKNS=&: \t-_.~%+/0123456789", "token", "Bearer ", "basic ", "key=", "Authorization: "]


@hypothesis.given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_redact_text_skips_a_pattern_only_where_it_cannot_match(text: str) -> None:
    from tether.rules._secrets import _AUTH_HEADER, _QUERY_SECRET

    full = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text))
    assert redact_text(text) == full
