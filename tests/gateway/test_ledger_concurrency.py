"""Fifty real threads on one Store, on each backend: SQLite file-backed with
synchronous=FULL, as in production, and PostgreSQL at READ COMMITTED.

Each thread opens its own transactions through the shared Store, so these
tests exercise the write lock and the busy timeout (SQLite), row locks with no
lock of the gateway's (PostgreSQL), and the funds check in the UPDATE exactly
as Flask threads would.
"""
import random
import threading
from datetime import datetime, timezone

import pytest

from gateway.core import ledger

NOW = datetime(2026, 11, 27, 7, 45, tzinfo=timezone.utc)
THREADS = 50
START_BALANCE = 10_000


@pytest.fixture
def store(tmp_path, backend):
    s = backend.ledger_store(tmp_path)
    with s.transaction() as tx:
        ledger.open_account(tx, kind="funding_source", account_id="fund", now=NOW)
        ledger.open_account(tx, kind="customer_wallet", account_id="wallet", now=NOW)
        ledger.open_account(tx, kind="merchant", account_id="shop", now=NOW)
        ledger.transfer(tx, transfer_id="topup", debit_account_id="fund", credit_account_id="wallet",
                        amount=START_BALANCE, currency="CNY", code="topup", now=NOW)
    yield s
    s.close()


def run_together(work):
    """Run work(i) on THREADS threads released at once; return their results in order."""
    barrier = threading.Barrier(THREADS)
    results = [None] * THREADS

    def run(i):
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as e:  # surfaced by the caller's assertions
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def pay(store, transfer_id, amount, **kw):
    with store.transaction() as tx:
        return ledger.transfer(tx, transfer_id=transfer_id, debit_account_id="wallet", credit_account_id="shop",
                               amount=amount, currency="CNY", code="payment", now=NOW, **kw)


def test_fifty_threads_paying_from_one_wallet_never_overdraw_it(store):
    rng = random.Random(7)
    plans = [[rng.randint(50, 300) for _ in range(4)] for _ in range(THREADS)]  # ~35,000 asked of 10,000

    def spend(i):
        paid, refused = [], 0
        for n, amount in enumerate(plans[i]):
            try:
                pay(store, f"pay-{i}-{n}", amount)
                paid.append(amount)
            except ledger.InsufficientFunds:
                refused += 1
        return paid, refused

    results = run_together(spend)
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    paid = [a for p, _ in results for a in p]
    assert sum(r for _, r in results) > 0, "the plans ask for more than the wallet holds"
    with store.read() as tx:
        wallet, shop = ledger.balance(tx, "wallet"), ledger.balance(tx, "shop")
        report = ledger.check(tx)
        entries = tx.one("SELECT COUNT(*) AS n FROM ledger_postings WHERE account_id = 'wallet'")["n"]
    assert wallet.posted == START_BALANCE - sum(paid) >= 0
    assert shop.posted == sum(paid)
    assert entries == 1 + len(paid)
    assert report.ok, report.problems


def test_fifty_threads_retrying_one_transfer_move_money_once(store):
    results = run_together(lambda i: pay(store, "same-payment", 700))
    assert all(isinstance(r, dict) for r in results), [r for r in results if not isinstance(r, dict)]
    assert {r["created_at"] for r in results} == {ledger.timestamp(NOW)}
    with store.read() as tx:
        assert ledger.balance(tx, "wallet").posted == START_BALANCE - 700
        assert ledger.check(tx).ok


def test_fifty_threads_capturing_one_hold_capture_it_once(store):
    pay(store, "hold", 4000, pending=True, timeout_seconds=600)

    def capture(i):
        with store.transaction() as tx:
            return ledger.post_pending(tx, transfer_id=f"capture-{i}", pending_id="hold", amount=1000 + i, now=NOW)

    results = run_together(capture)
    won = [r for r in results if isinstance(r, dict)]
    lost = [r for r in results if isinstance(r, ledger.PendingAlreadyResolved)]
    assert len(won) == 1 and len(lost) == THREADS - 1
    with store.read() as tx:
        wallet = ledger.balance(tx, "wallet")
        assert (wallet.posted, wallet.debits_pending) == (START_BALANCE - won[0]["amount"], 0)
        assert ledger.check(tx).ok


def test_readers_see_consistent_books_while_writers_pay(store):
    """Half the threads pay, half read; every snapshot a reader takes balances."""
    def work(i):
        if i % 2:
            for n in range(5):
                try:
                    pay(store, f"p-{i}-{n}", 37)
                except ledger.InsufficientFunds:
                    pass
            return None
        seen = []
        for _ in range(5):
            with store.read() as tx:
                wallet, shop = ledger.balance(tx, "wallet").posted, ledger.balance(tx, "shop").posted
            seen.append(wallet + shop)
        return seen

    results = run_together(work)
    assert not [r for r in results if isinstance(r, Exception)]
    assert {total for r in results if r for total in r} == {START_BALANCE}
