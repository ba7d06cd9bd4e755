"""Webhook delivery: the worker that POSTs what the outbox (gateway.core.webhooks) holds.

    Deliverer(store, clock=..., seal_key=config.secret(SEAL), post=http_post).run(stop)

Each round claims due deliveries (committed), POSTs each signed body outside any
transaction, and records the outcome; gateway.http.app runs one per node beside the
workers, `tapstack gateway deliver-webhooks` runs one alone. It lives here, in the
gateway's HTTP shell, and not in the core, because it is I/O: an HTTP client, DNS
lookups with the address policy of gateway.http.webhook_targets, threads and a
clock. What to send, when to retry and when to give up is the core's.
"""
from __future__ import annotations

import http.client
import random as _random
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from gateway.core.webhooks import Delivery, Outcome, RetryPolicy, claim, record, request_headers
from gateway.http import webhook_targets

Post = Callable[[str, dict, bytes, float], Outcome]


def http_post(url: str, headers: dict, body: bytes, timeout: float, *,
              private_targets: bool = False) -> Outcome:
    """POST body to url once; redirects are not followed (a 3xx is a failure).

    The host is resolved here and every address it has must be public (unless
    private_targets): the connection then goes to a checked address, so a second
    lookup cannot swap in another (gateway.http.webhook_targets)."""
    parts = urllib.parse.urlsplit(url)
    conn_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    try:
        port = parts.port
    except ValueError as e:  # a port an older release registered: a failed attempt, not a crash
        return Outcome(None, f"ValueError: {e}", 0)
    conn = conn_type(parts.hostname, port, timeout=timeout)
    try:
        addresses = webhook_targets.resolve(parts.hostname, conn.port)
        refusal = None if private_targets else webhook_targets.addresses_refusal(addresses)
        if refusal:
            return Outcome(None, f"refused: {refusal}"[:200], round((time.monotonic() - started) * 1000))
        conn._create_connection = _connect_to(addresses)
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(64 * 1024)  # the answer body is not kept
        return Outcome(response.status, None, round((time.monotonic() - started) * 1000))
    except (OSError, http.client.HTTPException) as e:
        return Outcome(None, f"{type(e).__name__}: {e}"[:200], round((time.monotonic() - started) * 1000))
    finally:
        conn.close()


def _connect_to(addresses: list) -> Callable:
    """http.client's connect, to these addresses in turn instead of a fresh lookup's."""
    def connect(address, timeout, source_address=None):
        error: OSError = OSError("no address")
        for ip in addresses:
            try:
                return socket.create_connection((str(ip), address[1]), timeout, source_address)
            except OSError as e:
                error = e
        raise error
    return connect



@dataclass
class Deliverer:
    """The imperative shell: claims, POSTs and records, with injected clock, HTTP and randomness."""
    store: Any
    clock: Callable[[], datetime]
    seal_key: bytes                 # config.secret(SEAL): what endpoints' secrets are sealed under
    post: Post = http_post
    random: Callable[[], float] = _random.random
    policy: RetryPolicy = RetryPolicy()
    lease_seconds: int = 60
    batch: int = 32
    timeout: float = 10.0
    workers: int = 8

    def deliver_due(self) -> int:
        """One round: claim what is due, deliver it, record it; how many were attempted."""
        now = self.clock()
        claimed = self.store.write(lambda tx: claim(tx, now=now, lease_seconds=self.lease_seconds,
                                                    limit=self.batch, seal_key=self.seal_key,
                                                    policy=self.policy))
        if not claimed:
            return 0

        def attempt(delivery: Delivery) -> None:
            outcome = self.post(delivery.url, request_headers(delivery, self.clock()), delivery.body,
                                self.timeout)
            now, rand = self.clock(), self.random()
            self.store.write(lambda tx: record(tx, delivery, outcome, now=now, rand=rand, policy=self.policy))

        if self.workers <= 1 or len(claimed) == 1:
            for d in claimed:
                attempt(d)
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(claimed))) as pool:
                list(pool.map(attempt, claimed))
        return len(claimed)

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Deliver until stop is set, sleeping interval seconds when nothing is due."""
        while not stop.is_set():
            if self.deliver_due() == 0:
                stop.wait(interval)
