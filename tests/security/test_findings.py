"""Regression tests for what an outside test found (issue 11, "Found from outside"), on one
app: each hostile request answers a clean 4xx in the one error shape and stores nothing.

The served-only findings (chunked bodies, gunicorn's own errors, the data directory's
modes, the control socket, the deliverer in `serve`) are in test_served.py.
"""
from __future__ import annotations

import json
import os
import stat

import pytest

from gateway.config import load
from gateway.http import openapi
from tests.gateway.fixtures import error, ok

SURROGATE = "\ud800"


def rows(scene) -> dict:
    """Every table's row count, except the nonces signed requests spend: what "nothing was
    stored" compares."""
    with scene.store.read() as tx:
        tables = [r["name"] for r in tx.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: tx.one(f"SELECT COUNT(*) AS n FROM {t}")["n"] for t in tables if t != "terminal_nonces"}


@pytest.fixture
def unchanged(scene):
    """Yields; then asserts no table gained or lost a row."""
    before = rows(scene)
    yield
    assert rows(scene) == before


def raw_json(value) -> bytes:
    """JSON as a client's encoder writes it: a lone surrogate becomes the escape \\ud800."""
    return json.dumps(value).encode()


# (role, method, path, body with the field to poison, field)
TEXT_FIELDS = [
    ("operator", "POST", "/v1/customers", {"name": "Wang"}, "name"),
    ("operator", "POST", "/v1/customers", {"email": "w@example.org"}, "email"),
    ("operator", "POST", "/v1/merchants", {"name": "Shop"}, "name"),
    ("operator", "POST", "/v1/billers", {"name": "Water", "city": "Hangzhou"}, "city"),
    ("wallet", "POST", "/v1/payments", {"merchant_id": "{merchant_id}", "amount": 1, "currency": "CNY",
                                        "description": "tea"}, "description"),
    ("merchant", "POST", "/v1/refunds", {"payment_id": "{payment_id}", "amount": 1, "reason": "spilt"}, "reason"),
    ("merchant", "POST", "/v1/webhook_endpoints", {"url": "https://hooks.example/a"}, "url"),
    ("terminal", "POST", "/v1/checkouts", {"amount": 5, "currency": "CNY", "terminal_label": "till"},
     "terminal_label"),
    ("merchant", "POST", "/v1/merchants/{merchant_id}/qr-profile", {"city": "Hangzhou"}, "city"),
    ("merchant", "POST", "/v1/merchants/{merchant_id}/qr-profile", {"city": "Hangzhou", "store_label": "A"},
     "store_label"),
    ("terminal", "POST", "/v1/paycode-payments", {"pay_code": "TS:x", "amount": 5, "currency": "CNY"}, "pay_code"),
    ("terminal", "POST", "/v1/pos/authorizations", {"pay_code": "pc_x", "amount": 5, "currency": "CNY"},
     "pay_code"),
    ("operator", "POST", "/v1/issuer/deny-list", {"entry": "0011223344556677", "kind": "card_id",
                                                  "reason": "lost"}, "reason"),
    ("merchant", "POST", "/v1/bills", {"consumer_number": "C-9", "period": "2026-11", "amount_due": 5,
                                       "currency": "CNY", "due_date": "2099-01-01"}, "consumer_number"),
    ("wallet", "POST", "/v1/bill-payments", {"payload": "000201"}, "payload"),
]


def fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


def send(scene, role, method, path, raw: bytes, content_type="application/json"):
    """The raw body as role; content_type None sends no Content-Type at all."""
    api = scene.callers[role]
    if method == "GET":
        return api.get(path)
    if content_type is None:
        headers = {k: v for k, v in api._headers(method, path, raw, None).items() if k != "Content-Type"}
        return api.client.post(path, data=raw, headers={**headers, "Idempotency-Key": f"no-type-{len(raw)}"})
    return api.post(path, raw=raw, headers={"Content-Type": content_type})


@pytest.mark.parametrize("role,method,path,body,field", TEXT_FIELDS, ids=[f"{p} {f}" for _, _, p, _, f in TEXT_FIELDS])
@pytest.mark.parametrize("poison", ["\ud800", "x\udfffy", "a\x00b"], ids=["lone high", "lone low", "NUL"])
def test_a_string_that_is_not_text_is_400_and_stores_nothing(scene, unchanged, role, method, path, body, field,
                                                             poison):
    body = fill(body, scene.ids)
    body[field] = poison
    e = error(send(scene, role, method, path.format(**scene.ids), raw_json(body)), 400, "invalid_request_error",
              "invalid_text")
    assert e["param"] == field


def test_not_text_in_a_key_or_nested_deep_in_a_batch_is_400(scene, unchanged):
    error(send(scene, "operator", "POST", "/v1/customers", raw_json({SURROGATE: 1})), 400,
          "invalid_request_error", "invalid_text")
    e = error(send(scene, "terminal", "POST", "/v1/taps", raw_json({"taps": [{"id": "t-1", "route": SURROGATE}]})),
              400, "invalid_request_error", "invalid_text")
    assert e["param"] == "taps"


# Text an EMV QR code field cannot carry: another script, accents, control and zero-width characters.
# Names and cities may be in a local script (the code carries them in the language template 64,
# beside a Latin form: tests/gateway/test_local_names.py); labels printed as they are may not.
NOT_QR_TEXT = ["杭州", "Zürich", "Bell\x07", "Tab\there", "zero\u200bwidth", "rtl\u202eoverride", "emoji\U0001F600"]
QR_FIELDS = [
    ("merchant", "/v1/merchants/{merchant_id}/qr-profile", {"city": "Hangzhou", "store_label": "A"}, "store_label"),
    ("terminal", "/v1/checkouts", {"amount": 5, "currency": "CNY", "terminal_label": "till"}, "terminal_label"),
    ("merchant", "/v1/checkouts", {"amount": 5, "currency": "CNY", "terminal_label": "till"}, "terminal_label"),
]


@pytest.mark.parametrize("role,path,body,field", QR_FIELDS, ids=[f"{p} {f}" for _, p, _, f in QR_FIELDS])
@pytest.mark.parametrize("text", NOT_QR_TEXT)
def test_text_a_qr_field_cannot_carry_is_refused_naming_the_field(scene, unchanged, role, path, body, field, text):
    body = {**fill(body, scene.ids), field: text}
    e = error(scene.callers[role].post(path.format(**scene.ids), body), 400, "invalid_request_error",
              "invalid_parameter")
    assert e["param"] == field


def test_the_merchants_codes_still_render_after_a_refused_profile(scene):
    merchant, merchant_id = scene.callers["merchant"], scene.ids["merchant_id"]
    error(merchant.post(f"/v1/merchants/{merchant_id}/qr-profile", {"city": "Hangzhou", "store_label": "一号店"}),
          400, "invalid_request_error")
    assert ok(merchant.get(f"/v1/merchants/{merchant_id}/qr"))["payload"].startswith("000201")
    assert merchant.get(f"/v1/merchants/{merchant_id}/qr.png").status_code == 200
    checkout = ok(merchant.post("/v1/checkouts", {"amount": 5, "currency": "CNY"}), 201)
    assert "Hangzhou" in checkout["qr_payload"]


def test_a_till_whose_name_a_qr_cannot_carry_labels_its_checkouts_with_its_id(scene):
    operator = scene.callers["operator"]
    till = ok(operator.post("/v1/terminals", {"merchant_id": scene.ids["merchant_id"], "name": "一号收银台"}), 201)
    terminal = operator.as_((till["key_id"], bytes.fromhex(till["secret"])))
    checkout = ok(terminal.post("/v1/checkouts", {"amount": 5, "currency": "CNY"}), 201)
    assert checkout["terminal_label"] == till["id"][-25:]
    assert terminal.get(f"/v1/checkouts/{checkout['id']}/qr.png").status_code == 200


@pytest.mark.parametrize("role,path,depth", [("terminal", "/v1/taps", 33), ("terminal", "/v1/taps", 1_000),
                                             ("terminal", "/v1/taps", 400_000), ("wallet", "/v1/payments", 1_000),
                                             ("wallet", "/v1/payments", 30_000)])
def test_json_nested_deep_is_400_not_a_recursion_error(scene, unchanged, role, path, depth):
    raw = b'{"taps": ' + b"[" * depth + b"]" * depth + b"}"
    e = error(send(scene, role, "POST", path, raw), 400, "invalid_request_error", "malformed_json")
    assert "nests deeper than 32" in e["message"]


def test_json_nested_within_the_limit_is_judged_as_usual(scene):
    raw = b'{"taps": [' + b"[" * 30 + b"]" * 30 + b"]}"
    batch = ok(send(scene, "terminal", "POST", "/v1/taps", raw))
    assert batch["rejected"] == 1 and batch["results"][0]["reason"].startswith("not_an_object")


@pytest.mark.parametrize("query", ["to=0001-01-01", "to=999999999999", "from=0001-01-01T00:00:00%2B14:00",
                                   "to=10000-01-01", "from=1969-12-31T23:59:59Z", "to=-5"])
def test_ridership_times_out_of_range_are_400(scene, query):
    e = error(scene.callers["operator"].get(f"/v1/taps/ridership?{query}"), 400, "invalid_request_error",
              "invalid_parameter")
    assert e["param"] == query.split("=")[0]


def test_ridership_takes_the_whole_range_it_states(scene):
    body = ok(scene.callers["operator"].get("/v1/taps/ridership?from=0&to=9999-12-31T23:59:59Z"))
    assert (body["from"], body["to"]) == ("1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z")


def test_a_body_over_the_limit_is_413_and_stores_nothing(scene, unchanged):
    body = raw_json({"merchant_id": scene.ids["merchant_id"], "amount": 1, "currency": "CNY"})[:-1]
    raw = body + b', "description": "' + b"x" * 70_000 + b'"}'
    e = error(send(scene, "wallet", "POST", "/v1/payments", raw), 413, "invalid_request_error", "body_too_large")
    assert "nothing was done" in e["message"]


def test_insufficient_funds_names_no_ledger_account_and_no_balance(scene):
    wallet = scene.callers["wallet"]
    e = error(wallet.post("/v1/payments", {"merchant_id": scene.ids["merchant_id"], "amount": 9_000_000_000,
                                           "currency": "CNY"}), 402, "payment_error", "insufficient_funds")
    assert "acc_" not in e["message"] and not any(c.isdigit() for c in e["message"])
    # A till charging a pay code learns nothing of the payer's balance either.
    code = ok(wallet.post(f"/v1/wallets/{scene.ids['wallet_id']}/pay_codes"), 201)["code"]
    e = error(scene.callers["terminal"].post("/v1/pos/authorizations", {
        "pay_code": code, "amount": 9_000_000_000, "currency": "CNY"}), 402, "payment_error")
    assert "acc_" not in e["message"] and not any(c.isdigit() for c in e["message"])


DOCUMENT = {(e.method, e.path): e for e in openapi.ENDPOINTS}
UNKNOWN_IDS = [
    ("wallet", "/v1/payments", {"merchant_id": "mer_000000000000000000000000", "amount": 1, "currency": "CNY"}),
    ("operator", "/v1/topups", {"wallet_id": "wal_000000000000000000000000", "amount": 1, "currency": "CNY"}),
    ("operator", "/v1/terminals", {"merchant_id": "mer_000000000000000000000000"}),
    ("operator", "/v1/wallets", {"customer_id": "cus_000000000000000000000000", "currency": "CNY"}),
    ("merchant", "/v1/refunds", {"payment_id": "pay_000000000000000000000000"}),
]


@pytest.mark.parametrize("role,path,body", UNKNOWN_IDS, ids=[p for _, p, _ in UNKNOWN_IDS])
def test_an_unknown_id_on_create_answers_a_documented_404(scene, unchanged, role, path, body):
    error(scene.callers[role].post(path, body), 404, "not_found", "resource_missing")
    responses = openapi.document()["paths"][path]["post"]["responses"]
    assert "404" in responses


LISTS = [("merchant", "/v1/events"), ("wallet", "/v1/payments"), ("merchant", "/v1/payments"),
         ("wallet", "/v1/wallets/{wallet_id}/statement"), ("merchant", "/v1/merchants/{merchant_id}/statement"),
         ("merchant", "/v1/bills"), ("merchant", "/v1/bill-payments")]


@pytest.mark.parametrize("role,path", LISTS, ids=[f"{r} {p}" for r, p in LISTS])
def test_every_list_answers_an_unknown_cursor_alike(scene, role, path):
    e = error(scene.callers[role].get(path.format(**scene.ids) + "?after=evt_unknown00000000"), 400,
              "invalid_request_error", "invalid_cursor")
    assert e["param"] == "after"
    assert "400" in openapi.document()["paths"][path]["get"]["responses"]


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/json-patch+json"])
def test_json_under_another_media_type_is_415_and_stores_nothing(scene, unchanged, content_type):
    e = error(send(scene, "operator", "POST", "/v1/customers", b'{"name": "Wang"}', content_type), 415,
              "invalid_request_error", "unsupported_media_type")
    assert e["param"] == "Content-Type"


def test_a_post_without_a_body_needs_no_media_type(scene):
    response = scene.callers["wallet"].post(f"/v1/wallets/{scene.ids['wallet_id']}/pay_codes", raw=b"",
                                            headers={"Content-Type": ""})
    ok(response, 201)


def test_json_with_a_charset_is_json(scene):
    ok(send(scene, "operator", "POST", "/v1/customers", b'{"name": "Wang"}', "application/json; charset=utf-8"), 201)


@pytest.mark.parametrize("path", ["/v1/payments/pay%00x", "/v1/payments/a%0Ab", "/v1/wallets/%7F"])
def test_a_control_character_in_a_path_is_no_route(scene, path):
    error(scene.callers["operator"].get(path), 404, "not_found", "route_not_found")


@pytest.mark.parametrize("query", ["after=%00", "limit=1%0A", "x%01=1"])
def test_a_control_character_in_a_query_is_400(scene, query):
    error(scene.callers["operator"].get(f"/v1/payments?{query}"), 400, "invalid_request_error", "invalid_text")


def test_a_huge_number_in_a_query_is_400(scene):
    error(scene.callers["operator"].get("/v1/payments?limit=" + "9" * 5000), 400, "invalid_request_error",
          "invalid_parameter")


def test_a_new_data_directory_is_private(tmp_path):
    config = load(tmp_path / "gw")
    config.secret("operator_key")
    assert stat.S_IMODE(os.stat(config.data_dir).st_mode) == 0o700
    for path in config.data_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_an_old_data_directory_is_made_private(tmp_path):
    data = tmp_path / "gw"
    data.mkdir(mode=0o755)
    for name in ("gateway.db", "gateway.db-wal", "secrets.json"):
        (data / name).write_text("")
        (data / name).chmod(0o644)
    (data / "fare_rules.json").write_text("{}")  # the operator's own file: left as it is
    (data / "fare_rules.json").chmod(0o644)
    load(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()} == {
        "gateway.db": 0o600, "gateway.db-wal": 0o600, "secrets.json": 0o600, "fare_rules.json": 0o644}


def test_a_validators_journal_is_private(tmp_path):
    from terminal.journal import Journal

    journal = Journal(tmp_path / "bus" / "validator.journal", b"\x01" * 8)
    journal.save("probe", "1", 0)
    assert stat.S_IMODE((tmp_path / "bus").stat().st_mode) == 0o700
    files = list((tmp_path / "bus").iterdir())
    assert {p.name for p in files} >= {"validator.journal", "validator.journal-wal", "validator.journal-shm"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), files
