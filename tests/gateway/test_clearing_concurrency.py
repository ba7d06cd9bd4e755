"""Many writers at once (on PostgreSQL: each request in its own transaction beside the
others, as on two gateway nodes): one upload sent twice at once stores each tap once and
clears each receipt once; uploads of one card's taps from two buses at once clear its
chain in counter order."""
from __future__ import annotations

import threading

from gateway.core import clearing
from tests.gateway.fixtures import books, ok
from tests.gateway.test_clearing import Rider, account
from tests.gateway.test_taps import token_row


def at_once(app, api, bodies: list[dict]) -> list:
    """POST each body to /v1/taps from its own thread and client, all released together."""
    barrier = threading.Barrier(len(bodies))
    answers: list = [None] * len(bodies)

    def send(n):
        mine = api.as_(api.auth)
        mine.client = app.test_client()
        barrier.wait()
        answers[n] = mine.post("/v1/taps", bodies[n])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [ok(a) for a in answers]


def revenue(store, world) -> int:
    found = account(store, clearing.revenue_account_id(world.merchant("x")[0], "CNY"))
    return found["balance"] if found else 0


def test_one_upload_sent_twice_at_once_stores_each_tap_once_and_clears_each_receipt_once(app, world, store,
                                                                                        clock):
    world.top_up("a", 20_000)
    riders = [Rider(world) for _ in range(3)]
    for rider in riders:
        rider.load(2_000)
    _, api = world.terminal("x")
    for round_ in range(4):
        rows = [rider.tap(clock) for _ in range(2) for rider in riders]
        rows += [token_row(round_ * 10 + n, id=f"race-{round_}-{n}") for n in range(3)]
        first, second = at_once(app, api, [{"taps": rows}, {"taps": rows}])
        for n, row in enumerate(rows):
            assert sorted(a["results"][n]["status"] for a in (first, second)) == ["accepted", "duplicate"], row["id"]
            # the duplicate says where the accepted one's clearing ended
            assert first["results"][n]["clearing"] == second["results"][n]["clearing"]
        assert first["accepted"] + second["accepted"] == len(rows)
        assert {r["clearing"] for r in first["results"][:6]} == {"posted"}
    assert revenue(store, world) == 4 * 6 * 200
    for rider in riders:
        assert account(store, clearing.float_account_id(rider.card_id))["balance"] == rider.balance == 2_000 - 8 * 200
    books(store)


def test_one_cards_taps_from_two_buses_at_once_clear_in_counter_order(app, world, store, clock):
    world.top_up("a", 20_000)
    rider = Rider(world)
    rider.load(5_000)
    _, bus_x = world.terminal("x")
    for _ in range(4):
        rows = [rider.tap(clock) for _ in range(4)]
        # Each bus has two of the card's taps, interleaved: neither upload alone is a complete chain.
        answers = at_once(app, bus_x, [{"taps": rows[0::2]}, {"taps": rows[1::2]}])
        assert all(a["accepted"] == 2 for a in answers)
    view = ok(world.operator.get(f"/v1/purse-cards/{rider.card_id}"))
    assert (view["cleared_counter"], view["cleared_balance"], view["waiting"]) == (
        rider.store.state.counter, rider.balance, [])
    assert revenue(store, world) == 16 * 200 and view["float_balance"] == rider.balance
    books(store)
