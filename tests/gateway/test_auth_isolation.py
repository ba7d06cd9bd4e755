"""No caller reads or moves another's money or objects.

For every resource and verb: the owner succeeds, another caller of the same kind gets
exactly the 404 a missing id gets (so ids cannot be probed), and a caller of a kind
the endpoint does not serve gets 403. No refused request moves money."""
from __future__ import annotations

import pytest

from tests.gateway.fixtures import error, ok


@pytest.fixture
def scene(world):
    """Wallet a pays merchant x, wallet b pays merchant y; x refunds part; x's till holds a."""
    ids = {}
    ids["top_a"] = world.top_up("a", 1000)["id"]
    ids["top_b"] = world.top_up("b", 1000)["id"]
    ids["pay_ax"] = world.pay("a", "x", 300)["id"]
    ids["pay_by"] = world.pay("b", "y", 300)["id"]
    _, merchant_x = world.merchant("x")
    ids["re_ax"] = ok(merchant_x.post("/v1/refunds", {"payment_id": ids["pay_ax"], "amount": 10}), 201)["id"]
    _, till_x = world.terminal("x")
    ids["auth_ax"] = ok(till_x.post("/v1/pos/authorizations", {
        "pay_code": world.pay_code("a"), "amount": 100, "currency": "CNY"}), 201)["id"]
    for name in ("a", "b"):
        ids[f"wal_{name}"] = world.wallet(name)[0]
    for name in ("x", "y"):
        ids[f"mer_{name}"] = world.merchant(name)[0]
        ids[f"term_{name}"] = world.terminal(name)[0]
    ids["cus_a"] = ok(world.operator.get(f"/v1/wallets/{ids['wal_a']}"))["customer_id"]
    return world, ids


def actor(world, name):
    kind, who = name.split(":")
    return {"wallet": world.wallet, "merchant": world.merchant, "terminal": world.terminal}[kind](who)[1]


# (actor, method, path, body, expected status). The first row of each group is the
# owner's own request, proving the path works; the others must fail.
CASES = [
    # customers: the operator's alone
    ("wallet:a", "GET", "/v1/customers/{cus_a}", None, 403),
    ("merchant:x", "GET", "/v1/customers/{cus_a}", None, 403),
    ("terminal:x", "GET", "/v1/customers/{cus_a}", None, 403),
    # wallets
    ("wallet:a", "GET", "/v1/wallets/{wal_a}", None, 200),
    ("wallet:b", "GET", "/v1/wallets/{wal_a}", None, 404),
    ("merchant:x", "GET", "/v1/wallets/{wal_a}", None, 403),
    ("terminal:x", "GET", "/v1/wallets/{wal_a}", None, 403),
    ("wallet:a", "GET", "/v1/wallets/{wal_a}/balance", None, 200),
    ("wallet:b", "GET", "/v1/wallets/{wal_a}/balance", None, 404),
    ("merchant:x", "GET", "/v1/wallets/{wal_a}/balance", None, 403),
    ("wallet:a", "GET", "/v1/wallets/{wal_a}/statement", None, 200),
    ("wallet:b", "GET", "/v1/wallets/{wal_a}/statement", None, 404),
    ("terminal:x", "GET", "/v1/wallets/{wal_a}/statement", None, 403),
    ("wallet:a", "POST", "/v1/wallets/{wal_a}/pay_codes", {}, 201),
    ("wallet:b", "POST", "/v1/wallets/{wal_a}/pay_codes", {}, 404),
    ("merchant:x", "POST", "/v1/wallets/{wal_a}/pay_codes", {}, 403),
    ("terminal:x", "POST", "/v1/wallets/{wal_a}/pay_codes", {}, 403),
    ("wallet:a", "POST", "/v1/wallets", {"customer_id": "{cus_a}", "currency": "CNY"}, 403),
    # top-ups
    ("wallet:a", "POST", "/v1/topups", {"wallet_id": "{wal_a}", "amount": 5, "currency": "CNY"}, 201),
    ("wallet:b", "POST", "/v1/topups", {"wallet_id": "{wal_a}", "amount": 5, "currency": "CNY"}, 404),
    ("merchant:x", "POST", "/v1/topups", {"wallet_id": "{wal_a}", "amount": 5, "currency": "CNY"}, 403),
    ("terminal:x", "POST", "/v1/topups", {"wallet_id": "{wal_a}", "amount": 5, "currency": "CNY"}, 403),
    ("wallet:a", "GET", "/v1/topups/{top_a}", None, 200),
    ("wallet:b", "GET", "/v1/topups/{top_a}", None, 404),
    ("merchant:x", "GET", "/v1/topups/{top_a}", None, 403),
    # merchants
    ("merchant:x", "GET", "/v1/merchants/{mer_x}", None, 200),
    ("merchant:y", "GET", "/v1/merchants/{mer_x}", None, 404),
    ("terminal:x", "GET", "/v1/merchants/{mer_x}", None, 403),
    ("wallet:a", "GET", "/v1/merchants/{mer_x}", None, 403),
    ("merchant:x", "GET", "/v1/merchants/{mer_x}/balance", None, 200),
    ("merchant:y", "GET", "/v1/merchants/{mer_x}/balance", None, 404),
    ("terminal:x", "GET", "/v1/merchants/{mer_x}/balance", None, 403),
    ("merchant:x", "GET", "/v1/merchants/{mer_x}/statement", None, 200),
    ("merchant:y", "GET", "/v1/merchants/{mer_x}/statement", None, 404),
    ("terminal:x", "GET", "/v1/merchants/{mer_x}/statement", None, 403),
    ("merchant:x", "POST", "/v1/merchants", {"name": "clone"}, 403),
    # terminals
    ("terminal:x", "GET", "/v1/terminals/{term_x}", None, 200),
    ("terminal:y", "GET", "/v1/terminals/{term_x}", None, 404),
    ("merchant:y", "GET", "/v1/terminals/{term_x}", None, 404),
    ("wallet:a", "GET", "/v1/terminals/{term_x}", None, 403),
    ("merchant:x", "POST", "/v1/terminals", {"merchant_id": "{mer_x}"}, 403),
    ("terminal:x", "POST", "/v1/terminals", {"merchant_id": "{mer_x}"}, 403),
    # payments
    ("wallet:a", "GET", "/v1/payments/{pay_ax}", None, 200),
    ("wallet:b", "GET", "/v1/payments/{pay_ax}", None, 404),
    ("merchant:y", "GET", "/v1/payments/{pay_ax}", None, 404),
    ("terminal:x", "GET", "/v1/payments/{pay_ax}", None, 403),
    ("merchant:x", "POST", "/v1/payments", {"merchant_id": "{mer_x}", "amount": 1, "currency": "CNY"}, 403),
    ("terminal:x", "POST", "/v1/payments", {"merchant_id": "{mer_x}", "amount": 1, "currency": "CNY"}, 403),
    ("terminal:x", "GET", "/v1/payments", None, 403),
    # refunds
    ("merchant:x", "POST", "/v1/refunds", {"payment_id": "{pay_ax}", "amount": 1}, 201),
    ("merchant:y", "POST", "/v1/refunds", {"payment_id": "{pay_ax}", "amount": 1}, 404),
    ("terminal:x", "POST", "/v1/refunds", {"payment_id": "{pay_ax}", "amount": 1}, 201),
    ("terminal:y", "POST", "/v1/refunds", {"payment_id": "{pay_ax}", "amount": 1}, 404),
    ("wallet:a", "POST", "/v1/refunds", {"payment_id": "{pay_ax}", "amount": 1}, 403),
    ("wallet:a", "GET", "/v1/refunds/{re_ax}", None, 200),
    ("wallet:b", "GET", "/v1/refunds/{re_ax}", None, 404),
    ("merchant:y", "GET", "/v1/refunds/{re_ax}", None, 404),
    ("terminal:x", "GET", "/v1/refunds/{re_ax}", None, 403),
    # POS authorisations
    ("terminal:x", "GET", "/v1/pos/authorizations/{auth_ax}", None, 200),
    ("terminal:y", "GET", "/v1/pos/authorizations/{auth_ax}", None, 404),
    ("merchant:y", "GET", "/v1/pos/authorizations/{auth_ax}", None, 404),
    ("wallet:b", "GET", "/v1/pos/authorizations/{auth_ax}", None, 404),
    ("wallet:a", "GET", "/v1/pos/authorizations/{auth_ax}", None, 200),
    ("merchant:y", "POST", "/v1/pos/authorizations/{auth_ax}/capture", {}, 404),
    ("terminal:y", "POST", "/v1/pos/authorizations/{auth_ax}/capture", {}, 404),
    ("wallet:a", "POST", "/v1/pos/authorizations/{auth_ax}/capture", {}, 403),
    ("merchant:y", "POST", "/v1/pos/authorizations/{auth_ax}/void", {}, 404),
    ("terminal:y", "POST", "/v1/pos/authorizations/{auth_ax}/void", {}, 404),
    ("wallet:a", "POST", "/v1/pos/authorizations/{auth_ax}/void", {}, 403),
    ("wallet:a", "POST", "/v1/pos/authorizations", {"pay_code": "pc_x", "amount": 1, "currency": "CNY"}, 403),
    ("merchant:x", "POST", "/v1/pos/authorizations/{auth_ax}/capture", {"amount": 50}, 200),
    ("terminal:x", "POST", "/v1/pos/authorizations/{auth_ax}/void", {}, 200),
]


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _missing(path: str, ids: dict) -> str:
    """The same path with the scene's object id swapped for one that does not exist."""
    for name, value in ids.items():
        if value in path:
            prefix = value.split("_")[0]
            return path.replace(value, f"{prefix}_{'0' * 24}")
    return path


@pytest.mark.parametrize("who,method,path,body,status", CASES,
                         ids=[f"{c[0]} {c[1]} {c[2]} -> {c[4]}" for c in CASES])
def test_isolation(scene, nothing_moved, who, method, path, body, status):
    world, ids = scene
    api = actor(world, who)
    path, body = _fill(path, ids), _fill(body, ids)
    check = nothing_moved()
    send = (lambda p, b: api.get(p)) if method == "GET" else (lambda p, b: api.post(p, b))
    response = send(path, body)
    if status < 400:
        ok(response, status)
        return
    got = error(response, status, {403: "permission_error", 404: "not_found"}[status])
    check()
    if status == 404:
        # indistinguishable from an id that does not exist
        if method == "POST" and body:
            body = {k: (_missing(v, ids) if isinstance(v, str) and v in ids.values() else v)
                    for k, v in body.items()}
            missing = send(path, body)
        else:
            missing = send(_missing(path, ids), body)
        assert missing.status_code == 404
        assert missing.get_json() == {"error": got}


def test_lists_show_only_the_callers_own(scene):
    world, ids = scene
    _, wallet_b = world.wallet("b")
    _, merchant_y = world.merchant("y")
    assert [p["id"] for p in ok(wallet_b.get("/v1/payments"))["data"]] == [ids["pay_by"]]
    assert [p["id"] for p in ok(merchant_y.get("/v1/payments"))["data"]] == [ids["pay_by"]]
    for p in ok(merchant_y.get(f"/v1/payments?after={ids['pay_by']}"))["data"]:
        assert p["merchant_id"] == ids["mer_y"]
    # another's payment id is not a cursor into one's own list
    error(wallet_b.get(f"/v1/payments?after={ids['pay_ax']}"), 400, "invalid_request_error", "invalid_cursor")


def test_a_wallet_can_only_pay_from_itself(scene):
    """The payer is the authenticated wallet; there is no field to name another one."""
    world, ids = scene
    _, wallet_b = world.wallet("b")
    error(wallet_b.post("/v1/payments", {"wallet_id": ids["wal_a"], "merchant_id": ids["mer_x"],
                                         "amount": 1, "currency": "CNY"}),
          400, "invalid_request_error", "unknown_parameter")
