"""The bad-input corpus: hostile and careless requests over every endpoint of the API.

Generated from gateway.http.openapi.ENDPOINTS, so a new endpoint is covered the day it is
described: every body field of every POST poisoned in turn (wrong types, sizes, text
that is not text, scripts a QR cannot carry), every body broken as a whole (encodings,
nesting, duplicates, media types), every query parameter and path id mangled, and the
credentials and Idempotency-Key headers malformed. Hand-written entries add what a
generator would not think of: dates, numbers and codes of each domain.

An entry is (label, role, method, path, body bytes or None, headers), and the
operation it aims at (method and documented path). Paths and bodies hold `{name}`
placeholders for the scene's ids (tests/security/conftest.py), filled in when sent.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from gateway.http.openapi import ENDPOINTS, Endpoint


@dataclass(frozen=True)
class Entry:
    label: str
    role: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict = field(default_factory=dict)

    @property
    def operation(self) -> tuple[str, str]:
        """(method, path as documented): the path without its query, ids back as {names}."""
        path = self.path.split("?", 1)[0]
        for e in ENDPOINTS:
            pattern = re.sub(r"\\{\w+\\}", "[^/]+", re.escape(e.path))
            if e.method == self.method and (path == e.path or re.fullmatch(pattern, path)):
                return e.method, e.path
        raise LookupError(f"{self.method} {path} is no documented operation")


# A valid value for each body field the API takes, by name.
SAMPLES = {
    "name": "Corner Shop", "email": "a@example.org", "external_ref": "r-1", "customer_id": "{customer_id}",
    "currency": "CNY", "class": "adult", "merchant_id": "{merchant_id}", "wallet_id": "{wallet_id}", "amount": 1,
    "description": "tea", "payment_id": "{payment_id}", "reason": "test", "pay_code": "pc_unknown000000",
    "timeout_seconds": 60, "url": "https://hooks.example/corpus", "event_types": ["payment.succeeded"],
    "public_key": "ab" * 32, "entry": "0011223344556677", "kind": "card_id", "card_id": "0011223344556677",
    "counter": 0, "token": "pan_" + "a" * 32, "day": "2026-11-27", "city": "Hangzhou", "mcc": "5411",
    "consumer_number": "C-7", "period": "2026-11", "amount_due": 100, "due_date": "2099-12-31",
    "bill_number": "B-7", "minimum_payment": 1, "expires_at": "2100-01-01T00:00:00Z", "payload": "000201",
    "store_label": "Front", "terminal_label": "till", "expires_in": 60,
    "taps": [{"id": "corpus-1", "kind": "uid", "route": "12", "stop": "1", "at": "2026-11-27T09:00:00Z"}],
    "sales": [{"id": "corpus-2", "sale": "s-1", "kind": "purse", "accepted": False, "reason": "test",
               "at": 1764233400}],
    "bills": [{"consumer_number": "C-8", "period": "2026-11", "amount_due": 5, "currency": "CNY",
               "due_date": "2099-12-31"}],
}

# Each body field in turn becomes each of these.
BAD_VALUES = {
    "null": None, "true": True, "negative": -1, "float": 1.5, "huge": 10 ** 30, "empty": "", "blank": "   ",
    "long": "x" * 5000, "list": [1], "object": {"a": 1}, "surrogate": "\ud800", "NUL": "a\x00b",
    "zero-width": "a\u200bb", "local script": "杭州市", "SQL": "' OR 1=1 --",
}

# Whole bodies, as bytes, sent with Content-Type: application/json unless a type is given.
BAD_BODIES = {
    "not JSON": (b"{", None), "a JSON list": (b"[]", None), "a JSON string": (b'"x"', None),
    "UTF-16": ('{"a": 1}'.encode("utf-16"), None),
    "invalid UTF-8": (b'{"name": "\xff\xfe"}', None), "a BOM": (b'\xef\xbb\xbf{"name": "x"}', None),
    "NaN": (b'{"amount": NaN}', None), "1e400": (b'{"amount": 1e400}', None),
    "a repeated field": (b'{"amount": 1, "amount": 2}', None),
    "nested 40 deep": (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", None),
    "nested 5000 deep": (b'{"a": ' + b"{\"a\": " * 5000 + b"1" + b"}" * 5000 + b"}", None),
    "an unknown field": (b'{"zzz_admin": true}', None), "a lone surrogate key": (b'{"\\udc00": 1}', None),
    "text/plain": (b'{"name": "x"}', "text/plain"), "form data": (b"name=x", "application/x-www-form-urlencoded"),
    "over 64 KiB": (b'{"name": "' + b"x" * 70_000 + b'"}', None),
}

BAD_QUERY_VALUES = {
    "empty": "", "NUL": "%00", "encoded surrogate": "%ED%A0%80", "invalid UTF-8": "%FF%FE", "huge": "9" * 5000,
    "negative": "-1", "year 1": "0001-01-01", "year 99999": "99999-12-31", "30 February": "2026-02-30",
    "long": "x" * 3000, "newline": "a%0Ab", "local script": "%E6%9D%AD%E5%B7%9E", "float": "1.5",
    "unknown id": "bil_000000000000000000000000",
}

BAD_PATH_IDS = {
    "unknown": "xyz_000000000000000000000000", "NUL": "a%00b", "encoded surrogate": "%ED%A0%80",
    "traversal": "..%2F..%2Fetc", "long": "x" * 3000, "local script": "%E6%9D%AD", "SQL": "'%20OR%201=1",
}

def caller(e: Endpoint) -> str:
    """The role the corpus sends an endpoint's requests as: one it admits."""
    return e.auth[0] if e.auth else "operator"


def _json(value) -> bytes:
    return json.dumps(value).encode()  # a lone surrogate goes as its \\ud800 escape, as clients send it


def valid_body(e: Endpoint) -> dict:
    return {name: SAMPLES[name] for name in e.body if name in e.required or name in ("amount",)}


def generated() -> list[Entry]:
    entries = []
    for e in ENDPOINTS:
        role, where = caller(e), f"{e.method} {e.path}"
        if e.method == "POST":
            base = valid_body(e)
            for name in e.body:
                for label, value in BAD_VALUES.items():
                    entries.append(Entry(f"{where} {name}={label}", role, e.method, e.path,
                                         _json({**base, name: value})))
            for label, (raw, media) in BAD_BODIES.items():
                entries.append(Entry(f"{where} body {label}", role, e.method, e.path, raw,
                                     {"Content-Type": media} if media else {}))
        for name in e.query:
            for label, value in BAD_QUERY_VALUES.items():
                entries.append(Entry(f"{where} ?{name}={label}", role, e.method, f"{e.path}?{name}={value}",
                                     b"{}" if e.method == "POST" else None))
        if e.method == "GET":
            entries.append(Entry(f"{where} unknown and repeated parameters", role, e.method,
                                 f"{e.path}?zzz=1&limit=1&limit=2"))
        for name in re.findall(r"{(\w+)}", e.path):
            for label, value in BAD_PATH_IDS.items():
                entries.append(Entry(f"{where} {name}={label}", role, e.method, e.path.replace(f"{{{name}}}", value),
                                     b"{}" if e.method == "POST" else None))
    return entries


def _headers(label, role, method, path, headers, body=None) -> Entry:
    return Entry(f"{method} {path} {label}", role, method, path, body, headers)


HANDWRITTEN = [
    # credentials
    _headers("no scheme", "anonymous", "GET", "/v1/payments", {"Authorization": "op_123"}),
    _headers("empty bearer", "anonymous", "GET", "/v1/payments", {"Authorization": "Bearer "}),
    _headers("10 KB bearer", "anonymous", "GET", "/v1/payments", {"Authorization": "Bearer sk_" + "a" * 10_000}),
    _headers("basic auth", "anonymous", "GET", "/v1/payments", {"Authorization": "Basic YTpi"}),
    _headers("latin-1 key", "anonymous", "GET", "/v1/payments", {"Authorization": "Bearer wk_\xff\xfe"}),
    _headers("NUL in key", "anonymous", "GET", "/v1/payments", {"Authorization": "Bearer op_\x00"}),
    _headers("two bearers", "anonymous", "GET", "/v1/payments", {"Authorization": "Bearer a, Bearer b"}),
    _headers("unknown terminal", "anonymous", "GET", "/v1/issuer/deny-list", {
        "Tapstack-Key-Id": "tk_unknown", "Tapstack-Timestamp": "1", "Tapstack-Nonce": "n" * 16,
        "Tapstack-Signature": "00" * 32}),
    _headers("huge timestamp", "anonymous", "GET", "/v1/issuer/deny-list", {
        "Tapstack-Key-Id": "tk_x", "Tapstack-Timestamp": "9" * 400, "Tapstack-Nonce": "n" * 16,
        "Tapstack-Signature": "00"}),
    _headers("float timestamp", "anonymous", "GET", "/v1/issuer/deny-list", {
        "Tapstack-Key-Id": "tk_x", "Tapstack-Timestamp": "1e10", "Tapstack-Nonce": "../../x",
        "Tapstack-Signature": "zz"}),
    _headers("key id only", "anonymous", "GET", "/v1/issuer/deny-list", {"Tapstack-Key-Id": "\u00e9"}),
    # Idempotency-Key
    _headers("no Idempotency-Key", "operator", "POST", "/v1/customers", {"Idempotency-Key": ""}, b"{}"),
    _headers("256-character key", "operator", "POST", "/v1/customers", {"Idempotency-Key": "k" * 256}, b"{}"),
    _headers("control character in key", "operator", "POST", "/v1/customers", {"Idempotency-Key": "a\tb"}, b"{}"),
    _headers("non-ASCII key", "operator", "POST", "/v1/customers", {"Idempotency-Key": "clé"}, b"{}"),
    # numbers
    *[Entry(f"POST /v1/payments amount {label}", "wallet", "POST", "/v1/payments",
            b'{"merchant_id": "{merchant_id}", "currency": "CNY", "amount": ' + raw + b"}")
      for label, raw in (("2^63", b"9223372036854775808"), ("-0", b"-0"), ("1e2", b"1e2"), ("1.0", b"1.0"),
                         ("5000 digits", b"9" * 5000), ("max + 1", b"10000000001"), ("hex", b"0x10"))],
    # dates and periods
    *[Entry(f"POST /v1/bills {name}={value}", "merchant", "POST", "/v1/bills", _json({
        "consumer_number": "C-9", "period": "2026-11", "amount_due": 5, "currency": "CNY", "due_date": "2099-12-31",
        name: value}))
      for name, value in (("due_date", "2026-13-01"), ("due_date", "0000-00-00"), ("due_date", "9999-99-99"),
                          ("due_date", "0001-01-01"), ("due_date", "99999-01-01"), ("period", "2026-13"),
                          ("period", "0000-00"), ("expires_at", "0001-01-01T00:00:00Z"),
                          ("expires_at", "9999-12-31T23:59:59+14:00"), ("expires_at", "yesterday"),
                          ("expires_at", "2026-11-27T09:00:00"), ("minimum_payment", 10 ** 12))],
    *[Entry(f"GET /v1/fare-charges day={day}", "operator", "GET", f"/v1/fare-charges?day={day}")
      for day in ("0001-01-01", "9999-12-31", "2026-02-30", "20261127", "-1")],
    *[Entry(f"POST /v1/fare-charges/runs day={day}", "operator", "POST", "/v1/fare-charges/runs", _json({"day": day}))
      for day in ("0001-01-01", "9999-12-31", "2026-02-30", 20261127)],
    *[Entry(f"GET /v1/taps/ridership {q}", "operator", "GET", f"/v1/taps/ridership?{q}")
      for q in ("to=0001-01-01", "to=999999999999", "from=1&to=0", "from=2026-11-27T00:00:00%2B99:00",
                "to=9999-12-31T23:59:59-14:00", "from=nan")],
    _headers("since 20 digits", "operator", "GET", "/v1/issuer/deny-list?since=" + "9" * 20, {}),
    # codes and payloads
    *[Entry(f"POST /v1/bill-payments payload {label}", "wallet", "POST", "/v1/bill-payments", _json({"payload": p}))
      for label, p in (("bad CRC", "00020101021229300012com.tapstack01\u0030" + "6304FFFF"),
                       ("truncated", "0002010102"), ("length overrun", "0099x"), ("not EMV", "hello"),
                       ("NUL", "0002\x0001"), ("1000 characters", "0" * 1000))],
    *[Entry(f"POST /v1/paycode-payments pay_code {label}", "terminal", "POST", "/v1/paycode-payments",
            _json({"pay_code": p, "amount": 1, "currency": "CNY"}))
      for label, p in (("empty TS", "TS:"), ("garbage", "TS:" + "A" * 900), ("not base32", "TS:!!!!"),
                       ("ticket prefix", "TT:abc"))],
    # taps
    *[Entry(f"POST /v1/taps {label}", "terminal", "POST", "/v1/taps", _json({"taps": rows}))
      for label, rows in (("1001 rows", [{}] * 1001), ("rows of scalars", [1, "x", None, True]),
                          ("huge id", [{"id": "x" * 5000}]), ("nested row", [{"id": {"id": {"id": 1}}}]),
                          ("surrogate in row", [{"id": "\udfff"}]), ("bad times", [{"id": "t", "at": "0001-01-01"}]),
                          ("amount overflow", [{"id": "t", "amount": 10 ** 40}]),
                          ("till row of the old kind without its sale", [{"id": "t", "route": "pos"}]),
                          ("till row of the old kind, garbage", [{"id": 7, "route": "pos", "stop": {"x": 1}}]))],
    *[Entry(f"POST /v1/sales {label}", "terminal", "POST", "/v1/sales", _json({"sales": rows}))
      for label, rows in (("1001 rows", [{}] * 1001), ("rows of scalars", [1, "x", None, True]),
                          ("huge id", [{"id": "x" * 5000}]), ("nested row", [{"id": {"id": {"id": 1}}}]),
                          ("surrogate in sale", [{"id": "t", "sale": "\udfff"}]),
                          ("a tap sent as a sale", [{"id": "t", "at": 1, "kind": "uid", "accepted": True,
                                                     "reason": "token", "route": "12", "stop": "1"}]),
                          ("amount overflow", [{"id": "t", "sale": "s", "amount": 10 ** 40}]))],
    # purse loads, cards, tokens
    *[Entry(f"POST /v1/wallets/{{wallet_id}}/purse-loads {label}", "wallet", "POST",
            "/v1/wallets/{wallet_id}/purse-loads", _json({"card_id": "0011223344556677", "amount": 1,
                                                         "currency": "CNY", "counter": 0, **change}))
      for label, change in (("counter -1", {"counter": -1}), ("counter 2^32", {"counter": 2 ** 32}),
                            ("card id upper case", {"card_id": "0011223344556677".upper()}),
                            ("card id short", {"card_id": "00"}))],
    *[Entry(f"POST /v1/wallets/{{wallet_id}}/card public_key {label}", "wallet", "POST", "/v1/wallets/{wallet_id}/card",
            _json({"public_key": key}))
      for label, key in (("short", "ab"), ("not hex", "zz" * 32), ("upper case", "AB" * 32), ("all zero", "00" * 32))],
    # CSV bill batches
    *[Entry(f"POST /v1/bill-batches CSV {label}", "merchant", "POST", "/v1/bill-batches", raw, {"Content-Type": "text/csv"})
      for label, raw in (("not UTF-8", b"consumer_number\n\xff\xfe"), ("NUL", b"consumer_number\nC\x00"),
                         ("no header", b""), ("unknown column", b"x,y\n1,2"), ("10,000 columns", b",".join([b"c"] * 10_000)),
                         ("ragged", b"consumer_number,period\nC-1,2026-11,extra"),
                         ("quote", b'consumer_number\n"C-1'))],
    # webhook URLs
    *[Entry(f"POST /v1/webhook_endpoints url {label}", "merchant", "POST", "/v1/webhook_endpoints", _json({"url": url}))
      for label, url in (("file", "file:///etc/passwd"), ("javascript", "javascript:alert(1)"),
                         ("3000 characters", "https://x.example/" + "a" * 3000), ("user info", "https://a:b@x.example/"),
                         ("IDN", "https://bücher.example/"), ("gopher", "gopher://x.example/"),
                         ("metadata", "http://169.254.169.254/"), ("decimal loopback", "http://2130706433/"),
                         ("port 99999", "https://x.example:99999/"), ("no host", "https:///x"))],
    # key lifecycle: overlap windows past the 7 days, keys and states that are not there
    *[Entry(f"POST {path} expires_in {label}", role, "POST", path, _json({"expires_in": value}))
      for path, role in (("/v1/merchants/{merchant_id}/api_keys/roll", "merchant"),
                         ("/v1/webhook_endpoints/{endpoint_id}/roll_secret", "merchant"))
      for label, value in (("a week and a second", 7 * 86400 + 1), ("as text", "86400"), ("1e3", 1e3),
                           ("minus zero", -0.0), ("2**63", 2 ** 63))],
    Entry("POST revoke another merchant's key", "merchant", "POST",
          "/v1/merchants/{merchant_id}/api_keys/mk_000000000000000000000000/revoke", b"{}"),
    Entry("POST resume an active terminal", "merchant", "POST", "/v1/terminals/{terminal_id}/resume", b"{}"),
    Entry("POST reissue another wallet's credential", "wallet", "POST",
          "/v1/wallets/wal_000000000000000000000000/credential/reissue", b"{}"),
]


def corpus() -> list[Entry]:
    return generated() + HANDWRITTEN
