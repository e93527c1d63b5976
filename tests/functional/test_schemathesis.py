"""Generated requests (schemathesis, from the served OpenAPI document) against the running router,
with the admin token and without: never a 5xx, every answer as the document says, and the
database unchanged by every refused request.

Bounded: a few examples per operation (HYPOTHESIS_EXAMPLES), about a minute in all.
"""

from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import ADMIN
from support.helpers import snapshot

from bootfleet.web.openapi import document

EXAMPLES = int(os.environ.get("BOOTFLEET_SCHEMATHESIS_EXAMPLES", "12"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


OPERATIONS = sorted((path, method.upper()) for path, ops in document()["paths"].items() for method in ops)


@pytest.fixture(scope="module")
def api_schema(server):
    doc = requests.get(server.url + "/config/api/v1/openapi.json", timeout=30).json()
    assert doc == document()  # what the API serves is what the code builds
    # Servers are never made here: `local` would start QEMU VMs; `ibm` has no key, so it is refused (400).
    doc["components"]["schemas"]["DeploymentIn"]["properties"]["provider"] = {"enum": ["none", "ibm"]}
    return schemathesis.openapi.from_dict(doc)


LIMITS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))


def _run(api_schema, path, method, server, database, headers):
    """Every generated case of one operation; the first failure is raised with its case."""
    operation = api_schema[path][method]

    @LIMITS
    @given(case=operation.as_strategy())
    def run(case):
        if not headers:
            case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        before = snapshot(database)
        response = case.call(base_url=server.url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)
        if 400 <= response.status_code < 500:
            assert snapshot(database) == before, f"{method} {case.formatted_path} {response.status_code} changed the DB"
        if not headers and operation.definition.raw.get("security") and path != "/cleanup/run":
            assert response.status_code in (400, 401, 403, 404, 405, 413), response.text

    run()


@pytest.mark.parametrize("path,method", OPERATIONS)
def test_with_the_admin_token(api_schema, server, database, path, method):
    _run(api_schema, path, method, server, database, dict(ADMIN))


@pytest.mark.parametrize("path,method", OPERATIONS)
def test_without_credentials(api_schema, server, database, path, method):
    _run(api_schema, path, method, server, database, {})
