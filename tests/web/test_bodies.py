"""Request bodies are pydantic models that validate and are their own OpenAPI schema: the
schema is in the OpenAPI 3.0 form the document declares, and the model's errors name their
field as the routes always have."""

import pytest

from diag.commands.delivery import TaskResult
from diag.web.bodies import (AckBody, ActivationBody, DiagnosisBody, EventBody, EventPatchBody, FileBody, RegisterBody,
                             parse, schema)
from diag.web.errors import ApiError

MODELS = (AckBody, ActivationBody, DiagnosisBody, EventBody, EventPatchBody, FileBody, RegisterBody, TaskResult)


def _walk(value, where=""):
    if isinstance(value, dict):
        yield where, value
        for k, v in value.items():
            yield from _walk(v, f"{where}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{where}/{i}")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_body_schema_is_openapi_3_0(model):
    for where, node in _walk(schema(model)):
        assert not {"$ref", "$defs", "const", "title", "propertyNames"} & set(node), where
        assert not isinstance(node.get("type"), list), where  # 3.0 has `nullable`, not type lists
        assert {"type": "null"} not in node.get("anyOf", []), where
        for flag in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(flag, True) is True, where  # draft 4: a flag, the bound beside it


def test_a_label_map_is_draft_4_pattern_properties_and_may_be_null():
    labels = schema(RegisterBody)["properties"]["labels"]
    assert labels["nullable"] is True and labels["maxProperties"] == 32
    assert labels["additionalProperties"] is False
    (pattern, value), = labels["patternProperties"].items()
    assert pattern == "^[a-zA-Z_][a-zA-Z0-9_]{0,99}$" and value == {"type": "string", "maxLength": 512}


def test_a_bad_label_name_is_named_as_the_label():
    body = {"activation_id": "a", "activation_code": "b", "instance_id": "web-1", "labels": {"Bad-Key": "x"}}
    with pytest.raises(ApiError) as e:
        parse(RegisterBody, body)
    assert (e.value.status, e.value.field) == (422, "labels.Bad-Key")


def test_an_unknown_field_is_named_first():
    with pytest.raises(ApiError) as e:
        parse(EventPatchBody, {"zz": 1, "aa": 2})  # not_before is missing too
    assert (e.value.status, e.value.field, e.value.message) == (422, "aa", "unknown field")


def test_a_list_item_is_named_by_its_index():
    with pytest.raises(ApiError) as e:
        parse(ActivationBody, {"source_cidrs": ["10.0.0.0/8", "10.0.0.0/33"]})
    assert e.value.field == "source_cidrs[1]"


def test_relative_times_are_the_requests():
    assert parse(EventPatchBody, {"not_before": "now"}, now=1_800_000_000.0).not_before == 1_800_000_000.0
    assert parse(EventPatchBody, {"not_before": "-1m"}, now=1_800_000_000.0).not_before == 1_799_999_940.0


def test_a_duration_is_read_and_its_default_is_stated_as_written():
    assert parse(EventBody, {"type": "SystemMaintenance.Stop"}).duration == 3600.0
    assert schema(EventBody)["properties"]["duration"]["default"] == "1h"
    assert parse(DiagnosisBody, {"window": "2h"}).window == 7200.0
    with pytest.raises(ApiError) as e:
        parse(DiagnosisBody, {"window": 3600})  # text only, as the document says
    assert e.value.field == "window"


def test_a_boolean_is_no_number_of_seconds():
    with pytest.raises(ApiError) as e:
        parse(ActivationBody, {"expires_in": True})
    assert e.value.field == "expires_in"
    with pytest.raises(ApiError) as e:
        parse(AckBody, {"expires_in": True})
    assert e.value.field == "expires_in"


def test_a_file_is_decoded_as_its_encoding_says():
    base = {"instance_ids": ["web-1"], "name": "f.txt", "target_dir": "/tmp"}
    assert parse(FileBody, {**base, "content": "aGk="}).content == b"hi"
    assert parse(FileBody, {**base, "content": "aGk=", "content_encoding": "PlainText"}).content == b"aGk="
    with pytest.raises(ApiError) as e:
        parse(FileBody, {**base, "content": "***"})
    assert e.value.field == "content"


def test_the_alerting_models_are_their_own_schema_what_the_service_knows_added_when_served():
    from diag.alerting.policy import ContactGroup, Policy

    served = {"conditions[].metric": {"type": "string", "enum": ["cpu_usage"]}, "contact_groups[]": {"enum": ["g1"]}}
    policy = schema(Policy, served)
    assert policy["properties"]["conditions"]["items"]["properties"]["metric"]["enum"] == ["cpu_usage"]
    assert policy["properties"]["contact_groups"]["items"] == {"enum": ["g1"]}
    # A policy needs a condition or an event condition; an event condition a type or a level.
    assert [alt["required"] for alt in policy["anyOf"]] == [["conditions"], ["event_conditions"]]
    event = policy["properties"]["event_conditions"]["items"]
    assert [alt["required"] for alt in event["anyOf"]] == [["type"], ["level"]]
    assert event["properties"]["type"]["nullable"] is True and len(event["properties"]["type"]["anyOf"]) == 2
    routing = schema(ContactGroup)["properties"]["routing"]
    assert routing["nullable"] is True and routing["additionalProperties"] is False
    assert routing["properties"]["group_wait"]["oneOf"][0] == {"type": "number", "minimum": 0, "maximum": 3600}
    for where, node in _walk(policy):
        assert "$ref" not in node and "title" not in node, where
