"""Settlement per upload: the receipts one upload clears move money as one linked ledger
call, a leg per (card, operator revenue account); each receipt names the leg that carried
it; retries move nothing twice; certificates are verified once across uploads."""
from __future__ import annotations

import json
import os

import pytest

from gateway.core import clearing, taps
from protocol import certs, ed25519, purse
from tests.gateway.fixtures import books, ok
from tests.gateway.test_clearing import Rider, account, revenue, upload


def fare_transfers(store) -> list[dict]:
    with store.read() as tx:
        return tx.query("SELECT id, debit_account_id, credit_account_id, amount, metadata FROM ledger_transfers "
                        "WHERE code = :c ORDER BY created_at, id", {"c": clearing.TRANSFER_CODE})


def receipts(store, card_id: str) -> list[dict]:
    with store.read() as tx:
        return tx.query("SELECT counter, amount, status, transfer_id FROM purse_receipts WHERE card_id = :c "
                        "ORDER BY counter", {"c": card_id})


def assert_settled(store):
    """The books balance, and every fare transfer is exactly the sum of the receipts naming it."""
    books(store)
    with store.read() as tx:
        sums = {r["transfer_id"]: r["total"] for r in tx.query(
            "SELECT transfer_id, SUM(amount) AS total FROM purse_receipts WHERE status = 'posted' "
            "GROUP BY transfer_id")}
    assert sums == {t["id"]: t["amount"] for t in fare_transfers(store)}


def test_a_forged_receipt_among_good_ones_is_flagged_and_the_good_ones_clear_in_one_transfer(world, store, clock):
    world.top_up("a", 5000)
    rider, forger = Rider(world), Rider(world)
    rider.load(1000)
    forger.load(1000)
    bad = forger.tap(clock)
    bad["receipt"] = bad["receipt"][:-2] + ("00" if bad["receipt"][-2:] != "00" else "01")
    rows = [rider.tap(clock), rider.tap(clock), bad, rider.tap(clock)]
    answer = upload(world, rows)
    assert [r["clearing"] for r in answer["results"]] == ["posted", "posted", "forged_receipt", "posted"]
    (fare,) = fare_transfers(store)
    assert (fare["debit_account_id"], fare["amount"]) == (clearing.float_account_id(rider.card_id), 600)
    assert fare["credit_account_id"] == clearing.revenue_account_id(world.merchant("x")[0], "CNY")
    assert {r["transfer_id"] for r in receipts(store, rider.card_id)} == {fare["id"]}
    assert receipts(store, forger.card_id) == []  # a refused receipt is not kept
    assert account(store, clearing.float_account_id(forger.card_id))["balance"] == 1000
    assert revenue(store, world) == 600
    assert_settled(store)


def test_the_cards_of_one_upload_settle_as_legs_of_one_settlement(world, store, clock):
    world.top_up("a", 5000)
    riders = [Rider(world) for _ in range(3)]
    for rider in riders:
        rider.load(1000)
    rows = [rider.tap(clock) for _ in range(2) for rider in riders]  # riders mixed, as on a bus
    assert {r["clearing"] for r in upload(world, rows)["results"]} == {"posted"}
    legs = fare_transfers(store)
    assert sorted(leg["debit_account_id"] for leg in legs) == sorted(
        clearing.float_account_id(r.card_id) for r in riders)
    assert [leg["amount"] for leg in legs] == [400] * 3
    notes = [json.loads(leg["metadata"]) for leg in legs]
    assert len({n["settlement"] for n in notes}) == 1 and [n["receipts"] for n in notes] == [2] * 3
    for rider in riders:
        assert account(store, clearing.float_account_id(rider.card_id))["balance"] == rider.balance == 600
    assert_settled(store)


def test_a_retried_upload_moves_no_money_twice(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    rows = [rider.tap(clock) for _ in range(3)]
    _, terminal = world.terminal("x")
    first = ok(terminal.post("/v1/taps", {"taps": rows}, key="upload-1"))
    transfers = books(store)[1]
    replay = terminal.post("/v1/taps", {"taps": rows}, key="upload-1")  # the same request again
    assert ok(replay) == first and replay.headers.get("Idempotent-Replayed") == "true"
    again = ok(terminal.post("/v1/taps", {"taps": rows}, key="upload-2"))  # a new key: judged by tap id
    assert [r["status"] for r in again["results"]] == ["duplicate"] * 3
    renumbered = upload(world, [{**r, "id": r["id"] + "-b"} for r in rows])  # a journal renumbered
    assert [r["clearing"] for r in renumbered["results"]] == ["replayed_receipt"] * 3
    assert books(store)[1] == transfers
    assert revenue(store, world) == 600 and rider.balance == 400
    assert account(store, clearing.float_account_id(rider.card_id))["balance"] == 400
    assert_settled(store)


def test_clearing_the_same_receipts_again_posts_nothing(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    rows = [rider.tap(clock) for _ in range(2)]
    upload(world, rows)
    transfers = books(store)[1]
    merchant_id, _ = world.merchant("x")
    with store.transaction() as tx:
        submitted = [clearing.Submitted(purse.parse_receipt(bytes.fromhex(r["receipt"])), r["receipt"], "t", r["id"],
                                        merchant_id) for r in rows]
        statuses = clearing.clear_upload(tx, submitted, now=clock(), settlement="ps_again")
    assert list(statuses.values()) == ["replayed_receipt"] * 2
    assert books(store)[1] == transfers
    assert_settled(store)


def test_two_uploads_touching_one_card_settle_in_counter_order(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    rows = [rider.tap(clock) for _ in range(5)]
    assert {r["clearing"] for r in upload(world, rows[:3])["results"]} == {"posted"}
    assert_settled(store)
    assert {r["clearing"] for r in upload(world, rows[3:])["results"]} == {"posted"}
    assert_settled(store)
    first, second = fare_transfers(store)
    assert (first["amount"], second["amount"]) == (600, 400)
    chain = receipts(store, rider.card_id)
    assert [r["counter"] for r in chain] == [2, 3, 4, 5, 6]  # counter 1 was the load
    assert [r["transfer_id"] for r in chain] == [first["id"]] * 3 + [second["id"]] * 2
    assert (first["id"], second["id"]) == (clearing.transfer_id(rider.card_id, 2),
                                          clearing.transfer_id(rider.card_id, 5))
    assert account(store, clearing.float_account_id(rider.card_id))["balance"] == rider.balance == 0


def test_a_held_receipt_released_by_another_operator_settles_to_its_own_revenue(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    first, second, third = (rider.tap(clock) for _ in range(3))
    assert upload(world, [second], terminal="y")["results"][0]["clearing"] == "held"
    answer = upload(world, [first, third], terminal="x")
    assert [r["clearing"] for r in answer["results"]] == ["posted", "posted"]
    assert (revenue(store, world, "x"), revenue(store, world, "y")) == (400, 200)
    assert len(fare_transfers(store)) == 2  # one leg per (card, operator) of the upload
    assert account(store, clearing.float_account_id(rider.card_id))["balance"] == rider.balance == 400
    assert_settled(store)


# --- certificates verified once --------------------------------------------------------------

def issued(issuer_seed: bytes, not_after: int = 2_000_000_000):
    """(card id hex, certificate hex, issuer keys) of a fresh card certified by issuer_seed."""
    card_id = os.urandom(8)
    cert = certs.issue(issuer_seed, card_id, ed25519.public_key(os.urandom(32)), not_after)
    issuer_public = ed25519.public_key(issuer_seed)
    return card_id.hex(), cert.to_bytes().hex(), {certs.key_id(issuer_public): issuer_public}


def test_a_certificate_is_verified_once_across_uploads_and_again_under_other_keys(monkeypatch):
    calls = []
    real = certs.verify
    monkeypatch.setattr(certs, "verify", lambda *a: calls.append(a) or real(*a))
    issuer = os.urandom(32)
    card_id, cert, keys = issued(issuer)
    cache = clearing.CertificateCache(keys, size=2)
    for at in (1, 2, 3):
        cache.certificate(card_id, cert, at)
    assert len(calls) == 1
    _, _, other_keys = issued(os.urandom(32))
    with pytest.raises(certs.BadCertificate):  # an issuer key set without its key: verified again, refused
        cache.using(other_keys).certificate(card_id, cert, 1)
    assert len(calls) == 2
    for _ in range(2):  # two other good certificates push it out of a cache of two
        other_card, other_cert, _ = issued(issuer)
        cache.certificate(other_card, other_cert, 1)
    cache.certificate(card_id, cert, 1)
    assert len(calls) == 5


def test_a_cached_certificate_still_expires_and_still_names_its_card():
    card_id, cert, keys = issued(os.urandom(32), not_after=1000)
    cache = clearing.CertificateCache(keys)
    assert cache.certificate(card_id, cert, 999).card_id.hex() == card_id
    with pytest.raises(certs.BadCertificate, match="expired"):
        cache.certificate(card_id, cert, 1001)
    with pytest.raises(certs.BadCertificate, match="another card"):
        cache.certificate("00" * 8, cert, 999)


def test_the_gateway_verifies_a_card_certificate_once_across_uploads(world, store, clock, monkeypatch):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    rows = [rider.tap(clock) for _ in range(4)]
    calls = []
    real = certs.verify
    monkeypatch.setattr(certs, "verify", lambda cert, *a: calls.append(cert.card_id.hex()) or real(cert, *a))
    for pair in (rows[:2], rows[2:]):
        assert [r["clearing"] for r in upload(world, pair)["results"]] == ["posted", "posted"]
    assert calls == [rider.card_id]


# --- receipts verified before the write lock ---------------------------------------------------

def ingest_with(store, world, clock, rows, ahead):
    terminal_id, _ = world.terminal("x")
    merchant_id, _ = world.merchant("x")
    with store.transaction() as tx:
        return taps.ingest(tx, terminal_id=terminal_id, merchant_id=merchant_id, rows=rows, now=clock(),
                           ahead=ahead)


def test_an_answer_checked_before_the_lock_is_used_only_under_the_same_keys_and_certificate(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    rows = [rider.tap(clock) for _ in range(3)]
    terminal_id, _ = world.terminal("x")
    with store.read() as tx:
        ahead = taps.verify_ahead(tx, terminal_id=terminal_id, rows=rows, now=clock())
        keys = clearing.trusted_keys(tx)
        certificate = clearing.issuer_certificates(tx, [rider.card_id])[rider.card_id]
    assert {answer[1] for answer in ahead.results.values()} == {None}  # all three verify
    # Answers that say "forged", to see which ones ingest takes: under other keys, or for
    # another certificate, they are stale and ingest verifies again.
    forged = (None, "forged_receipt")
    key = (rows[0]["receipt"], rider.card_id, rows[0]["amount"], "CNY")
    stale = taps.Verified({b"\0" * 4: b"\0" * 32}, {key + (certificate,): forged})
    other_cert = taps.Verified(keys, {key + ("00" * 113,): forged})
    answer = ingest_with(store, world, clock, rows[:1], stale)
    assert answer["results"][0]["clearing"] == "posted"
    answer = ingest_with(store, world, clock, [rows[1]], other_cert)
    assert answer["results"][0]["clearing"] == "posted"
    current = taps.Verified(keys, {(rows[2]["receipt"], rider.card_id, rows[2]["amount"], "CNY", certificate): forged})
    assert ingest_with(store, world, clock, [rows[2]], current)["results"][0]["clearing"] == "forged_receipt"
    assert revenue(store, world) == 400
    assert_settled(store)


def test_nothing_is_checked_ahead_for_taps_already_stored_or_rows_that_are_not_purse_taps(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    first, second = rider.tap(clock), rider.tap(clock)
    upload(world, [first])
    terminal_id, _ = world.terminal("x")
    with store.read() as tx:
        ahead = taps.verify_ahead(tx, terminal_id=terminal_id, now=clock(),
                                  rows=[first, second, "garbage", {**second, "amount": "200"}, {"kind": "purse"}])
        assert taps.verify_ahead(tx, terminal_id=terminal_id, rows="not a list", now=clock()) is None
    assert [k[0] for k in ahead.results] == [second["receipt"]]
