"""The bad-input corpus (tests/security/corpus.py) against one app: no request a client
can send makes the gateway answer 5xx, and every error is the one shape, JSON, with a
status the OpenAPI document lists for the operation."""
from __future__ import annotations

import re

import pytest

from gateway.core import ledger
from gateway.http import openapi
from tests.security.corpus import corpus

ENTRIES = corpus()
RESPONSES = {(e.method, e.path): {int(code) for code in openapi.document()["paths"][e.path][e.method.lower()]
                                  ["responses"]} for e in openapi.ENDPOINTS}


def test_the_corpus_covers_every_endpoint_with_at_least_500_requests():
    assert len(ENTRIES) >= 500
    assert {entry.operation for entry in ENTRIES} == set(RESPONSES)


def _fill(text, ids):
    if isinstance(text, bytes):
        return re.sub(rb"\{(\w+)\}", lambda m: ids.get(m[1].decode(), m[0].decode()).encode(), text)
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m[1], m[0]), text)


def send(scene, entry):
    api = scene.callers.get(entry.role) or scene.anonymous()
    path = _fill(entry.path, scene.ids)
    if entry.method == "GET":
        return api.get(path, headers=entry.headers)
    body = _fill(entry.body, scene.ids) if entry.body is not None else b""
    if entry.method == "DELETE":
        return api.client.open(path, method="DELETE", headers=api._headers("DELETE", path, b"", entry.headers))
    key = None if "Idempotency-Key" in entry.headers else "auto"
    return api.post(path, raw=body, key=key, headers=entry.headers)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.label for e in ENTRIES])
def test_bad_input_is_a_clean_4xx_in_the_one_shape(scene, entry):
    response = send(scene, entry)
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert response.mimetype == "application/json"
        body = response.get_json()
        assert set(body) == {"error"} and set(body["error"]) == {"type", "code", "message", "param"}
        assert all(isinstance(body["error"][k], str) and body["error"][k] for k in ("type", "code", "message"))
        assert response.status_code in RESPONSES[entry.operation], (response.status_code, body)


def test_the_books_still_balance_after_the_corpus(scene):
    with scene.store.read() as tx:
        report = ledger.check(tx)
    assert report.ok, report.problems
