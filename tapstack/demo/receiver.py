"""The merchants' side of webhooks in the demo: a tiny local HTTP server that checks signatures.

Each merchant (the water company, the corner shop) registers its own path; a POST to it
is accepted (204) only when its Tapstack-Signature verifies with that endpoint's secret
and is fresh, as a merchant's server would do. Events are counted once per event id
(deliveries are at least once), by type; bad signatures are counted and refused (400).
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from protocol import webhook_signature

MAX_BODY = 256 * 1024


class WebhookReceiver:
    def __init__(self, host: str = "127.0.0.1", clock=time.time):
        self.clock = clock
        self.secrets: dict[str, str] = {}  # path -> whsec_... of the endpoint registered for it
        self.events: dict[str, str] = {}  # event id -> type, verified
        self.deliveries = 0
        self.bad_signatures = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def by_type(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(Counter(self.events.values()).items()))

    def received(self) -> int:
        with self._lock:
            return len(self.events)

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until `count` distinct verified events arrived, or timeout seconds pass."""
        deadline = time.monotonic() + timeout
        while self.received() < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _accept(self, path: str, header: str, body: bytes) -> int:
        secret = self.secrets.get(path)
        with self._lock:
            self.deliveries += 1
            if secret is None or not webhook_signature.verify(secret, header, body, int(self.clock())):
                self.bad_signatures += 1
                return 400
        try:
            event = json.loads(body)
            event_id, event_type = str(event["id"]), str(event["type"])
        except (ValueError, KeyError, TypeError):
            return 400
        with self._lock:
            self.events.setdefault(event_id, event_type)
        return 204

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 <= length <= MAX_BODY:
                    self.send_response(413)
                    self.end_headers()
                    return
                body = self.rfile.read(length)
                self.send_response(receiver._accept(self.path, self.headers.get("Tapstack-Signature", ""), body))
                self.end_headers()

            def log_message(self, *args):  # the demo prints its own progress
                pass

        return Handler
