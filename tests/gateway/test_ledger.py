"""The ledger's rules and errors, one table per rule; and `tapstack gateway check`."""
import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from gateway.core import ledger
from gateway.core.errors import Conflict, Declined
from gateway.core.ledger import (AccountNotFound, CurrencyMismatch, InsufficientFunds, InvalidAmount, LedgerError,
                                 PendingAlreadyResolved, PendingExpired, PendingNotFound, RefundExceedsPayment,
                                 SameAccount, TransferExists, UnknownCurrency)
from gateway.store import SQLiteStore

NOW = datetime(2026, 11, 27, 8, 30, tzinfo=timezone.utc)


@pytest.fixture
def store(ledger_db):
    """The ledger's tables alone, on each backend."""
    return ledger_db


@pytest.fixture
def tx(store):
    with store.transaction() as t:
        yield t


@pytest.fixture
def books(tx):
    """funding -> wallet 1000 fen; a merchant, a second wallet, a USD wallet."""
    return open_books(tx)


def open_books(tx):
    for kind, account_id, currency in [("funding_source", "fund", "CNY"), ("customer_wallet", "w1", "CNY"),
                                       ("customer_wallet", "w2", "CNY"), ("merchant", "m1", "CNY"),
                                       ("customer_wallet", "usd", "USD")]:
        ledger.open_account(tx, kind=kind, currency=currency, account_id=account_id, now=NOW)
    pay(tx, "topup-1", "fund", "w1", 1000, code="topup")
    return tx


def pay(tx, transfer_id, debit, credit, amount, *, code="payment", currency="CNY", now=NOW, **kw):
    return ledger.transfer(tx, transfer_id=transfer_id, debit_account_id=debit, credit_account_id=credit,
                           amount=amount, currency=currency, code=code, now=now, **kw)


def posted(tx, account_id):
    return ledger.balance(tx, account_id).posted


def transfers(tx):
    return tx.one("SELECT COUNT(*) AS n FROM ledger_transfers")["n"]


# -- accounts ----------------------------------------------------------------

@pytest.mark.parametrize("kind, may_go_negative", list(ledger.ACCOUNT_KINDS.items()))
def test_account_kinds_and_their_sign_rule(tx, kind, may_go_negative):
    account = ledger.open_account(tx, kind=kind, now=NOW)
    assert account["id"].startswith("acc_") and account["kind"] == kind and account["currency"] == "CNY"
    assert account["allow_negative"] is may_go_negative
    assert account["created_at"] == "2026-11-27T08:30:00.000000Z"
    assert ledger.balance(tx, account["id"]) == ledger.Balance(0, 0, 0, 0, "CNY")


@pytest.mark.parametrize("kwargs, error, code, param", [
    ({"kind": "wallet"}, LedgerError, "invalid_kind", "kind"),
    ({"kind": "merchant", "currency": "XYZ"}, UnknownCurrency, "unknown_currency", "currency"),
    ({"kind": "merchant", "currency": "cny"}, UnknownCurrency, "unknown_currency", "currency"),
    ({"kind": "merchant", "currency": "XAU"}, UnknownCurrency, "unknown_currency", "currency"),
    ({"kind": "merchant", "account_id": "has space"}, LedgerError, "invalid_account_id", "account_id"),
    ({"kind": "merchant", "owner_id": ""}, LedgerError, "invalid_owner_id", "owner_id"),
])
def test_open_account_refuses(tx, kwargs, error, code, param):
    with pytest.raises(error) as caught:
        ledger.open_account(tx, now=NOW, **kwargs)
    assert (caught.value.code, caught.value.param) == (code, param)
    assert tx.one("SELECT COUNT(*) AS n FROM ledger_accounts")["n"] == 0


def test_reopening_an_account_is_idempotent_but_not_a_redefinition(tx):
    first = ledger.open_account(tx, kind="merchant", owner_id="shop-7", account_id="acc_shop7", now=NOW)
    assert ledger.open_account(tx, kind="merchant", owner_id="shop-7", account_id="acc_shop7", now=NOW) == first
    with pytest.raises(LedgerError, match="already exists as a merchant account") as caught:
        ledger.open_account(tx, kind="biller", owner_id="shop-7", account_id="acc_shop7", now=NOW)
    assert caught.value.code == "account_exists"


def test_find_accounts_by_kind_currency_and_owner(books):
    ledger.open_account(books, kind="merchant", owner_id="shop-9", account_id="m9", now=NOW)
    assert [a["id"] for a in ledger.find_accounts(books, kind="funding_source", currency="CNY")] == ["fund"]
    assert [a["id"] for a in ledger.find_accounts(books, kind="customer_wallet", currency="CNY")] == ["w1", "w2"]
    assert [a["id"] for a in ledger.find_accounts(books, owner_id="shop-9")] == ["m9"]
    assert ledger.find_accounts(books, kind="biller") == []
    assert ledger.find_accounts(books, currency="USD")[0]["balance"] == 0


@pytest.mark.parametrize("currency, exponent, amount, text", [
    ("CNY", 2, 123456, "1234.56 CNY"), ("JPY", 0, 500, "500 JPY"), ("KWD", 3, -1005, "-1.005 KWD"),
    ("CLF", 4, 12345, "1.2345 CLF"), ("EUR", 2, 5, "0.05 EUR"),
])
def test_currency_exponents(currency, exponent, amount, text):
    assert ledger.minor_unit_exponent(currency) == exponent
    assert ledger.format_amount(amount, currency) == text


# -- transfers ---------------------------------------------------------------

def test_a_transfer_posts_debit_and_credit_together(books):
    t = pay(books, "pay-1", "w1", "m1", 250, metadata={"order": "A-17"})
    assert (t["id"], t["kind"], t["amount"], t["code"], t["metadata"]) == ("pay-1", "posted", 250, "payment", {"order": "A-17"})
    assert posted(books, "w1") == 750 and posted(books, "m1") == 250 and posted(books, "fund") == -1000
    assert ledger.get_account(books, "w1")["debits_posted"] == 250
    assert ledger.check(books).ok


@pytest.mark.parametrize("amount", [True, 1.0, 0, -1, 10**15 + 1, "100", None, 2**70])
def test_invalid_amounts_are_refused_and_post_nothing(books, amount):
    with pytest.raises(InvalidAmount) as caught:
        pay(books, "bad", "fund", "w1", amount)
    assert caught.value.code == "invalid_amount" and caught.value.param == "amount"
    assert ledger.get_transfer(books, "bad") is None and posted(books, "w1") == 1000


def test_the_largest_amount_is_accepted(books):
    pay(books, "big", "fund", "w2", 10**15, code="topup")
    assert posted(books, "w2") == 10**15


@pytest.mark.parametrize("debit, credit, amount, currency, error, param", [
    ("w1", "w1", 1, "CNY", SameAccount, "credit_account_id"),
    ("nope", "m1", 1, "CNY", AccountNotFound, "debit_account_id"),
    ("w1", "nope", 1, "CNY", AccountNotFound, "credit_account_id"),
    ("w1", "usd", 1, "CNY", CurrencyMismatch, "credit_account_id"),
    ("w1", "m1", 1, "USD", CurrencyMismatch, "debit_account_id"),
    ("w1", "m1", 1, "ABC", UnknownCurrency, "currency"),
    ("w1", "m1", 1001, "CNY", InsufficientFunds, "debit_account_id"),
    ("w2", "m1", 1, "CNY", InsufficientFunds, "debit_account_id"),
])
def test_transfer_refuses(books, debit, credit, amount, currency, error, param):
    with pytest.raises(error) as caught:
        pay(books, "refused", debit, credit, amount, currency=currency)
    assert caught.value.param == param and caught.value.code == error.code_name
    assert ledger.get_transfer(books, "refused") is None
    assert ledger.check(books).ok and posted(books, "w1") == 1000 and posted(books, "m1") == 0


def test_insufficient_funds_says_what_is_available(books):
    with pytest.raises(InsufficientFunds, match="has 1000 available, 1001 needed") as caught:
        pay(books, "p", "w1", "m1", 1001)
    assert isinstance(caught.value, Declined)  # gateway.http.errors answers it 402


@pytest.mark.parametrize("kind", [k for k, negative in ledger.ACCOUNT_KINDS.items() if not negative])
def test_no_non_negative_kind_can_be_overdrawn(tx, kind):
    ledger.open_account(tx, kind="funding_source", account_id="fund", now=NOW)
    ledger.open_account(tx, kind=kind, account_id="a", now=NOW)
    ledger.open_account(tx, kind="suspense", account_id="s", now=NOW)
    pay(tx, "in", "fund", "a", 10)
    pay(tx, "out", "a", "s", 10)  # to exactly zero is fine
    with pytest.raises(InsufficientFunds):
        pay(tx, "over", "a", "s", 1)
    assert posted(tx, "a") == 0


@pytest.mark.parametrize("kind", ["funding_source", "suspense"])
def test_funding_and_suspense_accounts_may_go_negative(tx, kind):
    ledger.open_account(tx, kind=kind, account_id="a", now=NOW)
    ledger.open_account(tx, kind="merchant", account_id="m", now=NOW)
    pay(tx, "t", "a", "m", 500)
    assert posted(tx, "a") == -500 and ledger.check(tx).ok


@pytest.mark.parametrize("kwargs, code, param", [
    ({"transfer_id": "has#hash"}, "invalid_transfer_id", "transfer_id"),
    ({"transfer_id": ""}, "invalid_transfer_id", "transfer_id"),
    ({"transfer_id": "x" * 129}, "invalid_transfer_id", "transfer_id"),
    ({"code": "Payment!"}, "invalid_code", "code"),
    ({"code": 7}, "invalid_code", "code"),
    ({"timeout_seconds": 60}, "invalid_timeout", "timeout_seconds"),
    ({"pending": True, "timeout_seconds": 0}, "invalid_timeout", "timeout_seconds"),
    ({"pending": True, "timeout_seconds": 1.5}, "invalid_timeout", "timeout_seconds"),
    ({"pending": "yes"}, "invalid_pending", "pending"),
    ({"metadata": ["not", "an", "object"]}, "invalid_metadata", "metadata"),
    ({"metadata": {"at": NOW}}, "invalid_metadata", "metadata"),
    ({"metadata": {"x": float("nan")}}, "invalid_metadata", "metadata"),
    ({"metadata": {"blob": "x" * 5000}}, "invalid_metadata", "metadata"),
])
def test_transfer_refuses_bad_fields(books, kwargs, code, param):
    fields = {"transfer_id": "t", "code": "payment", **kwargs}
    with pytest.raises(LedgerError) as caught:
        ledger.transfer(books, debit_account_id="w1", credit_account_id="m1", amount=1, currency="CNY", now=NOW, **fields)
    assert (caught.value.code, caught.value.param) == (code, param)
    assert transfers(books) == 1


def test_now_must_be_timezone_aware(books):
    with pytest.raises(ValueError, match="timezone-aware"):
        pay(books, "t", "w1", "m1", 1, now=datetime(2026, 1, 1))
    shanghai = timezone(timedelta(hours=8))
    t = pay(books, "t", "w1", "m1", 1, now=datetime(2026, 1, 1, 8, tzinfo=shanghai))
    assert t["created_at"] == "2026-01-01T00:00:00.000000Z"


def test_the_same_id_with_the_same_fields_is_the_same_transfer(books):
    first = pay(books, "pay-1", "w1", "m1", 300, metadata={"order": 1})
    again = pay(books, "pay-1", "w1", "m1", 300, metadata={"order": 1}, now=NOW + timedelta(hours=1))
    assert again == first
    assert posted(books, "w1") == 700 and transfers(books) == 2


@pytest.mark.parametrize("change, param", [
    ({"amount": 301}, "amount"), ({"credit": "w2"}, "credit_account_id"), ({"code": "refund"}, "code"),
    ({"metadata": {"order": 2}}, "metadata"), ({"pending": True}, "kind"),
])
def test_the_same_id_with_other_fields_is_refused(books, change, param):
    pay(books, "pay-1", "w1", "m1", 300, metadata={"order": 1})
    fields = {"amount": 300, "credit": "m1", "code": "payment", "metadata": {"order": 1}, **change}
    pending = fields.pop("pending", False)
    with pytest.raises(TransferExists) as caught:
        pay(books, "pay-1", "w1", fields["credit"], fields["amount"], code=fields["code"],
            metadata=fields["metadata"], pending=pending)
    assert caught.value.param == param and isinstance(caught.value, Conflict)
    assert posted(books, "w1") == 700


def test_a_failed_transfer_posts_nothing_and_the_transaction_goes_on(books):
    before = ledger.get_account(books, "w1")
    with pytest.raises(InsufficientFunds):
        pay(books, "too-much", "w1", "m1", 5000)
    assert ledger.get_account(books, "w1") == before
    assert books.one("SELECT COUNT(*) AS n FROM ledger_postings WHERE transfer_id = 'too-much'")["n"] == 0
    pay(books, "fine", "w1", "m1", 100)
    assert posted(books, "w1") == 900 and ledger.check(books).ok


def test_balance_is_read_from_stored_totals_not_summed(books):
    books.execute("DELETE FROM ledger_postings WHERE account_id = 'w1'")
    assert posted(books, "w1") == 1000  # unchanged: nothing is summed at read time
    problems = {p.code for p in ledger.check(books).problems}
    assert {"balance_mismatch", "postings_gap", "bad_postings"} <= problems


def test_unknown_account_balance(books):
    with pytest.raises(AccountNotFound, match="no account 'ghost'"):
        ledger.balance(books, "ghost")
    assert ledger.get_account(books, "ghost") is None and ledger.get_transfer(books, "ghost") is None


# -- two-phase ---------------------------------------------------------------

def hold(tx, transfer_id="auth-1", amount=600, timeout_seconds=300):
    return pay(tx, transfer_id, "w1", "m1", amount, pending=True, timeout_seconds=timeout_seconds)


def test_a_hold_reserves_funds_and_counts_against_available(books):
    h = hold(books)
    assert (h["kind"], h["status"], h["expires_at"]) == ("pending", "pending", "2026-11-27T08:35:00.000000Z")
    assert ledger.balance(books, "w1") == ledger.Balance(1000, 600, 0, 400, "CNY")
    assert ledger.balance(books, "m1") == ledger.Balance(0, 0, 600, 0, "CNY")
    with pytest.raises(InsufficientFunds, match="has 400 available"):
        pay(books, "p", "w1", "w2", 401)
    with pytest.raises(InsufficientFunds):
        hold(books, "auth-2", 401)
    assert ledger.check(books).ok and ledger.check(books).open_pending == 1


@pytest.mark.parametrize("amount, wallet, merchant", [(None, 400, 600), (600, 400, 600), (250, 750, 250), (1, 999, 1)])
def test_posting_a_hold_in_full_or_in_part_releases_the_rest(books, amount, wallet, merchant):
    hold(books)
    t = ledger.post_pending(books, transfer_id="cap-1", pending_id="auth-1", amount=amount, now=NOW)
    assert (t["kind"], t["pending_id"], t["amount"], t["code"]) == ("post_pending", "auth-1", merchant, "payment")
    assert ledger.balance(books, "w1") == ledger.Balance(wallet, 0, 0, wallet, "CNY")
    assert ledger.balance(books, "m1") == ledger.Balance(merchant, 0, 0, merchant, "CNY")
    assert ledger.get_transfer(books, "auth-1")["status"] == "posted"
    assert ledger.get_transfer(books, "auth-1")["resolved_by"] == "cap-1"
    assert ledger.check(books).ok


def test_a_void_releases_the_whole_hold(books):
    hold(books)
    t = ledger.void_pending(books, transfer_id="void-1", pending_id="auth-1", now=NOW)
    assert (t["kind"], t["amount"]) == ("void_pending", 600)
    assert ledger.balance(books, "w1") == ledger.Balance(1000, 0, 0, 1000, "CNY")
    assert ledger.get_transfer(books, "auth-1")["status"] == "voided" and ledger.check(books).ok


@pytest.mark.parametrize("first, second", [("post", "post"), ("post", "void"), ("void", "post"), ("void", "void"),
                                           ("expire", "post"), ("expire", "void")])
def test_a_hold_is_resolved_exactly_once(books, first, second):
    hold(books)

    def resolve(how, transfer_id):
        if how == "post":
            return ledger.post_pending(books, transfer_id=transfer_id, pending_id="auth-1", amount=100, now=NOW)
        if how == "void":
            return ledger.void_pending(books, transfer_id=transfer_id, pending_id="auth-1", now=NOW)
        return ledger.expire_pending(books, now=NOW + timedelta(seconds=300))

    resolve(first, "r1")
    after_first = (ledger.balance(books, "w1"), ledger.balance(books, "m1"))
    with pytest.raises(PendingAlreadyResolved, match="was already") as caught:
        resolve(second, "r2")
    assert caught.value.param == "pending_id"
    assert (ledger.balance(books, "w1"), ledger.balance(books, "m1")) == after_first
    assert ledger.check(books).ok


def test_resolving_is_idempotent_by_transfer_id(books):
    hold(books)
    first = ledger.post_pending(books, transfer_id="cap-1", pending_id="auth-1", amount=200, now=NOW)
    assert ledger.post_pending(books, transfer_id="cap-1", pending_id="auth-1", amount=200, now=NOW) == first
    assert ledger.post_pending(books, transfer_id="cap-1", pending_id="auth-1", now=NOW) == first
    with pytest.raises(TransferExists):
        ledger.post_pending(books, transfer_id="cap-1", pending_id="auth-1", amount=300, now=NOW)
    with pytest.raises(TransferExists):
        ledger.void_pending(books, transfer_id="cap-1", pending_id="auth-1", now=NOW)
    assert posted(books, "m1") == 200


@pytest.mark.parametrize("pending_id, amount, error, match", [
    ("auth-1", 601, InvalidAmount, "more than the 600 held"),
    ("auth-1", 0, InvalidAmount, "must be positive"),
    ("nothing", None, PendingNotFound, "no pending transfer 'nothing'"),
    ("topup-1", None, PendingNotFound, "no pending transfer 'topup-1'"),
])
def test_post_pending_refuses(books, pending_id, amount, error, match):
    hold(books)
    with pytest.raises(error, match=match):
        ledger.post_pending(books, transfer_id="cap", pending_id=pending_id, amount=amount, now=NOW)
    assert ledger.get_transfer(books, "cap") is None and ledger.get_transfer(books, "auth-1")["status"] == "pending"


def test_an_expired_hold_cannot_be_posted_but_can_be_voided(books):
    hold(books, timeout_seconds=60)
    late = NOW + timedelta(seconds=60)
    with pytest.raises(PendingExpired, match="expired at 2026-11-27T08:31:00"):
        ledger.post_pending(books, transfer_id="cap", pending_id="auth-1", now=late)
    ledger.void_pending(books, transfer_id="void", pending_id="auth-1", now=late)
    assert ledger.balance(books, "w1").available == 1000


def test_expire_pending_releases_only_holds_past_their_timeout(books):
    hold(books, "short", 100, timeout_seconds=60)
    hold(books, "long", 100, timeout_seconds=3600)
    hold(books, "forever", 100, timeout_seconds=None)
    assert ledger.expire_pending(books, now=NOW + timedelta(seconds=59)) == []
    assert ledger.expire_pending(books, now=NOW + timedelta(seconds=60)) == ["short"]
    assert ledger.expire_pending(books, now=NOW + timedelta(seconds=60)) == []
    assert ledger.get_transfer(books, "short")["status"] == "expired"
    assert ledger.get_transfer(books, "short#expire")["kind"] == "expire_pending"
    assert ledger.balance(books, "w1") == ledger.Balance(1000, 200, 0, 800, "CNY")
    assert ledger.expire_pending(books, now=NOW + timedelta(days=400)) == ["long"]
    assert ledger.check(books).ok


# -- linked ------------------------------------------------------------------

def leg(transfer_id, debit, credit, amount, code="payment"):
    return {"transfer_id": transfer_id, "debit_account_id": debit, "credit_account_id": credit,
            "amount": amount, "currency": "CNY", "code": code}


def test_linked_legs_all_commit(books):
    done = ledger.transfer_linked(books, [leg("l1", "w1", "m1", 900), leg("l2", "m1", "w2", 900, "settlement")], now=NOW)
    assert [t["id"] for t in done] == ["l1", "l2"]
    assert (posted(books, "w1"), posted(books, "m1"), posted(books, "w2")) == (100, 0, 900)


def test_a_failing_leg_undoes_every_leg(books):
    with pytest.raises(InsufficientFunds) as caught:
        ledger.transfer_linked(books, [leg("l1", "w1", "m1", 900), leg("l2", "w1", "w2", 200)], now=NOW)
    assert caught.value.message.startswith("leg 1: account w1 has 100 available")
    assert caught.value.param == "legs[1].debit_account_id"
    assert ledger.get_transfer(books, "l1") is None and posted(books, "w1") == 1000 and ledger.check(books).ok


def test_a_settlement_posts_as_its_legs_would_one_by_one(books):
    """Many legs into one account (a settlement) go in at once: the same transfers, postings
    numbered per account in leg order with their running balances, as leg by leg; and a
    retried settlement replays them."""
    legs = [leg("s1", "w1", "m1", 300), leg("s2", "w2", "m1", 50), leg("s3", "w1", "m1", 200)]
    pay(books, "w2-in", "fund", "w2", 100, code="topup")
    done = ledger.transfer_linked(books, legs, now=NOW)
    assert [t["id"] for t in done] == ["s1", "s2", "s3"] and done[1]["metadata"] is None
    assert ledger.transfer_linked(books, legs, now=NOW) == [ledger.get_transfer(books, t) for t in ("s1", "s2", "s3")]
    lines = {a: [(e["seq"], e["transfer_id"], e["change"], e["balance_after"]) for e in ledger.statement(books, a)[0]]
             for a in ("w1", "w2", "m1")}
    assert lines == {"w1": [(3, "s3", -200, 500), (2, "s1", -300, 700), (1, "topup-1", 1000, 1000)],
                     "w2": [(2, "s2", -50, 50), (1, "w2-in", 100, 100)],
                     "m1": [(3, "s3", 200, 550), (2, "s2", 50, 350), (1, "s1", 300, 300)]}
    assert ledger.check(books).ok


@pytest.mark.parametrize("legs, match", [
    ([], "non-empty list"),
    ([leg("a", "w1", "m1", 1), leg("a", "w1", "m1", 1)], "share a transfer_id"),
    ([{**leg("a", "w1", "m1", 1), "colour": "red"}], "leg 0: unknown field 'colour'"),
    ([{"transfer_id": "a"}], "leg 0:"),
])
def test_linked_refuses_bad_legs(books, legs, match):
    with pytest.raises(LedgerError, match=match):
        ledger.transfer_linked(books, legs, now=NOW)
    assert transfers(books) == 1


# -- statements --------------------------------------------------------------

def test_statement_pages_newest_first_and_stays_stable_under_new_entries(books):
    for i in range(7):
        pay(books, f"p{i}", "w1", "m1", 10 + i)
    page1, cursor = ledger.statement(books, "w1", limit=3)
    assert [e["transfer_id"] for e in page1] == ["p6", "p5", "p4"]
    assert page1[0] == {"seq": 8, "transfer_id": "p6", "code": "payment", "side": "debit", "amount": 16,
                        "change": -16, "balance_after": posted(books, "w1"), "currency": "CNY",
                        "counterparty_account_id": "m1", "created_at": "2026-11-27T08:30:00.000000Z"}
    pay(books, "late", "w1", "m1", 1)  # arrives between pages
    page2, cursor = ledger.statement(books, "w1", limit=3, after=cursor)
    page3, end = ledger.statement(books, "w1", limit=3, after=cursor)
    assert [e["transfer_id"] for e in page2 + page3] == ["p3", "p2", "p1", "p0", "topup-1"]
    assert end is None
    assert page3[-1]["change"] == 1000 and page3[-1]["counterparty_account_id"] == "fund"
    for newer, older in zip(page1 + page2 + page3, (page1 + page2 + page3)[1:]):
        assert newer["balance_after"] - newer["change"] == older["balance_after"]


@pytest.mark.parametrize("kwargs, code", [
    ({"limit": 0}, "invalid_limit"), ({"limit": 501}, "invalid_limit"), ({"limit": "5"}, "invalid_limit"),
    ({"after": "abc"}, "invalid_cursor"), ({"after": "-1"}, "invalid_cursor"), ({"after": 3}, "invalid_cursor"),
])
def test_statement_refuses(books, kwargs, code):
    with pytest.raises(LedgerError) as caught:
        ledger.statement(books, "w1", **kwargs)
    assert caught.value.code == code


def test_statement_of_an_unknown_or_empty_account(books):
    with pytest.raises(AccountNotFound):
        ledger.statement(books, "ghost")
    assert ledger.statement(books, "m1") == ([], None)


# -- refunds -----------------------------------------------------------------

@pytest.mark.parametrize("paid, refunded, requested, result", [
    (1000, 0, None, 1000), (1000, 0, 1000, 1000), (1000, 400, None, 600), (1000, 400, 600, 600), (1000, 999, 1, 1),
])
def test_refundable_allows_up_to_what_is_left(paid, refunded, requested, result):
    assert ledger.refundable(paid, refunded, requested) == result


@pytest.mark.parametrize("paid, refunded, requested, error", [
    (1000, 0, 1001, RefundExceedsPayment), (1000, 400, 601, RefundExceedsPayment), (1000, 1000, None, RefundExceedsPayment),
    (1000, 0, 0, InvalidAmount), (1000, 0, -5, InvalidAmount), (1000, 0, 1.5, InvalidAmount),
    (1000, 1001, None, InvalidAmount), (1000, -1, None, InvalidAmount), (0, 0, None, InvalidAmount),
])
def test_refundable_refuses(paid, refunded, requested, error):
    with pytest.raises(error):
        ledger.refundable(paid, refunded, requested)


# -- check -------------------------------------------------------------------

@pytest.mark.parametrize("corruption, code", [
    ("UPDATE ledger_accounts SET credits_posted = credits_posted + 1 WHERE id = 'w1'", "books_unbalanced"),
    ("UPDATE ledger_accounts SET credits_posted = credits_posted + 1 WHERE id = 'w1'", "balance_mismatch"),
    ("UPDATE ledger_postings SET balance_after = 7 WHERE account_id = 'w1'", "running_balance_mismatch"),
    ("UPDATE ledger_accounts SET debits_pending = 5 WHERE id = 'w1'", "pending_mismatch"),
    ("UPDATE ledger_accounts SET debits_pending = 5 WHERE id = 'w1'", "pending_unbalanced"),
    ("UPDATE ledger_accounts SET debits_posted = 2000 WHERE id = 'w1'", "negative_balance"),
    ("UPDATE ledger_accounts SET allow_negative = 1 WHERE id = 'w1'", "wrong_sign_rule"),
    ("UPDATE ledger_postings SET amount = 999 WHERE account_id = 'w1'", "bad_postings"),
    ("UPDATE ledger_transfers SET currency = 'USD'", "currency_mismatch"),
    ("UPDATE ledger_transfers SET amount = 700 WHERE id = 'cap'", "bad_resolution"),
])
def test_check_finds_each_kind_of_damage(store, corruption, code):
    class Undo(Exception):
        """Ends the transaction: the damage, and on PostgreSQL the dropped constraints, roll back."""

    with pytest.raises(Undo), store.transaction() as books:
        open_books(books)
        hold(books)
        ledger.post_pending(books, transfer_id="cap", pending_id="auth-1", amount=100, now=NOW)
        assert ledger.check(books).ok
        unguard(books)  # damage the schema would refuse
        books.execute(corruption)
        report = ledger.check(books)
        assert not report.ok and code in {p.code for p in report.problems}
        raise Undo


def unguard(tx) -> None:
    """Switch the ledger tables' CHECK constraints off for the rest of this transaction."""
    if tx.dialect == "sqlite":
        tx.execute("PRAGMA ignore_check_constraints = ON")
        return
    for row in tx.query("SELECT conrelid::regclass::text AS t, conname AS c FROM pg_constraint"
                        " WHERE contype = 'c' AND conrelid::regclass::text LIKE 'ledger_%'"):
        tx.execute(f'ALTER TABLE {row["t"]} DROP CONSTRAINT "{row["c"]}"')  # transactional: undone with it


def test_check_totals_per_currency(books):
    pay(books, "usd-in", "fund", "w2", 5)
    report = ledger.check(books)
    assert report.ok and report.accounts == 5 and report.transfers == 2 and report.postings == 4
    assert report.totals["CNY"] == ledger.CurrencyTotals(accounts=4, debits_posted=1005, credits_posted=1005,
                                                        debits_pending=0, credits_pending=0)
    assert report.totals["USD"].net == 0


# -- tapstack gateway check --------------------------------------------------

def run_check(data_dir, *options):
    from gateway.cli import cli
    return CliRunner().invoke(cli, ["check", "--data", str(data_dir), *options])


def test_cli_check_reports_balanced_books(tmp_path):
    store = SQLiteStore(tmp_path / "gateway.db")
    with store.transaction() as t:
        ledger.open_account(t, kind="funding_source", account_id="fund", now=NOW)
        ledger.open_account(t, kind="customer_wallet", account_id="w1", now=NOW)
        pay(t, "topup", "fund", "w1", 1050)
    store.close()
    result = run_check(tmp_path)
    assert result.exit_code == 0, result.output
    assert "CNY: 2 accounts, debits 10.50, credits 10.50, sum of balances 0.00" in result.output
    assert "ok: the books balance" in result.output


def test_cli_check_fails_on_damaged_books(tmp_path):
    store = SQLiteStore(tmp_path / "gateway.db")
    with store.transaction() as t:
        ledger.open_account(t, kind="funding_source", account_id="fund", now=NOW)
        ledger.open_account(t, kind="customer_wallet", account_id="w1", now=NOW)
        pay(t, "topup", "fund", "w1", 1050)
        t.execute("UPDATE ledger_accounts SET credits_posted = 1 WHERE id = 'w1'")
    store.close()
    result = run_check(tmp_path)
    assert result.exit_code == 1
    assert "FAILED" in result.output and "balance_mismatch: account w1" in result.output
    as_json = run_check(tmp_path, "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.output)
    assert report["ok"] is False and report["totals"]["CNY"]["credits_posted"] == 1
    assert {"code": "balance_mismatch", "ref": "w1"}.items() <= report["problems"][0].items()


def test_cli_check_refuses_a_database_without_the_ledger(tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    SQLiteStore(tmp_path / "gateway.db", migrations_dir=empty).close()
    result = run_check(tmp_path)
    assert result.exit_code == 2 and "has no ledger yet" in result.output  # a database it cannot use


@pytest.mark.parametrize("content", [None, b"not a database at all, just bytes" * 10])
def test_cli_check_without_a_readable_database_says_so_in_one_line(tmp_path, content):
    if content is not None:
        (tmp_path / "gateway.db").write_bytes(content)
    result = run_check(tmp_path)
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
