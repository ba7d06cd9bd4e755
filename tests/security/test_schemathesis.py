"""The API answers as its OpenAPI document says, for every role (schemathesis).

For each role (operator, merchant, wallet, terminal) and each operation it may call,
schemathesis generates requests from /v1/openapi.json and checks every answer:
not_a_server_error (no 5xx), status_code_conformance (the status is documented),
content_type_conformance (the media type is documented) and
response_schema_conformance (the body matches the documented schema; errors the Error
schema). Three runs per operation: valid requests on the scene's real objects (so
answers go past the lookups: 200s, 402s, 409s), valid requests with generated path ids,
and invalid requests (schemathesis' negative mode). All in one app, derandomised (the
same cases on every run), bounded to about two minutes on 2 cores by EXAMPLES.
"""
from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from gateway.http.openapi import ENDPOINTS
from tests.security.conftest import ROLES, Signing, real_ids

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Examples per operation and role: (real ids, generated ids, negative), about 2,400 requests.
# A deeper run: TAPSTACK_SCHEMATHESIS_EXAMPLES=100,30,50 pytest tests/security/test_schemathesis.py
EXAMPLES = tuple(int(n) for n in os.environ.get("TAPSTACK_SCHEMATHESIS_EXAMPLES", "8,3,4").split(","))

OPERATIONS = [(role, e.method, e.path) for role in ROLES for e in ENDPOINTS if role in e.auth or not e.auth and
              role == "operator"]


@pytest.fixture(scope="module")
def schemas(scene):
    return {role: schemathesis.openapi.from_wsgi("/v1/openapi.json", Signing(scene, role)) for role in ROLES}


def _run(strategy, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def conforms(case):
        case.call_and_validate(checks=CHECKS)

    try:
        conforms()
    except Unsatisfiable:  # nothing to make invalid (an operation without parameters)
        pass


@pytest.mark.parametrize("role,method,path", OPERATIONS, ids=[f"{r} {m} {p}" for r, m, p in OPERATIONS])
def test_answers_conform_to_the_openapi_document(scene, schemas, role, method, path):
    operation = schemas[role][path][method]
    real, generated, negative = EXAMPLES
    if "{" in path:
        _run(operation.as_strategy(path_parameters=real_ids(scene, path)), real)
    _run(operation.as_strategy(), generated)
    _run(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), negative)
