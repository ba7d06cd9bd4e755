"""Concessions: the operator sets a wallet's class (one of the fare rules' classes), the wallet's
GET shows it, and the charging run prices the wallet's linked cards at that class's rate and cap."""
from __future__ import annotations

from gateway.core import fare_charges
from tests.gateway.fixtures import START, error, ok
from tests.gateway.test_card_links import PAN_TOKEN
from tests.gateway.test_fare_charges import RULES, charges, link, ride, run

STUDENT = {"discount": {"kind": "percent", "percent": 50}, "caps": {"day": 250, "week": 800}}


def publish(config, rules: dict) -> None:
    """Publish through the database, as `tapstack gateway publish-fares` does, for every node."""
    store = config.open_store()
    try:
        store.write(lambda tx: fare_charges.publish_rules(tx, rules, now=START))
    finally:
        store.close()


def publish_with_student(config) -> None:
    publish(config, {**RULES, "concessions": {**RULES["concessions"], "student": STUDENT}})


def set_class(world, wallet: str, klass, *, key: str = "auto"):
    wallet_id, _ = world.wallet(wallet)
    return world.operator.post(f"/v1/wallets/{wallet_id}/concession", {"class": klass}, key=key)


def test_a_wallet_starts_adult_and_the_operator_makes_it_student(world, config):
    publish_with_student(config)
    wallet_id, api = world.wallet("a")
    assert ok(api.get(f"/v1/wallets/{wallet_id}"))["concession"] == "adult"
    answer = ok(set_class(world, "a", "student", key="conc-1"))
    assert answer["concession"] == "student" and answer["id"] == wallet_id
    assert ok(set_class(world, "a", "student", key="conc-1")) == answer  # a retry does nothing twice
    assert ok(api.get(f"/v1/wallets/{wallet_id}"))["concession"] == "student"
    assert ok(world.operator.get(f"/v1/wallets/{wallet_id}"))["concession"] == "student"


def test_a_students_trips_are_charged_at_the_student_rate_up_to_the_student_cap(world, config, store):
    publish_with_student(config)
    link(world)
    world.top_up("a", 2000)
    ok(set_class(world, "a", "student"))
    # three flat 2.00 CNY boardings hours apart: 1.00 each for a student, capped at 2.50 a day
    ride(world, PAN_TOKEN, ("07:00", "12"), ("12:00", "12"), ("18:00", "12"))
    summary = run(world)
    assert summary["charged"] == {"count": 3, "amount": 250}
    amounts = sorted(c["amount"] for c in charges(world)["data"])
    assert amounts == [50, 100, 100]
    assert ok(world.wallet("a")[1].get(f"/v1/wallets/{world.wallet('a')[0]}/balance"))["available"] == 2000 - 250


def test_an_adult_beside_the_student_pays_the_adult_rate(world, config, store):
    publish_with_student(config)
    adult_token = "pan_" + PAN_TOKEN[4:][::-1]
    link(world)  # wallet a: student
    link(world, adult_token, "b")  # wallet b: adult
    world.top_up("a", 2000)
    world.top_up("b", 2000)
    ok(set_class(world, "a", "student"))
    ride(world, PAN_TOKEN, ("07:00", "12"))
    ride(world, adult_token, ("07:05", "12"))
    run(world)
    assert [c["amount"] for c in charges(world, "a")["data"]] == [100]
    assert [c["amount"] for c in charges(world, "b")["data"]] == [200]


def test_only_the_operator_sets_a_class_and_only_one_the_rules_know(world, config):
    publish_with_student(config)
    wallet_id, wallet_api = world.wallet("a")
    _, merchant_api = world.merchant("x")
    for caller in (wallet_api, merchant_api):
        answer = caller.post(f"/v1/wallets/{wallet_id}/concession", {"class": "student"})
        assert answer.status_code in (403, 404)
    assert ok(wallet_api.get(f"/v1/wallets/{wallet_id}"))["concession"] == "adult"
    bad = error(set_class(world, "a", "pensioner"), 400, "invalid_request_error")
    assert bad["param"] == "class" and "pensioner" in bad["message"]
    assert error(set_class(world, "a", 7), 400, "invalid_request_error")["param"] == "class"
    error(world.operator.post("/v1/wallets/wal_nope/concession", {"class": "student"}), 404, "not_found")
    assert ok(wallet_api.get(f"/v1/wallets/{wallet_id}"))["concession"] == "adult"


def test_without_published_rules_there_is_no_class_to_choose(world):
    error(set_class(world, "a", "student"), 409, "conflict", "no_fare_rules")


def test_a_wallet_whose_class_the_rules_no_longer_know_is_held_not_charged(world, config, store):
    publish_with_student(config)
    link(world)
    world.top_up("a", 2000)
    ok(set_class(world, "a", "student"))
    publish(config, {**RULES, "version": RULES["version"] + 1})  # student withdrawn
    ride(world, PAN_TOKEN, ("07:00", "12"))
    summary = run(world)
    assert summary["held"] == 1 and summary["charged"]["count"] == 0
    assert charges(world)["data"] == []
