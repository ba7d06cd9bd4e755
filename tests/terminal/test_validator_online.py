"""The validator with a real gateway app: reference data downloaded and cached, the
deny-list followed by deltas, fare rules priced and reported, offline on the last good
set, and the background uploader emptying the journal."""
from __future__ import annotations

import json
import time
from datetime import timedelta

from protocol.uplink import Client
from terminal.bus import Validator
from terminal.journal import Journal
from terminal.readers.mock import MockReader
from terminal.settings import Settings
from terminal.uploader import Uploader
from tests.gateway.fixtures import START, ok
from tests.gateway.test_clearing import Rider
from tests.gateway.test_taps import rules_document
from tests.terminal.test_uploader import flask_send, terminal_client

TID = b"BUS-0200"


def online_validator(world, client, clock, tmp_path, **settings) -> Validator:
    journal = Journal(tmp_path / "j.db", TID)
    s = Settings(route="R1", stop="S1", token_key=b"t" * 32, terminal_id=TID, journal=tmp_path / "j.db",
                 **settings)
    return Validator(s, MockReader(), journal, client=terminal_client(world, flask_send(client), clock),
                     clock=clock, out=lambda _: None)


def test_reference_data_is_downloaded_cached_and_used_offline(world, client, clock, config, operator, tmp_path):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    (config.data_dir / "fare_rules.json").write_text(json.dumps(rules_document()))
    v = online_validator(world, client, clock, tmp_path)
    assert v.refresh() and v.online
    assert v.ref.issuer_keys == rider.issuer_keys and v.ref.rules_version == 3
    v.reader.present(rider.card)
    paid = v.handle_card(v.reader.wait_for_card(0))
    assert (paid.reason, paid.amount, paid.rules_version) == ("paid", 200, 3)  # priced by the gateway's rules

    ok(operator.post("/v1/issuer/deny-list", {"entry": rider.card_id, "kind": "card_id", "reason": "stolen"}), 201)
    assert v.refresh() and v.ref.deny == frozenset({rider.card_id}) and v.ref.deny_version == 1
    clock.advance(120)
    assert v.handle_card(v.reader.wait_for_card(0)).reason == "deny_listed"
    assert rider.balance == 800

    # The gateway goes away; a restarted validator works on what it cached, and says how old.
    v.sync.client = Client("http://gateway.test", "tk_x", b"s" * 32, send=_down, clock=clock)
    assert not v.refresh()
    clock.advance(3 * 3600)
    restarted = Validator(v.s, v.reader, Journal(tmp_path / "j.db", TID), clock=clock, out=lambda _: None)
    assert restarted.ref.deny == frozenset({rider.card_id}) and restarted.ref.rules_version == 3
    assert restarted.status().data_age == timedelta(hours=3, minutes=2)
    assert not restarted.status().online


def _down(*_):
    raise ConnectionRefusedError("connection refused")


def test_an_unpriceable_stop_refuses_purse_taps_and_still_records_tokens(world, client, clock, config, tmp_path):
    from wallet.card import plain_uid_card

    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    (config.data_dir / "fare_rules.json").write_text(json.dumps(rules_document()))
    v = online_validator(world, client, clock, tmp_path)
    v.refresh()
    v.command("stop S99")  # not on route R1 in the rules
    v.reader.present(rider.card)
    assert v.handle_card(v.reader.wait_for_card(0)).reason == "no_fare"
    v.reader.present(plain_uid_card(bytes.fromhex("04112233445566")))
    token = v.handle_card(v.reader.wait_for_card(0))
    assert (token.reason, token.rules_version) == ("token", 3)
    assert rider.balance == 1000


def test_the_background_uploader_empties_the_journal(world, client, clock, store, tmp_path):
    from wallet.card import plain_uid_card

    v = online_validator(world, client, clock, tmp_path, fare=200)
    for n in range(30):
        clock.advance(61)
        v.reader.present(plain_uid_card(bytes([4, n, 1, 2, 3, 4, 5])))
        v.handle_card(v.reader.wait_for_card(0))
    errors = []
    uploader = Uploader(tmp_path / "j.db", TID, v.client, clock, batch_size=7, idle=0.05, on_error=errors.append)
    uploader.start()
    try:
        deadline = time.monotonic() + 20
        while v.journal.counts()["unsent"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        uploader.stop()
    assert v.journal.counts() == {"taps": 30, "unsent": 0} and errors == []
    with store.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM transit_taps")["n"] == 30


def test_the_uploader_backs_off_while_the_gateway_is_down(tmp_path, clock):
    import random

    from terminal.card import Decision

    journal = Journal(tmp_path / "j.db", TID)
    journal.record(Decision(START, "unknown", False, "unknown_card", "no", "R1", "S1"))
    delays, errors = [], []
    down = Client("http://gateway.test", "tk_x", b"s" * 32, send=_down, clock=clock)

    def wait(delay):
        delays.append(delay)
        if len(delays) == 12:
            uploader._stop.set()

    uploader = Uploader(tmp_path / "j.db", TID, down, clock, on_error=errors.append, rng=random.Random(1),
                        wait=wait)
    uploader.start()
    uploader._thread.join(10)
    assert not uploader._thread.is_alive()
    assert all(b > a for a, b in zip(delays[:9], delays[1:9]))  # doubling ...
    assert 150 <= min(delays[9:]) and max(delays) <= 300  # ... up to the cap
    assert len(errors) == 12 and journal.counts()["unsent"] == 1
    uploader.failures = 3
    uploader.poke()  # a tap during a backoff does not cut it short
    assert not uploader._wake.is_set()
