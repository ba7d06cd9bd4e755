"""The OpenAPI document and /docs: every route described, every reference resolved, and
the security each endpoint declares is the one the gateway enforces."""
import itertools
import re

import pytest

from gateway.config import Config
from gateway.http import openapi
from gateway.http.app import create_app
from gateway.http.auth import operator_key

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    config = Config(tmp_path_factory.mktemp("gw"))
    app = create_app(config)
    if "openapi" not in app.blueprints:      # until create_app lists gateway.http.openapi itself
        app.register_blueprint(openapi.bp)
    app.config["operator"] = operator_key(config)
    return app


def flask_routes(app):
    """(METHOD, /v1/path/{param}) for every route the app serves under /v1."""
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/"):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
            out |= {(m, path) for m in rule.methods & HTTP_METHODS}
    return out


def documented(doc):
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}


def test_every_route_is_documented_and_every_documented_route_exists(app):
    doc = app.test_client().get("/v1/openapi.json").get_json()
    routes = flask_routes(app)
    assert routes, "no /v1 routes registered"
    assert sorted(routes - documented(doc)) == [], "routes missing from gateway/http/openapi.py ENDPOINTS"
    assert sorted(documented(doc) - routes) == [], "documented routes the app does not serve"


def test_the_document_is_well_formed(app):
    doc = app.test_client().get("/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    text = str(doc)
    for target in set(re.findall(r"'\$ref': '#/([^']+)'", text)):
        node = doc
        for part in target.split("/"):
            assert part in node, f"unresolved $ref #/{target}"
            node = node[part]
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
            for scheme in op["security"]:
                assert set(scheme) <= set(doc["components"]["securitySchemes"])
            assert any(code.startswith("2") for code in op["responses"])
            if method == "post":
                assert {"$ref": "#/components/parameters/IdempotencyKey"} in op["parameters"]
            if op["security"]:
                assert {"401", "403"} <= set(op["responses"])


def test_errors_share_one_schema(app):
    doc = app.test_client().get("/v1/openapi.json").get_json()
    error = doc["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["required"]) == {"type", "code", "message", "param"}
    for response in doc["components"]["responses"].values():
        assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def callers(app):
    """A bearer key of each kind (the terminal's signed requests are tested by the auth suite)."""
    client, n = app.test_client(), itertools.count()
    op = app.config["operator"]

    def post(path, body, key=op):
        r = client.post(path, json=body, headers={"Authorization": f"Bearer {key}",
                                                   "Idempotency-Key": f"setup-{next(n)}"})
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    customer = post("/v1/customers", {"name": "Doc Reader"})
    wallet = post("/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"})
    merchant = post("/v1/merchants", {"name": "Doc Shop"})
    return {"operator": op, "wallet": wallet["credential"], "merchant": merchant["api_key"]}


@pytest.mark.parametrize("endpoint", openapi.ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_declared_security_is_what_the_gateway_enforces(app, callers, endpoint):
    client = app.test_client()
    path = re.sub(r"{\w+}", "xyz_0000000000", endpoint.path)
    headers = {"Idempotency-Key": "doc-check"}
    anonymous = client.open(path, method=endpoint.method, json={}, headers=headers)
    if not endpoint.auth:
        assert anonymous.status_code not in (401, 403)
        return
    assert anonymous.status_code == 401, anonymous.get_json()
    for kind, key in callers.items():
        if kind not in endpoint.auth:    # only kinds refused are called: no side effects
            r = client.open(path, method=endpoint.method, json={},
                            headers={**headers, "Authorization": f"Bearer {key}"})
            assert r.status_code == 403, (kind, r.get_json())


def test_docs_page_lists_every_endpoint_and_needs_nothing_from_outside(app):
    r = app.test_client().get("/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    for e in openapi.ENDPOINTS:
        assert f"{e.method}</span> <span class=path>{e.path}</span>" in page
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page), "no external resources"
    for name in openapi.SCHEMAS:
        assert f"id='schema-{name}'" in page


def test_images_declare_the_media_type_the_gateway_serves(app, callers):
    doc = app.test_client().get("/v1/openapi.json").get_json()
    images = {path: next(iter(op["get"]["responses"]["200"]["content"]))
              for path, op in doc["paths"].items() if path.endswith(("/qr.png", "/qr.svg"))}
    assert len(images) == 6
    assert all(media == ("image/png" if path.endswith(".png") else "image/svg+xml")
               for path, media in images.items())
    client = app.test_client()
    merchant = client.post("/v1/merchants", json={"name": "QR Shop"}, headers={
        "Authorization": f"Bearer {callers['operator']}", "Idempotency-Key": "doc-qr-merchant"}).get_json()
    merchant_id, auth = merchant["id"], {"Authorization": f"Bearer {merchant['api_key']}"}
    r = client.post(f"/v1/merchants/{merchant_id}/qr-profile", json={"city": "Hangzhou"},
                    headers={**auth, "Idempotency-Key": "doc-qr-profile"})
    assert r.status_code == 200, r.get_json()
    for suffix in ("qr.png", "qr.svg"):
        served = client.get(f"/v1/merchants/{merchant_id}/{suffix}", headers=auth)
        assert served.status_code == 200
        assert served.mimetype == images[f"/v1/merchants/{{merchant_id}}/{suffix}"]


def test_response_headers_are_declared_and_sent(app, callers):
    doc = app.test_client().get("/v1/openapi.json").get_json()
    assert set(doc["components"]["responses"]["Error401"]["headers"]) == {"WWW-Authenticate"}
    for path, ops in doc["paths"].items():
        if "post" in ops:
            success = next(r for code, r in ops["post"]["responses"].items() if code.startswith("2"))
            assert "Idempotent-Replayed" in success["headers"], path
    client = app.test_client()
    assert client.get("/v1/payments").headers["WWW-Authenticate"].startswith("Bearer")
    headers = {"Authorization": f"Bearer {callers['operator']}", "Idempotency-Key": "doc-replay"}
    first = client.post("/v1/customers", json={"name": "Twice"}, headers=headers)
    again = client.post("/v1/customers", json={"name": "Twice"}, headers=headers)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true" and again.data == first.data


def test_the_terminal_signing_headers_are_documented(app):
    doc = app.test_client().get("/v1/openapi.json").get_json()
    schemes = doc["components"]["securitySchemes"]
    named = {s["name"] for s in schemes.values() if s.get("in") == "header"}
    assert named == {"Tapstack-Key-Id", "Tapstack-Timestamp", "Tapstack-Nonce", "Tapstack-Request-Signature"}
    page = app.test_client().get("/docs").get_data(as_text=True)
    for header in (*named, "Idempotency-Key", "Idempotent-Replayed", "WWW-Authenticate"):
        assert f"<code>{header}</code>" in page
