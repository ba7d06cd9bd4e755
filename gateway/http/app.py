"""The gateway's Flask application factory, and serving it.

    app = create_app(config, store=None, clock=None)

`config` is a gateway.config.Config (loaded from the default data directory when
None); `store` defaults to the store config names (SQLite in the data directory, or
config.database_url), refused with StoreError when its schema is not this code's;
`clock` is a callable returning an aware UTC datetime, passed so tests can move time.
Blueprints are imported above, by name, and listed in BLUEPRINTS.

`serve` runs the app under gunicorn, each worker with a webhook deliverer thread of
which one at a time delivers (`deliver_webhooks`). Every answer, including those
gunicorn gives itself before the app sees a request (a malformed request line, 414,
431), is in the one error shape of gateway.http.errors.
"""
from __future__ import annotations

import fcntl
import functools
import io
import json
import logging
import os
import threading
import time
from datetime import datetime
from typing import Callable

from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from gateway import config as gateway_config
from gateway.core import webhooks as outbox
from gateway.http import api, delivery, errors, openapi, web
from gateway.http.api import (bills, card_links, checkout, customers, fare_charges, issuer, merchants, payments, pos,
                              refunds, taps, terminals, topups, wallets, webhooks)
from gateway.http.runtime import Runtime, utc_now

# Every route of the gateway, in the order registered: the API under /v1, its
# description, the web pages.
BLUEPRINTS = (customers.bp, wallets.bp, merchants.bp, terminals.bp, topups.bp, payments.bp, refunds.bp,
              pos.bp, webhooks.bp, issuer.bp, taps.bp, bills.bp, checkout.bp, card_links.bp,
              fare_charges.bp, openapi.bp, web.bp)

# Every secret a request may ask for, made before gunicorn forks: two workers making
# the same one at once could each keep a different value.
SERVED_SECRETS = ("operator_key", "idempotency_seal", "terminal_master", "session_key", "issuer_seed",
                  "webhook_seal")


class PageSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions for the web pages only: the JSON API (/v1/...) is
    stateless, and skipping the session there saves every API request its cookie
    parsing and signer set-up."""

    def open_session(self, app, request):
        if request.path.startswith("/v1/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def open_checked_store(config: gateway_config.Config):
    """The configured store, once its schema is exactly what this code knows.

    SQLite migrates itself on open (one machine, one owner); PostgreSQL is migrated
    only by `tapstack gateway migrate`, so nodes never change a shared schema by
    surprise. Either way a database with a migration missing, changed, or newer
    than this code is refused with one line that says what to do.
    """
    from gateway.store import StoreError
    store = config.open_store()
    problems = store.migration_problems()
    if problems:
        store.close()
        raise StoreError(f"{config.database}: {problems[0]}{_remedy(problems[0], config)}")
    return store


def _remedy(problem: str, config: gateway_config.Config) -> str:
    if "newer tapstack" in problem:
        return "; run a tapstack as new as the one that migrated it"
    where = f" --database '{config.database}'" if config.backend != "sqlite" else f" --data {config.data_dir}"
    return f"; run: tapstack gateway migrate{where}"


class BoundedBody:
    """WSGI layer: a chunked body (no Content-Length) is read whole here, up to
    `limit` bytes, and then passed on with its length, so Flask's limits apply to it as
    to any other. One longer than `limit` answers 413 before the app sees it. (Without
    this, werkzeug stops reading such a stream at the limit, and the app would parse
    the prefix as if it were the whole body.)"""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    def __call__(self, environ, start_response):
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and not environ.get("CONTENT_LENGTH"):
            stream, body = environ["wsgi.input"], b""
            while len(body) <= self.limit and (chunk := stream.read(self.limit + 1 - len(body))):
                body += chunk
            if len(body) > self.limit:
                response = errors.render(errors.too_large())
                response.headers["Connection"] = "close"  # the rest of the body is never read
                return response(environ, start_response)
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)  # werkzeug ignores the length of a chunked body
        return self.app(environ, start_response)


def create_app(config: gateway_config.Config | None = None, *, store=None,
               clock: Callable[[], datetime] | None = None) -> Flask:
    config = config or gateway_config.load()
    if store is None:
        if config.backend == "sqlite":
            gateway_config.create_private(config.db_path)
        store = open_checked_store(config)
    app = Flask("gateway")
    app.config["MAX_CONTENT_LENGTH"] = api.MAX_BODY_BYTES
    app.wsgi_app = BoundedBody(app.wsgi_app, api.MAX_UPLOAD_BYTES)
    app.json.sort_keys = False  # responses keep the field order the API documents
    app.session_interface = PageSessions()
    app.extensions["tapstack"] = Runtime(config, store, clock or utc_now)
    outbox.seal_stored_secrets(store, app.extensions["tapstack"].secret(outbox.SEAL))
    errors.register(app)
    app.before_request(api.check_request_text)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app


# --- serving ---------------------------------------------------------------------------

DELIVERER_LOCK = "deliverer.lock"
DELIVERER_RETRY_SECONDS = 5.0


def deliver_webhooks(app: Flask, *, interval: float = 1.0) -> threading.Thread:
    """Deliver the app's webhooks from a daemon thread, while this process holds the data
    directory's deliverer lock: one deliverer per node however many workers it runs.
    When the worker holding it dies, the kernel drops its lock and another worker's
    thread takes over within DELIVERER_RETRY_SECONDS; a delivery cut off mid-way is
    retried when its lease runs out, as ever."""
    rt = app.extensions["tapstack"]
    post = functools.partial(delivery.http_post, private_targets=rt.config.allow_private_webhooks)
    deliverer = delivery.Deliverer(rt.store, clock=rt.clock, seal_key=rt.secret(outbox.SEAL), post=post)
    log = logging.getLogger("tapstack.gateway")

    def run() -> None:
        fd = os.open(rt.config.data_dir / DELIVERER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(DELIVERER_RETRY_SECONDS)
        log.info("delivering webhooks in process %d", os.getpid())
        while True:
            try:
                deliverer.run(threading.Event(), interval=interval)
            except Exception:  # a busy or broken store must not end delivery for good
                log.exception("webhook delivery failed; retrying")
                time.sleep(DELIVERER_RETRY_SECONDS)

    thread = threading.Thread(target=run, name="webhook-deliverer", daemon=True)
    thread.start()
    return thread


def _write_error(sock, status: int, reason: str, message: str) -> None:
    """gunicorn's own error answer (gunicorn.util.write_error) in the gateway's error shape."""
    from gunicorn import util

    err = errors.ApiError(status, "invalid_request_error" if status < 500 else "api_error",
                          reason.lower().replace(" ", "_"), (message or reason)[:300])
    body = json.dumps(err.body()).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def serve(config: gateway_config.Config, *, host: str, port: int, workers: int,
          threads: int = 8, webhooks: bool = True) -> None:
    """Run the API under gunicorn (a production WSGI server) until stopped.

    Each worker process builds its own app and store connections after the fork, and
    (unless webhooks is False) a deliverer thread. gunicorn's control socket (for
    gunicornc) is the data directory's own: gateways on one machine never share one.
    """
    for name in SERVED_SECRETS:
        config.secret(name)
    from gunicorn import util
    from gunicorn.app.base import BaseApplication
    from gunicorn.workers.gthread import ThreadWorker

    class Worker(ThreadWorker):
        def init_process(self):
            util.write_error = _write_error  # this worker process's errors, in the one shape
            super().init_process()

    def post_worker_init(worker):
        if webhooks:
            deliver_webhooks(worker.wsgi)

    class Server(BaseApplication):
        def load_config(self):
            for key, value in {"bind": f"{host}:{port}", "workers": workers, "threads": threads,
                               "worker_class": Worker, "accesslog": "-",
                               "proc_name": "tapstack-gateway",
                               "control_socket": str(config.data_dir.resolve() / "gunicorn.ctl"),
                               "post_worker_init": post_worker_init}.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(config)

    Server().run()
