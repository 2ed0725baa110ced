"""docs/asyncapi.yaml is generated from the code and must say what the code does."""

from pathlib import Path

import yaml

from photocraft_common import asyncapi
from photocraft_common.topics import CHANNELS

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_the_committed_document_is_up_to_date():
    assert DOCUMENT.read_text() == asyncapi.render(), "run `make asyncapi` and commit docs/asyncapi.yaml"


def test_every_channel_and_message_is_described():
    document = yaml.safe_load(asyncapi.render())
    assert {c["address"] for c in document["channels"].values()} == {c.address for c in CHANNELS}
    schemas = document["components"]["schemas"]
    request = schemas["PartnerRequest"]["properties"]
    assert request["image"] == {"type": "string", "contentEncoding": "binary", "x-protobuf-field": 5}
    assert schemas["JobEvent"]["x-protobuf-oneof"]["kind"][0] == "received"
    assert schemas["ObjectRef"]["properties"]["url"]["type"] == "string"
    for schema in schemas.values():  # every reference resolves
        for field in schema["properties"].values():
            ref = field.get("$ref") or field.get("items", {}).get("$ref")
            if ref:
                assert ref.removeprefix("#/components/schemas/") in schemas
    partner = [name for name, c in document["channels"].items() if c["tags"] == [{"name": "partner"}]]
    assert sorted(partner) == ["partnerEvents", "partnerRequests"]
    assert document["operations"]["receivePartnerRequests"]["action"] == "receive"
    assert document["operations"]["sendPartnerEvents"]["action"] == "send"
