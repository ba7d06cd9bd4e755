"""POST /v1/taps: each row judged alone, stored once per tap id, flagged when suspect;
ridership per route and hour; token taps handed to trip pricing, tap-offs among them."""
from __future__ import annotations

import json
from datetime import timedelta

from gateway.core import fare_charges, taps
from protocol import tokens
from protocol.fares import parse_rules
from terminal.bus import Validator
from terminal.journal import Journal
from terminal.settings import Settings
from tests.gateway.fixtures import START, error, ok
from tests.gateway.test_clearing import Rider, revenue, upload
from tests.gateway.test_fare_charges import publish

T0 = int(START.timestamp())
TOKEN = tokens.uid_token(b"k" * 32, bytes.fromhex("04a1b2c3d4e5f6"))


def token_row(n: int, **changes) -> dict:
    row = {"id": f"term-{n:06d}", "at": T0 - 60 + n, "kind": "uid", "accepted": True, "reason": "token",
           "route": "R1", "stop": "S1", "rules_version": 3, "amount": None, "currency": "CNY",
           "balance_after": None, "card_id": None, "token": TOKEN, "receipt": None}
    row.update(changes)
    return row


def test_garbage_rows_are_rejected_with_reasons_and_the_rest_accepted(world):
    rows = [
        token_row(1),
        "not an object",
        token_row(2, at="yesterday"),
        token_row(3, kind="teleport"),
        token_row(4, token="4111111111111111"),  # a card number is never a token
        token_row(5, accepted=True, kind="purse", token=None),  # a paid tap without its receipt
        {**token_row(6), "pan": "4111111111111111"},
        token_row(7, id=None),
        token_row(8),
    ]
    answer = upload(world, rows)
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == ["accepted"] + ["rejected"] * 7 + ["accepted"]
    reasons = [r["reason"] for r in answer["results"][1:8]]
    assert reasons[0].startswith("not_an_object") and reasons[-1].startswith("missing_field")
    assert "pan" in reasons[5] and "4111" not in json.dumps(answer)
    assert (answer["accepted"], answer["rejected"]) == (2, 7)


def test_an_upload_sent_again_counts_once(world, store):
    rows = [token_row(n) for n in range(1, 6)]
    assert upload(world, rows)["accepted"] == 5
    again = upload(world, rows[2:] + [token_row(6)])
    assert [r["status"] for r in again["results"]] == ["duplicate"] * 3 + ["accepted"]
    inside = upload(world, [token_row(7), token_row(7)])
    assert [r["status"] for r in inside["results"]] == ["accepted", "duplicate"]
    with store.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM transit_taps")["n"] == 7


def test_tap_ids_are_per_terminal(world, store):
    upload(world, [token_row(1)], terminal="x")
    assert upload(world, [token_row(1)], terminal="y")["results"][0]["status"] == "accepted"


def test_a_wrong_clock_is_flagged_not_refused(world):
    answer = upload(world, [token_row(1, at=T0 + 3600), token_row(2, at=946_684_800), token_row(3)])
    assert [r["flags"] for r in answer["results"]] == [["clock_suspect"], ["clock_suspect"], []]
    assert answer["accepted"] == 3


def test_a_route_missing_from_the_fare_rules_is_flagged(world, config):
    publish(config, rules_document())
    answer = upload(world, [token_row(1, route="R1"), token_row(2, route="R99")])
    assert [r["flags"] for r in answer["results"]] == [[], ["unknown_route"]]


def test_a_route_missing_from_an_old_gateways_rules_file_is_flagged(world, config):
    (config.data_dir / "fare_rules.json").write_text(json.dumps(rules_document()))
    answer = upload(world, [token_row(1, route="R1"), token_row(2, route="R99")])
    assert [r["flags"] for r in answer["results"]] == [[], ["unknown_route"]]


def test_broken_fare_rules_do_not_stop_uploads(world, config):
    (config.data_dir / "fare_rules.json").write_text('{"version": "three"}')  # only a file can be broken
    answer = upload(world, [token_row(1, route="R99")])
    assert answer["results"][0]["status"] == "accepted" and answer["results"][0]["flags"] == []


def rules_document() -> dict:
    return {"version": 3, "effective_from": "2026-01-01T00:00:00Z", "currency": "CNY",
            "timezone": "Asia/Shanghai",
            "products": {"flat": {"kind": "flat", "amount": 200}},
            "routes": [{"id": "R1", "name": "1", "product": "flat",
                        "stops": [{"id": "S1", "name": "Depot"}, {"id": "S2", "name": "Market"}]}],
            "concessions": {"adult": {"discount": None, "caps": None}}}


def test_bad_batches_are_refused_whole(world):
    _, api = world.terminal("x")
    error(api.post("/v1/taps", {"taps": []}), 400, "invalid_request_error", "invalid_parameter")
    error(api.post("/v1/taps", {"taps": {"id": 1}}), 400, "invalid_request_error", "invalid_parameter")
    error(api.post("/v1/taps", {"rows": []}), 400, "invalid_request_error", "unknown_parameter")
    error(api.post("/v1/taps", {"taps": [token_row(n) for n in range(1001)]}), 400, "invalid_request_error",
          "batch_too_large")
    error(api.post("/v1/taps", raw=b"{\"taps\": [1,"), 400, "invalid_request_error", "malformed_json")
    _, wallet = world.wallet("a")
    error(wallet.post("/v1/taps", {"taps": [token_row(1)]}), 403, "permission_error")


def test_a_batch_of_500_rows_fits_although_it_is_beyond_the_usual_body_limit(world):
    rows = [token_row(n, receipt=None) for n in range(500)]
    assert len(json.dumps({"taps": rows})) > 64 * 1024
    assert upload(world, rows)["accepted"] == 500


def test_token_taps_wait_for_trip_pricing(world, store):
    upload(world, [token_row(1), token_row(2, accepted=False, reason="already_tapped")])
    with store.read() as tx:
        found = taps.token_taps(tx, since=T0 - 3600, until=T0 + 3600)
    assert [(t.token, t.route, t.stop, t.kind, t.rules_version) for t in found] == [(TOKEN, "R1", "S1", "on", 3)]


def test_ridership_and_revenue_per_route_and_hour(world, operator, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    paid = [rider.tap(clock), rider.tap(clock)]
    upload(world, paid + [token_row(1), token_row(2, route="R2", at=T0 - 4000),
                          token_row(3, accepted=False, reason="deny_listed")])
    data = ok(operator.get(f"/v1/taps/ridership?from={T0 - 7200}&to={T0 + 3600}"))["data"]
    by = {(d["route"], d["hour"]): d for d in data}
    r1 = by[("R1", "2026-11-27T08:00:00Z")]
    assert (r1["taps"], r1["accepted"], r1["token_taps"]) == (2, 1, 1)
    assert by[("R1", "2026-11-27T09:00:00Z")]["purse_revenue"] == 400
    assert by[("R2", "2026-11-27T07:00:00Z")]["taps"] == 1
    only = ok(operator.get(f"/v1/taps/ridership?from={T0 - 7200}&to={T0 + 3600}&route=R2"))["data"]
    assert [d["route"] for d in only] == ["R2"]
    error(operator.get("/v1/taps/ridership?from=soon"), 400, "invalid_request_error")
    _, merchant_y = world.merchant("y")
    assert ok(merchant_y.get(f"/v1/taps/ridership?from={T0 - 7200}&to={T0 + 3600}"))["data"] == []


# --- tap direction ---------------------------------------------------------------------

ZONE_RULES = {
    "version": 4, "effective_from": "2026-01-01T00:00:00Z", "currency": "CNY", "timezone": "UTC",
    "products": {"zones": {"kind": "zone", "by_zones": [200, 300, 400], "missing_tap_off": {"rule": "max_fare"}}},
    "routes": [{"id": "Z9", "name": "9", "product": "zones",
                "stops": [{"id": "ng", "name": "North Gate", "zone": 1}, {"id": "un", "name": "University", "zone": 2},
                          {"id": "hb", "name": "Harbour", "zone": 3}]}],
    "concessions": {"adult": {"discount": None, "caps": None}}}
OTHER = tokens.uid_token(b"k" * 32, bytes.fromhex("04ffeeddccbbaa"))


def test_token_tap_ons_and_tap_offs_on_a_zone_route_are_priced_as_trips(world, store):
    on = dict(route="Z9", stop="ng", rules_version=4)
    rows = [token_row(1, at=T0 - 7200, **on),
            token_row(2, at=T0 - 6000, route="Z9", stop="un", rules_version=4, direction="off"),
            token_row(3, at=T0 - 7000, token=OTHER, **on)]  # never taps off
    answer = upload(world, rows)
    assert [r["clearing"] for r in answer["results"]] == ["unpriced"] * 3
    with store.read() as tx:
        found = taps.token_taps(tx, since=T0 - 86400, until=T0)
    assert sorted((t.token == TOKEN, t.kind, t.stop) for t in found) == [
        (False, "on", "ng"), (True, "off", "un"), (True, "on", "ng")]
    with store.transaction() as tx:
        # run after the day: the trip with no tap-off is then a missing tap-off, not an open trip
        summary = fare_charges.run_day(tx, rules=parse_rules(ZONE_RULES), day=START.date(),
                                       now=START + timedelta(hours=16))
        charged = {r["token"]: r["amount"] for r in tx.query("SELECT token, amount FROM fare_charges")}
    assert summary["trips"] == 2
    # North Gate to University is 2 zones; without a tap-off the rider pays to Harbour (3 zones).
    assert charged == {TOKEN: 300, OTHER: 400}


def exit_validator_row(rider: Rider, clock, tmp_path) -> dict:
    """The upload row of the rider's purse card tapped at an exit validator (terminal.bus)."""
    settings = Settings(route="R1", stop="S3", fare=200, token_key=b"k" * 32, terminal_id=b"BUS-0043",
                        journal=tmp_path / "exit.db", direction="off")
    v = Validator(settings, rider.reader, Journal(settings.journal, settings.terminal_id), clock=clock,
                  out=lambda line: None)
    v.ref.issuer_keys = rider.issuer_keys
    decision = v.handle_card(v.reader.wait_for_card(0))
    assert (decision.reason, decision.direction) == ("tap_off", "off")
    (row,) = v.journal.unsent()
    v.journal.close()
    return row


def test_a_purse_tap_off_is_stored_and_nothing_is_cleared(world, store, clock, tmp_path):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    paid = rider.tap(clock)
    off = exit_validator_row(rider, clock, tmp_path)
    assert off["direction"] == "off" and off["receipt"] is None and off["card_id"] == rider.card_id
    assert rider.balance == 800  # paid 200 at tap-on, nothing at the exit
    before = revenue(store, world)
    answer = upload(world, [off])
    assert answer["results"][0]["status"] == "accepted" and answer["results"][0]["clearing"] is None
    assert revenue(store, world) == before
    answer = upload(world, [paid])
    assert answer["results"][0]["clearing"] == "posted" and revenue(store, world) == before + 200
    with store.read() as tx:
        stored = {r["tap_id"]: (r["direction"], r["clearing"]) for r in tx.query(
            "SELECT tap_id, direction, clearing FROM transit_taps")}
        assert tx.one("SELECT COUNT(*) AS n FROM purse_receipts")["n"] == 1
    assert stored == {paid["id"]: ("on", "posted"), off["id"]: ("off", None)}


def test_a_purse_tap_on_still_needs_its_receipt_and_a_tap_off_its_card(world):
    row = token_row(1, kind="purse", token=None, card_id="00" * 8, reason="paid")
    answer = upload(world, [row, {**row, "id": "t-2", "direction": "off"},
                            {**row, "id": "t-3", "direction": "off", "card_id": None}])
    assert [r["status"] for r in answer["results"]] == ["rejected", "accepted", "rejected"]
    assert answer["results"][0]["reason"].startswith("missing_field: an accepted purse tap carries")
    assert answer["results"][2]["reason"] == "missing_field: an accepted purse tap-off carries its card_id"


def test_a_bad_direction_is_refused_with_its_reason_and_the_rest_accepted(world, store):
    answer = upload(world, [token_row(1, direction="sideways"), token_row(2, direction=1), token_row(3),
                            token_row(4, direction="on"), token_row(5, direction=None)])
    assert [r["status"] for r in answer["results"]] == ["rejected", "rejected", "accepted", "accepted", "accepted"]
    assert answer["results"][0]["reason"] == "invalid_field: direction must be on or off"
    with store.read() as tx:
        assert [r["direction"] for r in tx.query("SELECT direction FROM transit_taps ORDER BY tap_id")] == ["on"] * 3
