"""`tapstack gateway serve` runs the API under gunicorn; `operator-key` prints the key."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tapstack(*args):
    return [sys.executable, "-m", "tapstack", "gateway", *args]


@pytest.fixture
def server(tmp_path):
    data, port = tmp_path / "gw", _free_port()
    proc = subprocess.Popen(_tapstack("serve", "--data", str(data), "--port", str(port), "--workers", "2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(proc.stderr.read().decode()[-2000:])
                time.sleep(0.05)
        key = subprocess.run(_tapstack("operator-key", "--data", str(data)), capture_output=True,
                             text=True, check=True).stdout.strip()
        yield f"http://127.0.0.1:{port}", key
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _call(url, *, method="GET", body=None, headers=None):
    request = urllib.request.Request(url, method=method, headers={"Content-Type": "application/json", **(headers or {})},
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def test_serve_answers_under_gunicorn(server):
    base, key = server
    assert key.startswith("op_")
    status, headers, body = _call(base + "/v1/customers", method="POST", body={"name": "Wang"},
                                  headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "c-1"})
    assert status == 201 and body["id"].startswith("cus_")
    assert headers["Server"].startswith("gunicorn")
    status, _, again = _call(base + "/v1/customers", method="POST", body={"name": "Wang"},
                             headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "c-1"})
    assert (status, again) == (201, body)
    status, headers, err = _call(base + f"/v1/customers/{body['id']}")
    assert status == 401 and err["error"]["type"] == "authentication_error"
    assert headers["WWW-Authenticate"].startswith("Bearer")
