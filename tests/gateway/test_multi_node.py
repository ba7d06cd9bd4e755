"""Two `tapstack gateway serve` nodes on one PostgreSQL, as a city deployment runs them.

Each node is a real gunicorn process with its own data directory; they share the
database and the master key (TAPSTACK_MASTER_KEY), nothing else. What must hold
with writers on two nodes at once: no overdraft, one Idempotency-Key runs once, an
upload sent to both stores each tap once, webhooks go out once, a node killed with
SIGKILL loses and doubles nothing, and a database restarted under load gives 503
with Retry-After meanwhile and recovers by itself. `tapstack gateway check` proves
the books after each.
"""
from __future__ import annotations

import http.cookiejar
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from protocol import request_signing, tokens
from tapstack.postgres import LocalPostgres

MASTER_KEY = "6d" * 32
_names = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tapstack(*args: str) -> list[str]:
    return [sys.executable, "-m", "tapstack", "gateway", *args]


def _env() -> dict:
    return {**os.environ, "TAPSTACK_MASTER_KEY": MASTER_KEY}


class Node:
    """One `tapstack gateway serve` on its own port and data directory."""

    def __init__(self, url: str, data_dir, *, workers: int = 2):
        self.data_dir, self.port = data_dir, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            _tapstack("serve", "--data", str(data_dir), "--database", url, "--port", str(self.port),
                      "--workers", str(workers), "--threads", "8", "--allow-private-webhooks"),
            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(self.proc.stderr.read().decode()[-3000:])
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole node: the gunicorn master and its workers."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def call(base: str, method: str, path: str, body=None, *, key: str | None = None, idem: str | None = None,
         headers: dict | None = None, raw: bytes | None = None, timeout: float = 15):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json", **(headers or {})}
    if key:
        h["Authorization"] = f"Bearer {key}"
    if idem:
        h["Idempotency-Key"] = idem
    request = urllib.request.Request(base + path, method=method, headers=h, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def ok(answer, status: int = 200) -> dict:
    assert answer[0] == status, answer
    return answer[2]


def check_books(url: str, data_dir) -> str:
    done = subprocess.run(_tapstack("check", "--database", url, "--data", str(data_dir)), env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def migrate(url: str, data_dir) -> None:
    done = subprocess.run(_tapstack("migrate", "--database", url, "--data", str(data_dir)), env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


class City:
    """A database, two nodes on it, the operator's key, a funded world."""

    def __init__(self, url: str, root):
        self.url, self.root = url, root
        migrate(url, root / "a")
        self.nodes = [Node(url, root / "a"), Node(url, root / "b")]
        keys = {subprocess.run(_tapstack("operator-key", "--database", url, "--data", str(n.data_dir)),
                               env=_env(), capture_output=True, text=True, check=True).stdout.strip()
                for n in self.nodes}
        assert len(keys) == 1, "every node must use the secrets in the database"
        self.operator = keys.pop()
        a = self.nodes[0].base
        customer = ok(call(a, "POST", "/v1/customers", {"name": "Li"}, key=self.operator, idem="c1"), 201)
        wallet = ok(call(a, "POST", "/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"},
                         key=self.operator, idem="w1"), 201)
        merchant = ok(call(a, "POST", "/v1/merchants", {"name": "Line 12"}, key=self.operator, idem="m1"), 201)
        terminal = ok(call(a, "POST", "/v1/terminals", {"merchant_id": merchant["id"], "name": "bus 1"},
                           key=self.operator, idem="t1"), 201)
        self.wallet_id, self.wallet_key = wallet["id"], wallet["credential"]
        self.merchant_id, self.merchant_key = merchant["id"], merchant["api_key"]
        self.terminal = (terminal["key_id"], bytes.fromhex(terminal["secret"]))

    def top_up(self, amount: int, idem: str) -> None:
        ok(call(self.nodes[1].base, "POST", "/v1/topups",
                {"wallet_id": self.wallet_id, "amount": amount, "currency": "CNY"}, key=self.operator, idem=idem), 201)

    def live(self) -> str:
        return next(n.base for n in self.nodes if n.proc.poll() is None)

    def balance(self) -> int:
        return ok(call(self.live(), "GET", f"/v1/wallets/{self.wallet_id}/balance", key=self.operator))["available"]

    def pay(self, node: int, amount: int, idem: str, timeout: float = 15):
        return call(self.nodes[node].base, "POST", "/v1/payments",
                    {"merchant_id": self.merchant_id, "amount": amount, "currency": "CNY"},
                    key=self.wallet_key, idem=idem, timeout=timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="module")
def city(postgres, tmp_path_factory):
    c = City(postgres.create_database(f"city_{next(_names)}"), tmp_path_factory.mktemp("city"))
    yield c
    c.stop()


def both_at_once(*calls):
    """Run the calls together (each a no-argument function); their answers in order."""
    start = threading.Barrier(len(calls))

    def run(fn):
        start.wait()
        return fn()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_every_node_serves_with_the_same_secrets_and_a_dashboard_session_works_on_either(city):
    a, b = city.nodes
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = browser.open(a.base + "/dashboard/login").read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"csrf_token": token, "operator_key": city.operator}).encode()
    browser.open(urllib.request.Request(a.base + "/dashboard/login", data=form, method="POST"))
    answer = browser.open(b.base + "/dashboard")  # the session cookie node A signed, read by node B
    assert answer.url.endswith("/dashboard") and "Sign in" not in answer.read().decode()


def test_fifty_payments_split_across_two_nodes_never_overdraw(city):
    city.top_up(1000, "fund-50")
    start_balance = city.balance()
    merchant_before = ok(call(city.nodes[0].base, "GET", f"/v1/merchants/{city.merchant_id}/balance",
                              key=city.operator))["available"]
    spend = start_balance // 100  # payments of 100 that the balance can cover
    answers = both_at_once(*[lambda i=i: city.pay(i % 2, 100, f"p50-{i}") for i in range(50)])
    statuses = [status for status, _, _ in answers]
    assert statuses.count(201) == spend and statuses.count(402) == 50 - spend, statuses
    assert all(body["error"]["code"] == "insufficient_funds" for status, _, body in answers if status == 402)
    assert city.balance() == start_balance - 100 * spend
    merchant_after = ok(call(city.nodes[1].base, "GET", f"/v1/merchants/{city.merchant_id}/balance",
                             key=city.operator))["available"]
    assert merchant_after - merchant_before == 100 * spend
    check_books(city.url, city.root / "a")


def test_one_idempotency_key_sent_to_both_nodes_at_once_pays_once(city):
    city.top_up(10_000, "fund-idem")
    before = city.balance()
    for n in range(10):
        first, second = both_at_once(lambda: city.pay(0, 7, f"same-{n}"), lambda: city.pay(1, 7, f"same-{n}"))
        assert first[0] == second[0] == 201
        assert first[2] == second[2]  # the same payment, byte for byte
        replayed = [h.get("Idempotent-Replayed") for _, h, _ in (first, second)]
        assert sorted(map(str, replayed)) == ["None", "true"], replayed
    assert city.balance() == before - 70
    check_books(city.url, city.root / "a")


def _token_rows(count: int) -> list[dict]:
    token = tokens.uid_token(b"k" * 32, bytes.fromhex("04a1b2c3d4e5f6"))
    at = int(time.time()) - 600
    return [{"id": f"bus1-{n:06d}", "at": at + n, "kind": "uid", "accepted": True, "reason": "token",
             "route": "12", "stop": "S1", "rules_version": 1, "amount": None, "currency": "CNY",
             "balance_after": None, "card_id": None, "token": token, "receipt": None} for n in range(count)]


def _upload(city: City, node: int, rows: list[dict]):
    key_id, secret = city.terminal
    body = json.dumps({"taps": rows}).encode()
    headers = request_signing.signed_headers(key_id, secret, "POST", "/v1/taps", body,
                                             timestamp=int(time.time()), nonce=f"upload-{node}-{next(_names):08d}")
    return call(city.nodes[node].base, "POST", "/v1/taps", raw=body, headers=headers, idem=f"up-{next(_names)}")


def test_one_upload_sent_to_both_nodes_at_once_stores_each_tap_once(city):
    rows = _token_rows(300)
    first, second = both_at_once(lambda: _upload(city, 0, rows), lambda: _upload(city, 1, rows))
    bodies = [ok(first), ok(second)]
    for n in range(len(rows)):
        assert sorted(b["results"][n]["status"] for b in bodies) == ["accepted", "duplicate"], n
    assert bodies[0]["accepted"] + bodies[1]["accepted"] == 300
    with psycopg.connect(city.url) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM transit_taps WHERE tap_id LIKE 'bus1-%'").fetchone()[0]
    assert stored == 300


def test_webhooks_from_two_deliverers_arrive_once_each(city):
    """A deliverer beside each node, both leasing from one outbox: every event is POSTed once."""
    from tests.gateway.webhook_receiver import Receiver

    with Receiver() as receiver:
        endpoint = ok(call(city.nodes[0].base, "POST", "/v1/webhook_endpoints",
                           {"url": receiver.url, "event_types": ["payment.succeeded"]},
                           key=city.merchant_key, idem="hook-1"), 201)
        receiver.secret = endpoint["secret"]
        deliverers = [subprocess.Popen(
            _tapstack("deliver-webhooks", "--database", city.url, "--data", str(node.data_dir),
                      "--interval", "0.05", "--allow-private-webhooks"), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for node in city.nodes]
        try:
            city.top_up(2_000, "fund-hooks")
            paid = [ok(city.pay(n % 2, 11, f"hook-pay-{n}"), 201)["id"] for n in range(20)]
            deadline = time.monotonic() + 30
            while len(receiver.ids()) < 20 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # long enough for a second, wrong delivery to arrive
        finally:
            for d in deliverers:
                d.terminate()
                d.wait(timeout=15)
        events = receiver.ids()
        assert len(events) == len(set(events)) == 20
        assert sorted(json.loads(r["body"])["data"]["id"] for r in receiver.received) == sorted(paid)
        assert all(r["verified"] for r in receiver.received)


def test_a_node_killed_under_load_loses_and_doubles_nothing(city):
    city.top_up(1_000_000, "fund-kill")
    before = city.balance()
    acknowledged: dict[str, int] = {}
    stop = threading.Event()

    def client(c: int) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            idem = f"k-{c}-{n}"
            for node in (c % 2, 1, 1, 1):  # after a failure, retry on node b with the same key
                try:
                    status, _, body = city.pay(node, 3, idem, timeout=10)
                except OSError:
                    continue
                if status == 201:
                    acknowledged[idem] = 3
                    break
                if status == 503:
                    continue
                raise AssertionError((status, body))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    city.nodes[0].kill()
    served_before = len(acknowledged)
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acknowledged) > served_before  # node b kept answering after a was killed
    with psycopg.connect(city.url) as conn:
        paid = {r[0] for r in conn.execute("SELECT idem_key FROM idempotency_keys WHERE idem_key LIKE 'k-%'")}
    # every acknowledged payment is there once; a request whose answer died with node a (and
    # whose retries found no node in time) may have paid too, once, under its own key
    assert set(acknowledged) <= paid
    assert city.balance() == before - 3 * len(paid)
    check_books(city.url, city.root / "b")


def test_a_database_restarted_under_load_answers_503_then_recovers_losing_nothing(tmp_path):
    cluster = LocalPostgres(settings={"fsync": "on", "synchronous_commit": "on"}).start()
    c = None
    try:
        c = City(cluster.create_database("restart"), tmp_path)
        c.top_up(1_000_000, "fund")
        before = c.balance()
        acknowledged, outages, stop = {}, [], threading.Event()

        def client(k: int) -> None:
            for n in itertools.count():
                if stop.is_set():
                    return
                idem = f"r-{k}-{n}"
                while not stop.is_set():
                    started = time.monotonic()
                    status, headers, body = c.pay(k % 2, 5, idem, timeout=20)
                    if status == 201:
                        acknowledged[idem] = 5
                        break
                    assert status == 503, (status, body)
                    assert set(body["error"]) == {"type", "code", "message", "param"}
                    assert int(headers["Retry-After"]) >= 1
                    outages.append(time.monotonic() - started)
                    time.sleep(0.2)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        cluster.stop("fast")
        time.sleep(2.0)
        cluster.start()
        during = len(acknowledged)
        time.sleep(2.5)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert outages, "the clients saw the database go away"
        assert max(outages) < 12  # answered within the pool timeout, never hung
        assert len(acknowledged) > during  # recovered without restarting the nodes
        assert c.balance() == before - sum(acknowledged.values())
        check_books(c.url, tmp_path / "a")
    finally:
        if c is not None:
            c.stop()
        cluster.cleanup()
