"""The gateway's API description: one table of every endpoint, rendered two ways.

`ENDPOINTS` says, for each route under /v1, who may call it, what it takes and what
it answers. `document()` turns it into the OpenAPI 3.1 document served at
/v1/openapi.json; `docs_html()` renders the same table as the page at /docs
(self-contained HTML, no script, no CDN). A test checks ENDPOINTS against the Flask
app's url_map, so a route cannot be added without being described here.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field

from flask import Blueprint, Response

from gateway.core import MAX_REQUEST_AMOUNT
from protocol import request_signing as rs

VERSION = "1"

# --- schemas ---------------------------------------------------------------------------

ID = {"type": "string", "pattern": "^[a-z]{2,5}_[A-Za-z0-9]{8,64}$"}
AMOUNT = {"type": "integer", "minimum": 1, "maximum": MAX_REQUEST_AMOUNT,
          "description": "Integer minor units of the currency (fen for CNY); never a decimal."}
MONEY = {"type": "integer", "description": "Integer minor units."}
CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code, e.g. CNY.",
            "examples": ["CNY"]}
TIME = {"type": "string", "format": "date-time", "description": "UTC, ISO 8601, e.g. 2026-11-27T09:00:00Z."}
TEXT = {"type": "string", "minLength": 1, "maxLength": 500}
NTIME = {"type": ["string", "null"], "format": "date-time"}
NTEXT = {"type": ["string", "null"]}
QR_TEXT = {"type": "string", "minLength": 1, "pattern": "^[ -~]*[!-~][ -~]*$",
           "description": "Printable ASCII, not blank: it is printed in EMV QR codes, whose field carries "
                          "no other script, control or zero-width character."}
HEX = {"type": "string", "pattern": "^[0-9a-f]+$"}
# Names in local scripts (docs/qr-formats.md): what QR fields 59 and 60 show instead, and the language.
NAME_LATIN = {"type": "string", "maxLength": 25, "description": "The name in Latin letters (EMV's character set) "
              "for QR field 59 when `name` is in a local script; without it, the name with accents dropped, "
              "else the merchant's id."}
CITY_LATIN = {"type": "string", "maxLength": 15, "description": "The city in Latin letters for QR field 60 when "
              "`city` is in a local script; without it, the country code."}
LANGUAGE = {"type": "string", "pattern": "^[A-Za-z]{2}$", "description": "ISO 639-1 language of a name in a "
            "local script (QR template 64); default zh."}
NLATIN = {"type": ["string", "null"]}
EVENT_TYPE = {"type": "string", "enum": ["payment.succeeded", "refund.succeeded", "bill.paid"]}


def obj(object_name: str, **props) -> dict:
    """An object schema whose `object` field is the constant object_name."""
    return {"type": "object", "properties": {"object": {"const": object_name}, **props}}


def listing(item: str) -> dict:
    return {"type": "object", "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref(item)},
        "has_more": {"type": "boolean"}, "next_cursor": NTEXT}}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


DEPRECATED_ALIAS = {"type": "string", "deprecated": True,
                    "description": "The same value as `secret`, under its old name; removed in the next release."}

# What POST /v1/taps and POST /v1/sales answer.
UPLOAD_ANSWER = dict(
    received={"type": "integer"}, accepted={"type": "integer"}, duplicate={"type": "integer"},
    rejected={"type": "integer"}, results={"type": "array", "description": "One per row, in order.", "items": {
        "type": "object", "properties": {
            "id": NTEXT, "status": {"type": "string", "enum": ["accepted", "duplicate", "rejected"]},
            "reason": NTEXT, "flags": {"type": "array", "items": {"type": "string"}}, "clearing": NTEXT}}})

SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["type", "code", "message", "param"], "properties": {
            "type": {"type": "string", "enum": ["invalid_request_error", "authentication_error",
                                                "permission_error", "not_found", "idempotency_error",
                                                "conflict", "payment_error", "rate_limit_error", "api_error"]},
            "code": {"type": "string", "examples": ["insufficient_funds", "missing_parameter"]},
            "message": {"type": "string"},
            "param": {"type": ["string", "null"], "description": "The field or header at fault."}}}}},
    "Customer": obj("customer", id=ID, name=NTEXT, email=NTEXT, external_ref=NTEXT, created_at=TIME),
    "Wallet": obj("wallet", id=ID, customer_id=ID, currency=CURRENCY,
                  status={"type": "string", "enum": ["active", "locked"]},
                  concession={"type": "string", "examples": ["adult", "student"],
                              "description": "The fare rules' concession class its linked cards are priced with."},
                  credential_status={"type": "string", "enum": ["active", "revoked"]},
                  created_at=TIME),
    "WalletWithCredential": {"allOf": [ref("Wallet"), {"type": "object", "properties": {
        "secret": {"type": "string", "description": "wk_... bearer key; shown once, stored only as a hash."},
        "credential": DEPRECATED_ALIAS}}]},
    "Merchant": obj("merchant", id=ID, name={"type": "string"}, name_latin=NLATIN, language=NLATIN,
                    currency=CURRENCY, created_at=TIME),
    "MerchantWithKey": {"allOf": [ref("Merchant"), {"type": "object", "properties": {
        "secret": {"type": "string", "description": "sk_... bearer key; shown once, stored only as a hash."},
        "api_key": DEPRECATED_ALIAS}}]},
    "ApiKey": obj("api_key", id=ID, merchant_id=ID, last4={"type": "string"},
                  status={"type": "string", "enum": ["active", "expiring", "expired", "revoked"]},
                  created_at=TIME, expires_at=NTIME, revoked_at=NTIME),
    "ApiKeyWithSecret": {"allOf": [ref("ApiKey"), {"type": "object", "properties": {"secret": {
        "type": "string", "description": "sk_... bearer key; shown once, stored only as a hash."}}}]},
    "ApiKeyList": listing("ApiKey"),
    "Terminal": obj("terminal", id=ID, merchant_id=ID, key_id={"type": "string"}, name=NTEXT,
                    status={"type": "string", "enum": ["active", "suspended", "revoked", "disabled"]},
                    suspended_at={**NTIME, "description": "When it was suspended or revoked."}, created_at=TIME),
    "TerminalWithSecret": {"allOf": [ref("Terminal"), {"type": "object", "properties": {"secret": {
        "type": "string", "description": "HMAC key for signed requests; shown once."}}}]},
    "Balance": obj("balance", owner_id=ID, currency=CURRENCY, available=MONEY, posted=MONEY,
                   pending_debits=MONEY, pending_credits=MONEY),
    "Statement": {"type": "object", "properties": {
        "object": {"const": "list"}, "owner_id": ID, "next_cursor": NTEXT,
        "data": {"type": "array", "items": {"type": "object", "description": "One posting."}}}},
    "PayCode": obj("pay_code", code={"type": "string", "description": "pc_..., single use"},
                   wallet_id=ID, expires_at=TIME, created_at=TIME),
    "Topup": obj("topup", id=ID, wallet_id=ID, amount=MONEY, currency=CURRENCY,
                 status={"const": "succeeded"}, created_at=TIME),
    "Payment": obj("payment", id=ID, wallet_id=ID, merchant_id=ID, amount=MONEY, amount_refunded=MONEY,
                   currency=CURRENCY, status={"type": "string",
                                              "enum": ["succeeded", "partially_refunded", "refunded"]},
                   description=NTEXT, authorization_id={"type": ["string", "null"]}, created_at=TIME),
    "Refund": obj("refund", id=ID, payment_id=ID, amount=MONEY, currency=CURRENCY,
                  status={"const": "succeeded"}, reason=NTEXT, created_at=TIME),
    "Authorization": obj("authorization", id=ID, wallet_id=ID, merchant_id=ID,
                         terminal_id={"type": ["string", "null"]}, amount=MONEY, amount_captured=MONEY,
                         currency=CURRENCY, status={"type": "string", "enum": [
                             "pending", "captured", "voided", "expired"]},
                         payment_id={"type": ["string", "null"]}, expires_at=TIME, created_at=TIME),
    "WebhookEndpoint": obj("webhook_endpoint", id=ID, url={"type": "string", "format": "uri"},
                           event_types={"type": "array", "items": {"type": "string"}},
                           status={"const": "enabled"}, created_at=TIME,
                           previous_secret_expires_at={**NTIME, "description": "After a secret roll: until "
                                                       "when the previous secret signs beside the new one."}),
    "WebhookEndpointWithSecret": {"allOf": [ref("WebhookEndpoint"), {"type": "object", "properties": {
        "secret": {"type": "string", "description": "whsec_... signing secret; shown once."}}}]},
    "Deleted": {"type": "object", "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                                                 "deleted": {"const": True}}},
    "Event": obj("event", id={"type": "string", "description": "evt_..., stable: drop duplicates by it"},
                 type=EVENT_TYPE, merchant_id=ID, created_at=TIME,
                 data={"type": "object", "description": "The payment, refund or bill."}),
    "WebhookDelivery": obj("webhook_delivery", id=ID, event_id=ID, endpoint_id=ID,
                           url={"type": "string"}, status={"type": "string", "enum": [
                               "pending", "delivering", "succeeded", "failed", "cancelled"]},
                           attempt_count={"type": "integer"}, next_attempt_at=NTIME, completed_at=NTIME,
                           attempts={"type": "array", "items": {"type": "object", "properties": {
                               "attempted_at": TIME, "status_code": {"type": ["integer", "null"]},
                               "error": NTEXT, "duration_ms": {"type": "integer"}}}}),
    "Card": obj("card", card_id={**HEX, "minLength": 16, "maxLength": 16}, wallet_id=ID,
                public_key={**HEX, "minLength": 64, "maxLength": 64},
                issuer_key_id={**HEX, "minLength": 8, "maxLength": 8},
                certificate={**HEX, "minLength": 226, "maxLength": 226,
                             "description": "113 bytes, protocol.certs layout, Ed25519-signed."},
                not_after=TIME, not_after_unix={"type": "integer"}, created_at=TIME),
    "IssuerKey": obj("issuer_key", key_id=HEX, algorithm={"const": "Ed25519"}, public_key=HEX,
                     status={"type": "string", "enum": ["active", "retired"]}, created_at=TIME),
    "DenyList": obj("deny_list", version={"type": "integer"}, full={"type": "boolean"},
                    since={"type": "integer"},
                    entries={"type": "array", "description": "When full: the whole list.",
                             "items": ref("DenyListEntry")},
                    added={"type": "array", "description": "When a delta: entries added since.",
                           "items": ref("DenyListEntry")},
                    removed={"type": "array", "description": "When a delta: entries removed since.",
                             "items": ref("DenyListEntry")}),
    "DenyListEntry": {"type": "object", "properties": {
        "entry": {"type": "string", "description": "A card id (16 hex digits) or a pan_/uid_ token."},
        "kind": {"type": "string", "enum": ["card_id", "token"]}, "reason": {"type": "string"},
        "version": {"type": "integer"}, "deny_list_version": {"type": "integer"},
        "deleted": {"type": "boolean"}}},
    "WalletLock": obj("wallet_lock", wallet_id=ID, status={"type": "string", "enum": ["active", "locked"]},
                      denied_card_ids={"type": "array", "items": HEX},
                      deny_list_version={"type": "integer"}),
    "TapBatch": obj("tap_batch", **UPLOAD_ANSWER),
    "SaleBatch": obj("sale_batch", **UPLOAD_ANSWER),
    "Ridership": obj("ridership", data={"type": "array", "items": {"type": "object", "properties": {
        "route": NTEXT, "hour": TIME, "taps": {"type": "integer"}, "accepted": {"type": "integer"},
        "token_taps": {"type": "integer"}, "purse_revenue": MONEY, "currency": NTEXT}}}),
    "SaleRevenue": obj("sale_revenue", data={"type": "array", "items": {"type": "object", "properties": {
        "currency": {"type": "string"}, "sales": {"type": "integer"}, "revenue": MONEY}}}),
    "PurseLoad": obj("purse_load", id=ID, wallet_id=ID, card_id=HEX, counter={"type": "integer"},
                     amount=AMOUNT, currency=CURRENCY, status={"type": "string", "enum": [
                         "authorised", "applied", "superseded"]},
                     authorisation={**HEX, "description": "The issuer-signed TOP-UP data for the card."},
                     created_at=TIME),
    "FareRules": {"type": "object", "description": "protocol.fares rules document (JSON form)."},
    "PurseCard": obj("purse_card", card_id=HEX, currency=CURRENCY, cleared_counter={"type": "integer"},
                     cleared_balance=MONEY, float_balance=MONEY, problem=NTEXT,
                     waiting={"type": "array", "description": "Receipts held after a gap or stopped by a problem.",
                              "items": {"type": "object"}},
                     loads={"type": "array", "items": ref("PurseLoad")}),
}

# --- the endpoints ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str                      # OpenAPI form: /v1/wallets/{wallet_id}
    summary: str
    tag: str
    auth: tuple[str, ...]          # caller kinds; () is public
    response: str                  # a schema name
    status: int = 200
    body: dict = field(default_factory=dict)        # field -> schema
    required: tuple[str, ...] = ()
    query: dict = field(default_factory=dict)       # name -> (schema, description)
    errors: tuple[int, ...] = ()   # beyond those every endpoint of its kind can answer
    description: str = ""
    media: str = "application/json"  # of the success answer; errors are always JSON

    @property
    def idempotent(self) -> bool:
        return self.method == "POST"

    @property
    def operation_id(self) -> str:
        words = [w.strip("{}") for w in self.path.split("/")[2:]]
        return self.method.lower() + "_" + "_".join(re.sub(r"[^a-z0-9]+", "_", w) for w in words)


PAGE = {"limit": ({"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Page size."),
        "after": ({"type": "string"}, "The cursor (an id) from the previous page.")}
BILL_BODY = {"consumer_number": {"type": "string", "maxLength": 25}, "period": {
    "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}, "amount_due": AMOUNT, "currency": CURRENCY,
    "due_date": {"type": "string", "format": "date"}, "bill_number": {"type": "string", "maxLength": 25},
    "minimum_payment": AMOUNT, "expires_at": TIME}
SCHEMAS.update({
    "Biller": obj("biller", id=ID, name={"type": "string"}, name_latin=NLATIN, language=NLATIN,
                  currency=CURRENCY, city={"type": "string"}, city_latin=NLATIN, mcc={"type": "string"},
                  created_at=TIME),
    "BillerWithKey": {"allOf": [ref("Biller"), {"type": "object", "properties": {
        "secret": {"type": "string", "description": "sk_... bearer key; shown once, stored only as a hash."},
        "api_key": DEPRECATED_ALIAS}}]},
    "Bill": obj("bill", id=ID, biller_id=ID, biller_name={"type": "string"}, bill_number={"type": "string"},
                consumer_number={"type": "string"}, period={"type": "string"}, amount_due=MONEY,
                amount_paid=MONEY, amount_outstanding=MONEY, minimum_payment=MONEY, currency=CURRENCY,
                due_date={"type": "string", "format": "date"}, expires_at=TIME,
                status={"type": "string", "enum": ["open", "partially_paid", "paid", "cancelled", "expired"]},
                created_at=TIME, paid_at=NTIME, cancelled_at=NTIME),
    "BillBatch": obj("bill_batch", rows={"type": "integer"}, accepted={"type": "integer"},
                     rejected={"type": "integer"}, bills={"type": "array", "items": ref("Bill")},
                     errors={"type": "array", "items": {"type": "object", "properties": {
                         "row": {"type": "integer", "description": "1-based; CSV: the line (header is 1)."},
                         "code": {"type": "string"}, "message": {"type": "string"}, "param": NTEXT}}}),
    "BillPayment": obj("bill_payment", id=ID, bill_id=ID, biller_id=ID, biller_name={"type": "string"},
                       wallet_id=ID, bill_number={"type": "string"}, consumer_number={"type": "string"},
                       period={"type": "string"}, amount=MONEY, currency=CURRENCY, created_at=TIME,
                       bill={"$ref": "#/components/schemas/Bill"}),
    "BillPaymentList": {"type": "object", "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref("BillPayment")},
        "has_more": {"type": "boolean"}, "next_cursor": NTEXT, "period": NTEXT,
        "totals": {"type": "array", "description": "Over the whole selection, every page.", "items": {
            "type": "object", "properties": {"currency": CURRENCY, "count": {"type": "integer"},
                                             "amount": MONEY}}}}},
    "QrCode": obj("qr_code", payload={"type": "string", "description": "EMVCo merchant-presented payload."}),
    "QrProfile": obj("qr_profile", merchant_id=ID, name={"type": "string"}, city={"type": "string"},
                     city_latin=NLATIN, mcc={"type": "string"}, store_label=NTEXT),
    "Checkout": obj("checkout", id=ID, merchant_id=ID, merchant_name={"type": "string"},
                    terminal_id={"type": ["string", "null"]}, terminal_label={"type": "string"}, amount=MONEY,
                    currency=CURRENCY, status={"type": "string", "enum": ["open", "paid", "cancelled", "expired"]},
                    payment_id={"type": ["string", "null"]}, expires_at=TIME, created_at=TIME, paid_at=NTIME,
                    qr_payload={"type": "string"}),
    "Image": {"type": "string", "description": "The image itself (image/png or image/svg+xml, as the "
                                              "response's media type says), not JSON."},
    "BillList": listing("Bill"),
})
TOKEN = {"type": "string", "pattern": "^(pan|uid)_[a-z2-7]{32}$",
         "description": "A keyed-hash card token; never a card number."}
DAY = {"day": ({"type": "string", "format": "date"}, "The operator's local day; default: today.")}
SCHEMAS.update({  # account-based fares (gateway/api/card_links.py, gateway/api/fare_charges.py)
    "CardLinkCode": obj("card_link_code", code={"type": "string", "description": "XXXXX-XXXXX, single use"},
                        wallet_id=ID, expires_at=TIME, created_at=TIME),
    "CardLink": obj("card_link", id=ID, wallet_id=ID, token=TOKEN, kind={"type": "string", "enum": ["pan", "uid"]},
                    assurance={"type": "string", "enum": ["high", "low"]}, terminal_id=ID, created_at=TIME),
    "CardLinkList": listing("CardLink"),
    "FareCharge": obj("fare_charge", id=ID, token=TOKEN, trip_id={"type": "string"}, seq={"type": "integer"},
                      local_day={"type": "string", "format": "date"}, at=TIME, route={"type": "string"},
                      stop={"type": "string"}, merchant_id={"type": "string"}, wallet_id={"type": ["string", "null"]},
                      amount=MONEY, currency=CURRENCY, rules_version={"type": ["integer", "null"]},
                      status={"type": "string", "enum": ["charged", "free", "unpaid", "settled"]},
                      statement={"type": "string"}, created_at=TIME, settled_at=NTIME),
    "FareChargeList": {"allOf": [listing("FareCharge"), {"type": "object", "properties": {
        "wallet_id": ID, "unpaid_total": MONEY}}]},
    "FareChargeRun": obj("fare_charge_run", day={"type": "string", "format": "date"},
                         rules_version={"type": "integer"}, currency=CURRENCY, tokens={"type": "integer"},
                         trips={"type": "integer"}, held={"type": "integer"}, free={"type": "integer"},
                         charged={"type": "object"}, unpaid={"type": "object"}, debts_collected={"type": "object"},
                         denied_tokens={"type": "integer"}, allowed_tokens={"type": "integer"}),
    "FareChargesByRoute": obj("fare_charges_by_route", day={"type": "string", "format": "date"},
                              data={"type": "array", "items": {"type": "object", "properties": {
                                  "route": {"type": "string"}, "currency": CURRENCY, "trips": {"type": "integer"},
                                  "free_trips": {"type": "integer"}, "collected": MONEY, "unpaid": MONEY}}}),
    "TokenRevenue": obj("token_revenue", day={"type": "string", "format": "date"},
                        data={"type": "array", "items": {"type": "object", "properties": {
                            "route": {"type": "string"}, "hour": TIME, "currency": CURRENCY,
                            "trips": {"type": "integer"}, "token_revenue": MONEY, "unpaid": MONEY}}}),
})
ROLL_SECONDS = {"type": "integer", "minimum": 0, "maximum": 7 * 24 * 3600, "default": 24 * 3600,
                "description": "Seconds the old secret keeps working beside the new one."}
E = Endpoint
ENDPOINTS: tuple[Endpoint, ...] = (
    E("POST", "/v1/customers", "Enrol a customer", "Wallets", ("operator",), "Customer", 201,
      {"name": TEXT, "email": TEXT, "external_ref": TEXT}),
    E("GET", "/v1/customers/{customer_id}", "Read a customer", "Wallets", ("operator",), "Customer"),
    E("POST", "/v1/wallets", "Open a wallet", "Wallets", ("operator",), "WalletWithCredential", 201,
      {"customer_id": ID, "currency": CURRENCY}, ("customer_id", "currency"), errors=(404,)),
    E("GET", "/v1/wallets/{wallet_id}", "Read a wallet", "Wallets", ("operator", "wallet"), "Wallet"),
    E("GET", "/v1/wallets/{wallet_id}/balance", "A wallet's balance", "Wallets", ("operator", "wallet"),
      "Balance"),
    E("GET", "/v1/wallets/{wallet_id}/statement", "A wallet's postings", "Wallets", ("operator", "wallet"),
      "Statement", query=PAGE),
    E("POST", "/v1/wallets/{wallet_id}/pay_codes", "A single-use pay code for the till", "Wallets",
      ("wallet",), "PayCode", 201, errors=(409,)),
    E("POST", "/v1/wallets/{wallet_id}/credential/revoke", "Revoke a wallet's credential", "Wallets",
      ("operator",), "Wallet", 200,
      description="The credential stops working at once (a gateway process that has it cached: within 5 s); "
                  "the wallet, its money and its cards stay. Reissue gives it a new one."),
    E("POST", "/v1/wallets/{wallet_id}/credential/reissue", "Reissue a wallet's credential", "Wallets",
      ("operator", "wallet"), "WalletWithCredential", 201,
      description="A new credential, shown once as `secret`; the one before stops at once."),
    E("POST", "/v1/wallets/{wallet_id}/concession", "Set a wallet's concession class", "Wallets",
      ("operator",), "Wallet", 200, {"class": {"type": "string", "examples": ["student"]}}, ("class",),
      errors=(409,),
      description="One of the published fare rules' concession classes (400 otherwise; 409 when no rules "
                  "are published). The day's charging run prices the wallet's linked cards with it."),
    E("POST", "/v1/merchants", "Sign a merchant up", "Merchants", ("operator",), "MerchantWithKey", 201,
      {"name": {**TEXT, "maxLength": 200, "description": "In any script."}, "currency": CURRENCY,
       "name_latin": NAME_LATIN, "language": LANGUAGE}, ("name",)),
    E("GET", "/v1/merchants/{merchant_id}", "Read a merchant", "Merchants", ("operator", "merchant"),
      "Merchant"),
    E("GET", "/v1/merchants/{merchant_id}/api_keys", "A merchant's API keys (status and expiry, never the keys)",
      "Merchants", ("operator", "merchant"), "ApiKeyList"),
    E("POST", "/v1/merchants/{merchant_id}/api_keys/roll", "Roll a merchant's API key", "Merchants",
      ("operator", "merchant"), "ApiKeyWithSecret", 201, {"expires_in": ROLL_SECONDS},
      description="A new key, shown once as `secret`. The keys in use keep working for `expires_in` seconds "
                  "(24 h unless given; 0 stops them at once), so the merchant's servers can change over."),
    E("POST", "/v1/merchants/{merchant_id}/api_keys/{key_id}/revoke", "Revoke a merchant's API key at once",
      "Merchants", ("operator", "merchant"), "ApiKey", 200,
      description="The key stops working at once (a gateway process that has it cached: within 5 s)."),
    E("GET", "/v1/merchants/{merchant_id}/balance", "A merchant's balance", "Merchants",
      ("operator", "merchant"), "Balance"),
    E("GET", "/v1/merchants/{merchant_id}/statement", "A merchant's postings", "Merchants",
      ("operator", "merchant"), "Statement", query=PAGE),
    E("POST", "/v1/terminals", "Register a terminal (reader or till)", "Merchants", ("operator",),
      "TerminalWithSecret", 201, {"merchant_id": ID, "name": {**TEXT, "maxLength": 200}}, ("merchant_id",),
      errors=(404,)),
    E("GET", "/v1/terminals/{terminal_id}", "Read a terminal", "Merchants",
      ("operator", "merchant", "terminal"), "Terminal"),
    E("POST", "/v1/terminals/{terminal_id}/suspend", "Suspend a terminal", "Merchants", ("operator", "merchant"),
      "Terminal", 200, errors=(409,),
      description="Its signed requests, tap uploads included, answer 403 `terminal_suspended` from the next "
                  "one until it is resumed; taps it takes offline meanwhile wait in its journal."),
    E("POST", "/v1/terminals/{terminal_id}/resume", "Resume a suspended terminal", "Merchants",
      ("operator", "merchant"), "Terminal", 200, errors=(409,)),
    E("POST", "/v1/terminals/{terminal_id}/revoke", "Revoke a terminal for good", "Merchants",
      ("operator", "merchant"), "Terminal", 200, errors=(409,),
      description="Its signed requests answer 403 `terminal_revoked` from the next one; it cannot be resumed."),
    E("POST", "/v1/topups", "Top a wallet up", "Payments", ("operator", "wallet"), "Topup", 201,
      {"wallet_id": ID, "amount": AMOUNT, "currency": CURRENCY}, ("wallet_id", "amount", "currency"),
      errors=(404, 409)),
    E("GET", "/v1/topups/{topup_id}", "Read a top-up", "Payments", ("operator", "wallet"), "Topup"),
    E("POST", "/v1/payments", "Pay a merchant from a wallet", "Payments", ("wallet",), "Payment", 201,
      {"merchant_id": ID, "amount": AMOUNT, "currency": CURRENCY, "description": TEXT},
      ("merchant_id", "amount", "currency"), errors=(402, 404),
      description="Emits `payment.succeeded` to the merchant's webhook endpoints in the same transaction."),
    E("GET", "/v1/payments", "List payments (the caller's own)", "Payments",
      ("operator", "wallet", "merchant"), "PaymentList", query=PAGE),
    E("GET", "/v1/payments/{payment_id}", "Read a payment", "Payments", ("operator", "wallet", "merchant"),
      "Payment"),
    E("POST", "/v1/refunds", "Refund a payment, in whole or in part", "Payments", ("merchant", "terminal"),
      "Refund", 201, {"payment_id": ID, "amount": AMOUNT, "reason": TEXT}, ("payment_id",), errors=(402, 404),
      description="Without `amount`, refunds what is left. A merchant's terminal may refund that "
                  "merchant's payments. Emits `refund.succeeded`."),
    E("GET", "/v1/refunds/{refund_id}", "Read a refund", "Payments", ("operator", "wallet", "merchant"),
      "Refund"),
    E("POST", "/v1/pos/authorizations", "Authorise an amount against a pay code", "Point of sale",
      ("terminal", "merchant"), "Authorization", 201,
      {"pay_code": {"type": "string", "maxLength": 100}, "amount": AMOUNT, "currency": CURRENCY,
       "timeout_seconds": {"type": "integer", "minimum": 1}},
      ("pay_code", "amount", "currency"), errors=(402, 404),
      description="Holds the amount (a pending ledger transfer) until captured, voided or expired."),
    E("GET", "/v1/pos/authorizations/{auth_id}", "Read an authorisation", "Point of sale",
      ("operator", "merchant", "terminal", "wallet"), "Authorization"),
    E("POST", "/v1/pos/authorizations/{auth_id}/capture", "Capture an authorisation", "Point of sale",
      ("terminal", "merchant"), "Authorization", 200, {"amount": AMOUNT}, errors=(409,),
      description="Captures `amount` (at most the authorised amount; all of it when left out); the "
                  "answer is the authorisation, `captured`, with the `payment_id` of the payment made."),
    E("POST", "/v1/pos/authorizations/{auth_id}/void", "Void an authorisation", "Point of sale",
      ("terminal", "merchant"), "Authorization", 200, errors=(409,)),
    E("POST", "/v1/webhook_endpoints", "Register a webhook endpoint", "Webhooks", ("merchant",),
      "WebhookEndpointWithSecret", 201,
      {"url": {"type": "string", "format": "uri", "maxLength": 2048},
       "event_types": {"type": "array", "minItems": 1, "items": {"anyOf": [EVENT_TYPE, {"const": "*"}]}}},
      ("url",), errors=(409,), description="Without `event_types`, the endpoint gets every type (`*`). A "
      "merchant has at most 16 enabled endpoints unless the operator sets another limit (409 "
      "`too_many_webhook_endpoints`). The signing secret is stored sealed under the gateway's master key."),
    E("GET", "/v1/webhook_endpoints", "List webhook endpoints", "Webhooks", ("merchant",),
      "WebhookEndpointList"),
    E("POST", "/v1/webhook_endpoints/{endpoint_id}/roll_secret", "Roll a webhook endpoint's signing secret",
      "Webhooks", ("merchant",), "WebhookEndpointWithSecret", 200, {"expires_in": ROLL_SECONDS},
      description="A new signing secret, shown once. The previous one keeps signing beside it (a `v1=` value "
                  "each in Tapstack-Signature) for `expires_in` seconds: 24 h unless given, 0 (stop at once) "
                  "to 7 days."),
    E("DELETE", "/v1/webhook_endpoints/{endpoint_id}", "Delete a webhook endpoint", "Webhooks",
      ("merchant",), "Deleted", description="Deliveries it had not received yet are cancelled."),
    E("GET", "/v1/events", "List events, newest first", "Webhooks", ("merchant",), "EventList", query=PAGE),
    E("GET", "/v1/events/{event_id}", "Read an event", "Webhooks", ("merchant",), "Event"),
    E("GET", "/v1/events/{event_id}/deliveries", "An event's deliveries and their attempts", "Webhooks",
      ("merchant",), "WebhookDeliveryList"),
    E("POST", "/v1/wallets/{wallet_id}/card", "Certify the wallet's card key", "Issuer",
      ("wallet", "operator"), "Card", 201, {"public_key": {**HEX, "minLength": 64, "maxLength": 64}},
      ("public_key",), errors=(409,),
      description="The wallet generates an Ed25519 key pair and sends the public key; the gateway "
                  "answers a card id and a certificate signed by the issuer key. A wallet may certify "
                  "only its own card."),
    E("GET", "/v1/wallets/{wallet_id}/cards", "A wallet's certified cards", "Issuer",
      ("wallet", "operator"), "CardList"),
    E("GET", "/v1/issuer/keys", "The issuer public keys, by key id", "Issuer", (), "IssuerKeyList",
      description="Public. Terminals verify certificates with these; retired keys stay listed."),
    E("GET", "/v1/issuer/deny-list", "The deny-list, whole or since a version", "Issuer",
      ("terminal", "operator"), "DenyList",
      query={"since": ({"type": "integer", "minimum": 0}, "The version the caller holds: answers a delta.")}),
    E("POST", "/v1/issuer/deny-list", "Deny a card id or token", "Issuer", ("operator",), "DenyListEntry",
      201, {"entry": {"type": "string"}, "kind": {"type": "string", "enum": ["card_id", "token"]},
            "reason": {**TEXT, "maxLength": 200}}, ("entry", "kind", "reason")),
    E("DELETE", "/v1/issuer/deny-list/{entry}", "Take an entry off the deny-list", "Issuer", ("operator",),
      "DenyListEntry"),
    E("POST", "/v1/wallets/{wallet_id}/lock", "Lock a wallet remotely", "Issuer", ("operator",),
      "WalletLock", 200, {"reason": {**TEXT, "maxLength": 200}},
      description="Sets the wallet `locked` and denies every card it holds."),
    E("POST", "/v1/wallets/{wallet_id}/unlock", "Unlock a wallet", "Issuer", ("operator",), "WalletLock",
      description="Takes back the deny-list entries its lock added; an operator's own entries stay."),
    E("POST", "/v1/taps", "Upload a validator's journalled taps", "Transit", ("terminal",), "TapBatch", 200,
      {"taps": {"type": "array", "maxItems": 1000, "items": {"type": "object"}}}, ("taps",),
      description="Up to 1000 rows (1 MiB). Each row is judged alone: garbage rejected with a reason, "
                  "suspect rows flagged, a tap id already stored answered `duplicate`. Purse receipts "
                  "are verified and cleared in counter order; token taps wait for trip pricing. A row's "
                  "`direction` is `on` (the default) or `off`; a purse tap-off is stored, not cleared. "
                  "A row on route `pos` (a till's sale, as tills uploaded them before `/v1/sales`) is "
                  "stored as that sale, its stop the sale id."),
    E("POST", "/v1/sales", "Upload a till's journalled sale records", "Transit", ("terminal",), "SaleBatch", 200,
      {"sales": {"type": "array", "maxItems": 1000, "items": {"type": "object"}}}, ("sales",),
      description="Up to 1000 records (1 MiB): cards presented at a till to pay a sale. Each is judged "
                  "alone, as taps are; a paid purse sale's receipt is verified and cleared like a purse fare."),
    E("GET", "/v1/taps/ridership", "Ridership and purse revenue per route and hour", "Transit",
      ("operator", "merchant"), "Ridership",
      query={"from": ({"type": "string"}, "Unix seconds or ISO 8601; default: a day before `to`."),
             "to": ({"type": "string"}, "Unix seconds or ISO 8601; default: now."),
             "route": ({"type": "string"}, "One route only.")}),
    E("GET", "/v1/sales/revenue", "Purse sales at tills and what clearing posted, per currency", "Transit",
      ("operator", "merchant"), "SaleRevenue",
      query={"from": ({"type": "string"}, "Unix seconds or ISO 8601; default: a day before `to`."),
             "to": ({"type": "string"}, "Unix seconds or ISO 8601; default: now.")}),
    E("GET", "/v1/taps/fare-rules", "The fare rules validators price purse taps with", "Transit",
      ("terminal", "operator"), "FareRules", errors=(404,), description="404 while none are published."),
    E("POST", "/v1/wallets/{wallet_id}/purse-loads", "Load value onto the wallet's purse card", "Transit",
      ("wallet", "operator"), "PurseLoad", 201,
      {"card_id": HEX, "amount": AMOUNT, "currency": CURRENCY, "counter": {"type": "integer", "minimum": 0}},
      ("card_id", "amount", "currency", "counter"), errors=(402, 409),
      description="Moves the amount from the wallet to the card's purse float and answers the issuer's "
                  "TOP-UP authorisation for the card's current counter (good once)."),
    E("GET", "/v1/purse-cards/{card_id}", "Where clearing stands for a purse card", "Transit", ("operator",),
      "PurseCard"),
    E("POST", "/v1/wallets/{wallet_id}/card-links", "A code to link a bank or transit card", "Transit",
      ("wallet", "operator"), "CardLinkCode", 201, errors=(409,),
      description="Single use, valid 10 minutes: the rider taps the card at a terminal in link mode."),
    E("POST", "/v1/card-links/{code}/tap", "Link the tapped card's token to the code's wallet", "Transit",
      ("terminal",), "CardLink", 201, {"token": TOKEN}, ("token",), errors=(409,),
      description="An unknown, expired or used code is 404; a token linked to another wallet is 409."),
    E("GET", "/v1/wallets/{wallet_id}/linked-cards", "A wallet's linked cards", "Transit",
      ("wallet", "operator"), "CardLinkList", errors=(400,),
      description="All of them, in one answer; query parameters are refused (400)."),
    E("DELETE", "/v1/wallets/{wallet_id}/linked-cards/{link_id}", "Unlink a card", "Transit",
      ("wallet", "operator"), "Deleted"),
    E("POST", "/v1/fare-charges/runs", "Charge a day's token trips to linked wallets", "Transit",
      ("operator",), "FareChargeRun", 200, {"day": {"type": "string", "format": "date"}}, errors=(409,),
      description="Safe to repeat: charges only what the day costs beyond earlier runs, within the caps. "
                  "Unpaid charges become debts and their tokens go on the deny-list."),
    E("GET", "/v1/fare-charges", "A day's token fare charges per route", "Transit", ("operator", "merchant"),
      "FareChargesByRoute", query=DAY, errors=(409,)),
    E("GET", "/v1/fare-charges/revenue", "Token ridership and revenue per route and hour", "Transit",
      ("operator", "merchant"), "TokenRevenue", query=DAY, errors=(409,)),
    E("GET", "/v1/wallets/{wallet_id}/fare-charges", "A wallet's fare charges and debts", "Transit",
      ("wallet", "operator"), "FareChargeList",
      query={"status": ({"type": "string", "enum": ["charged", "free", "unpaid", "settled"]}, "unpaid: debts.")}),
    E("POST", "/v1/fare-charges/debts/{charge_id}/settle", "Pay a fare debt now", "Transit",
      ("wallet", "operator"), "FareCharge", 200, errors=(402, 409),
      description="Takes the token off the deny-list once it owes nothing."),
    E("POST", "/v1/billers", "Sign a biller up (a merchant paid into a biller account)", "Bills",
      ("operator",), "BillerWithKey", 201, {"name": {**TEXT, "maxLength": 200, "description": "In any script."},
                                            "city": {**TEXT, "maxLength": 15, "description": "In any script."},
                                            "currency": CURRENCY, "mcc": {"type": "string", "pattern": "^[0-9]{4}$"},
                                            "name_latin": NAME_LATIN, "city_latin": CITY_LATIN, "language": LANGUAGE},
      ("name", "city")),
    E("GET", "/v1/billers/{biller_id}", "Read a biller", "Bills", ("operator", "merchant"), "Biller"),
    E("POST", "/v1/bills", "Issue a bill", "Bills", ("merchant",), "Bill", 201, BILL_BODY,
      ("consumer_number", "period", "amount_due", "currency", "due_date"), errors=(403,),
      description="Biller keys only. `minimum_payment` below `amount_due` allows part payments; "
                  "`expires_at` defaults to 30 days after the due date."),
    E("POST", "/v1/bill-batches", "Issue bills in a batch (JSON or CSV)", "Bills", ("merchant",),
      "BillBatch", 201, {"bills": {"type": "array", "items": {"type": "object", "properties": BILL_BODY}}},
      ("bills",), description="JSON `{\"bills\": [...]}` or a `text/csv` body whose header names the bill "
                              "fields. Bad rows are reported by row number; good rows are created. The "
                              "whole batch is one idempotent request."),
    E("GET", "/v1/bills", "Find bills", "Bills", ("operator", "merchant", "wallet"), "BillList", errors=(404,),
      query={**PAGE, **{n: ({"type": "string"}, d) for n, d in (
          ("biller_id", "Required for wallets and the operator."),
          ("consumer_number", "A wallet names this or bill_number; it sees only payable bills."),
          ("bill_number", "The biller's bill number."), ("period", "YYYY-MM."),
          ("status", "outstanding, open, partially_paid, paid, cancelled or expired."))}}),
    E("GET", "/v1/bills/{bill_id}", "Read a bill", "Bills", ("operator", "merchant", "wallet"), "Bill"),
    E("GET", "/v1/bills/{bill_id}/qr", "A bill's EMVCo QR payload", "Bills",
      ("operator", "merchant", "wallet"), "QrCode", errors=(409,),
      description="Dynamic code for the amount outstanding now; 409 once the bill cannot be paid."),
    E("GET", "/v1/bills/{bill_id}/qr.png", "A bill's QR code as PNG (image/png)", "Bills",
      ("operator", "merchant", "wallet"), "Image", errors=(409,), media="image/png"),
    E("GET", "/v1/bills/{bill_id}/qr.svg", "A bill's QR code as SVG (image/svg+xml)", "Bills",
      ("operator", "merchant", "wallet"), "Image", errors=(409,), media="image/svg+xml"),
    E("POST", "/v1/bills/{bill_id}/cancel", "Cancel an unpaid bill", "Bills", ("merchant",), "Bill",
      errors=(409,)),
    E("POST", "/v1/bills/{bill_id}/payments", "Pay a bill from a wallet", "Bills", ("wallet",),
      "BillPayment", 201, {"amount": AMOUNT}, errors=(402,),
      description="Without `amount`, pays what is outstanding. Part payments down to the bill's "
                  "`minimum_payment`; overpayment refused (400 overpayment); a paid, cancelled or "
                  "expired bill answers 409. Emits `bill.paid` in the same transaction."),
    E("POST", "/v1/bill-payments", "Pay the bill a scanned QR payload names", "Bills", ("wallet",),
      "BillPayment", 201, {"payload": {"type": "string", "maxLength": 512}, "amount": AMOUNT},
      ("payload",), errors=(402,), description="Without `amount`, pays the amount in the code."),
    E("GET", "/v1/bill-payments", "List bill payments with totals (reconciliation)", "Bills",
      ("operator", "merchant", "wallet"), "BillPaymentList",
      query={**PAGE, "period": ({"type": "string"}, "YYYY-MM: the bills' period."),
             "biller_id": ({"type": "string"}, "Only this biller's.")}),
    E("GET", "/v1/bill-payments/{payment_id}", "A bill payment (the payer's receipt)", "Bills",
      ("operator", "merchant", "wallet"), "BillPayment"),
    E("POST", "/v1/merchants/{merchant_id}/qr-profile", "Set what the merchant's QR codes show",
      "Shop QR", ("operator", "merchant"), "QrProfile", 200,
      {"city": {**TEXT, "maxLength": 15, "description": "In any script."}, "city_latin": CITY_LATIN,
       "mcc": {"type": "string", "pattern": "^[0-9]{4}$"}, "store_label": {**QR_TEXT, "maxLength": 25}}, ("city",)),
    E("GET", "/v1/merchants/{merchant_id}/qr", "The merchant's static EMVCo payload", "Shop QR",
      ("operator", "merchant", "terminal"), "QrCode",
      description="No amount: the payer enters it and pays with POST /v1/payments."),
    E("GET", "/v1/merchants/{merchant_id}/qr.png", "The merchant's static QR code as PNG", "Shop QR",
      ("operator", "merchant", "terminal"), "Image", media="image/png"),
    E("GET", "/v1/merchants/{merchant_id}/qr.svg", "The merchant's static QR code as SVG", "Shop QR",
      ("operator", "merchant", "terminal"), "Image", media="image/svg+xml"),
    E("POST", "/v1/checkouts", "A one-sale checkout code at the till", "Shop QR",
      ("merchant", "terminal"), "Checkout", 201,
      {"amount": AMOUNT, "currency": CURRENCY, "terminal_label": {**QR_TEXT, "maxLength": 25},
       "expires_in": {"type": "integer", "minimum": 10, "maximum": 3600, "default": 300}},
      ("amount", "currency")),
    E("GET", "/v1/checkouts/{checkout_id}", "Read a checkout", "Shop QR",
      ("operator", "merchant", "terminal", "wallet"), "Checkout"),
    E("GET", "/v1/checkouts/{checkout_id}/qr.png", "A checkout's QR code as PNG", "Shop QR",
      ("operator", "merchant", "terminal"), "Image", errors=(409,), media="image/png"),
    E("GET", "/v1/checkouts/{checkout_id}/qr.svg", "A checkout's QR code as SVG", "Shop QR",
      ("operator", "merchant", "terminal"), "Image", errors=(409,), media="image/svg+xml"),
    E("POST", "/v1/checkouts/{checkout_id}/payments", "Pay a checkout from a wallet", "Shop QR",
      ("wallet",), "Payment", 201, errors=(402,),
      description="Single use: a paid checkout answers 409 checkout_already_paid, an expired one "
                  "409 checkout_expired. Emits `payment.succeeded`."),
    E("POST", "/v1/checkouts/{checkout_id}/cancel", "Cancel an open checkout", "Shop QR",
      ("merchant", "terminal"), "Checkout", errors=(409,)),
    E("POST", "/v1/paycode-payments", "Charge a customer's signed pay code", "Shop QR",
      ("merchant", "terminal"), "Payment", 201,
      {"pay_code": {"type": "string", "maxLength": 1000}, "amount": AMOUNT, "currency": CURRENCY},
      ("pay_code", "amount", "currency"), errors=(402,),
      description="The code (TS:...) is verified against the issuer keys; each code pays once "
                  "(409 pay_code_used), an expired one answers 409 pay_code_expired."),
    E("GET", "/v1/openapi.json", "This document", "Meta", (), "OpenAPI"),
)
LISTS = {"PaymentList": "Payment", "WebhookEndpointList": "WebhookEndpoint", "EventList": "Event",
         "WebhookDeliveryList": "WebhookDelivery", "CardList": "Card", "IssuerKeyList": "IssuerKey"}
SCHEMAS.update({name: listing(item) for name, item in LISTS.items()})
SCHEMAS["OpenAPI"] = {"type": "object", "description": "An OpenAPI 3.1 document."}

SECURITY_SCHEMES = {
    "operator": {"type": "http", "scheme": "bearer", "bearerFormat": "op_<hex>",
                 "description": "The operator key, printed by `tapstack gateway operator-key`."},
    "merchant": {"type": "http", "scheme": "bearer", "bearerFormat": "sk_...",
                 "description": "A merchant's API key, shown once when the merchant is created."},
    "wallet": {"type": "http", "scheme": "bearer", "bearerFormat": "wk_...",
               "description": "A wallet's credential, shown once when the wallet is opened."},
    "terminalKeyId": {"type": "apiKey", "in": "header", "name": rs.KEY_ID_HEADER,
                      "description": "A terminal's key id (tk_...). Terminals sign every request: see "
                                     "protocol/request_signing.py."},
    "terminalTimestamp": {"type": "apiKey", "in": "header", "name": rs.TIMESTAMP_HEADER,
                          "description": f"Unix seconds, within {rs.WINDOW_SECONDS} s of the gateway."},
    "terminalNonce": {"type": "apiKey", "in": "header", "name": rs.NONCE_HEADER,
                      "description": "16 to 64 of [A-Za-z0-9_-], never reused by the key."},
    "terminalSignature": {"type": "apiKey", "in": "header", "name": rs.SIGNATURE_HEADER,
                          "description": "Hex HMAC-SHA256 of the canonical request (method, path, "
                                         "timestamp, nonce, SHA-256 of the body)."},
}
SIGNING_HEADERS = (rs.KEY_ID_HEADER, rs.TIMESTAMP_HEADER, rs.NONCE_HEADER, rs.SIGNATURE_HEADER)
TERMINAL = {"terminalKeyId": [], "terminalTimestamp": [], "terminalNonce": [], "terminalSignature": []}

HEADERS = {
    "IdempotentReplayed": {"description": "\"true\" when this answer is the replay of the first one "
                                          "given to the same Idempotency-Key (nothing was done again); "
                                          "absent on a first answer.",
                           "schema": {"const": "true"}},
    "RetryAfter": {"description": "Seconds until the rate limit's window ends.",
                   "schema": {"type": "integer", "minimum": 1}},
    "WWWAuthenticate": {"description": "The scheme to authenticate with.",
                        "schema": {"type": "string", "examples": ['Bearer realm="tapstack"']}},
}

ERRORS = {
    400: "Invalid request: malformed JSON, a missing, unknown or invalid field (named in `param`).",
    401: "No, unknown or badly signed credentials.",
    402: "The request was valid; the money is not there (`insufficient_funds`).",
    403: "This kind of caller may not use this endpoint.",
    404: "No such object, or it is not the caller's.",
    409: "The object's state forbids it, or the Idempotency-Key was used for another request.",
    413: "The request body is larger than the endpoint takes (64 KiB; 1 MiB for tap uploads), "
         "chunked or not; nothing was done.",
    415: "A request body that is not sent as `Content-Type: application/json`.",
    429: "The credential's requests passed its limit for the minute (`rate_limited`; a wallet's bill lookups by "
         "consumer number have a lower one); nothing was done. Retry after Retry-After seconds.",
}


def _errors(e: Endpoint) -> list[int]:
    codes = set(e.errors)
    if e.body or e.query or e.idempotent:
        codes.add(400)
    if e.auth:
        codes |= {401, 403}
    if set(e.auth) - {"operator"}:  # gateway.http.rate_limits: every caller but the operator
        codes.add(429)
    if "{" in e.path:
        codes.add(404)
    if e.idempotent:
        codes |= {409, 413, 415}
    return sorted(codes)


def _operation(e: Endpoint) -> dict:
    op: dict = {"operationId": e.operation_id, "summary": e.summary, "tags": [e.tag]}
    if e.description:
        op["description"] = e.description
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
              for n in re.findall(r"{(\w+)}", e.path)]
    params += [{"name": n, "in": "query", "required": False, "schema": s, "description": d}
               for n, (s, d) in e.query.items()]
    if e.idempotent:
        params.append({"$ref": "#/components/parameters/IdempotencyKey"})
    if params:
        op["parameters"] = params
    if e.method == "POST":
        schema = {"type": "object", "additionalProperties": False, "properties": e.body}
        if e.required:
            schema["required"] = list(e.required)
        op["requestBody"] = {"required": bool(e.required),
                             "content": {"application/json": {"schema": schema}}}
    success: dict = {"description": e.summary, "content": {e.media: {"schema": ref(e.response)}}}
    if e.idempotent:
        success["headers"] = {"Idempotent-Replayed": {"$ref": "#/components/headers/IdempotentReplayed"}}
    op["responses"] = {str(e.status): success}
    for code in _errors(e):
        op["responses"][str(code)] = {"$ref": f"#/components/responses/Error{code}"}
    op["security"] = [TERMINAL if kind == "terminal" else {kind: []} for kind in e.auth]
    return op


def document() -> dict:
    """The OpenAPI 3.1 document of ENDPOINTS."""
    paths: dict = {}
    for e in ENDPOINTS:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e)
    responses = {f"Error{code}": {"description": text, "content": {
        "application/json": {"schema": ref("Error")}}} for code, text in ERRORS.items()}
    responses["Error401"]["headers"] = {"WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"}}
    responses["Error429"]["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "tapstack gateway", "version": VERSION,
                 "description": "Wallets, payments, POS, webhooks and the issuer role of tapstack's "
                                "gateway. Money is integer minor units with an ISO 4217 currency. "
                                "Every error answers one shape (Error). Every POST must carry an "
                                "Idempotency-Key header (400 idempotency_key_required without one): "
                                "a retry with the same key and body replays the first answer, marked "
                                "Idempotent-Replayed: true. Operators, merchants and wallets send "
                                "Authorization: Bearer <key>; a 401 answers WWW-Authenticate. "
                                f"Terminals sign every request with the headers {', '.join(SIGNING_HEADERS)} "
                                "(protocol/request_signing.py)."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": SECURITY_SCHEMES,
            "parameters": {"IdempotencyKey": {
                "name": "Idempotency-Key", "in": "header", "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "Unique per intended effect; a retry with the same key and body "
                               "replays the first answer (header Idempotent-Replayed: true)."}},
            "headers": HEADERS,
            "responses": responses,
        },
        "tags": [{"name": t} for t in dict.fromkeys(e.tag for e in ENDPOINTS)],
    }


# --- the docs page ---------------------------------------------------------------------

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ddd;margin-top:2.5rem}
section.op{border:1px solid #e3e3e3;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
code,.path{font-family:ui-monospace,monospace}
.m{display:inline-block;min-width:4.5em;font-weight:700;font-family:ui-monospace,monospace}
.GET{color:#05704a}.POST{color:#1d4ed8}.DELETE{color:#b91c1c}
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #e3e3e3;padding:.2rem .5rem;
text-align:left;vertical-align:top}.muted{color:#666}nav a{margin-right:1rem}
"""


def _type(schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    t = schema.get("type", "object")
    if t == "array":
        return f"array of {_type(schema.get('items', {}))}"
    return " or ".join(t) if isinstance(t, list) else t


def _fields(schema: dict, required=()) -> str:
    props = schema.get("properties", {})
    if not props:
        return ""
    rows = "".join(
        f"<tr><td><code>{html.escape(n)}</code>{' <b>required</b>' if n in required else ''}</td>"
        f"<td>{html.escape(_type(s))}</td><td>{html.escape(s.get('description', ''))}</td></tr>"
        for n, s in props.items())
    return f"<table><tr><th>field</th><th>type</th><th>notes</th></tr>{rows}</table>"


def _headers_table() -> str:
    """The request and response headers the API defines, one row each."""
    idempotency = "Every POST, required: unique per intended effect, 1 to 255 printable ASCII characters."
    rows = [("request", "Authorization", "Bearer &lt;key&gt; of an operator, merchant or wallet.")]
    rows += [("request", scheme["name"], html.escape(scheme["description"]))
             for scheme in SECURITY_SCHEMES.values() if scheme.get("in") == "header"]
    rows += [("request", "Idempotency-Key", idempotency),
             ("response", "Idempotent-Replayed", html.escape(HEADERS["IdempotentReplayed"]["description"])),
             ("response", "WWW-Authenticate", "On every 401: <code>Bearer realm=\"tapstack\"</code>.")]
    return ("<table><tr><th></th><th>header</th><th>meaning</th></tr>"
            + "".join(f"<tr><td>{kind}</td><td><code>{name}</code></td><td>{text}</td></tr>"
                      for kind, name, text in rows) + "</table>")


def docs_html() -> str:
    """The /docs page: every endpoint of ENDPOINTS with its callers, fields and answers."""
    doc = document()
    parts = [f"<!doctype html><html lang=en><meta charset=utf-8><title>tapstack gateway API</title>"
             f"<style>{_CSS}</style><h1>tapstack gateway API</h1>"
             f"<p>{html.escape(doc['info']['description'])}</p>"
             "<p class=muted>Machine-readable: <a href='/v1/openapi.json'>/v1/openapi.json</a> "
             "(OpenAPI 3.1).</p><nav>"]
    tags = [t["name"] for t in doc["tags"]]
    parts += [f"<a href='#{t.replace(' ', '-')}'>{html.escape(t)}</a>" for t in tags]
    parts.append("</nav>")
    for tag in tags:
        parts.append(f"<h2 id='{tag.replace(' ', '-')}'>{html.escape(tag)}</h2>")
        for e in (e for e in ENDPOINTS if e.tag == tag):
            who = ", ".join(e.auth) if e.auth else "anyone (no credentials)"
            parts.append(f"<section class=op id='{e.operation_id}'><div><span class='m {e.method}'>"
                         f"{e.method}</span> <span class=path>{html.escape(e.path)}</span></div>"
                         f"<p><b>{html.escape(e.summary)}</b>. Callers: {html.escape(who)}."
                         + (" Needs an <code>Idempotency-Key</code> header." if e.idempotent else "")
                         + "</p>")
            if e.description:
                parts.append(f"<p>{html.escape(e.description)}</p>")
            if e.query:
                parts.append(_fields({"properties": {n: {**s, "description": d} for n, (s, d) in
                                                     e.query.items()}}))
            if e.method == "POST" and e.body:
                parts.append("<p class=muted>Request body (JSON; other fields are refused):</p>"
                             + _fields({"properties": e.body}, e.required))
            media = "" if e.media == "application/json" else f" (<code>{e.media}</code>)"
            parts.append(f"<p class=muted>Answers {e.status} with <a href='#schema-{e.response}'>"
                         f"{e.response}</a>{media}; errors {', '.join(map(str, _errors(e))) or 'none'} "
                         f"with <a href='#schema-Error'>Error</a>.</p>")
            parts.append("</section>")
    parts.append("<h2 id=Headers>Headers</h2>" + _headers_table())
    parts.append("<h2 id=Schemas>Schemas</h2>")
    for name, schema in SCHEMAS.items():
        merged = schema
        if "allOf" in schema:
            merged = {"properties": {}}
            for piece in schema["allOf"]:
                merged["properties"].update(SCHEMAS[_type(piece)]["properties"] if "$ref" in piece
                                            else piece["properties"])
        parts.append(f"<h3 id='schema-{name}'>{name}</h3>"
                     + (_fields(merged) or f"<p>{html.escape(schema.get('description', ''))}</p>"))
    parts.append("<h2>Errors</h2><table><tr><th>status</th><th>meaning</th></tr>"
                 + "".join(f"<tr><td>{c}</td><td>{html.escape(t)}</td></tr>" for c, t in ERRORS.items())
                 + "</table></html>")
    return "".join(parts)


bp = Blueprint("openapi", __name__)


@bp.get("/v1/openapi.json")
def openapi_json():
    return Response(json.dumps(document(), indent=1), mimetype="application/json")


@bp.get("/docs")
def docs():
    return Response(docs_html(), mimetype="text/html")
