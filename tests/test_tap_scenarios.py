"""The tap scenarios, one list, run over every transport: mock, pcscd+vpcd, nfcpy udp.

Each scenario builds its card, scripts the field (present, tear, present again) and checks
what the validator decided (terminal.tap.tap) and what the card holds afterwards.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from protocol.tokens import pan_token, uid_token
from terminal.tap import TapContext, tap
from wallet.card import plain_uid_card
from wallet.emv_card import TEST_PAN, emv_card
from wallet.testcards import DEMO_TOKEN_KEY, demo_issuer_keys, demo_purse_card

NOW = datetime(2026, 11, 27, 8, 30, tzinfo=timezone.utc)
FARE = 200  # fen
CONTEXT = TapContext(fare=FARE, currency="CNY", terminal_id=b"BUS00012", issuer_keys=demo_issuer_keys(),
                     token_key=DEMO_TOKEN_KEY, now=NOW)


def purse_accepted(field):
    demo = demo_purse_card(balance=500)
    outcome, pending = tap(field.tap(demo.card), CONTEXT)
    assert (outcome.kind, outcome.accepted, outcome.reason) == ("purse", True, "paid")
    assert outcome.amount == FARE and outcome.balance_after == 300 == demo.balance
    assert outcome.receipt and outcome.card_id == demo.card_id and pending == ()
    assert outcome.apdus <= 4 and outcome.signal == "accept"


def balance_too_low(field):
    demo = demo_purse_card(balance=FARE - 1)
    outcome, pending = tap(field.tap(demo.card), CONTEXT)
    assert (outcome.kind, outcome.accepted, outcome.reason) == ("purse", False, "insufficient_balance")
    assert demo.balance == FARE - 1 and pending == () and outcome.signal == "deny"


def deny_listed(field):
    demo = demo_purse_card(balance=500)
    outcome, _ = tap(field.tap(demo.card), replace(CONTEXT, deny=frozenset({demo.card_id.hex()})))
    assert (outcome.accepted, outcome.reason) == (False, "deny_listed")
    assert demo.balance == 500


def torn_mid_debit_then_presented_again(field):
    demo = demo_purse_card(balance=500)
    session = field.tap(demo.card)
    field.tear_after(2)  # SELECT answered; DEBIT committed on the card, its answer lost
    outcome, pending = tap(session, CONTEXT)
    assert (outcome.kind, outcome.reason) == ("error", "card_removed")
    assert len(pending) == 1 and demo.balance == 300  # the card paid; the terminal does not know yet
    assert field.reader.wait_for_removal(5)
    again, pending = tap(field.tap(demo.card), replace(CONTEXT, nonce=b"\x00" * 8), pending)
    assert (again.accepted, again.reason) == (True, "recovered")
    assert again.amount == FARE and again.balance_after == 300
    assert demo.balance == 300 and pending == ()  # exactly one debit
    third, _ = tap(field.tap(demo.card), CONTEXT, pending)
    assert third.reason == "paid" and demo.balance == 100  # the next ride is a new fare


def emv_card_tokenised(field):
    card = emv_card(bytes.fromhex("08A1B2C3"))
    outcome, _ = tap(field.tap(card), CONTEXT)
    assert (outcome.kind, outcome.accepted, outcome.reason) == ("emv", True, "token")
    assert outcome.token == pan_token(DEMO_TOKEN_KEY, TEST_PAN)
    assert TEST_PAN not in repr(outcome)


def plain_uid_card_tokenised(field):
    uid = bytes.fromhex("04C0FFEE123456")
    outcome, _ = tap(field.tap(plain_uid_card(uid)), CONTEXT)
    assert (outcome.kind, outcome.accepted) == ("uid", True)
    assert outcome.token == uid_token(DEMO_TOKEN_KEY, uid)


def unknown_card(field):
    outcome, _ = tap(field.tap(plain_uid_card(bytes.fromhex("08123456"))), CONTEXT)  # random UID
    assert (outcome.kind, outcome.accepted) == ("unknown", False)
    assert outcome.token is None and outcome.signal == "deny"


SCENARIOS = [purse_accepted, balance_too_low, deny_listed, torn_mid_debit_then_presented_again,
             emv_card_tokenised, plain_uid_card_tokenised, unknown_card]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_tap_scenario(scenario, field):
    scenario(field)
