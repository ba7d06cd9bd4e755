"""A tiny webhook receiver on 127.0.0.1 for the tests: verifies, records, answers as told."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Records each POST (event id, body, whether its signature verified against secret).

    `answers` is a list of statuses to give in turn (then 200); `delay` seconds are slept
    before answering; `on_request(n)` is called with the request count before answering; `now()` is the
    receiver's clock in unix seconds for the freshness check.
    """

    def __init__(self, secret: str = "", answers=(), delay: float = 0.0, on_request=None, now=time.time):
        self.now = now
        self.secret, self.answers, self.delay, self.on_request = secret, list(answers), delay, on_request
        self.received: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                header = self.headers.get("Tapstack-Signature", "")
                with receiver.lock:
                    receiver.received.append({"id": json.loads(body)["id"], "body": body,
                                              "header": header, "event_id": self.headers.get("Tapstack-Event-Id"),
                                              "verified": receiver.check(header, body)})
                    n = len(receiver.received)
                    status = receiver.answers.pop(0) if receiver.answers else 200
                if receiver.on_request:
                    receiver.on_request(n)
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def check(self, header: str, body: bytes) -> bool:
        """The receiver's own check, written from the documented scheme (no tapstack import)."""
        pairs = [p.split("=", 1) for p in header.split(",") if "=" in p]
        t = dict(pairs).get("t", "")
        mac = hmac.new(self.secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = t.isdigit() and abs(self.now() - int(t)) <= 300
        # during a secret roll the header carries one v1 per secret: one match is enough
        return fresh and any(hmac.compare_digest(mac, v) for k, v in pairs if k == "v1")

    def ids(self) -> list[str]:
        with self.lock:
            return [r["id"] for r in self.received]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
