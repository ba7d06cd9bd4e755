"""Webhooks over HTTP: a merchant registers an endpoint, a payment emits an event in its
own transaction, the deliverer posts it signed, and the merchant reads events and attempts."""
import functools
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.core import webhooks
from gateway.http import delivery
from tests.gateway.fixtures import START as T0
from tests.gateway.fixtures import GatewayApp

try:
    from tests.gateway.webhook_receiver import Receiver
except ImportError:
    sys.path.insert(0, str(Path(__file__).parent))
    from webhook_receiver import Receiver

class Gateway(GatewayApp):
    def merchant(self, name="Corner Shop"):
        m = self.ok("POST", "/v1/merchants", self.operator, {"name": name, "currency": "CNY"})
        return m["id"], m["api_key"]

    def funded_wallet(self, amount=10_000):
        customer = self.ok("POST", "/v1/customers", self.operator, {"name": "Payer"})
        w = self.ok("POST", "/v1/wallets", self.operator, {"customer_id": customer["id"], "currency": "CNY"})
        self.ok("POST", "/v1/topups", self.operator, {"wallet_id": w["id"], "amount": amount, "currency": "CNY"})
        return w["id"], w["credential"]

    def unix(self):
        return self.now.timestamp()


@pytest.fixture
def gw(tmp_path, backend):
    gateway = Gateway(tmp_path, backend=backend)
    gateway.config.allow_private_webhooks = True  # the receiver listens on loopback
    yield gateway
    gateway.close()


def test_a_payment_reaches_the_merchants_endpoint_signed(gw):
    merchant_id, api_key = gw.merchant()
    _, wallet = gw.funded_wallet()
    with Receiver(now=gw.unix) as rx:
        endpoint = gw.ok("POST", "/v1/webhook_endpoints", api_key,
                         {"url": rx.url, "event_types": ["payment.succeeded"]})
        rx.secret = endpoint["secret"]
        payment = gw.ok("POST", "/v1/payments", wallet,
                        {"merchant_id": merchant_id, "amount": 1250, "currency": "CNY"})
        assert delivery.Deliverer(gw.store, lambda: gw.now, gw.config.secret(webhooks.SEAL), post=functools.partial(
            delivery.http_post, private_targets=True)).deliver_due() == 1
    [got] = rx.received
    assert got["verified"]
    events = gw.ok("GET", "/v1/events", api_key)["data"]
    assert [e["id"] for e in events] == [got["id"]]
    assert events[0]["type"] == "payment.succeeded"
    assert events[0]["data"]["id"] == payment["id"] and events[0]["data"]["amount"] == 1250
    [sent] = gw.ok("GET", f"/v1/events/{got['id']}/deliveries", api_key)["data"]
    assert sent["status"] == "succeeded" and sent["attempts"][0]["status_code"] == 200


def test_endpoints_create_list_delete_and_the_secret_is_shown_once(gw):
    _, api_key = gw.merchant()
    created = gw.ok("POST", "/v1/webhook_endpoints", api_key, {"url": "https://shop.example/hooks"})
    assert created["secret"].startswith("whsec_") and created["event_types"] == ["*"]
    listed = gw.ok("GET", "/v1/webhook_endpoints", api_key)["data"]
    assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
    assert gw.ok("DELETE", f"/v1/webhook_endpoints/{created['id']}", api_key)["deleted"] is True
    assert gw.ok("GET", "/v1/webhook_endpoints", api_key)["data"] == []
    r = gw.call("DELETE", f"/v1/webhook_endpoints/{created['id']}", api_key)
    assert r.status_code == 404 and r.get_json()["error"]["type"] == "not_found"


def test_a_merchant_sees_only_its_own_endpoints_and_events(gw):
    mine, my_key = gw.merchant("Mine")
    _, their_key = gw.merchant("Theirs")
    _, wallet = gw.funded_wallet()
    endpoint = gw.ok("POST", "/v1/webhook_endpoints", my_key, {"url": "https://mine.example/h"})
    gw.ok("POST", "/v1/payments", wallet, {"merchant_id": mine, "amount": 100, "currency": "CNY"})
    [event] = gw.ok("GET", "/v1/events", my_key)["data"]
    assert gw.ok("GET", "/v1/events", their_key)["data"] == []
    assert gw.call("GET", f"/v1/events/{event['id']}", their_key).status_code == 404
    assert gw.call("GET", f"/v1/events/{event['id']}/deliveries", their_key).status_code == 404
    assert gw.call("DELETE", f"/v1/webhook_endpoints/{endpoint['id']}", their_key).status_code == 404


@pytest.mark.parametrize("body,param", [
    ({"url": "ftp://x.example/"}, "url"),
    ({"url": "https://x.example/", "event_types": ["payment.refused"]}, "event_types"),
    ({"url": "https://x.example/", "event_types": []}, "event_types"),
    ({"url": "https://x.example/", "secret": "mine"}, "secret"),
    ({}, "url"),
])
def test_bad_endpoint_requests_are_a_400_naming_the_field(gw, body, param):
    _, api_key = gw.merchant()
    r = gw.call("POST", "/v1/webhook_endpoints", api_key, body)
    assert r.status_code == 400 and r.get_json()["error"]["param"] == param


def test_only_merchants_manage_endpoints(gw):
    _, wallet = gw.funded_wallet()
    assert gw.call("POST", "/v1/webhook_endpoints", wallet, {"url": "https://x.example/"}).status_code == 403
    assert gw.call("GET", "/v1/events", gw.operator).status_code == 403
    assert gw.call("GET", "/v1/events", None).status_code == 401


def test_events_page_with_after(gw):
    merchant_id, api_key = gw.merchant()
    _, wallet = gw.funded_wallet()
    for i in range(3):
        gw.now = T0 + timedelta(seconds=i)
        gw.ok("POST", "/v1/payments", wallet, {"merchant_id": merchant_id, "amount": 10 + i, "currency": "CNY"})
    first = gw.ok("GET", "/v1/events?limit=2", api_key)
    assert [e["data"]["amount"] for e in first["data"]] == [12, 11] and first["has_more"]
    rest = gw.ok("GET", f"/v1/events?limit=2&after={first['data'][-1]['id']}", api_key)
    assert [e["data"]["amount"] for e in rest["data"]] == [10] and not rest["has_more"]


def test_secrets_are_sealed_at_rest_rolled_by_the_merchant_and_endpoints_are_limited(gw):
    """On either backend: the database holds no signing secret (only a sealed value that opens
    under the gateway's key, on any node: the key is the deployment's); a roll answers a new
    secret once; a merchant's 17th endpoint is refused while 16 are enabled."""
    merchant_id, api_key = gw.merchant()
    created = gw.ok("POST", "/v1/webhook_endpoints", api_key, {"url": "https://hooks.example/a"})
    with gw.store.read() as tx:
        [row] = tx.query("SELECT secret, previous_secret FROM webhook_endpoints")
    assert row["secret"].startswith("v1.") and created["secret"] not in str(row)
    rolled = gw.ok("POST", f"/v1/webhook_endpoints/{created['id']}/roll_secret", api_key, {"expires_in": 0})
    assert rolled["secret"].startswith("whsec_") and rolled["secret"] != created["secret"]
    assert rolled["previous_secret_expires_at"] is None
    with gw.store.read() as tx:
        [row] = tx.query("SELECT secret, previous_secret FROM webhook_endpoints")
    assert row["previous_secret"] is None and rolled["secret"] not in row["secret"]
    other_id, other_key = gw.merchant("Other Shop")
    r = gw.call("POST", f"/v1/webhook_endpoints/{created['id']}/roll_secret", other_key, {})
    assert r.status_code == 404
    r = gw.call("POST", f"/v1/webhook_endpoints/{created['id']}/roll_secret", api_key, {"expires_in": 8 * 86400})
    assert r.status_code == 400 and r.get_json()["error"]["param"] == "expires_in"
    for i in range(webhooks.MAX_ENDPOINTS - 1):
        gw.ok("POST", "/v1/webhook_endpoints", api_key, {"url": f"https://hooks.example/{i}"})
    r = gw.call("POST", "/v1/webhook_endpoints", api_key, {"url": "https://hooks.example/17"})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "too_many_webhook_endpoints"
    gw.ok("POST", "/v1/webhook_endpoints", other_key, {"url": "https://hooks.example/theirs"})  # per merchant
    gw.ok("DELETE", f"/v1/webhook_endpoints/{created['id']}", api_key)
    gw.ok("POST", "/v1/webhook_endpoints", api_key, {"url": "https://hooks.example/17"})
