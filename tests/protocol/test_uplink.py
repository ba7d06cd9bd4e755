"""protocol.uplink: the tap and sale records' JSON form and validation, the legacy till
row, and the reference-data answers."""
from __future__ import annotations

from dataclasses import replace

import pytest

from protocol import purse, tokens
from protocol.uplink import RecordError, SaleRecord, TapRecord, is_sale, reference
from protocol.uplink.records import LEGACY_TILL_ROUTE, TAP_FIELDS, SALE_FIELDS, is_legacy_sale, sale_from_legacy_tap

RECEIPT = "ab" * purse.RECEIPT_SIZE
CARD = "0123456789abcdef"
PURSE_TAP = {"id": "0102030405060708-0000000001", "at": 1_764_000_000, "kind": "purse", "accepted": True,
             "reason": "paid", "route": "12", "stop": "S3", "rules_version": 4, "amount": 200, "currency": "CNY",
             "balance_after": 800, "card_id": CARD, "token": None, "receipt": RECEIPT}
SALE = {"id": "0102030405060708-0000000002", "at": 1_764_000_000, "sale": "0102030405060708-a1b2c3d4-00000001",
        "kind": "purse", "accepted": True, "reason": "paid", "amount": 1250, "currency": "CNY",
        "balance_after": 750, "card_id": CARD, "token": None, "receipt": RECEIPT}


def test_a_tap_row_reads_back_as_the_record_it_was_written_from():
    record = TapRecord.from_json(PURSE_TAP)
    assert record.to_json() == PURSE_TAP and record.direction == "on"
    off = TapRecord.from_json({**PURSE_TAP, "direction": "off"})
    assert off.to_json()["direction"] == "off"  # a tap-on says no direction; a tap-off says it
    assert set(PURSE_TAP) | {"direction"} == TAP_FIELDS


def test_a_record_not_yet_journalled_has_no_id_in_its_json():
    body = {k: v for k, v in PURSE_TAP.items() if k != "id"}
    assert replace(TapRecord.from_json(PURSE_TAP), id=None).to_json() == body


def test_a_sale_row_reads_back_and_is_told_apart_from_a_tap():
    record = SaleRecord.from_json(SALE)
    assert record.to_json() == SALE and record.clears and set(SALE) == SALE_FIELDS
    assert is_sale(SALE) and not is_sale(PURSE_TAP) and not is_sale(None)


@pytest.mark.parametrize("change, code, words", [
    ({"kind": "cash"}, "invalid_field", "kind must be one of"),
    ({"accepted": 1}, "invalid_field", "accepted must be true or false"),
    ({"colour": "red"}, "unknown_field", "colour"),
    ({"id": None}, "missing_field", "id is required"),
    ({"amount": purse.MAX_TRANSACTION_AMOUNT + 1}, "invalid_field", "amount must be an integer"),
    ({"amount": True}, "invalid_field", "amount must be an integer"),
    ({"card_id": "XYZ"}, "invalid_field", "card_id"),
    ({"receipt": "00"}, "invalid_field", "receipt must be"),
    ({"receipt": None}, "missing_field", "an accepted purse tap carries"),
    ({"token": "4111111111111111"}, "invalid_field", "keyed-hash token"),
    ({"direction": "sideways"}, "invalid_field", "direction must be on or off"),
    ({"route": "a route with spaces"}, "invalid_field", "route"),
])
def test_a_bad_tap_row_says_what_is_wrong(change, code, words):
    with pytest.raises(RecordError) as e:
        TapRecord.from_json({**PURSE_TAP, **change})
    assert e.value.code == code and words in str(e.value)


@pytest.mark.parametrize("change, code, words", [
    ({"sale": None}, "missing_field", "sale is required"),
    ({"route": "12"}, "unknown_field", "route"),
    ({"kind": "emv", "token": None}, "missing_field", "carries its token"),
    ({"kind": "uid", "token": tokens.uid_token(b"k" * 32, b"\x04\x01\x02\x03"), "card_id": None,
      "receipt": None}, "invalid_field", "only kind purse"),
    ({"receipt": None}, "missing_field", "an accepted purse sale carries"),
])
def test_a_bad_sale_row_says_what_is_wrong(change, code, words):
    with pytest.raises(RecordError) as e:
        SaleRecord.from_json({**SALE, **change})
    assert e.value.code == code and words in str(e.value)


def test_a_refused_card_at_a_till_is_a_sale_record_that_clears_nothing():
    refused = SaleRecord.from_json({**SALE, "kind": "purse", "accepted": False, "reason": "insufficient_balance",
                                    "amount": None, "receipt": None, "balance_after": 10})
    assert not refused.clears


def test_a_legacy_till_tap_becomes_the_sale_it_was():
    legacy = {**PURSE_TAP, "route": LEGACY_TILL_ROUTE, "stop": SALE["sale"]}
    assert is_legacy_sale(legacy) and not is_legacy_sale(PURSE_TAP)
    sale = SaleRecord.from_json(sale_from_legacy_tap(legacy))
    assert (sale.sale, sale.amount, sale.receipt, sale.id) == (SALE["sale"], 200, RECEIPT, PURSE_TAP["id"])


def test_the_reference_answers_read_as_the_bundle():
    keys = reference.issuer_keys({"data": [{"key_id": "01" * 8, "public_key": "02" * 32}]})
    assert keys == {bytes.fromhex("01" * 8): bytes.fromhex("02" * 32)}
    with pytest.raises(ValueError, match="not an issuer keys answer"):
        reference.issuer_keys({"data": [{"key_id": "zz"}]})
    deny, version = reference.apply_deny_delta(frozenset({"a"}), 1, {"version": 2, "added": [{"entry": "b"}],
                                                                   "removed": [{"entry": "a"}]})
    assert (deny, version) == (frozenset({"b"}), 2)
    assert reference.deny_list_path(7) == "/v1/issuer/deny-list?since=7"
    bundle = reference.ReferenceData(keys, deny, version)
    assert bundle.rules_version is None
    with pytest.raises(ValueError):
        reference.fare_rules({"version": "x"})
