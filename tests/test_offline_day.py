"""A validator offline for a whole simulated day, 10,000 taps, then online against a real
gateway app: every tap is uploaded exactly once and the ledger matches the journal."""
from __future__ import annotations

import random
from datetime import timedelta

from gateway.core import clearing, ledger
from terminal.bus import Validator
from terminal.journal import Journal
from terminal.readers.mock import MockReader
from terminal.settings import Settings
from terminal.uploader import upload_all
from tests.gateway.fixtures import START, books
from tests.gateway.test_clearing import Rider
from tests.terminal.test_uploader import flask_send, terminal_client
from wallet.card import plain_uid_card

TAPS = 10_000
PURSE_CARDS = 100
UID_CARDS = 50
FARE = 200
LOAD = 40_000  # per card: more than a day of fares even for the busiest card
TID = b"BUS-0500"


def test_a_day_offline_then_everything_uploaded_once(world, client, clock, store, tmp_path):
    rng = random.Random(20261127)
    world.top_up("a", PURSE_CARDS * LOAD)
    riders = [Rider(world) for _ in range(PURSE_CARDS)]
    for rider in riders:
        rider.load(LOAD)
    uids = [plain_uid_card(bytes([0x04]) + rng.randbytes(6)) for _ in range(UID_CARDS)]

    # The day, offline: the validator has the issuer keys it downloaded yesterday, no gateway.
    day_start = START.replace(hour=0) - timedelta(days=1)
    now = [day_start]
    journal = Journal(tmp_path / "journal.db", TID)
    reader = MockReader()
    v = Validator(Settings(route="R1", stop="S1", fare=FARE, token_key=b"t" * 32, terminal_id=TID,
                           journal=tmp_path / "journal.db"), reader, journal, clock=lambda: now[0],
                  out=lambda _: None)
    v.ref.issuer_keys = riders[0].issuer_keys
    step = timedelta(days=1) / TAPS
    for n in range(TAPS):
        now[0] += step
        if n % 1000 == 0:
            v.command(f"stop S{n // 1000 + 1}")
        card = rng.choice(riders).card if rng.random() < 0.9 else rng.choice(uids)
        reader.present(card)
        v.handle_card(reader.wait_for_card(0))
    day = journal.taps()
    assert len(day) == TAPS
    paid = [t for t in day if t["kind"] == "purse" and t["accepted"]]
    repeats = [t for t in day if t["reason"] == "already_tapped"]
    assert paid and repeats and {t["stop"] for t in day} == {f"S{k}" for k in range(1, 11)}

    # Back online at the depot.
    clock.now = day_start + timedelta(days=1, hours=1)
    gateway = terminal_client(world, flask_send(client), clock)
    report = upload_all(journal, gateway, clock, batch_size=500)
    assert (report.batches, report.accepted, report.duplicate, report.rejected) == (TAPS // 500, TAPS, 0, 0)
    assert journal.counts() == {"taps": TAPS, "unsent": 0}

    merchant_id, _ = world.merchant("x")
    with store.read() as tx:
        stored = tx.query("SELECT tap_id, clearing, amount FROM transit_taps ORDER BY tap_id")
        revenue = ledger.get_account(tx, clearing.revenue_account_id(merchant_id, "CNY"))["balance"]
        floats = {r.card_id: ledger.get_account(tx, clearing.float_account_id(r.card_id))["balance"]
                  for r in riders}
    assert [s["tap_id"] for s in stored] == sorted(t["id"] for t in day)
    paid_ids = {t["id"] for t in paid}
    assert {s["clearing"] for s in stored if s["tap_id"] in paid_ids} == {"posted"}
    assert revenue == sum(t["amount"] for t in paid) == FARE * len(paid)
    assert floats == {r.card_id: r.balance for r in riders}  # the float backs exactly what each card holds
    assert sum(1 for s in stored if s["clearing"] == "unpriced") == sum(
        1 for t in day if t["kind"] == "uid" and t["accepted"])
    books(store)

    # The whole day sent again (a journal restored from a backup): nothing counts twice.
    journal.mark_unsent(clock())
    assert journal.counts()["unsent"] == TAPS
    again = upload_all(journal, gateway, clock, batch_size=400)  # other batches: judged by tap id
    assert (again.accepted, again.duplicate) == (0, TAPS)
    with store.read() as tx:
        assert ledger.get_account(tx, clearing.revenue_account_id(merchant_id, "CNY"))["balance"] == revenue
        assert tx.one("SELECT COUNT(*) AS n FROM transit_taps")["n"] == TAPS
