"""Any sequence of ledger operations keeps the books: a hypothesis state machine.

Top-ups, payments, refunds (never more than paid), holds, partial captures,
voids, expiries, retries and conflicting retries run against a real Store while
a plain model predicts every balance and every refusal. After each step the
ledger's own check() must pass, every balance must match the model, the books
must sum to zero and no non-negative account may be below zero.
"""
import itertools
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.core import ledger
from tests.gateway.fixtures import ledger_store

WALLETS = ["w0", "w1", "w2"]
MERCHANTS = ["m0", "m1"]
START = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)
amounts = st.integers(min_value=1, max_value=3000)


class Books(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-props-"))
        self.store = ledger_store(self.dir, synchronous="NORMAL")
        self.now = START
        self.ids = itertools.count()
        self.posted = {"fund": 0, **{a: 0 for a in WALLETS + MERCHANTS}}
        self.held = {}      # pending id -> (wallet, merchant, amount, expires_at or None)
        self.payments = {}  # transfer id -> [wallet, merchant, amount, refunded]
        with self.store.transaction() as tx:
            ledger.open_account(tx, kind="funding_source", account_id="fund", now=self.now)
            for a in WALLETS:
                ledger.open_account(tx, kind="customer_wallet", account_id=a, now=self.now)
            for m in MERCHANTS:
                ledger.open_account(tx, kind="merchant", account_id=m, now=self.now)

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the model -----------------------------------------------------------

    def available(self, account):
        return self.posted[account] - sum(h[2] for h in self.held.values() if h[0] == account)

    def move(self, debit, credit, amount):
        self.posted[debit] -= amount
        self.posted[credit] += amount

    def new_id(self, prefix):
        return f"{prefix}-{next(self.ids)}"

    def send(self, transfer_id, debit, credit, amount, code, **kw):
        with self.store.transaction() as tx:
            return ledger.transfer(tx, transfer_id=transfer_id, debit_account_id=debit, credit_account_id=credit,
                                   amount=amount, currency="CNY", code=code, now=self.now, **kw)

    # -- rules ---------------------------------------------------------------

    @rule(wallet=st.sampled_from(WALLETS), amount=amounts)
    def top_up(self, wallet, amount):
        self.send(self.new_id("topup"), "fund", wallet, amount, "topup")
        self.move("fund", wallet, amount)

    @rule(wallet=st.sampled_from(WALLETS), merchant=st.sampled_from(MERCHANTS), amount=amounts)
    def pay(self, wallet, merchant, amount):
        transfer_id = self.new_id("pay")
        if amount > self.available(wallet):
            try:
                self.send(transfer_id, wallet, merchant, amount, "payment")
            except ledger.InsufficientFunds:
                return
            raise AssertionError(f"{wallet} paid {amount} with only {self.available(wallet)} available")
        self.send(transfer_id, wallet, merchant, amount, "payment")
        self.move(wallet, merchant, amount)
        self.payments[transfer_id] = [wallet, merchant, amount, 0]

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), ask=st.sampled_from(["rest", "exactly_left", "one_more", "any"]), any_amount=amounts)
    def refund(self, data, ask, any_amount):
        paid_id = data.draw(st.sampled_from(sorted(self.payments)))
        wallet, merchant, paid, refunded = self.payments[paid_id]
        left = paid - refunded
        requested = {"rest": None, "exactly_left": left or None, "one_more": left + 1, "any": any_amount}[ask]
        try:
            amount = ledger.refundable(paid, refunded, requested)
        except ledger.RefundExceedsPayment:
            assert left == 0 or (requested or 0) > left
            return
        assert 0 < amount <= left and amount == (requested or left)
        self.send(self.new_id("refund"), merchant, wallet, amount, "refund", metadata={"payment": paid_id})
        self.move(merchant, wallet, amount)
        self.payments[paid_id][3] += amount

    @rule(wallet=st.sampled_from(WALLETS), merchant=st.sampled_from(MERCHANTS), amount=amounts,
          timeout=st.sampled_from([None, 30, 300]))
    def authorise(self, wallet, merchant, amount, timeout):
        pending_id = self.new_id("auth")
        try:
            t = self.send(pending_id, wallet, merchant, amount, "payment", pending=True, timeout_seconds=timeout)
        except ledger.InsufficientFunds:
            assert amount > self.available(wallet)
            return
        assert amount <= self.available(wallet)
        self.held[pending_id] = (wallet, merchant, amount, t["expires_at"])

    @precondition(lambda self: self.held)
    @rule(data=st.data(), part=st.none() | st.floats(min_value=0.01, max_value=1.0))
    def capture(self, data, part):
        pending_id = data.draw(st.sampled_from(sorted(self.held)))
        wallet, merchant, amount, expires_at = self.held[pending_id]
        posting = None if part is None else max(1, int(amount * part))
        with self.store.transaction() as tx:
            if expires_at is not None and ledger.timestamp(self.now) >= expires_at:
                try:
                    ledger.post_pending(tx, transfer_id=self.new_id("cap"), pending_id=pending_id, amount=posting, now=self.now)
                except ledger.PendingExpired:
                    return
                raise AssertionError(f"captured {pending_id} after it expired")
            t = ledger.post_pending(tx, transfer_id=self.new_id("cap"), pending_id=pending_id, amount=posting, now=self.now)
        assert t["amount"] == (posting or amount)
        del self.held[pending_id]
        self.move(wallet, merchant, t["amount"])
        self.payments[t["id"]] = [wallet, merchant, t["amount"], 0]

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def void(self, data):
        pending_id = data.draw(st.sampled_from(sorted(self.held)))
        with self.store.transaction() as tx:
            ledger.void_pending(tx, transfer_id=self.new_id("void"), pending_id=pending_id, now=self.now)
        del self.held[pending_id]

    @rule(seconds=st.sampled_from([30, 300]) | st.integers(min_value=1, max_value=400))
    def time_passes(self, seconds):
        self.now += timedelta(seconds=seconds)
        with self.store.transaction() as tx:
            expired = ledger.expire_pending(tx, now=self.now)
        due = {p for p, h in self.held.items() if h[3] is not None and h[3] <= ledger.timestamp(self.now)}
        assert set(expired) == due
        for p in due:
            del self.held[p]

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), other_amount=st.booleans())
    def retry(self, data, other_amount):
        transfer_id = data.draw(st.sampled_from(sorted(self.payments)))
        with self.store.read() as tx:
            first = ledger.get_transfer(tx, transfer_id)
        if first["kind"] != "posted":
            return  # captures are retried through post_pending; the table tests cover that
        amount = first["amount"] + (1 if other_amount else 0)
        try:
            again = self.send(transfer_id, first["debit_account_id"], first["credit_account_id"], amount, first["code"])
        except ledger.TransferExists:
            assert other_amount
            return
        assert not other_amount and again == first

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def resolve_twice(self, data):
        """A resolved hold refuses a second resolution (void it, then try to post it)."""
        pending_id = data.draw(st.sampled_from(sorted(self.held)))
        with self.store.transaction() as tx:
            ledger.void_pending(tx, transfer_id=self.new_id("void"), pending_id=pending_id, now=self.now)
        del self.held[pending_id]
        try:
            with self.store.transaction() as tx:
                ledger.post_pending(tx, transfer_id=self.new_id("cap"), pending_id=pending_id, now=self.now)
        except ledger.PendingAlreadyResolved:
            return
        raise AssertionError(f"{pending_id} was posted after it was voided")

    # -- invariants ----------------------------------------------------------

    @invariant()
    def books_balance_and_match_the_model(self):
        with self.store.read() as tx:
            report = ledger.check(tx)
            balances = {a: ledger.balance(tx, a) for a in self.posted}
        assert report.ok, report.problems
        assert report.totals["CNY"].net == 0
        assert report.open_pending == len(self.held)
        for account, expected in self.posted.items():
            assert balances[account].posted == expected, account
            assert balances[account].available == self.available(account), account
            if account != "fund":
                assert balances[account].available >= 0
        assert sum(b.posted for b in balances.values()) == 0


Books.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestBooks = Books.TestCase
