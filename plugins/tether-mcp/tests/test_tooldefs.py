"""Each tool's published schema and its argument class say the same thing (pure)."""

from __future__ import annotations

import attrs
import jsonschema
import pytest

from tether_mcp._tooldefs import ArgumentError, check_arguments, tool_defs


@pytest.mark.parametrize("tool", tool_defs(45), ids=lambda t: t.name)
def test_schema_and_class_agree(tool) -> None:  # type: ignore[no-untyped-def]
    """The schema names exactly the class's fields, requires exactly those without a default, allows no
    others, and is valid JSON Schema."""
    jsonschema.Draft202012Validator.check_schema(tool.schema)
    fields = {f.name: f for f in attrs.fields(tool.args)}
    assert set(tool.schema["properties"]) == set(fields)
    required = {name for name, f in fields.items() if f.default is attrs.NOTHING}
    assert set(tool.schema["required"]) == required
    assert tool.schema["additionalProperties"] is False
    assert tool.description and tool.title


def test_the_budget_bounds_every_timeout() -> None:
    for tool in tool_defs(7):
        timeout = tool.schema["properties"].get("timeout")
        if timeout is not None:
            assert timeout["maximum"] == 7 and "default and most: 7" in timeout["description"]
    wait_for = {t.name: t for t in tool_defs(7)}["wait_for"]
    with pytest.raises(ArgumentError, match="timeout: 8 is greater than the maximum of 7"):
        check_arguments(wait_for, {"session_id": "a", "connected": True, "timeout": 8})


def test_every_problem_is_named_at_once() -> None:
    read = {t.name: t for t in tool_defs(45)}["read_output"]
    with pytest.raises(ArgumentError) as caught:
        check_arguments(read, {"session_id": 5, "max_bytes": 0, "extra": True})
    assert len(caught.value.problems) == 3
    assert "session_id: 5 is not of type 'string'" in caught.value.problems
    assert "max_bytes: 0 is less than the minimum of 16" in caught.value.problems


def test_a_long_value_is_measured_not_quoted_back() -> None:
    send = {t.name: t for t in tool_defs(45)}["send_input"]
    with pytest.raises(ArgumentError) as caught:
        check_arguments(send, {"session_id": "", "text": "x" * 40000})
    assert list(caught.value.problems) == ["session_id: is 0 characters long, at least 1 allowed",
                                     "text: is 40000 characters long, at most 32768 allowed"]
    run = {t.name: t for t in tool_defs(45)}["run_command"]
    with pytest.raises(ArgumentError) as caught:
        check_arguments(run, {"session_id": "a", "command": ["y" * 1000]})
    assert all(len(problem) <= 320 for problem in caught.value.problems), caught.value.problems
