"""Authentication: bearer keys for operator, merchants and wallets; HMAC-signed terminal
requests with a 300 s window and single-use nonces."""
from __future__ import annotations

import json

import pytest

from gateway.http.auth import operator_key, terminal_secret
from protocol import request_signing as rs
from tests.gateway.fixtures import error, ok


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer ", "Basic abc", "Bearer sk_nope",
                                    "Bearer wk_nope", "Bearer op_" + "0" * 64, "Bearer nothing", "Token x"])
def test_bad_bearer_credentials_are_401(client, header):
    headers = {"Authorization": header} if header is not None else {}
    error(client.get("/v1/payments", headers=headers), 401, "authentication_error")


def test_no_credentials_says_so(client):
    error(client.get("/v1/payments"), 401, "authentication_error", "missing_credentials")


def test_operator_key_comes_from_the_config_secret(config, client):
    key = operator_key(config)
    assert key == "op_" + config.secret("operator_key").hex()
    assert client.get("/v1/payments", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_terminal_secret_is_derived_and_not_stored(world, config, store):
    terminal_id, till = world.terminal("x")
    key_id, secret = till.auth
    assert secret == terminal_secret(config, key_id)
    with store.read() as tx:
        dump = str(tx.query("SELECT * FROM terminals"))
    assert secret.hex() not in dump


def signed_request(till, clock, method, path, body=b"", *, nonce="n" * 16, skew=0, **override):
    key_id, secret = till.auth
    ts = int(clock().timestamp()) + skew
    headers = rs.signed_headers(key_id, secret, method, path, body, timestamp=ts, nonce=nonce)
    headers["Content-Type"] = "application/json"
    headers.update(override)
    return headers


def test_a_signed_terminal_request_is_accepted(world, client, clock):
    terminal_id, till = world.terminal("x")
    path = f"/v1/terminals/{terminal_id}"
    ok(client.get(path, headers=signed_request(till, clock, "GET", path)))


@pytest.mark.parametrize("skew", [-301, 301, -10_000])
def test_expired_or_future_signatures_are_refused(world, client, clock, skew):
    terminal_id, till = world.terminal("x")
    path = f"/v1/terminals/{terminal_id}"
    error(client.get(path, headers=signed_request(till, clock, "GET", path, skew=skew)),
          401, "authentication_error", "stale_timestamp")


@pytest.mark.parametrize("skew", [-300, 300])
def test_the_window_edges_are_inside(world, client, clock, skew):
    terminal_id, till = world.terminal("x")
    path = f"/v1/terminals/{terminal_id}"
    ok(client.get(path, headers=signed_request(till, clock, "GET", path, skew=skew)))


def test_a_replayed_nonce_is_refused_even_within_the_window(world, client, clock):
    terminal_id, till = world.terminal("x")
    path = f"/v1/terminals/{terminal_id}"
    headers = signed_request(till, clock, "GET", path, nonce="replay-me-0000001")
    ok(client.get(path, headers=headers))
    error(client.get(path, headers=headers), 401, "authentication_error", "replayed_nonce")
    clock.advance(299)
    error(client.get(path, headers=headers), 401, "authentication_error")


def test_a_forged_request_does_not_spend_the_nonce(world, client, clock):
    terminal_id, till = world.terminal("x")
    path = f"/v1/terminals/{terminal_id}"
    good = signed_request(till, clock, "GET", path, nonce="precious-nonce-01")
    forged = {**good, rs.SIGNATURE_HEADER: "0" * 64}
    error(client.get(path, headers=forged), 401, "authentication_error", "invalid_signature")
    ok(client.get(path, headers=good))


@pytest.mark.parametrize("tamper", ["body", "path", "method", "key", "secret", "timestamp"])
def test_tampered_signed_requests_are_refused(world, client, clock, nothing_moved, tamper):
    world.top_up("a", 1000)
    _, till = world.terminal("x")
    key_id, secret = till.auth
    body = json.dumps({"pay_code": world.pay_code("a"), "amount": 100, "currency": "CNY"}).encode()
    path, method, sent_body = "/v1/pos/authorizations", "POST", body
    ts = int(clock().timestamp())
    sign_secret, sign_path, sign_method, sign_body, sign_ts = secret, path, method, body, ts
    headers_key = key_id
    if tamper == "body":
        sent_body = body.replace(b"100", b"999")
    elif tamper == "path":
        sign_path = "/v1/pos/authorizations/x"
    elif tamper == "method":
        sign_method = "PUT"
    elif tamper == "key":
        headers_key = world.terminal("y")[1].auth[0]
    elif tamper == "secret":
        sign_secret = b"\x00" * 32
    elif tamper == "timestamp":
        sign_ts = ts - 1
    headers = rs.signed_headers(headers_key, sign_secret, sign_method, sign_path, sign_body,
                                timestamp=sign_ts, nonce="tamper-nonce-0001")
    headers[rs.TIMESTAMP_HEADER] = str(ts)
    headers["Idempotency-Key"] = "t1"
    check = nothing_moved()
    error(client.post(path, data=sent_body, headers=headers), 401, "authentication_error", "invalid_signature")
    check()


@pytest.mark.parametrize("override", [
    {rs.TIMESTAMP_HEADER: "soon"}, {rs.TIMESTAMP_HEADER: ""}, {rs.TIMESTAMP_HEADER: "-5"},
    {rs.NONCE_HEADER: "short"}, {rs.NONCE_HEADER: "bad nonce with spaces"},
    {rs.SIGNATURE_HEADER: ""}, {rs.SIGNATURE_HEADER: "é" * 64},
])
def test_malformed_signature_headers_are_401(world, client, clock, override):
    terminal_id, till = world.terminal("x")
    path = f"/v1/terminals/{terminal_id}"
    error(client.get(path, headers=signed_request(till, clock, "GET", path, **override)),
          401, "authentication_error")


def test_unknown_terminal_key_is_401(world, client, clock):
    terminal_id, _ = world.terminal("x")
    path = f"/v1/terminals/{terminal_id}"
    headers = rs.signed_headers("tk_unknown", b"k" * 32, "GET", path, b"",
                                timestamp=int(clock().timestamp()), nonce="n" * 16)
    error(client.get(path, headers=headers), 401, "authentication_error", "invalid_signature")


def test_query_string_is_signed(world, client, clock):
    _, till = world.terminal("x")
    headers = signed_request(till, clock, "GET", "/v1/pos/authorizations/auth_nope1234?x=1")
    # same path without the query the signature covered
    error(client.get("/v1/pos/authorizations/auth_nope1234", headers=headers), 401, "authentication_error")


def test_wrong_kind_of_caller_is_403(world):
    _, wallet = world.wallet("a")
    _, merchant = world.merchant("x")
    _, till = world.terminal("x")
    error(wallet.post("/v1/merchants", {"name": "mine"}), 403, "permission_error")
    error(merchant.post("/v1/customers", {}), 403, "permission_error")
    error(till.get("/v1/payments"), 403, "permission_error")


@pytest.mark.parametrize("attack", ["replayed", "expired"])
def test_a_replayed_or_stale_signed_payment_request_moves_nothing(world, client, clock, nothing_moved, attack):
    world.top_up("a", 1000)
    _, till = world.terminal("x")
    body = json.dumps({"pay_code": world.pay_code("a"), "amount": 100, "currency": "CNY"}).encode()
    path = "/v1/pos/authorizations"
    headers = {**signed_request(till, clock, "POST", path, body, nonce="one-sale-nonce-01"),
               "Idempotency-Key": "sale-1"}
    if attack == "replayed":
        ok(client.post(path, data=body, headers=headers), 201)
        check = nothing_moved()
        error(client.post(path, data=body, headers=headers), 401, "authentication_error", "replayed_nonce")
    else:
        check = nothing_moved()
        clock.advance(301)
        error(client.post(path, data=body, headers=headers), 401, "authentication_error", "stale_timestamp")
    check()
