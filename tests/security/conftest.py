"""The security suite's one gateway per module: an app over a temp data dir with a scene
of every kind of object, made through the API, and a caller for each role.

    def test_x(scene):
        scene.callers["wallet"].get(f"/v1/wallets/{scene.ids['wallet_id']}")

The app keeps real time (terminals sign with it) and runs its store at
synchronous=NORMAL: these tests are about answers, not durability, and make thousands
of requests.
"""
from __future__ import annotations

import io
import itertools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from werkzeug.wrappers import Request

from gateway.config import Config
from gateway.http.app import create_app
from gateway.http.runtime import utc_now
from gateway.http.auth import operator_key
from gateway.store import SQLiteStore
from protocol import request_signing
from tests.gateway.fixtures import Api, ok

ROLES = ("operator", "merchant", "wallet", "terminal")


class RealClock:
    def __call__(self):
        return utc_now()


@dataclass
class Scene:
    """The app, a caller per role (the merchant is a biller, so bills are in reach; the
    terminal is its till) and the ids of objects each role may see, by path parameter
    name (`wallet_id`, `payment_id` ...). `others` are objects of another merchant and
    wallet, for access-control checks."""
    app: object
    store: SQLiteStore
    config: Config
    callers: dict = field(default_factory=dict)
    ids: dict = field(default_factory=dict)
    others: dict = field(default_factory=dict)
    dead: dict = field(default_factory=dict)    # credentials rolled, revoked or suspended, by what they are

    def anonymous(self) -> Api:
        return Api(self.app.test_client(), RealClock(), None)


def build_scene(root: Path) -> Scene:
    config = Config(root / "gateway")
    store = SQLiteStore(config.db_path, synchronous="NORMAL")
    app = create_app(config, store=store)
    clock = RealClock()
    operator = Api(app.test_client(), clock, operator_key(config))
    scene = Scene(app, store, config, callers={"operator": operator})

    biller = ok(operator.post("/v1/billers", {"name": "Harbour Water", "city": "Hangzhou"}), 201)
    merchant = operator.as_(biller["api_key"])
    other = ok(operator.post("/v1/merchants", {"name": "Other Shop"}), 201)
    till = ok(operator.post("/v1/terminals", {"merchant_id": biller["id"], "name": "till 1"}), 201)
    terminal = operator.as_((till["key_id"], bytes.fromhex(till["secret"])))
    wallets = {}
    for name in ("a", "b"):
        customer = ok(operator.post("/v1/customers", {"name": f"Rider {name}"}), 201)
        wallet = ok(operator.post("/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"}), 201)
        ok(operator.post("/v1/topups", {"wallet_id": wallet["id"], "amount": 1_000_000, "currency": "CNY"}), 201)
        wallets[name] = (customer, wallet, operator.as_(wallet["credential"]))
    customer, wallet, payer = wallets["a"]
    scene.callers.update(merchant=merchant, wallet=payer, terminal=terminal)

    topup = ok(payer.post("/v1/topups", {"wallet_id": wallet["id"], "amount": 100, "currency": "CNY"}), 201)
    payment = ok(payer.post("/v1/payments", {"merchant_id": biller["id"], "amount": 5000, "currency": "CNY"}), 201)
    refund = ok(merchant.post("/v1/refunds", {"payment_id": payment["id"], "amount": 10}), 201)
    code = ok(payer.post(f"/v1/wallets/{wallet['id']}/pay_codes"), 201)["code"]
    auth = ok(terminal.post("/v1/pos/authorizations", {"pay_code": code, "amount": 100, "currency": "CNY"}), 201)
    endpoint = ok(merchant.post("/v1/webhook_endpoints", {"url": "https://hooks.example/tapstack"}), 201)
    event = ok(merchant.get("/v1/events"))["data"][0]
    bill = ok(merchant.post("/v1/bills", {"consumer_number": "C-1", "period": "2026-11", "amount_due": 3000,
                                          "currency": "CNY", "due_date": "2099-12-31"}), 201)
    bill_payment = ok(payer.post(f"/v1/bills/{bill['id']}/payments", {"amount": 3000}), 201)
    open_bill = ok(merchant.post("/v1/bills", {"consumer_number": "C-2", "period": "2026-12", "amount_due": 800,
                                               "currency": "CNY", "due_date": "2099-12-31"}), 201)
    ok(merchant.post(f"/v1/merchants/{biller['id']}/qr-profile", {"city": "Hangzhou"}), 200)
    checkout = ok(terminal.post("/v1/checkouts", {"amount": 700, "currency": "CNY"}), 201)
    link_code = ok(payer.post(f"/v1/wallets/{wallet['id']}/card-links"), 201)["code"]
    ok(operator.post("/v1/issuer/deny-list", {"entry": "00112233445566ff", "kind": "card_id", "reason": "lost"}), 201)
    scene.ids = {
        "customer_id": customer["id"], "wallet_id": wallet["id"], "merchant_id": biller["id"],
        "biller_id": biller["id"], "terminal_id": till["id"], "topup_id": topup["id"],
        "payment_id": payment["id"], "refund_id": refund["id"], "auth_id": auth["id"],
        "endpoint_id": endpoint["id"], "event_id": event["id"], "bill_id": open_bill["id"],
        "paid_bill_id": bill["id"], "bill_payment_id": bill_payment["id"], "checkout_id": checkout["id"],
        "code": link_code, "entry": "00112233445566ff", "card_id": "00112233445566ff",
        "link_id": "cl_000000000000000000000000", "charge_id": "fc_000000000000000000000000",
        "key_id": ok(merchant.get(f"/v1/merchants/{biller['id']}/api_keys"))["data"][0]["id"],
    }
    # Another merchant's and another wallet's objects: what access-control checks reach for.
    b_customer, b_wallet, b_payer = wallets["b"]
    other_shop = operator.as_(other["api_key"])
    other_till = ok(operator.post("/v1/terminals", {"merchant_id": other["id"]}), 201)
    b_payment = ok(b_payer.post("/v1/payments", {"merchant_id": other["id"], "amount": 900, "currency": "CNY"}), 201)
    scene.others = {
        "merchant_id": other["id"], "biller_id": other["id"], "wallet_id": b_wallet["id"],
        "customer_id": b_customer["id"], "terminal_id": other_till["id"], "payment_id": b_payment["id"],
        "topup_id": ok(b_payer.post("/v1/topups", {"wallet_id": b_wallet["id"], "amount": 5, "currency": "CNY"}),
                       201)["id"],
        "refund_id": ok(other_shop.post("/v1/refunds", {"payment_id": b_payment["id"], "amount": 1}), 201)["id"],
        "event_id": ok(other_shop.get("/v1/events"))["data"][0]["id"],
        "key_id": ok(other_shop.get(f"/v1/merchants/{other['id']}/api_keys"))["data"][0]["id"],
    }
    # Credentials that no longer work, each as its role would send it: a merchant key rolled
    # with no overlap, the key that roll gave once revoked, a revoked wallet credential, a
    # suspended terminal and a revoked one.
    rolled = ok(operator.post(f"/v1/merchants/{other['id']}/api_keys/roll", {"expires_in": 0}), 201)
    ok(operator.post(f"/v1/merchants/{other['id']}/api_keys/{rolled['id']}/revoke"))
    ok(operator.post(f"/v1/wallets/{b_wallet['id']}/credential/revoke"))
    ok(operator.post(f"/v1/terminals/{other_till['id']}/suspend"))
    gone = ok(operator.post("/v1/terminals", {"merchant_id": other["id"]}), 201)
    ok(operator.post(f"/v1/terminals/{gone['id']}/revoke"))
    scene.dead = {"merchant key rolled": other_shop, "merchant key revoked": operator.as_(rolled["secret"]),
                  "wallet credential revoked": b_payer,
                  "terminal suspended": operator.as_((other_till["key_id"], bytes.fromhex(other_till["secret"]))),
                  "terminal revoked": operator.as_((gone["key_id"], bytes.fromhex(gone["secret"])))}
    return scene


def real_ids(scene: Scene, path: str) -> dict:
    """The scene's objects for a documented path's parameters (a bill payment's id is not a payment's)."""
    if path.startswith("/v1/bill-payments/"):
        return {"payment_id": scene.ids["bill_payment_id"]}
    return {name: scene.ids[name] for name in re.findall(r"{(\w+)}", path)}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    s = build_scene(tmp_path_factory.mktemp("security"))
    yield s
    s.store.close()


class Signing:
    """WSGI layer that sends every request as `role` of the scene: a bearer key, or a
    terminal's signature over the request as it arrives (for tools such as schemathesis
    that build requests themselves)."""

    def __init__(self, scene: Scene, role: str):
        self.scene, self.role = scene, role
        self._nonces = itertools.count()

    def __call__(self, environ, start_response):
        auth = self.scene.callers[self.role].auth
        if isinstance(auth, tuple):
            request = Request(environ)
            body = request.get_data(cache=True)
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
            query = request.query_string.decode("latin-1")
            headers = request_signing.signed_headers(
                auth[0], auth[1], environ["REQUEST_METHOD"], request.path + ("?" + query if query else ""), body,
                timestamp=int(time.time()), nonce=f"security-{next(self._nonces):016d}")
            for name, value in headers.items():
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        else:
            environ.setdefault("HTTP_AUTHORIZATION", f"Bearer {auth}")
        return self.scene.app(environ, start_response)
