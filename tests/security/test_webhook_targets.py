"""Webhook SSRF (OWASP API7): internal URLs are refused at registration, and again at
delivery after the name is resolved; redirects are never followed."""
from __future__ import annotations

import functools
import ipaddress
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.core import webhooks
from gateway.http import delivery
from gateway.http import webhook_targets as targets
from tests.gateway.fixtures import error, ok

# The outside test's internal URLs, and more of their kind.
INTERNAL = [
    "http://127.0.0.1/", "http://127.1/", "http://2130706433/", "http://0x7f000001/", "http://017700000001/",
    "http://0177.0.0.1/", "http://0x7f.1/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://[::1]/", "http://0.0.0.0/", "http://0/", "http://[::]/", "http://10.0.0.1/", "http://172.16.5.4/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://[fd00::1]/",
    "http://[fc00::1]/", "http://[fe80::1]/", "http://100.64.0.1/", "http://224.0.0.1/", "http://255.255.255.255/",
    "http://[2002:7f00:1::]/", "http://[64:ff9b::a00:1]/", "http://localhost:8000/", "http://LOCALHOST/",
    "http://localhost./", "http://api.localhost/", "http://printer.local/", "http://metadata.google.internal/",
    "http://intranet/", "https://127.0.0.1:443/hooks", "http://[::ffff:a9fe:a9fe]/",
]
PUBLIC = ["https://hooks.example/tapstack", "https://93.184.216.34/hooks", "http://[2606:4700::1111]/",
          "https://shop.example.com:8443/x?y=1"]


@pytest.mark.parametrize("url", INTERNAL)
def test_an_internal_url_is_refused_at_registration(scene, url):
    e = error(scene.callers["merchant"].post("/v1/webhook_endpoints", {"url": url}), 400,
              "invalid_request_error", "invalid_url")
    assert e["param"] == "url" and "public internet" in e["message"]


@pytest.mark.parametrize("url", PUBLIC)
def test_a_public_url_is_accepted(scene, url):
    created = ok(scene.callers["merchant"].post("/v1/webhook_endpoints", {"url": url}), 201)
    assert created["url"] == url


@pytest.mark.parametrize("url", ["http://x.example:0/", "http://x.example:65536/", "http://x.example:port/"])
def test_a_url_without_a_usable_port_is_refused(scene, url):
    error(scene.callers["merchant"].post("/v1/webhook_endpoints", {"url": url}), 400, "invalid_request_error",
          "invalid_url")


def test_the_operator_may_allow_private_targets_for_development(scene):
    scene.config.allow_private_webhooks = True
    try:
        ok(scene.callers["merchant"].post("/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/"}), 201)
    finally:
        scene.config.allow_private_webhooks = False


@pytest.mark.parametrize("host,address", [
    ("127.1", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"), ("0", "0.0.0.0"), ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ("hooks.example", None), ("1.2.3.4 x", None), ("0x7g", None)])
def test_every_spelling_of_an_address_is_read_as_that_address(host, address):
    found = targets.literal_address(host)
    assert (str(found) if found else None) == address


def test_a_name_is_refused_if_any_of_its_addresses_is_internal():
    public, private = ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.1.2.3")
    assert targets.addresses_refusal([public]) is None
    assert "10.1.2.3 is a private address" in targets.addresses_refusal([public, private])
    assert targets.addresses_refusal([]) == "the name has no address"


def test_delivery_refuses_a_name_that_resolves_to_loopback():
    """At delivery the name is resolved and checked: localhost is 127.0.0.1 (DNS could have
    moved a public name there since registration)."""
    outcome = delivery.http_post("http://localhost:9/hook", {}, b"{}", 1.0)
    assert outcome.status_code is None and outcome.error.startswith("refused: 127.0.0.1 is a loopback address")


class _Server:
    """A local HTTP server answering every POST with `status` and headers; counts the POSTs."""

    def __init__(self, status: int, headers: dict | None = None):
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.hits += 1
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_delivery_with_private_targets_allowed_reaches_loopback_and_follows_no_redirect():
    inside = _Server(200)
    redirect = _Server(307, {"Location": inside.url})
    try:
        post = functools.partial(delivery.http_post, private_targets=True)
        assert post(inside.url, {}, b"{}", 2.0).status_code == 200
        outcome = post(redirect.url, {}, b"{}", 2.0)
        assert outcome.status_code == 307 and not outcome.ok
        assert (redirect.hits, inside.hits) == (1, 1)   # the redirect's target was never asked
        assert delivery.http_post(inside.url, {}, b"{}", 2.0).error.startswith("refused:")
        assert inside.hits == 1
    finally:
        inside.close()
        redirect.close()


def test_the_deliverer_records_a_refused_target_as_a_failed_attempt(scene):
    """An endpoint registered while private targets were allowed is not reached once they
    are not: the attempt is recorded with the reason, and retried later like any failure."""
    scene.config.allow_private_webhooks = True
    try:
        endpoint = ok(scene.callers["merchant"].post("/v1/webhook_endpoints", {
            "url": "http://127.0.0.1:9/hook", "event_types": ["refund.succeeded"]}), 201)
    finally:
        scene.config.allow_private_webhooks = False
    refund = ok(scene.callers["merchant"].post("/v1/refunds", {"payment_id": scene.ids["payment_id"],
                                                               "amount": 1}), 201)
    deliverer = delivery.Deliverer(scene.store, clock=lambda: datetime.now(timezone.utc),
                                   seal_key=scene.config.secret(webhooks.SEAL))
    while deliverer.deliver_due():
        pass
    events = ok(scene.callers["merchant"].get("/v1/events?limit=100"))["data"]
    [event] = [e for e in events if e["data"].get("id") == refund["id"]]
    deliveries = ok(scene.callers["merchant"].get(f"/v1/events/{event['id']}/deliveries"))["data"]
    [mine] = [d for d in deliveries if d["endpoint_id"] == endpoint["id"]]
    assert mine["status"] == "pending" and mine["attempts"][0]["status_code"] is None
    assert mine["attempts"][0]["error"].startswith("refused: 127.0.0.1 is a loopback address")


def test_a_url_with_an_impossible_port_is_a_failed_attempt_not_a_crash():
    """Registration refuses such a port now; an endpoint an older release took is still
    delivered to as a failure, so it cannot stall the deliverer's batch."""
    outcome = delivery.http_post("http://hooks.example:99999/", {}, b"{}", 1.0)
    assert outcome.status_code is None and outcome.error.startswith("ValueError")
