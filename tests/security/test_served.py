"""What only the served gateway shows: `tapstack gateway serve` under gunicorn, started
once for this module with two workers.

- it answers, replays an Idempotency-Key and asks for credentials as the app does;
- a body over the limit is 413 and stores nothing, chunked or not;
- gunicorn's own answers (a bad request line, 414, 431, a bad chunk) are in the one
  JSON error shape;
- the data directory is 0700 and every file in it 0600, the control socket included,
  which is the data directory's own;
- `serve` delivers webhooks itself, from one deliverer however many workers.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.gateway.webhook_receiver import Receiver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tapstack(*args):
    return [sys.executable, "-m", "tapstack", "gateway", *args]


class Served:
    def __init__(self, data, port):
        self.data, self.port, self.base = data, port, f"http://127.0.0.1:{port}"
        self.operator = subprocess.run(_tapstack("operator-key", "--data", str(data)), capture_output=True,
                                       text=True, check=True).stdout.strip()

    def call(self, method, path, key=None, body=None, idem=None) -> tuple[int, dict, dict]:
        """(status, JSON body, headers)."""
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if idem:
            headers["Idempotency-Key"] = idem
        request = urllib.request.Request(self.base + path, method=method, headers=headers,
                                         data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read()), answer.headers
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), e.headers

    def raw(self, data: bytes) -> tuple[int, dict, dict]:
        """Send bytes as they are; (status, headers, JSON body) of the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(data)
            answer = b""
            while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return int(lines[0].split()[1]), headers, json.loads(body)


def _length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data, port = tmp_path_factory.mktemp("served") / "gw", _free_port()
    proc = subprocess.Popen(_tapstack("serve", "--data", str(data), "--port", str(port), "--workers", "2",
                                      "--allow-private-webhooks"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(proc.stderr.read().decode()[-2000:])
                time.sleep(0.05)
        yield Served(data, port)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def payer(served):
    """(merchant id, merchant key, wallet key) with money in the wallet."""
    _, merchant, _ = served.call("POST", "/v1/merchants", served.operator, {"name": "Served Shop"}, "m-1")
    _, customer, _ = served.call("POST", "/v1/customers", served.operator, {"name": "Payer"}, "c-1")
    _, wallet, _ = served.call("POST", "/v1/wallets", served.operator, {"customer_id": customer["id"],
                                                                          "currency": "CNY"}, "w-1")
    served.call("POST", "/v1/topups", served.operator, {"wallet_id": wallet["id"], "amount": 100_000,
                                                         "currency": "CNY"}, "t-1")
    return merchant["id"], merchant["api_key"], wallet["credential"]


def test_serve_answers_under_gunicorn(served):
    assert served.operator.startswith("op_")
    status, body, headers = served.call("POST", "/v1/customers", served.operator, {"name": "Wang"}, "wang-1")
    assert status == 201 and body["id"].startswith("cus_")
    assert headers["Server"].startswith("gunicorn")
    assert served.call("POST", "/v1/customers", served.operator, {"name": "Wang"}, "wang-1")[:2] == (201, body)
    status, err, headers = served.call("GET", f"/v1/customers/{body['id']}")
    assert status == 401 and err["error"]["type"] == "authentication_error"
    assert headers["WWW-Authenticate"].startswith("Bearer")


def assert_error_shape(status, headers, body, expected_status):
    assert status == expected_status, body
    assert headers["content-type"] == "application/json"
    assert set(body) == {"error"} and set(body["error"]) == {"type", "code", "message", "param"}
    assert body["error"]["type"] == ("invalid_request_error" if status < 500 else "api_error")


def _chunked(body: bytes, size: int = 8192) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


def _payment_request(wallet_key: str, body: bytes, *, chunked: bool, key: str) -> bytes:
    head = (f"POST /v1/payments HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {wallet_key}\r\n"
            f"Idempotency-Key: {key}\r\nContent-Type: application/json\r\n")
    if chunked:
        return head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(body)
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "with Content-Length"])
@pytest.mark.parametrize("tail", [70_000, 2_000_000], ids=["70 KB", "2 MB"])
def test_a_body_over_the_limit_is_413_and_nothing_is_stored(served, payer, chunked, tail):
    merchant_id, _, wallet = payer
    valid = json.dumps({"merchant_id": merchant_id, "amount": 1, "currency": "CNY"}).encode()
    body = valid + b" " * tail + b"garbage"  # the prefix under the limit alone would be a payment
    before = served.call("GET", "/v1/payments", wallet)[1]["data"]
    status, headers, answer = served.raw(_payment_request(wallet, body, chunked=chunked, key=f"big-{chunked}-{tail}"))
    assert_error_shape(status, headers, answer, 413)
    assert answer["error"]["code"] == "body_too_large"
    assert served.call("GET", "/v1/payments", wallet)[1]["data"] == before


def test_a_chunked_body_within_the_limit_is_taken_whole(served, payer):
    merchant_id, _, wallet = payer
    body = json.dumps({"merchant_id": merchant_id, "amount": 7, "currency": "CNY", "description": "end"})
    body = body[:-1] + " " * 60_000 + "}"  # 60 KB in 8 KiB chunks: under the 64 KiB limit
    status, _, payment = served.raw(_payment_request(wallet, body.encode(), chunked=True, key="chunked-ok"))
    assert status == 201 and payment["amount"] == 7 and payment["description"] == "end"


@pytest.mark.parametrize("request_bytes,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /v1/openapi.json HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
     431),
    (b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
    (b"POST /v1/customers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
], ids=["request line", "HTTP version", "414 URI", "431 header size", "431 header count", "header name",
        "chunk size"])
def test_gunicorns_own_errors_use_the_one_shape(served, request_bytes, status):
    assert_error_shape(*served.raw(request_bytes), status)


def test_the_data_directory_and_every_file_in_it_are_the_owners_alone(served, payer):
    assert stat.S_IMODE(served.data.stat().st_mode) == 0o700
    names = {p.name: stat.S_IMODE(p.stat().st_mode) for p in served.data.iterdir()}
    assert {"gateway.db", "gateway.db-wal", "gateway.db-shm", "secrets.json", "gunicorn.ctl"} <= set(names)
    assert set(names.values()) == {0o600}, names


def test_the_control_socket_is_the_data_directorys_own(served):
    ctl = served.data / "gunicorn.ctl"
    assert stat.S_ISSOCK(ctl.stat().st_mode)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(ctl))  # gunicorn listens there, not at a path shared by every gateway


def test_serve_delivers_webhooks_itself_from_one_deliverer(served, payer):
    merchant_id, merchant, wallet = payer
    with Receiver() as receiver:
        status, endpoint, _ = served.call("POST", "/v1/webhook_endpoints", merchant, {"url": receiver.url}, "we-1")
        assert status == 201
        receiver.secret = endpoint["secret"]
        paid = [served.call("POST", "/v1/payments", wallet, {"merchant_id": merchant_id, "amount": 3,
                                                             "currency": "CNY"}, f"hook-{i}")[1]["id"]
                for i in range(3)]
        deadline = time.monotonic() + 15
        while len(receiver.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert sorted(json.loads(r["body"])["data"]["id"] for r in receiver.received) == sorted(paid)
    assert all(r["verified"] for r in receiver.received)
    # One worker holds the deliverer lock; nobody else can take it while the gateway runs.
    fd = os.open(served.data / "deliverer.lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
