"""The tap decision in-process: the scenario list, tears, and cards answering anything at all."""
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import purse
from protocol.emv import EmvError
from protocol.tokens import uid_token
from terminal.readers.base import CardRemoved, ReaderError
from terminal.readers.mock import MockReader
from terminal.tap import MAX_PENDING, PendingDebit, TapContext, tap
from wallet.card import VirtualCard, plain_uid_card
from wallet.emv_card import emv_applets, emv_card
from wallet.state import MemoryStore
from wallet.testcards import DEMO_NOT_AFTER, DEMO_TOKEN_KEY, demo_issuer_keys, demo_purse_card

NOW = datetime(2027, 1, 1, 8, 30, tzinfo=timezone.utc)
FARE = 200


class Session:
    """A card in the field of an in-process reader; can tear before or after the card commits."""

    def __init__(self, card, uid=None, tear_at=None, tear_after_commit=True):
        self.card, self.uid, self.atr = card, uid, card.power_on()
        self.tear_at, self.tear_after_commit = tear_at, tear_after_commit
        self.sent = []

    def transmit(self, apdu):
        self.sent.append(bytes(apdu))
        if self.tear_at == len(self.sent):
            if self.tear_after_commit:
                self.card.process(apdu)  # the card did it; its answer is lost
            self.card.power_off()
            raise CardRemoved("torn")
        return self.card.process(apdu)

    def close(self):
        pass


def context(demo=None, **changes):
    ctx = TapContext(fare=FARE, currency="CNY", terminal_id=b"BUS00042", issuer_keys=demo_issuer_keys(),
                     token_key=DEMO_TOKEN_KEY, now=NOW)
    return replace(ctx, **changes)


def present(card, ctx=None, pending=(), **session):
    return tap(Session(card, **session), ctx or context(), pending)


# --- the purse ---------------------------------------------------------------------------

def test_purse_accepted_in_two_apdus_with_a_verified_receipt():
    demo = demo_purse_card(balance=1000)
    outcome, pending = present(demo.card)
    assert (outcome.kind, outcome.accepted, outcome.reason, outcome.apdus) == ("purse", True, "paid", 2)
    assert (outcome.card_id, outcome.amount, outcome.balance_after) == (demo.card_id, FARE, 800)
    assert pending == () and demo.balance == 800
    receipt = purse.verify_receipt(outcome.receipt, demo.store.state.certificate, demo.issuer_keys, NOW)
    assert (receipt.terminal_id, receipt.counter, receipt.time) == (b"BUS00042", 1, purse.unix_seconds(NOW))
    assert outcome.signal == "accept"


def test_fixed_nonce_goes_into_the_receipt():
    demo = demo_purse_card()
    outcome, _ = present(demo.card, context(nonce=b"TRIP0001"))
    assert purse.parse_receipt(outcome.receipt).nonce == b"TRIP0001"


@pytest.mark.parametrize("make_card, ctx_changes, reason", [
    (lambda: demo_purse_card(balance=FARE - 1), {}, "insufficient_balance"),
    (lambda: demo_purse_card(), {"deny": frozenset({bytes.fromhex("5441500000000001")})}, "deny_listed"),
    (lambda: demo_purse_card(), {"deny": frozenset({"5441500000000001"})}, "deny_listed"),
    (lambda: demo_purse_card(locked=True), {}, "card_locked"),
    (lambda: demo_purse_card(currency="HKD"), {}, "wrong_currency"),
    (lambda: demo_purse_card(), {"issuer_keys": {}}, "bad_certificate"),
    (lambda: demo_purse_card(issuer_seed=bytes(32)), {}, "bad_certificate"),
    (lambda: demo_purse_card(), {"now": datetime.fromtimestamp(DEMO_NOT_AFTER + 1, timezone.utc)},
     "bad_certificate"),
])
def test_purse_refused_without_sending_a_debit(make_card, ctx_changes, reason):
    demo = make_card()
    before = demo.store.state
    session = Session(demo.card)
    outcome, pending = tap(session, context(**ctx_changes))
    assert (outcome.kind, outcome.accepted, outcome.reason) == ("purse", False, reason)
    assert outcome.signal == "deny"
    assert session.sent == [purse.select_command()] and outcome.apdus == 1
    assert demo.store.state == before and pending == ()


class FciOnly:
    """A card answering the purse SELECT with a given FCI."""
    aid = purse.AID

    def __init__(self, fci):
        self.fci = fci

    def select(self, command):
        return self.fci.to_bytes() + b"\x90\x00"

    def process(self, command):
        return b"\x6d\x00"

    def deselect(self):
        pass


def test_a_certificate_naming_another_card_is_refused():
    demo, other = demo_purse_card(), demo_purse_card(card_id=bytes.fromhex("5441500000000002"))
    fci = purse.Fci(demo.card_id, "CNY", 2000, 0, False, other.store.state.certificate)
    outcome, _ = present(VirtualCard(b"\x04" * 7, [FciOnly(fci)]))
    assert (outcome.accepted, outcome.reason, outcome.apdus) == (False, "bad_certificate", 1)


class Spending(Session):
    """The purse balance drops between the FCI and the DEBIT (another reader got there first)."""

    def __init__(self, demo):
        super().__init__(demo.card)
        self.demo = demo

    def transmit(self, apdu):
        if apdu[:2] == bytes((purse.CLA, purse.INS_DEBIT)):
            self.demo.store.state = replace(self.demo.store.state, balance=10)
        return super().transmit(apdu)


def test_a_refusal_of_the_debit_by_the_card_is_reported_with_its_status_word():
    demo = demo_purse_card(balance=1000)
    outcome, pending = tap(Spending(demo), context())
    assert (outcome.kind, outcome.accepted, outcome.reason) == ("purse", False, "card_refused")
    assert "9401" in outcome.detail and "insufficient balance" in outcome.detail
    assert pending == () and demo.balance == 10


@pytest.mark.parametrize("changes, message", [
    ({"fare": 0}, "fare"), ({"fare": 2.5}, "fare"), ({"fare": purse.MAX_TRANSACTION_AMOUNT + 1}, "fare"),
    ({"currency": "XXX"}, "currency"), ({"terminal_id": b"BUS"}, "terminal_id"),
    ({"nonce": b"1234"}, "nonce"), ({"now": datetime(2027, 1, 1)}, "timezone"),
])
def test_a_misconfigured_context_is_refused_at_once(changes, message):
    with pytest.raises(ValueError, match=message):
        context(**changes)


# --- tears ----------------------------------------------------------------------------

def test_tear_after_commit_then_presented_again_recovers_the_receipt_without_a_second_debit():
    demo = demo_purse_card(balance=1000)
    outcome, pending = present(demo.card, tear_at=2, tear_after_commit=True)
    assert (outcome.kind, outcome.reason, outcome.signal) == ("error", "card_removed", "error")
    assert demo.balance == 800 and len(pending) == 1
    assert (pending[0].card_id, pending[0].counter_before, pending[0].amount) == (demo.card_id, 0, FARE)

    session = Session(demo.card)
    outcome, pending = tap(session, context(now=NOW + timedelta(seconds=3)), pending)
    assert (outcome.kind, outcome.accepted, outcome.reason, outcome.apdus) == ("purse", True, "recovered", 2)
    assert session.sent[1] == purse.get_receipt_command(1)
    assert outcome.receipt == demo.store.state.receipts[-1] and outcome.balance_after == 800
    assert demo.balance == 800 and pending == ()


def test_tear_before_commit_then_presented_again_debits_once_with_the_same_nonce():
    demo = demo_purse_card(balance=1000)
    outcome, pending = present(demo.card, tear_at=2, tear_after_commit=False)
    assert outcome.reason == "card_removed" and demo.balance == 1000 and len(pending) == 1

    outcome, after = present(demo.card, context(now=NOW + timedelta(seconds=3)), pending)
    assert (outcome.accepted, outcome.reason, outcome.apdus) == (True, "paid", 2)
    assert purse.parse_receipt(outcome.receipt).nonce == pending[0].nonce
    assert demo.balance == 800 and after == ()


def test_tear_during_recovery_keeps_the_pending_debit():
    demo = demo_purse_card(balance=1000)
    _, pending = present(demo.card, tear_at=2)
    outcome, pending_again = present(demo.card, pending=pending, tear_at=2)  # torn during GET RECEIPT
    assert outcome.reason == "card_removed" and pending_again == pending
    outcome, pending_last = present(demo.card, pending=pending_again)
    assert (outcome.accepted, outcome.reason) == (True, "recovered")
    assert demo.balance == 800 and pending_last == ()


def test_torn_debit_that_committed_is_recovered_even_after_the_card_paid_elsewhere():
    demo = demo_purse_card(balance=1000)
    _, pending = present(demo.card, tear_at=2, tear_after_commit=True)
    elsewhere, _ = present(demo.card, context(terminal_id=b"BUS00099", fare=50))
    assert elsewhere.accepted and demo.store.state.counter == 2
    outcome, pending = present(demo.card, pending=pending)
    assert (outcome.accepted, outcome.reason, outcome.balance_after) == (True, "recovered", 800)
    assert demo.balance == 750 and pending == ()


def test_torn_debit_that_never_committed_is_sent_afresh_after_the_card_paid_elsewhere():
    demo = demo_purse_card(balance=1000)
    _, pending = present(demo.card, tear_at=2, tear_after_commit=False)
    present(demo.card, context(terminal_id=b"BUS00099", fare=50))
    outcome, after = present(demo.card, pending=pending)
    assert (outcome.accepted, outcome.reason, outcome.apdus) == (True, "paid", 3)  # SELECT, GET RECEIPT, DEBIT
    assert demo.balance == 1000 - 50 - FARE and after == ()


def test_recovery_takes_only_the_receipt_with_the_pending_nonce():
    demo = demo_purse_card(balance=1000)
    present(demo.card, context(nonce=b"FIRSTTAP"))  # transaction 1: same terminal, fare and time
    someone_else = PendingDebit(demo.card_id, 0, b"LOSTTAP1", FARE, "CNY", purse.unix_seconds(NOW))
    outcome, pending = present(demo.card, context(nonce=b"THIRDTAP"), (someone_else,))
    assert (outcome.accepted, outcome.reason, outcome.apdus) == (True, "paid", 3)
    assert demo.balance == 600 and pending == ()


def test_pending_debits_survive_a_terminal_restart_through_json():
    demo = demo_purse_card(balance=1000)
    _, pending = present(demo.card, tear_at=2)
    restored = tuple(PendingDebit.from_json(json.loads(json.dumps(x.to_json()))) for x in pending)
    assert restored == pending
    outcome, _ = present(demo.card, pending=restored)
    assert outcome.reason == "recovered" and demo.balance == 800


def test_a_counter_that_went_back_is_refused():
    demo = demo_purse_card(balance=1000)
    stale = PendingDebit(demo.card_id, 5, b"N0000001", FARE, "CNY", purse.unix_seconds(NOW))
    outcome, pending = present(demo.card, pending=(stale,))
    assert (outcome.accepted, outcome.reason, outcome.apdus) == (False, "counter_rollback", 1)
    assert demo.balance == 1000 and pending == (stale,)


def test_another_card_between_a_tear_and_its_return_keeps_the_pending_debit():
    first, second = demo_purse_card(balance=1000), demo_purse_card(card_id=bytes.fromhex("5441500000000002"))
    _, pending = present(first.card, tear_at=2)
    outcome, pending = present(second.card, pending=pending)
    assert outcome.accepted and [x.card_id for x in pending] == [first.card_id]
    outcome, pending = present(first.card, pending=pending)
    assert outcome.reason == "recovered" and pending == ()
    assert (first.balance, second.balance) == (800, 1800)


def test_pending_debits_are_bounded():
    pending = tuple(PendingDebit(bytes([i]) * 8, 0, bytes(8), FARE, "CNY", 0) for i in range(MAX_PENDING))
    demo = demo_purse_card()
    _, after = present(demo.card, pending=pending, tear_at=2)
    assert len(after) == MAX_PENDING and after[0].card_id == demo.card_id and after[1:] == pending[:-1]


class ForgingPurse:
    """A purse applet whose DEBIT answers are tampered with after it signed them."""
    aid = purse.AID

    def __init__(self, applet, tamper):
        self.applet, self.tamper = applet, tamper

    def select(self, command):
        return self.applet.select(command)

    def process(self, command):
        answer = self.applet.process(command)
        return self.tamper(answer) if command.ins == purse.INS_DEBIT else answer

    def deselect(self):
        pass


@pytest.mark.parametrize("tamper", [
    lambda a: a[:18] + b"\x00\x00\x00\x01" + a[22:],  # the balance after changed: signature breaks
    lambda a: a[:-3] + b"\x90\x00",  # truncated
    lambda a: b"\x01",  # not even a status word
    lambda a: bytes.fromhex("6581"),  # the card cannot say whether it wrote
])
def test_an_untrustworthy_debit_answer_is_an_error_and_recovered_next_time(tamper):
    demo = demo_purse_card(balance=1000)
    forging = VirtualCard(demo.card.uid, [ForgingPurse(demo.applet, tamper)])
    outcome, pending = present(forging)
    assert (outcome.kind, outcome.accepted) == ("error", False)
    assert outcome.reason in ("bad_receipt", "garbage", "card_fault") and len(pending) == 1
    outcome, pending = present(demo.card, pending=pending)  # the honest card comes back
    assert outcome.accepted and pending == () and demo.balance == 800


def test_a_receipt_for_another_debit_is_not_accepted():
    demo = demo_purse_card(balance=1000)
    replayed = present(demo.card, context(nonce=b"OLDTRIP1"))[0].receipt
    replaying = VirtualCard(demo.card.uid, [ForgingPurse(demo.applet, lambda a: replayed + b"\x90\x00")])
    outcome, pending = present(replaying, context(nonce=b"NEWTRIP2"))
    assert (outcome.accepted, outcome.reason) == (False, "bad_receipt") and len(pending) == 1


# --- EMV, UID and the rest -------------------------------------------------------------

def test_emv_card_gives_a_pan_token_and_never_the_pan():
    session = Session(emv_card(b"\x04\x01\x02\x03\x04\x05\x06"))
    outcome, pending = tap(session, context())
    assert (outcome.kind, outcome.accepted, outcome.reason) == ("emv", True, "token")
    assert outcome.token.startswith("pan_") and outcome.card_id is None and outcome.amount is None
    assert outcome.apdus == len(session.sent) and session.sent[0] == purse.select_command()
    assert "4" * 6 not in repr(outcome)
    denied, _ = tap(Session(emv_card(b"\x04\x01\x02\x03\x04\x05\x06")), context(deny=frozenset({outcome.token})))
    assert (denied.kind, denied.accepted, denied.reason) == ("emv", False, "deny_listed")


def test_a_card_with_purse_and_emv_pays_from_the_purse_in_two_apdus():
    demo = demo_purse_card()
    both = VirtualCard(demo.card.uid, [demo.applet, *emv_applets()])
    outcome, _ = present(both)
    assert (outcome.kind, outcome.accepted, outcome.apdus) == ("purse", True, 2)


def test_emv_errors_and_stubs():
    card = plain_uid_card(bytes.fromhex("04112233445566"))

    def broken(transmit, key):
        transmit(bytes.fromhex("00A404000E325041592E5359532E444446303100"))
        raise EmvError("GPO answered 6985")

    outcome, _ = tap(Session(card), context(), read_emv=broken)
    assert (outcome.kind, outcome.reason, outcome.apdus) == ("error", "emv_error", 2)

    @dataclass
    class Read:
        token: str

    outcome, _ = tap(Session(card), context(), read_emv=lambda transmit, key: Read("pan_stub"))
    assert (outcome.kind, outcome.accepted, outcome.token) == ("emv", True, "pan_stub")

    def unplugged(transmit, key):
        raise ReaderError("reader unplugged")

    outcome, _ = tap(Session(card), context(), read_emv=unplugged)
    assert (outcome.kind, outcome.reason, outcome.signal) == ("error", "reader_error", "error")


def test_an_unexpected_emv_failure_names_its_type_and_never_carries_the_card_data():
    # A broken card can make a parser fail with record bytes, a PAN even, in the exception's text.
    def leaking(transmit, key):
        raise KeyError("5413330089010012")

    outcome, _ = tap(Session(plain_uid_card(bytes.fromhex("04112233445566"))), context(), read_emv=leaking)
    assert (outcome.kind, outcome.accepted, outcome.reason) == ("error", False, "emv_error")
    assert "KeyError" in outcome.detail
    assert "5413" not in outcome.detail and "5413" not in repr(outcome)


def test_plain_uid_card_read_with_the_pseudo_apdu():
    uid = bytes.fromhex("04112233445566")
    session = Session(plain_uid_card(uid))
    outcome, _ = tap(session, context())
    assert (outcome.kind, outcome.accepted, outcome.reason) == ("uid", True, "token")
    assert outcome.token == uid_token(DEMO_TOKEN_KEY, uid)
    assert outcome.apdus == 3 and session.sent[-1] == bytes.fromhex("FFCA000000")


def test_plain_uid_card_whose_reader_knows_the_uid_costs_two_apdus():
    uid = bytes.fromhex("04112233445566")
    outcome, _ = present(plain_uid_card(uid), uid=uid)
    assert (outcome.kind, outcome.token, outcome.apdus) == ("uid", uid_token(DEMO_TOKEN_KEY, uid), 2)
    denied, _ = present(plain_uid_card(uid), context(deny=frozenset({outcome.token})), uid=uid)
    assert (denied.accepted, denied.reason) == (False, "deny_listed")


def test_a_random_uid_is_not_tokenised():
    outcome, _ = present(plain_uid_card(bytes.fromhex("08A1B2C3")))
    assert (outcome.kind, outcome.accepted, outcome.reason) == ("unknown", False, "random_uid")


class Mute:
    """A card answering every command with one fixed response (or raising)."""
    uid = b""

    def __init__(self, answer):
        self.answer = answer

    def power_on(self):
        return b"\x3b\x80\x80\x01\x01"

    def power_off(self):
        pass

    def process(self, raw):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize("answer, kind, reason", [
    (bytes.fromhex("6D00"), "unknown", "unknown_card"),
    (bytes.fromhex("6A82"), "unknown", "unknown_card"),
    (b"", "error", "garbage"),
    (b"\x90", "error", "garbage"),
    (bytes.fromhex("019000"), "error", "garbage"),
    (CardRemoved("gone"), "error", "card_removed"),
])
def test_unknown_mute_and_garbage_cards(answer, kind, reason):
    outcome, pending = present(Mute(answer))
    assert (outcome.kind, outcome.accepted, outcome.reason) == (kind, False, reason)
    assert pending == ()
    if reason == "unknown_card":
        assert outcome.apdus == 3  # purse SELECT, SELECT PPSE, FF CA


def test_over_the_mock_reader_with_a_tear():
    """The same tap over the transports engineer's mock reader: transport-agnostic."""
    demo = demo_purse_card(balance=1000)
    reader = MockReader(demo.card)
    reader.tear_after(2)
    outcome, pending = tap(reader.wait_for_card(0), context())
    assert outcome.reason == "card_removed" and len(pending) == 1
    reader.present(demo.card)
    outcome, pending = tap(reader.wait_for_card(0), context(), pending)
    assert (outcome.accepted, outcome.reason) == (True, "recovered") and demo.balance == 800


# --- properties ---------------------------------------------------------------------------

class Scripted:
    """A session whose card answers from a script: bytes, or a tear."""

    def __init__(self, uid, answers):
        self.uid, self.atr, self.answers, self.sent = uid, b"", list(answers), []

    def transmit(self, apdu):
        self.sent.append(bytes(apdu))
        answer = self.answers.pop(0) if self.answers else b""
        if answer is None:
            raise CardRemoved("torn")
        return answer


answers = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([bytes.fromhex(sw) for sw in ("9000", "6A82", "6D00", "6E00", "6985", "6100", "6C10")]),
    st.binary(max_size=200).map(lambda b: b + b"\x90\x00"),
    st.builds(lambda body: purse._tlv(0x6F, body) + b"\x90\x00", st.binary(max_size=180)),
    st.none(),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(uid=st.none() | st.binary(min_size=1, max_size=10), script=st.lists(answers, max_size=12),
       pending_for_card=st.booleans())
def test_any_answers_never_raise_and_never_pay(uid, script, pending_for_card):
    session = Scripted(uid, script)
    pending = (PendingDebit(b"TAP\x00\x00\x00\x00\x01", 0, bytes(8), FARE, "CNY", 0),) if pending_for_card else ()
    outcome, after = tap(session, context(), pending)
    assert outcome.reason != "internal_error", outcome.detail
    assert outcome.kind in ("purse", "emv", "uid", "unknown", "error")
    assert outcome.apdus == len(session.sent)
    assert not (outcome.accepted and outcome.kind in ("purse", "emv"))
    if outcome.accepted:  # only a UID, from the reader or from a well-formed FF CA answer
        assert outcome.kind == "uid" and (uid or session.sent[-1] == bytes.fromhex("FFCA000000"))
    assert set(after) >= set(pending) or outcome.accepted  # nothing forgotten without a receipt


class CountingStore(MemoryStore):
    """Remembers every receipt the card committed."""

    def __init__(self, state):
        super().__init__(state)
        self.committed = []

    def save(self, state):
        super().save(state)
        self.committed.append(state.receipts[-1])


presentations = st.lists(st.tuples(st.none() | st.integers(1, 3), st.booleans(), st.booleans()),
                         min_size=1, max_size=7)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(presentations)
def test_tears_anywhere_never_charge_twice_nor_lose_a_payment(script):
    demo = demo_purse_card(balance=purse.MAX_BALANCE)
    store = CountingStore(demo.store.state)
    demo.applet.store = demo.store = store
    ours, pending, accepted = b"BUS00042", (), []
    for step, (tear_at, after_commit, paid_elsewhere) in enumerate(script):
        ctx = context(now=NOW + timedelta(minutes=step))
        outcome, pending = present(demo.card, ctx, pending, tear_at=tear_at, tear_after_commit=after_commit)
        assert outcome.reason != "internal_error", outcome.detail
        if outcome.accepted:
            accepted.append(outcome.receipt)
        if paid_elsewhere:
            assert present(demo.card, context(terminal_id=b"BUS00099", fare=7))[0].accepted
    while pending:  # the rider presents the card again until the terminal is satisfied
        outcome, pending = present(demo.card, context(now=NOW + timedelta(hours=1)), pending)
        assert outcome.accepted
        accepted.append(outcome.receipt)
    charged = [r for r in store.committed if purse.parse_receipt(r).terminal_id == ours]
    assert sorted(accepted) == sorted(charged)  # every charge known to the terminal, once
    assert len(set(accepted)) == len(accepted)
    assert demo.balance == purse.MAX_BALANCE - FARE * len(charged) - 7 * sum(1 for s in script if s[2])
