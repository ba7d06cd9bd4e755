"""Account-based fares: a day's token taps become trips, priced with transfers and caps, charged
to the linked wallet; unpaid fares become debts and deny-list the card until collected."""
from __future__ import annotations

import itertools
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from gateway.cli import cli as gateway_cli
from gateway.core import clearing, fare_charges, ledger
from gateway.core.errors import DomainError
from tests.gateway.fixtures import START, books, error, ok
from tests.gateway.test_card_links import PAN_TOKEN, UID_TOKEN, link_code, tap

DAY = "2026-11-27"  # START is 17:00 in Shanghai on this day
LOCAL = timezone(timedelta(hours=8))
RULES = {
    "version": 1, "effective_from": "2026-01-01T00:00:00Z", "currency": "CNY", "timezone": "Asia/Shanghai",
    "products": {"city_flat": {"kind": "flat", "amount": 200}},
    "routes": [{"id": "12", "name": "12", "product": "city_flat",
                "stops": [{"id": "rs", "name": "Railway Station"}, {"id": "ps", "name": "People's Square"}]},
               {"id": "7", "name": "7", "product": "city_flat",
                "stops": [{"id": "ma", "name": "Market"}, {"id": "un", "name": "University"}]}],
    "transfer": {"window_minutes": 90, "max_transfers": 2, "discount": {"kind": "amount", "amount": 100},
                 "same_route": False},
    "concessions": {"adult": {"discount": None, "caps": {"day": 500, "week": 1200}}},
}
_ids = itertools.count(1)


def publish(config, rules: dict = RULES) -> dict:
    """Publish fare rules as the operator does: into the database, for every gateway node."""
    store = config.open_store()
    try:
        return store.write(lambda tx: fare_charges.publish_rules(tx, rules, now=START))
    finally:
        store.close()


def at(hhmm: str, day: str = DAY) -> int:
    return int(datetime.fromisoformat(f"{day}T{hhmm}:00").replace(tzinfo=LOCAL).timestamp())


def ride(world, token: str, *taps: tuple[str, str], terminal: str = "x", day: str = DAY) -> None:
    """Upload token tap-ons, each (local HH:MM, route)."""
    rows = [{"id": f"v-{next(_ids):06d}", "at": at(hhmm, day), "kind": token[:3] if token[:3] == "uid" else "emv",
             "accepted": True, "reason": "token", "route": route, "stop": "rs" if route == "12" else "ma",
             "rules_version": 1, "currency": "CNY", "token": token} for hhmm, route in taps]
    _, api = world.terminal(terminal)
    answer = ok(api.post("/v1/taps", {"taps": rows}))
    assert answer["accepted"] == len(rows), answer


def run(world, day: str = DAY) -> dict:
    return ok(world.operator.post("/v1/fare-charges/runs", {"day": day}))


def link(world, token: str = PAN_TOKEN, wallet: str = "a") -> None:
    ok(tap(world, link_code(world, wallet), token), 201)


def charges(world, wallet: str = "a", status: str | None = None) -> dict:
    wallet_id, api = world.wallet(wallet)
    return ok(api.get(f"/v1/wallets/{wallet_id}/fare-charges" + (f"?status={status}" if status else "")))


def revenue(store, world, merchant: str = "x") -> int:
    with store.read() as tx:
        account = ledger.get_account(tx, clearing.revenue_account_id(world.merchant(merchant)[0], "CNY"))
    return account["balance"] if account else 0


def denied(store, token: str) -> dict | None:
    with store.read() as tx:
        return tx.one("SELECT reason, source FROM issuer_deny_list WHERE entry = :e", {"e": token})


def test_flat_fares_are_charged_to_the_linked_wallet_and_credit_the_validators_operator(world, config, store):
    publish(config)
    link(world)
    world.top_up("a", 1000)
    ride(world, PAN_TOKEN, ("07:00", "12"), ("12:00", "12"))
    summary = run(world)
    assert (summary["trips"], summary["charged"], summary["unpaid"]["count"]) == (2, {"count": 2, "amount": 400}, 0)
    assert world.available("a") == 600 and revenue(store, world) == 400
    data = charges(world)["data"]
    assert [(c["at"][11:16], c["amount"], c["status"]) for c in data] == [("04:00", 200, "charged"),
                                                                          ("23:00", 200, "charged")]
    assert all(c["local_day"] == DAY and c["statement"].endswith("Charged 2.00 CNY.") for c in data)
    books(store)


def test_a_boarding_within_the_transfer_window_gets_the_discount(world, config, store):
    publish(config)
    link(world)
    world.top_up("a", 1000)
    ride(world, PAN_TOKEN, ("07:00", "12"), ("07:40", "7"))
    assert run(world)["charged"] == {"count": 2, "amount": 300}
    transfer = charges(world)["data"][0]
    assert transfer["route"] == "7" and transfer["amount"] == 100 and "Transfer 1" in transfer["statement"]
    assert world.available("a") == 700
    books(store)


def test_a_rerun_charges_nothing_and_late_taps_only_the_difference_up_to_the_day_cap(world, config, store):
    publish(config)
    link(world)
    world.top_up("a", 2000)
    ride(world, PAN_TOKEN, ("07:00", "12"), ("12:00", "12"))
    assert run(world)["charged"]["amount"] == 400
    _, transfers = books(store)
    again = run(world)
    assert (again["charged"], again["free"], again["unpaid"]["count"]) == ({"count": 0, "amount": 0}, 0, 0)
    assert books(store)[1] == transfers and world.available("a") == 1600
    # Another validator uploads late: one tap earlier than those charged, one later.
    ride(world, PAN_TOKEN, ("09:30", "12"), ("15:00", "12"), terminal="y")
    late = run(world)
    assert late["charged"] == {"count": 1, "amount": 100}  # the day costs 800 before its 500 cap
    assert world.available("a") == 1500
    listed = charges(world)["data"]
    assert sum(c["amount"] for c in listed) == 500 and len(listed) == 4
    late_trip = next(c for c in listed if c["at"].endswith("01:30:00Z"))  # 09:30 in Shanghai
    assert late_trip["amount"] == 100 and late_trip["statement"].startswith(
        "Charged 1.00 CNY: with the taps known now the day costs 5.00 CNY, of which 4.00 CNY was charged before.")
    assert run(world)["charged"]["count"] == 0 and world.available("a") == 1500
    assert revenue(store, world, "x") + revenue(store, world, "y") == 500
    books(store)


def test_the_week_cap_counts_the_other_days_charged(world, config, store):
    publish(config)
    link(world)
    world.top_up("a", 5000)
    for day in ("2026-11-23", "2026-11-24"):  # Monday and Tuesday of the week
        ride(world, PAN_TOKEN, ("07:00", "12"), ("10:00", "12"), ("13:00", "12"), day=day)
        assert run(world, day)["charged"]["amount"] == 500
    ride(world, PAN_TOKEN, ("07:00", "12"), ("10:00", "12"), ("13:00", "12"))
    assert run(world)["charged"]["amount"] == 200  # the week's 1200 cap
    assert world.available("a") == 5000 - 1200
    books(store)


def test_an_unpaid_fare_is_a_debt_that_deny_lists_the_card_until_a_run_collects_it(world, config, store):
    publish(config)
    link(world)
    world.top_up("a", 250)
    ride(world, PAN_TOKEN, ("07:00", "12"), ("12:00", "12"))
    summary = run(world)
    assert (summary["charged"]["amount"], summary["unpaid"], summary["denied_tokens"]) == (
        200, {"count": 1, "amount": 200}, 1)
    assert denied(store, PAN_TOKEN) == {"reason": "unpaid fare", "source": "fare_debt"}
    debts = charges(world, status="unpaid")
    assert [d["amount"] for d in debts["data"]] == [200] and debts["unpaid_total"] == 200
    assert run(world)["debts_collected"]["count"] == 0  # still short of funds: still owed, still denied
    assert denied(store, PAN_TOKEN) is not None
    world.top_up("a", 500)
    collected = run(world)
    assert (collected["debts_collected"], collected["allowed_tokens"]) == ({"count": 1, "amount": 200}, 1)
    assert denied(store, PAN_TOKEN) is None and world.available("a") == 350
    assert charges(world)["unpaid_total"] == 0
    assert sorted(c["status"] for c in charges(world)["data"]) == ["charged", "settled"]
    books(store)


def test_a_card_with_no_linked_wallet_owes_its_fares_until_it_is_linked(world, config, store):
    publish(config)
    ride(world, UID_TOKEN, ("08:00", "7"))
    assert run(world)["unpaid"] == {"count": 1, "amount": 200}
    assert denied(store, UID_TOKEN)["reason"] == "unpaid fare"
    world.top_up("b", 1000)
    link(world, UID_TOKEN, "b")
    assert charges(world, "b", status="unpaid")["unpaid_total"] == 200
    assert run(world)["debts_collected"]["amount"] == 200
    assert denied(store, UID_TOKEN) is None and world.available("b") == 800
    books(store)


def test_a_wallet_settles_its_own_debt_and_no_one_elses(world, config, store):
    publish(config)
    link(world)
    ride(world, PAN_TOKEN, ("07:00", "12"))
    run(world)
    debt = charges(world, status="unpaid")["data"][0]
    wallet_id, api = world.wallet("a")
    error(api.post(f"/v1/fare-charges/debts/{debt['id']}/settle"), 402, "payment_error", "insufficient_funds")
    _, other = world.wallet("b")
    world.top_up("b", 1000)
    error(other.post(f"/v1/fare-charges/debts/{debt['id']}/settle"), 404, "not_found")
    error(other.get(f"/v1/wallets/{wallet_id}/fare-charges"), 404, "not_found")
    world.top_up("a", 300)
    settled = ok(api.post(f"/v1/fare-charges/debts/{debt['id']}/settle"))
    assert (settled["status"], settled["wallet_id"], settled["amount"]) == ("settled", wallet_id, 200)
    assert denied(store, PAN_TOKEN) is None and world.available("a") == 100 and world.available("b") == 1000
    error(api.post(f"/v1/fare-charges/debts/{debt['id']}/settle"), 409, "conflict", "not_unpaid")
    assert run(world)["debts_collected"]["count"] == 0  # the run does not collect it twice
    books(store)


def test_collecting_a_debt_leaves_an_operators_own_deny_entry_alone(world, config, store):
    publish(config)
    link(world)
    ok(world.operator.post("/v1/issuer/deny-list", {"entry": PAN_TOKEN, "kind": "token", "reason": "reported stolen"}),
       201)
    ride(world, PAN_TOKEN, ("07:00", "12"))
    run(world)
    world.top_up("a", 500)
    assert run(world)["debts_collected"]["count"] == 1
    assert denied(store, PAN_TOKEN)["reason"] == "reported stolen"


def test_charges_per_route_and_token_revenue_per_hour(world, config, store):
    publish(config)
    link(world)
    world.top_up("a", 1000)
    ride(world, PAN_TOKEN, ("07:00", "12"), ("07:40", "7"), ("12:00", "12"))
    ride(world, UID_TOKEN, ("07:10", "12"))  # no wallet: owed
    run(world)
    by_route = ok(world.operator.get(f"/v1/fare-charges?day={DAY}"))["data"]
    assert [(r["route"], r["trips"], r["collected"], r["unpaid"]) for r in by_route] == [
        ("12", 3, 400, 200), ("7", 1, 100, 0)]
    hours = ok(world.operator.get(f"/v1/fare-charges/revenue?day={DAY}"))["data"]
    assert [(h["route"], h["hour"], h["trips"], h["token_revenue"], h["unpaid"]) for h in hours] == [
        ("12", "2026-11-26T23:00:00Z", 2, 200, 200), ("12", "2026-11-27T04:00:00Z", 1, 200, 0),
        ("7", "2026-11-26T23:00:00Z", 1, 100, 0)]
    _, merchant_y = world.merchant("y")
    assert ok(merchant_y.get(f"/v1/fare-charges/revenue?day={DAY}"))["data"] == []
    _, merchant_x = world.merchant("x")
    assert len(ok(merchant_x.get(f"/v1/fare-charges?day={DAY}"))["data"]) == 2


def test_bad_requests_get_one_clear_error_and_charge_nothing(world, config, store):
    error(world.operator.post("/v1/fare-charges/runs", {"day": DAY}), 409, "conflict", "no_fare_rules")
    (config.data_dir / "fare_rules.json").write_text('{"version": "one"}')  # an old gateway's file, broken
    r = world.operator.post("/v1/fare-charges/runs", {"day": DAY})
    assert "fare_rules.json" not in r.get_data(as_text=True)
    error(r, 409, "conflict", "no_fare_rules")
    publish(config)
    error(world.operator.post("/v1/fare-charges/runs", {"day": "27/11/2026"}), 400, "invalid_request_error")
    error(world.operator.post("/v1/fare-charges/runs", {"day": DAY, "route": "12"}), 400, "invalid_request_error",
          "unknown_parameter")
    error(world.operator.get("/v1/fare-charges/revenue?day=tomorrow"), 400, "invalid_request_error")
    error(world.operator.get(f"/v1/fare-charges?day={DAY}&hour=1"), 400, "invalid_request_error")
    wallet_id, api = world.wallet("a")
    error(api.get(f"/v1/wallets/{wallet_id}/fare-charges?status=owed"), 400, "invalid_request_error")
    error(api.post("/v1/fare-charges/runs", {"day": DAY}), 403, "permission_error")


def test_the_charge_trips_command(world, config, store):
    runner = CliRunner()
    data = ["--data", str(config.data_dir)] + (["--database", config.database_url] if config.database_url else [])
    result = runner.invoke(gateway_cli, ["charge-trips", *data, "--day", DAY])
    assert result.exit_code == 1 and "no fare rules published" in result.output
    (config.data_dir / "fare_rules.json").write_text(json.dumps(RULES))
    link(world)
    world.top_up("a", 1000)
    ride(world, PAN_TOKEN, ("07:00", "12"), ("12:00", "12"))
    result = runner.invoke(gateway_cli, ["charge-trips", *data, "--day", DAY])
    assert result.exit_code == 0, result.output
    assert "charged 2 (4.00 CNY)" in result.output and "1 cards, 2 trips priced" in result.output
    again = runner.invoke(gateway_cli, ["charge-trips", *data, "--day", DAY])
    assert "charged 0 (0.00 CNY)" in again.output and world.available("a") == 600
    bad = runner.invoke(gateway_cli, ["charge-trips", *data, "--day", "someday"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output and "YYYY-MM-DD" in bad.output


def test_the_worked_example_of_docs_account_fares(world, config, store):
    publish(config)
    link(world)
    world.top_up("a", 450)
    ride(world, PAN_TOKEN, ("07:00", "12"), ("07:40", "7"), ("12:00", "12"))
    first = run(world)
    assert (first["charged"], first["unpaid"]) == ({"count": 2, "amount": 300}, {"count": 1, "amount": 200})
    assert denied(store, PAN_TOKEN)["reason"] == "unpaid fare" and charges(world)["unpaid_total"] == 200
    world.top_up("a", 1000)
    ride(world, PAN_TOKEN, ("18:00", "12"), terminal="y")
    second = run(world)
    assert (second["debts_collected"], second["allowed_tokens"], second["charged"]["count"], second["free"]) == (
        {"count": 1, "amount": 200}, 1, 0, 1)
    free = charges(world)["data"][0]
    assert free["status"] == "free" and "Daily cap for 2026-11-27 (adult, 5.00 CNY) reached" in free["statement"]
    assert run(world)["charged"]["count"] == 0 and run(world)["free"] == 0
    assert revenue(store, world, "x") == 500 and world.available("a") == 950 and denied(store, PAN_TOKEN) is None
    books(store)


def publish_refused(config, rules) -> str:
    with pytest.raises(DomainError) as refused:
        publish(config, rules)
    return refused.value.code


def test_fare_rules_are_published_once_per_version_and_every_node_reads_the_highest(world, config, store):
    first = publish(config)
    assert (first["version"], first["already_published"], first["effective_from"]) == (
        1, False, "2026-01-01T00:00:00Z")
    again = publish(config, dict(reversed(RULES.items())))  # the same document, its keys in another order
    assert again["already_published"] and again["digest"] == first["digest"]
    dearer = {**RULES, "products": {"city_flat": {"kind": "flat", "amount": 300}}}
    assert publish_refused(config, dearer) == "fare_rules_version_exists"  # version 1 is one document
    assert publish(config, {**dearer, "version": 3})["already_published"] is False
    assert publish_refused(config, {**RULES, "version": 2}) == "stale_fare_rules_version"
    assert publish_refused(config, {**RULES, "version": "four"}) == "invalid_fare_rules"
    # An old gateway's file no longer counts once the database has rules.
    (config.data_dir / "fare_rules.json").write_text(json.dumps({**RULES, "version": 9}))
    _, terminal = world.terminal("x")
    assert ok(terminal.get("/v1/taps/fare-rules")) == {**dearer, "version": 3}
    link(world)
    world.top_up("a", 1000)
    ride(world, PAN_TOKEN, ("07:00", "12"))
    summary = run(world)
    assert (summary["rules_version"], summary["charged"]["amount"]) == (3, 300)


def test_two_runs_at_once_charge_each_trip_once(app, world, config, store):
    publish(config)
    link(world)
    link(world, UID_TOKEN, "b")
    world.top_up("a", 5000)
    world.top_up("b", 5000)
    for day in range(6):
        on = f"2026-11-{20 + day:02d}"
        ride(world, PAN_TOKEN, ("07:00", "12"), ("07:40", "7"), ("12:00", "12"), day=on)
        ride(world, UID_TOKEN, ("08:00", "7"), day=on, terminal="y")
        barrier = threading.Barrier(2)
        answers = []

        def run_once():
            mine = world.operator.as_(world.operator.auth)
            mine.client = app.test_client()
            barrier.wait()
            answers.append(ok(mine.post("/v1/fare-charges/runs", {"day": on})))

        threads = [threading.Thread(target=run_once) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # one run charged the day; the other, waiting for it, found nothing left to charge
        nothing = {"count": 0, "amount": 0}
        assert sorted((a["charged"] == nothing, a["free"]) for a in answers)[-1] == (True, 0), answers
        assert sum(a["charged"]["count"] + a["free"] for a in answers) == 4, answers
    # a: 500 a day (its day cap) up to the week cap, 1200 (weeks from Monday the 23rd); b: 200 a day
    assert 10_000 - world.available("a") - world.available("b") == 2 * 1200 + 6 * 200
    assert revenue(store, world, "x") + revenue(store, world, "y") == 2 * 1200 + 6 * 200
    assert len(charges(world)["data"]) == 6 * 3 and len(charges(world, "b")["data"]) == 6
    books(store)
