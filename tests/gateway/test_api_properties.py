"""Random sequences of API calls against a model: balances match, the books balance,
refunds never exceed payments, and every refusal is a clean 4xx in the one shape."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.http.runtime import Runtime
from gateway.http.auth import operator_key
from tests.gateway.fixtures import START, Api, Clock, World, books

WALLETS, MERCHANTS = ("a", "b"), ("x", "y")
# mostly amounts that can succeed, sometimes ones that never can
amounts = st.one_of(st.integers(1, 800), st.integers(1, 800), st.sampled_from([0, -1, 10**12]))
operations = st.lists(st.one_of(
    st.tuples(st.just("topup"), st.sampled_from(WALLETS), amounts),
    st.tuples(st.just("pay"), st.sampled_from(WALLETS), st.sampled_from(MERCHANTS), amounts),
    # refunds aim at the first few payments, often twice, so over-refunds come up
    st.tuples(st.just("refund"), st.integers(0, 2), st.one_of(st.none(), st.integers(1, 400), amounts)),
    st.tuples(st.just("hold"), st.sampled_from(WALLETS), st.sampled_from(MERCHANTS), amounts),
    st.tuples(st.just("capture"), st.integers(0, 2), st.one_of(st.none(), amounts)),
    st.tuples(st.just("void"), st.integers(0, 2)),
), min_size=5, max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_the_api_keeps_the_model_and_the_books(_shared_app, template, backend, ops):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "gateway"
        shutil.copytree(template[0], root)
        backend.restore_template()
        config, clock = backend.config(root), Clock(START)
        store = backend.store(config)
        try:
            _shared_app.extensions["tapstack"] = Runtime(config, store, clock)
            operator = Api(_shared_app.test_client(), clock, operator_key(config))
            run(World(operator, template[1]), ops, store)
        finally:
            store.close()
            config.close()


def run(world: World, ops, store) -> None:
    available = {w: 0 for w in WALLETS}
    held = {w: 0 for w in WALLETS}
    earned = {m: 0 for m in MERCHANTS}
    payments, holds = [], []  # [id, wallet, merchant, amount, refunded]; [id, wallet, merchant, amount, open]

    def expect(response, good: bool):
        if good:
            assert response.status_code in (200, 201), response.get_data(as_text=True)
        else:
            assert 400 <= response.status_code < 500, response.get_data(as_text=True)
            assert set(response.get_json()["error"]) == {"type", "code", "message", "param"}
        return response.get_json()

    valid = lambda amount: amount is not None and 1 <= amount <= 10**10  # noqa: E731
    for w in WALLETS:
        world.top_up(w, 2000)
        available[w] = 2000
    for op in ops:
        if op[0] == "topup":
            _, w, amount = op
            expect(world.operator.post("/v1/topups", {"wallet_id": world.wallet(w)[0], "amount": amount,
                                                      "currency": "CNY"}), valid(amount))
            if valid(amount):
                available[w] += amount
        elif op[0] in ("pay", "hold"):
            _, w, m, amount = op
            good = valid(amount) and amount <= available[w]
            if op[0] == "pay":
                body = expect(world.wallet(w)[1].post("/v1/payments", {
                    "merchant_id": world.merchant(m)[0], "amount": amount, "currency": "CNY"}), good)
                if good:
                    payments.append([body["id"], w, m, amount, 0])
                    earned[m] += amount
            else:
                body = expect(world.terminal(m)[1].post("/v1/pos/authorizations", {
                    "pay_code": world.pay_code(w), "amount": amount, "currency": "CNY"}), good)
                if good:
                    holds.append([body["id"], w, m, amount, True])
                    held[w] += amount
            if good:
                available[w] -= amount
        elif op[0] == "refund" and payments:
            _, i, amount = op
            p = payments[i % len(payments)]
            left = p[3] - p[4]
            good = left > 0 and (amount is None or (valid(amount) and amount <= left))
            expect(world.merchant(p[2])[1].post("/v1/refunds", {"payment_id": p[0]} | (
                {} if amount is None else {"amount": amount})), good)
            if good:
                n = left if amount is None else amount
                p[4] += n
                available[p[1]] += n
                earned[p[2]] -= n
        elif op[0] in ("capture", "void") and holds:
            h = holds[op[1] % len(holds)]
            amount = op[2] if op[0] == "capture" else None
            good = h[4] and (amount is None or (valid(amount) and amount <= h[3]))
            path = f"/v1/pos/authorizations/{h[0]}/{op[0]}"
            body = expect(world.terminal(h[2])[1].post(path, {} if amount is None else {"amount": amount}), good)
            if good:
                h[4] = False
                held[h[1]] -= h[3]
                taken = (h[3] if amount is None else amount) if op[0] == "capture" else 0
                available[h[1]] += h[3] - taken
                earned[h[2]] += taken
                if taken:
                    payments.append([body["payment_id"], h[1], h[2], taken, 0])
    assert {w: world.available(w) for w in WALLETS} == available
    assert {m: world.merchant_available(m) for m in MERCHANTS} == earned
    assert books(store)[0]
