"""A contact's channels: one shape per channel type is the API document's form of a channel,
and the Channel model validates by the same shape (what it requires, whether it signs)."""

import pytest

from diag.alerting.policy import CHANNEL_SHAPES, CHANNEL_TYPES, SIGNED, Contact, PolicyError, parse
from diag.web.openapi import model_schema


def _alternative(doc, channel_type):
    alts = doc["properties"]["channels"]["items"]["oneOf"]
    (alt,) = [a for a in alts if channel_type in a["properties"]["type"]["enum"]]
    return alt


def test_every_channel_type_has_exactly_one_shape():
    assert sorted(CHANNEL_SHAPES) == sorted(CHANNEL_TYPES)
    doc = model_schema(Contact)
    for t in CHANNEL_TYPES:
        _alternative(doc, t)  # exactly one alternative names it


def test_only_a_signing_robot_documents_a_secret_and_only_it_accepts_one():
    doc = model_schema(Contact)
    for t in CHANNEL_TYPES:
        alt = _alternative(doc, t)
        body = {"name": "ops", "channels": [{"type": t, "url": "https://robot.example/send?key=k",
                                             "address": "ops@example.com", "secret": "s3cret"}]}
        if t in SIGNED:
            assert alt["properties"]["secret"] == {"type": "string", "minLength": 1, "maxLength": 256}
            assert parse(Contact, body).channels[0].secret == "s3cret"
        else:
            assert "secret" not in alt["properties"] and alt["additionalProperties"] is False
            with pytest.raises(PolicyError) as e:
                parse(Contact, body)
            assert e.value.field == "channels[0]" and "only dingtalk and feishu" in e.value.message


@pytest.mark.parametrize("channel_type", CHANNEL_TYPES)
def test_what_a_shape_requires_the_model_requires(channel_type):
    required = set(_alternative(model_schema(Contact), channel_type)["required"]) - {"type"}
    assert required == ({"address"} if channel_type == "email" else {"url"})
    with pytest.raises(PolicyError) as e:
        parse(Contact, {"name": "ops", "channels": [{"type": channel_type}]})
    assert e.value.field == "channels[0]" and "needs an" in e.value.message
