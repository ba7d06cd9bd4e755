"""The till's core: commands and amounts, sale ids and keys, what a tap, a scanned code or a
gateway refusal comes to, and the panel the customer reads."""
from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from protocol import certs, ed25519, signed_qr
from terminal import pos
from terminal.card import Decision

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
SALE = pos.open_sale("3132-9f0e1d2c-00000001", 1250, "CNY", "R-7", NOW)


@pytest.mark.parametrize("text, currency, minor", [
    ("12.50", "CNY", 1250), ("12.5", "CNY", 1250), ("0.01", "CNY", 1), ("12", "CNY", 1200),
    ("1000", "JPY", 1000), ("1.234", "KWD", 1234), (" 3.00 ", "CNY", 300),
    ("19.99", "CNY", 1999),  # 19.99 * 100 is 1998.9999... as a float
])
def test_amounts_are_parsed_exactly_by_the_currency_decimals(text, currency, minor):
    assert pos.parse_amount(text, currency) == minor


@pytest.mark.parametrize("text, currency, says", [
    ("12.505", "CNY", "decimal"), ("12.5", "JPY", "decimal"), ("0", "CNY", "zero"), ("-1", "CNY", "digits"),
    ("1e3", "CNY", "digits"), ("12,50", "CNY", "digits"), ("", "CNY", "digits"), ("1.00", "XXX", "ISO 4217"),
])
def test_bad_amounts_are_one_clear_line(text, currency, says):
    with pytest.raises(pos.CommandError, match=says):
        pos.parse_amount(text, currency)


@pytest.mark.parametrize("line, expected", [
    ("sale 12.50", pos.Command("sale", amount=1250)),
    ("SALE 3 table-4", pos.Command("sale", amount=300, reference="table-4")),
    ("cancel", pos.Command("cancel")),
    ("qr", pos.Command("qr")),
    ("refund pay_abc", pos.Command("refund", payment_id="pay_abc")),
    ("refund pay_abc 2.00", pos.Command("refund", payment_id="pay_abc", amount=200)),
    ("code pc_XYZ123456", pos.Command("code", text="pc_XYZ123456")),
    ("status", pos.Command("status")),
])
def test_commands(line, expected):
    assert pos.parse_command(line, "CNY") == expected


@pytest.mark.parametrize("line", ["", "sell 3", "sale", "sale 1 2 3", "refund 12", "cancel now", "sale 3 a/b",
                                  "sale 3.001"])
def test_not_commands(line):
    with pytest.raises(pos.CommandError):
        pos.parse_command(line, "CNY")


def test_a_sale_keeps_its_fields_through_the_journal_form():
    sale = replace(SALE, state=pos.CAPTURING, authorization_id="auth_1", checkouts=2)
    assert pos.Sale.from_json(sale.to_json()) == sale
    with pytest.raises(ValueError):
        pos.open_sale("x", 0, "CNY", None, NOW)
    with pytest.raises(ValueError):
        pos.open_sale("x", 12.5, "CNY", None, NOW)


def test_idempotency_keys_are_one_per_step_of_a_sale_and_never_carry_the_code():
    code = "pc_" + "s3cret" * 5
    key = pos.idempotency_key(SALE, "authorize", code)
    assert key == pos.idempotency_key(replace(SALE, state=pos.CAPTURING), "authorize", code)  # a retry
    assert key != pos.idempotency_key(SALE, "authorize", code + "x")  # another code
    assert key != pos.idempotency_key(replace(SALE, id="3132-9f0e1d2c-00000002"), "authorize", code)  # another sale
    assert key != pos.idempotency_key(SALE, "capture", code)
    assert "s3cret" not in key and len(key) <= 100 and key.isascii()
    assert pos.sale_id(b"TILL-001", "9f0e1d2c", 7) == "54494c4c2d303031-9f0e1d2c-00000007"


@pytest.mark.parametrize("text, kind", [
    ("pc_AbCdEf0123456789", "gateway_pay_code"), ("TS:ABC", "signed_pay_code"),
    ("000201010212...", "other"), ("pc_", "other"), ("", "other"),
])
def test_code_kinds(text, kind):
    assert pos.code_kind(text) == kind


def _decision(kind, accepted, reason, **fields):
    return Decision(NOW, kind, accepted, reason, "m", "pos", SALE.id, **fields)


@pytest.mark.parametrize("decision, approved, reason, method", [
    (_decision("purse", True, "paid", amount=1250, currency="CNY", balance_after=750), True, "paid", "purse"),
    (_decision("purse", True, "recovered", amount=1250, currency="CNY", balance_after=750), True, "recovered",
     "purse"),
    (_decision("purse", False, "insufficient_balance"), False, "insufficient_balance", "purse"),
    (_decision("emv", True, "token", token="pan_x"), False, "bank_card", "card"),
    (_decision("uid", True, "token", token="uid_x"), False, "unknown_card", "card"),
    (_decision("error", False, "card_removed"), False, "card_removed", "error"),
])
def test_tap_results(decision, approved, reason, method):
    result = pos.tap_result(decision)
    assert (result.approved, result.reason, result.method) == (approved, reason, method)
    if approved:
        assert (result.amount, result.balance_after) == (1250, 750)


def test_a_bank_card_is_refused_with_the_reason():
    result = pos.tap_result(_decision("emv", True, "token", token="pan_x"))
    assert "does not authorise bank cards online" in result.message


# --- signed pay codes, checked offline ------------------------------------------------

ISSUER_SEED = bytes(range(32))
ISSUER_KEYS = {certs.key_id(ed25519.public_key(ISSUER_SEED)): ed25519.public_key(ISSUER_SEED)}


def _code(*, limit=None, currency=None, issued=NOW, ticket=False, seed=bytes(32)):
    cert = certs.issue(ISSUER_SEED, b"CARD0001", ed25519.public_key(seed), int((NOW + timedelta(days=9)).timestamp()))
    if ticket:
        return signed_qr.ticket_code(seed, cert, issued_at=issued, nonce=os.urandom(8), ticket_id=b"T" * 8,
                                     product=1, route="42", valid_from=NOW, valid_until=NOW + timedelta(hours=1))
    return signed_qr.pay_code(seed, cert, issued_at=issued, nonce=os.urandom(8), limit=limit, currency=currency)


@pytest.mark.parametrize("make, reason", [
    (lambda: _code(), None),
    (lambda: _code(limit=1250, currency="CNY"), None),
    (lambda: _code(limit=1249, currency="CNY"), "above_pay_code_limit"),
    (lambda: _code(limit=5000, currency="USD"), "above_pay_code_limit"),
    (lambda: _code(issued=NOW - timedelta(minutes=5)), "pay_code_expired"),
    (lambda: _code(issued=NOW + timedelta(minutes=5)), "pay_code_not_yet_valid"),
    (lambda: _code(ticket=True), "not_a_pay_code"),
    (lambda: _code()[:-4] + "AAAA", "bad_pay_code"),
])
def test_signed_pay_codes_are_checked_offline(make, reason):
    result, seen = pos.check_signed_code(SALE, make(), ISSUER_KEYS, {}, NOW)
    assert (result.reason if result else None) == reason
    assert bool(seen) == (reason is None)


def test_a_signed_pay_code_is_taken_once_and_needs_a_known_issuer():
    text = _code()
    assert pos.check_signed_code(SALE, text, {}, {}, NOW)[0].reason == "bad_pay_code"
    result, seen = pos.check_signed_code(SALE, text, ISSUER_KEYS, {}, NOW)
    assert result is None
    assert pos.check_signed_code(SALE, text, ISSUER_KEYS, seen, NOW)[0].reason == "pay_code_used"


@pytest.mark.parametrize("status, error, method, reason", [
    (402, {"code": "insufficient_funds", "message": "short"}, "pay_code", "insufficient_funds"),
    (404, {"code": "not_found", "param": "pay_code"}, "pay_code", "pay_code_unknown"),
    (409, {"code": "pay_code_used"}, "signed_pay_code", "pay_code_used"),
    (400, {"code": "invalid_pay_code"}, "signed_pay_code", "bad_pay_code"),
    (409, {"code": "card_denied"}, "signed_pay_code", "card_denied"),
    (403, {"code": "forbidden"}, "checkout", "refused"),
])
def test_gateway_refusals(status, error, method, reason):
    result = pos.gateway_refusal(status, error, method)
    assert (result.approved, result.reason) == (False, reason)


def test_the_panel_says_outcome_amount_balance_and_id():
    ok = pos.Result(True, "paid", "purse", "Paid from the card", 1250, "CNY", balance_after=750, tap_id="t-1")
    assert pos.panel(pos.paid(SALE, "purse"), ok) == [
        "APPROVED  Paid from the card 12.50 CNY   balance 7.50 CNY   tap t-1"]
    no = pos.refused("insufficient_funds", "pay_code", "the wallet holds 3.00")
    assert pos.panel(SALE, no) == ["DECLINED  Wallet balance too low", "          (the wallet holds 3.00)",
                                   f"          sale {SALE.id} still open: 12.50 CNY"]
    assert pos.UNREACHABLE in pos.panel(SALE, pos.refused("unreachable", "pay_code"))[0]
