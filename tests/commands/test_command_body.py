"""A command body is one pydantic model (CommandBody): `command` validates with it for the API,
the dashboard, the library and the connectivity probe, and the API document is its schema."""

import pytest

from diag.commands.model import MAX_CONTENT, CommandBody, CommandError, command
from diag.web.openapi import model_schema


def _refused(body):
    with pytest.raises(CommandError) as e:
        command(body)
    return e.value.status, e.value.field


def test_the_first_bad_field_is_named_in_the_order_they_are_checked():
    assert _refused({"name": "", "content": "x" * (5 * MAX_CONTENT), "type": ""}) == (422, "type")
    assert _refused({"name": "a", "content": 5, "content_encoding": "X"}) == (422, "content")
    assert _refused({"name": "a", "content": "true", "content_encoding": "X"}) == (422, "content_encoding")
    assert _refused({"name": "a", "content": "true", "check_ids": ["no.such.check"]}) == (422, "check_ids[0]")


def test_content_far_over_the_limit_is_413_just_over_422():
    assert _refused({"name": "a", "content": "x" * (MAX_CONTENT + 1)}) == (422, "content")
    assert _refused({"name": "a", "content": "x" * (4 * MAX_CONTENT + 1)}) == (413, "content")


def test_the_schema_states_the_validators_bounds():
    s = model_schema(CommandBody)
    assert s["required"] == ["name", "content"]
    assert s["properties"]["name"]["maxLength"] == 128 and s["properties"]["tags"]["maxItems"] == 10
    assert s["properties"]["timeout"]["oneOf"][0] == {"type": "number", "minimum": 10.0, "maximum": 86400.0}
    assert command({"name": "a", "content": "echo {{x}}", "timeout": "5m"})["parameters"] == ["x"]
