"""The card decision hands back what must be journalled, as data: the debit to write ahead
before a DEBIT, the decision and the pending debits to keep; it journals nothing itself."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from protocol.purse import select_command
from terminal import card
from terminal.readers.mock import MockReader
from terminal.tap import PendingDebit
from wallet.testcards import demo_purse_card

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)
PLACE = card.Place("R1", "S1")
NONCE = b"\x11" * 8


def terms(demo, **changes) -> card.Terms:
    base = card.Terms(NOW, PLACE, 200, "CNY", 3, b"BUS-0001", demo.token_key, demo.issuer_keys)
    return replace(base, **changes)


def selected(demo):
    """A session with the demo card in the field, and the card's answer to SELECT."""
    reader = MockReader()
    reader.present(demo.card)
    session = reader.wait_for_card(0)
    return session, bytes(session.transmit(select_command()))


def test_a_purse_to_debit_brings_the_debit_to_journal_ahead_and_nothing_is_sent_yet():
    demo = demo_purse_card(balance=1000)
    other = PendingDebit(b"\x01" * 8, 4, b"\x02" * 8, 150, "CNY", 1)
    _, answer = selected(demo)
    step = card.after_select(answer, terms(demo, pending=(other,)), NONCE)
    assert isinstance(step, card.Read) and step.selected == answer
    assert step.ahead == (PendingDebit(demo.card_id, 0, NONCE, 200, "CNY", int(NOW.timestamp())), other)
    assert (step.context.fare, step.context.nonce) == (200, NONCE)
    assert demo.balance == 1000


def test_a_card_with_its_debit_already_pending_writes_nothing_ahead():
    demo = demo_purse_card(balance=1000)
    mine = PendingDebit(demo.card_id, 0, NONCE, 200, "CNY", int(NOW.timestamp()))
    _, answer = selected(demo)
    step = card.after_select(answer, terms(demo, pending=(mine,)))
    assert isinstance(step, card.Read) and step.ahead is None and step.context.nonce is None


def test_what_select_decides_keeps_the_pending_debits_as_they_are():
    demo = demo_purse_card(balance=1000)
    pending = (PendingDebit(b"\x01" * 8, 4, b"\x02" * 8, 150, "CNY", 1),)
    _, answer = selected(demo)
    recent = {demo.card_id.hex(): NOW - timedelta(seconds=10)}
    cases = {
        "already_tapped": terms(demo, pending=pending, recent=recent),
        card.TAP_OFF: terms(demo, pending=pending, direction="off"),
        "no_fare": terms(demo, pending=pending, fare=None),
    }
    for reason, t in cases.items():
        intent = card.after_select(answer, t)
        assert isinstance(intent, card.Intent) and intent.decision.reason == reason
        assert intent.pending == pending and intent.row is intent.decision
    assert demo.balance == 1000


def test_read_returns_the_paid_decision_and_the_debits_left_pending():
    demo = demo_purse_card(balance=1000)
    session, answer = selected(demo)
    t = terms(demo)
    step = card.after_select(answer, t, NONCE)
    intent = card.read(session, step, t)
    assert (intent.decision.reason, intent.decision.amount, intent.pending) == ("paid", 200, ())
    assert demo.balance == 800


def test_a_payment_the_journal_refused_is_shown_refused_and_kept_pending():
    demo = demo_purse_card(balance=1000)
    session, answer = selected(demo)
    t = terms(demo)
    paid = card.read(session, card.after_select(answer, t, NONCE), t)
    shown = card.unjournalled(paid, OSError("disk full"))
    assert (shown.decision.accepted, shown.decision.reason) == (False, "journal_unavailable")
    assert "disk full" in shown.decision.detail and shown.decision.card_id == demo.card_id.hex()
    assert shown.pending == (PendingDebit(demo.card_id, 0, NONCE, 200, "CNY", int(NOW.timestamp())),)


class Counting:
    """A session that counts the APDUs sent through it."""

    def __init__(self, session):
        self.session, self.sent = session, 0

    def transmit(self, apdu: bytes) -> bytes:
        self.sent += 1
        return self.session.transmit(apdu)


def test_no_place_and_a_journal_down_are_decided_before_the_card_is_asked_anything():
    demo = demo_purse_card(balance=1000)
    reader = MockReader()
    reader.present(demo.card)
    session = Counting(reader.wait_for_card(0))
    assert card.present(session, terms(demo, place=None)).decision.reason == "no_place"
    down = card.present(session, terms(demo, journal_down="read-only file system"))
    assert down.decision.reason == "journal_unavailable" and "read-only" in down.decision.detail
    assert session.sent == 0
    assert isinstance(card.present(session, terms(demo)), card.Read) and session.sent == 1
