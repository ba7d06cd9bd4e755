"""The access-control matrix, generated from the OpenAPI document: every endpoint against
every role (OWASP API1 object level, API5 function level).

- No credentials: 401 on every endpoint that needs them.
- A role the endpoint does not serve: 403, before anything is read or done.
- A role it serves, naming another owner's object (another merchant, its terminal,
  another wallet, its customer, payments, top-ups, refunds, events): 404, the very
  answer a missing id gets, so ids cannot be probed.

- A merchant key rolled with no overlap or revoked, a revoked wallet credential: 401 on
  every endpoint; a suspended or revoked terminal's correctly signed request: 403
  terminal_suspended or terminal_revoked on every endpoint.

tests/gateway/test_auth_isolation.py adds the owner's own request beside each refusal,
test_auth.py the signed terminal requests (replays, tampering, stale clocks), and
tests/gateway/test_key_lifecycle.py the keys' overlap windows.
"""
from __future__ import annotations

import re

import pytest

from gateway.http.openapi import ENDPOINTS
from tests.gateway.fixtures import error
from tests.security.conftest import ROLES, real_ids
from tests.security.corpus import valid_body

SECURED = [e for e in ENDPOINTS if e.auth]
REFUSED_ROLES = [(role, e) for e in SECURED for role in ROLES if role not in e.auth]


def call(api, endpoint, path, ids):
    """The endpoint at path; a POST with a valid body (so the refusal is not a 400)."""
    if endpoint.method == "GET":
        return api.get(path)
    if endpoint.method == "DELETE":
        return api.client.open(path, method="DELETE", headers=api._headers("DELETE", path, b"", None))
    body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in valid_body(endpoint).items()}
    return api.post(path, body)


@pytest.mark.parametrize("endpoint", SECURED, ids=lambda e: f"{e.method} {e.path}")
def test_no_credentials_is_401(scene, endpoint):
    path = endpoint.path.format(**real_ids(scene, endpoint.path))
    error(call(scene.anonymous(), endpoint, path, scene.ids), 401, "authentication_error")


@pytest.mark.parametrize("role,endpoint", REFUSED_ROLES, ids=[f"{r} {e.method} {e.path}" for r, e in REFUSED_ROLES])
def test_a_role_the_endpoint_does_not_serve_is_403(scene, role, endpoint):
    path = endpoint.path.format(**real_ids(scene, endpoint.path))
    error(call(scene.callers[role], endpoint, path, scene.ids), 403, "permission_error")


def _others_paths():
    """(role, endpoint, param) for each served non-operator role and each path id that
    names an object the scene has of another owner."""
    cases = []
    for e in SECURED:
        for name in re.findall(r"{(\w+)}", e.path):
            for role in e.auth:
                if role != "operator" and name in OTHER_IDS and not e.path.startswith("/v1/bill-payments/"):
                    cases.append((role, e, name))
    return cases


OTHER_IDS = ("merchant_id", "biller_id", "wallet_id", "customer_id", "terminal_id", "payment_id", "topup_id",
             "refund_id", "event_id", "key_id")
OTHERS = _others_paths()


@pytest.mark.parametrize("role,endpoint,name", OTHERS, ids=[f"{r} {e.method} {e.path} {n}" for r, e, n in OTHERS])
def test_another_owners_object_is_404_like_a_missing_one(scene, role, endpoint, name):
    ids = {**real_ids(scene, endpoint.path), name: scene.others[name]}
    api = scene.callers[role]
    theirs = error(call(api, endpoint, endpoint.path.format(**ids), scene.ids), 404, "not_found")
    ids[name] = re.sub(r"_[0-9a-f]+$", "_" + "0" * 24, scene.others[name])
    missing = error(call(api, endpoint, endpoint.path.format(**ids), scene.ids), 404, "not_found")
    assert theirs == missing


BODY_REFERENCES = [
    ("wallet", "/v1/topups", {"wallet_id": "wallet_id", "amount": 1, "currency": "CNY"}),
    ("merchant", "/v1/refunds", {"payment_id": "payment_id", "amount": 1}),
    ("terminal", "/v1/refunds", {"payment_id": "payment_id", "amount": 1}),
]


@pytest.mark.parametrize("role,path,body", BODY_REFERENCES, ids=[f"{r} {p}" for r, p, _ in BODY_REFERENCES])
def test_another_owners_object_named_in_a_body_is_404(scene, role, path, body):
    body = {k: scene.others[v] if isinstance(v, str) and v in scene.others else v for k, v in body.items()}
    error(scene.callers[role].post(path, body), 404, "not_found")


DEAD = ("merchant key rolled", "merchant key revoked", "wallet credential revoked", "terminal suspended",
        "terminal revoked")


@pytest.mark.parametrize("endpoint", SECURED, ids=lambda e: f"{e.method} {e.path}")
def test_rolled_revoked_and_suspended_credentials_are_refused_everywhere(scene, endpoint):
    path = endpoint.path.format(**real_ids(scene, endpoint.path))
    for what in DEAD:
        answer = call(scene.dead[what], endpoint, path, scene.ids)
        if what.startswith("terminal"):
            error(answer, 403, "permission_error", "terminal_" + what.split()[-1])
        else:
            error(answer, 401, "authentication_error", "invalid_credentials")
