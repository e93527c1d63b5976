"""The OpenAPI document: valid OpenAPI 3.1, every function's every route described."""

from openapi_spec_validator import validate

from bootfleet.web.openapi import DOCS, FUNCTIONS, _function_routes, document, undescribed


def test_the_document_is_valid_openapi_3_1():
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_every_route_of_every_function_is_in_the_document_and_described():
    doc = document()
    routes = {(m, p) for name in FUNCTIONS for m, p, _ in _function_routes(name)}
    assert routes == {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert undescribed() == [], "describe these in lib/common/bootfleet/web/openapi.py DOCS"
    assert set(DOCS) == routes, "DOCS describes routes that do not exist"


def test_request_bodies_are_the_pydantic_models():
    doc = document()
    body = doc["paths"]["/config/api/v1/profiles"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ProfileIn"}
    profile = doc["components"]["schemas"]["ProfileIn"]
    assert profile["additionalProperties"] is False and {"name", "kernel"} <= set(profile["required"])
