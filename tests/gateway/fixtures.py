"""Fixtures for the gateway's HTTP API (a pytest plugin: tests/conftest.py registers it once, so
every test module sees one `backend` per session without importing the fixtures): an app over a temp data dir, a movable clock,
and a small client that authenticates as operator, merchant, wallet or terminal.

Every test that uses `config`, `store`, `app`, `client`, `operator`, `world` or
`ledger_db` runs twice: on SQLite and on PostgreSQL (the `backend` fixture; see
tests/gateway/backends.py). The PostgreSQL cluster is the session's own."""
from __future__ import annotations

import itertools
import json
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from gateway.config import Config
from gateway.core import ledger
from gateway.http.app import create_app
from gateway.http.runtime import Runtime
from gateway.http.auth import operator_key
from gateway.store import MIGRATIONS_DIR, SQLiteStore
from protocol import request_signing
from tests.gateway.backends import BACKENDS, PostgresBackend, SQLiteBackend

_keys = itertools.count()


class Clock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Api:
    """Requests as one caller: `auth` is a bearer key, or a terminal (key_id, secret)."""

    def __init__(self, client, clock: Clock, auth):
        self.client, self.clock, self.auth = client, clock, auth
        self._nonces = itertools.count()

    def _headers(self, method: str, path: str, body: bytes, extra: dict | None) -> dict:
        headers = {"Content-Type": "application/json"}
        if isinstance(self.auth, tuple):
            key_id, secret = self.auth
            nonce = f"nonce-{key_id[-8:]}-{next(self._nonces):010d}-{next(_keys)}"
            headers.update(request_signing.signed_headers(
                key_id, secret, method, path, body,
                timestamp=int(self.clock().timestamp()), nonce=nonce))
        elif self.auth is not None:
            headers["Authorization"] = f"Bearer {self.auth}"
        headers.update(extra or {})
        return headers

    def post(self, path: str, body=None, *, key: str | None = "auto", raw: bytes | None = None,
             headers: dict | None = None):
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        h = self._headers("POST", path, data, headers)
        if key == "auto":
            key = f"key-{next(_keys)}"
        if key is not None:
            h["Idempotency-Key"] = key
        return self.client.post(path, data=data, headers=h)

    def get(self, path: str, headers: dict | None = None):
        return self.client.get(path, headers=self._headers("GET", path, b"", headers))

    def as_(self, auth) -> "Api":
        return Api(self.client, self.clock, auth)


START = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock():
    return Clock(START)


def ledger_store(directory, **options) -> SQLiteStore:
    """A Store on directory/gateway.db with the ledger migration only: the ledger's tests put
    nothing else under test."""
    migrations = directory / "migrations"
    migrations.mkdir()
    shutil.copy(MIGRATIONS_DIR / "0001_ledger.sql", migrations)
    return SQLiteStore(directory / "gateway.db", migrations_dir=migrations, **options)


class GatewayApp:
    """A gateway app of its own on a data dir (its own create_app, store and secrets), at a
    settable `now`: for tests that restart the app or run a deliverer beside it. `call`
    authenticates with a bearer key and gives each POST a fresh Idempotency-Key."""

    def __init__(self, data_dir, now: datetime = START, backend=None):
        backend = backend or SQLiteBackend()
        backend.empty()
        self.now = now
        self.config = backend.config(data_dir)
        self.store = backend.store(self.config)
        self.app = create_app(self.config, store=self.store, clock=lambda: self.now)
        self.client = self.app.test_client()
        self.operator = operator_key(self.config)
        self._n = itertools.count()

    def close(self) -> None:
        self.store.close()
        self.config.close()

    def call(self, method: str, path: str, key: str | None, json=None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if method == "POST":
            headers["Idempotency-Key"] = f"k{next(self._n)}"
        return self.client.open(path, method=method, json=json, headers=headers)

    def ok(self, method: str, path: str, key: str | None, json=None) -> dict:
        r = self.call(method, path, key, json)
        assert r.status_code in (200, 201), r.get_json()
        return r.get_json()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request):
    """The database under the gateway: "sqlite" (a file per test) or "postgresql" (the
    session's cluster, its rows put back before each test)."""
    if request.param == "sqlite":
        return SQLiteBackend()
    return PostgresBackend(request.getfixturevalue("postgres"))


@pytest.fixture(scope="session")
def template(tmp_path_factory, backend):
    """A migrated data dir (and database) with the World enrolled, built once per backend
    and restored per test."""
    root = tmp_path_factory.mktemp(f"template-{backend.name}") / "gateway"
    root.mkdir()
    backend.empty()  # a test of an empty gateway may have run first
    config = backend.config(root)
    store = backend.store(config)
    clock = Clock(START)
    app = create_app(config, store=store, clock=clock)
    credentials = World.enrol(Api(app.test_client(), clock, operator_key(config)))
    store.close()
    config.close()
    backend.keep_template()
    return root, credentials


@pytest.fixture
def config(tmp_path, template, backend):
    shutil.copytree(template[0], tmp_path / "gateway")
    backend.restore_template()
    config = backend.config(tmp_path / "gateway")
    yield config
    config.close()


@pytest.fixture
def store(config, backend):
    s = backend.store(config)
    yield s
    s.close()


@pytest.fixture
def ledger_db(tmp_path, backend):
    """An empty store with the ledger's tables only, on the test's backend."""
    s = backend.ledger_store(tmp_path, synchronous="NORMAL")
    yield s
    s.close()


@pytest.fixture(scope="session")
def _shared_app(tmp_path_factory):
    config = Config(tmp_path_factory.mktemp("unused") / "gateway")
    store = SQLiteStore(config.db_path)
    app = create_app(config, store=store)
    app.testing = True
    yield app
    store.close()


@pytest.fixture
def app(_shared_app, config, store, clock):
    """The app over this test's data dir and clock (routes are built once: werkzeug's
    rule compilation is most of create_app's time)."""
    _shared_app.extensions["tapstack"] = Runtime(config, store, clock)
    return _shared_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def operator(client, clock, config):
    return Api(client, clock, operator_key(config))


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def error(response, status: int, type_: str, code: str | None = None) -> dict:
    """Assert the one error shape and return its inner object."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "code", "message", "param"}
    assert body["error"]["type"] == type_
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


class World:
    """Two customers' wallets, two merchants, a terminal of each merchant."""

    def __init__(self, operator: Api, credentials: dict):
        self.operator = operator
        self.wallets = {n: (i, operator.as_(k)) for n, (i, k) in credentials["wallets"].items()}
        self.merchants = {n: (i, operator.as_(k)) for n, (i, k) in credentials["merchants"].items()}
        self.terminals = {n: (i, operator.as_(k)) for n, (i, k) in credentials["terminals"].items()}

    @staticmethod
    def enrol(operator: Api) -> dict:
        """Create the world through the API; its ids and credentials."""
        wallets, merchants, terminals = {}, {}, {}
        for name in ("a", "b"):
            customer = ok(operator.post("/v1/customers", {"name": f"Rider {name}"}), 201)
            wallet = ok(operator.post("/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"}), 201)
            wallets[name] = (wallet["id"], wallet["credential"])
        for name in ("x", "y"):
            merchant = ok(operator.post("/v1/merchants", {"name": f"Shop {name}"}), 201)
            merchants[name] = (merchant["id"], merchant["api_key"])
            terminal = ok(operator.post("/v1/terminals", {"merchant_id": merchant["id"], "name": "till 1"}), 201)
            terminals[name] = (terminal["id"], (terminal["key_id"], bytes.fromhex(terminal["secret"])))
        return {"wallets": wallets, "merchants": merchants, "terminals": terminals}

    def wallet(self, name):
        return self.wallets[name]

    def merchant(self, name):
        return self.merchants[name]

    def terminal(self, name):
        return self.terminals[name]

    def top_up(self, name: str, amount: int):
        wallet_id, _ = self.wallets[name]
        return ok(self.operator.post("/v1/topups", {"wallet_id": wallet_id, "amount": amount,
                                                    "currency": "CNY"}), 201)

    def pay(self, wallet: str, merchant: str, amount: int):
        _, api = self.wallets[wallet]
        merchant_id, _ = self.merchants[merchant]
        return ok(api.post("/v1/payments", {"merchant_id": merchant_id, "amount": amount,
                                            "currency": "CNY"}), 201)

    def pay_code(self, wallet: str) -> str:
        wallet_id, api = self.wallets[wallet]
        return ok(api.post(f"/v1/wallets/{wallet_id}/pay_codes"), 201)["code"]

    def available(self, wallet: str) -> int:
        wallet_id, _ = self.wallets[wallet]
        return ok(self.operator.get(f"/v1/wallets/{wallet_id}/balance"))["available"]

    def merchant_available(self, merchant: str) -> int:
        merchant_id, _ = self.merchants[merchant]
        return ok(self.operator.get(f"/v1/merchants/{merchant_id}/balance"))["available"]


@pytest.fixture
def world(operator, template):
    return World(operator, template[1])


def books(store) -> tuple[bool, int]:
    """(the ledger check passes, number of transfers): what "nothing was posted" compares."""
    with store.read() as tx:
        report = ledger.check(tx)
    assert report.ok, report.problems
    return report.ok, report.transfers


@pytest.fixture
def nothing_moved(store, world):
    """`check = nothing_moved()` snapshots balances and transfers; `check()` asserts no change."""
    def state():
        return (books(store), [world.available(n) for n in world.wallets],
                [world.merchant_available(n) for n in world.merchants])

    def begin():
        before = state()

        def check():
            assert state() == before
        return check
    return begin
