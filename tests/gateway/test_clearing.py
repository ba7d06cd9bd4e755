"""Purse clearing: loads back what cards carry, receipts post once and in counter order,
and replays, forgeries, double spends, gaps and minted value are caught."""
from __future__ import annotations

import itertools
import os

import pytest

from gateway.core import clearing, ledger
from protocol import ed25519, purse
from protocol.apdu import parse_response
from terminal import card as validator
from terminal.readers.mock import MockReader
from terminal.tap import TapContext, tap
from tests.gateway.fixtures import books, error, ok
from wallet.purse import new_purse, purse_card
from wallet.state import MemoryStore
from wallet.testcards import demo_purse_card

TERMINAL_ID = b"BUS-0042"
PLACE = validator.Place("R1", "S3")
_taps = itertools.count(1)


class Rider:
    """A wallet's purse card certified by this gateway's issuer and loaded through the API."""

    def __init__(self, world, name: str = "a", *, opening_balance: int = 0):
        self.world = world
        self.wallet_id, self.api = world.wallet(name)
        seed = os.urandom(32)
        card = ok(self.api.post(f"/v1/wallets/{self.wallet_id}/card",
                                {"public_key": ed25519.public_key(seed).hex()}), 201)
        keys = ok(self.api.get("/v1/issuer/keys"))["data"]
        self.issuer_keys = {bytes.fromhex(k["key_id"]): bytes.fromhex(k["public_key"]) for k in keys}
        self.card_id = card["card_id"]
        state = new_purse(seed, bytes.fromhex(self.card_id), bytes.fromhex(card["certificate"]),
                          next(iter(self.issuer_keys.values())), "CNY", opening_balance)
        self.store = MemoryStore(state)
        self.card = purse_card(self.store, b"\x04" + os.urandom(6))
        self.reader = MockReader(self.card)

    @property
    def balance(self) -> int:
        return self.store.state.balance

    def authorise(self, amount: int, counter: int | None = None):
        counter = self.store.state.counter if counter is None else counter
        return self.api.post(f"/v1/wallets/{self.wallet_id}/purse-loads",
                             {"card_id": self.card_id, "amount": amount, "currency": "CNY", "counter": counter})

    def apply(self, load: dict) -> int:
        self.card.power_on()
        assert parse_response(self.card.process(purse.select_command())).sw == 0x9000
        return parse_response(self.card.process(purse.topup_command(bytes.fromhex(load["authorisation"])))).sw

    def load(self, amount: int) -> dict:
        load = ok(self.authorise(amount), 201)
        assert self.apply(load) == 0x9000
        return load

    def tap(self, clock, fare: int = 200) -> dict:
        """One tap at the validator: its upload row (as the journal would send it)."""
        ctx = TapContext(fare, "CNY", TERMINAL_ID, self.issuer_keys, b"k" * 32, clock())
        outcome, _ = tap(self.reader.wait_for_card(0), ctx)
        assert outcome.accepted, outcome
        decision = validator.decide(outcome, now=clock(), place=PLACE, rules_version=1, recent={})
        return {"id": f"{TERMINAL_ID.hex()}-{next(_taps):010d}", **decision.to_json()}


def upload(world, rows, terminal="x"):
    _, api = world.terminal(terminal)
    return ok(api.post("/v1/taps", {"taps": rows}))


def account(store, account_id):
    with store.read() as tx:
        return ledger.get_account(tx, account_id)


def revenue(store, world, terminal="x"):
    merchant_id, _ = world.merchant(terminal)
    found = account(store, clearing.revenue_account_id(merchant_id, "CNY"))
    return found["balance"] if found else 0


def test_loads_back_the_card_and_clearing_moves_float_to_revenue(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    assert world.available("a") == 4000
    assert account(store, clearing.float_account_id(rider.card_id))["balance"] == rider.balance == 1000
    rows = [rider.tap(clock) for _ in range(3)]
    answer = upload(world, rows)
    assert [r["clearing"] for r in answer["results"]] == ["posted"] * 3
    assert account(store, clearing.float_account_id(rider.card_id))["balance"] == rider.balance == 400
    assert revenue(store, world) == 600
    books(store)  # the ledger's own check: every transfer balanced, totals match postings


def test_a_replayed_receipt_under_a_new_tap_id_moves_nothing(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    row = rider.tap(clock)
    upload(world, [row])
    again = upload(world, [{**row, "id": row["id"] + "-again"}], terminal="y")
    assert again["results"][0]["status"] == "accepted"
    assert again["results"][0]["clearing"] == "replayed_receipt"
    assert revenue(store, world) == 200 and revenue(store, world, "y") == 0


@pytest.mark.parametrize("tamper, reason", [
    (lambda r: r[:-2] + ("00" if r[-2:] != "00" else "01"), "forged_receipt"),  # the card's signature
    (lambda r: r[:36] + "000000fa" + r[44:], "forged_receipt"),  # balance_after raised, signature kept
    (lambda r: r[:28] + "00000001" + r[36:], "receipt_mismatch"),  # amount no longer the tap's
])
def test_forged_receipts_are_refused_and_nothing_posts(world, store, clock, tamper, reason):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    row = rider.tap(clock)
    answer = upload(world, [{**row, "receipt": tamper(row["receipt"])}])
    assert answer["results"][0]["clearing"] == reason
    assert revenue(store, world) == 0
    assert account(store, clearing.float_account_id(rider.card_id))["balance"] == 1000


def test_a_card_the_issuer_never_certified_is_refused(world, store, clock):
    demo = demo_purse_card(balance=1000)  # signed by the demo issuer, not this gateway's
    ctx = TapContext(200, "CNY", TERMINAL_ID, demo.issuer_keys, demo.token_key, clock())
    outcome, _ = tap(MockReader(demo.card).wait_for_card(0), ctx)
    row = {"id": "demo-1", **validator.decide(outcome, now=clock(), place=PLACE, rules_version=1,
                                              recent={}).to_json()}
    assert upload(world, [row])["results"][0]["clearing"] == "unknown_card"
    assert revenue(store, world) == 0


def test_receipts_after_a_gap_wait_and_post_in_order_when_it_fills(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    first, second, third = (rider.tap(clock) for _ in range(3))
    answer = upload(world, [third, second])
    assert [r["clearing"] for r in answer["results"]] == ["held", "held"]
    assert revenue(store, world) == 0
    answer = upload(world, [first], terminal="y")
    assert answer["results"][0]["clearing"] == "posted"
    assert revenue(store, world, "y") == 200 and revenue(store, world) == 400
    with store.read() as tx:
        statuses = {r["tap_id"]: r["clearing"] for r in tx.query("SELECT tap_id, clearing FROM transit_taps")}
    assert statuses[second["id"]] == statuses[third["id"]] == "posted"


def test_a_cloned_card_spending_one_counter_twice_is_a_double_spend(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    saved = rider.store.state
    first = rider.tap(clock)
    rider.store.state = saved  # the clone: same key, same counter, same balance
    clock.advance(5)
    second = rider.tap(clock)
    assert first["receipt"] != second["receipt"]
    answer = upload(world, [first, second])
    assert [r["clearing"] for r in answer["results"]] == ["posted", "double_spend"]
    assert revenue(store, world) == 200


def test_value_the_gateway_never_loaded_stops_clearing_for_the_card(world, store, clock):
    rider = Rider(world, opening_balance=1000)  # personalised with value nobody paid for
    answer = upload(world, [rider.tap(clock), rider.tap(clock)])
    assert [r["clearing"] for r in answer["results"]] == ["balance_mismatch", "card_problem"]
    assert revenue(store, world) == 0
    with store.read() as tx:
        assert "expected" in tx.one("SELECT problem FROM purse_cards WHERE card_id = :c",
                                    {"c": rider.card_id})["problem"]
    books(store)


def test_a_load_the_card_never_took_is_refunded_when_a_debit_uses_its_counter(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    ok(rider.authorise(500), 201)  # authorised at counter 1, never applied to the card
    assert world.available("a") == 3500
    answer = upload(world, [rider.tap(clock)])  # the debit takes counter 2: 1 -> 2
    assert answer["results"][0]["clearing"] == "posted"
    assert world.available("a") == 4000
    assert account(store, clearing.float_account_id(rider.card_id))["balance"] == rider.balance == 800
    books(store)


def test_a_load_the_card_took_is_confirmed_by_the_next_debit(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(300)
    rows = [rider.tap(clock)]
    rider.load(700)  # counter 2 -> 3 on the card
    rows += [rider.tap(clock), rider.tap(clock)]
    answer = upload(world, rows)
    assert [r["clearing"] for r in answer["results"]] == ["posted"] * 3
    assert account(store, clearing.float_account_id(rider.card_id))["balance"] == rider.balance == 400
    with store.read() as tx:
        assert [r["status"] for r in tx.query("SELECT status FROM purse_loads ORDER BY counter")] == [
            "applied", "applied"]


def test_late_debits_before_a_load_clear_the_debits_held_behind_them(world, store, clock):
    """Two debits arrive last, in one batch (their bus was offline), around one that arrived
    early and before a load: the gaps fill, the load is confirmed and the debit after it,
    held until then, is posted."""
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(2000)
    first, early, second = rider.tap(clock), rider.tap(clock), rider.tap(clock)
    rider.load(700)  # authorised at the second late debit's counter
    after = rider.tap(clock)
    assert upload(world, [early], terminal="y")["results"][0]["clearing"] == "held"
    assert upload(world, [after], terminal="y")["results"][0]["clearing"] == "held"
    assert [r["clearing"] for r in upload(world, [first, second])["results"]] == ["posted", "posted"]
    assert revenue(store, world) == 400 and revenue(store, world, "y") == 400
    with store.read() as tx:
        assert [r["status"] for r in tx.query("SELECT status FROM purse_loads ORDER BY counter")] == [
            "applied", "applied"]
        assert {r["status"] for r in tx.query("SELECT status FROM purse_receipts")} == {"posted"}
    books(store)


def test_purse_load_refusals(world, store, clock):
    world.top_up("a", 1000)
    rider = Rider(world)
    _, other = world.wallet("b")
    wallet_b, _ = world.wallet("b")
    error(other.post(f"/v1/wallets/{wallet_b}/purse-loads",
                     {"card_id": rider.card_id, "amount": 100, "currency": "CNY", "counter": 0}),
          404, "not_found")
    error(rider.authorise(5000), 402, "payment_error", "insufficient_funds")
    ok(rider.authorise(100), 201)
    error(rider.authorise(100), 409, "conflict", "load_exists")
    error(rider.api.post(f"/v1/wallets/{rider.wallet_id}/purse-loads",
                         {"card_id": "XYZ", "amount": 100, "currency": "CNY", "counter": 0}),
          400, "invalid_request_error")
    assert world.available("a") == 900


def test_an_authorisation_is_good_once_on_the_card(world, clock):
    world.top_up("a", 1000)
    rider = Rider(world)
    load = ok(rider.authorise(300), 201)
    assert rider.apply(load) == 0x9000
    assert rider.apply(load) != 0x9000  # the counter moved on: a replayed top-up is refused
    assert rider.balance == 300


def test_a_ledger_refusal_fails_its_row_not_the_batch(world, store, clock):
    world.top_up("a", 5000)
    good, bad = Rider(world), Rider(world)
    good.load(1000)
    bad.load(1000)
    rows = [good.tap(clock), bad.tap(clock), good.tap(clock)]
    with store.transaction() as tx:  # a fault in the books: the bad card's float no longer backs its purse
        ledger.open_account(tx, kind="suspense", account_id="suspense", now=clock())
        ledger.transfer(tx, transfer_id="drain", debit_account_id=clearing.float_account_id(bad.card_id),
                        credit_account_id="suspense", amount=1000, currency="CNY", code="test", now=clock())
    answer = upload(world, rows)
    assert [r["clearing"] for r in answer["results"]] == ["posted", "ledger_error:insufficient_funds", "posted"]
    assert revenue(store, world) == 400
    with store.read() as tx:  # the refused receipt left nothing half done
        assert tx.one("SELECT COUNT(*) AS n FROM purse_receipts WHERE card_id = :c", {"c": bad.card_id})["n"] == 0
        assert tx.one("SELECT cleared_counter FROM purse_cards WHERE card_id = :c",
                      {"c": bad.card_id})["cleared_counter"] == 0
        assert tx.one("SELECT status FROM purse_loads WHERE card_id = :c", {"c": bad.card_id})["status"] == "authorised"
    books(store)


def test_the_operator_sees_what_waits_and_what_broke(world, operator, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    first, second = rider.tap(clock), rider.tap(clock)
    upload(world, [second])
    card = ok(operator.get(f"/v1/purse-cards/{rider.card_id}"))
    assert (card["cleared_counter"], card["float_balance"], card["problem"]) == (0, 1000, None)
    assert [(w["counter"], w["status"], w["tap_id"]) for w in card["waiting"]] == [(3, "held", second["id"])]
    assert [load["status"] for load in card["loads"]] == ["authorised"]
    upload(world, [first])
    card = ok(operator.get(f"/v1/purse-cards/{rider.card_id}"))
    assert (card["cleared_counter"], card["cleared_balance"], card["waiting"]) == (3, 600, [])
    assert card["float_balance"] == rider.balance == 600
    error(operator.get("/v1/purse-cards/0000000000000000"), 404, "not_found")
    _, wallet = world.wallet("a")
    error(wallet.get(f"/v1/purse-cards/{rider.card_id}"), 403, "permission_error")
