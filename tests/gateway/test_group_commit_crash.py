"""A gunicorn worker killed mid-batch loses no payment it acknowledged.

The gateway answers 201 only after the batch holding the payment committed
(synchronous=FULL). Here workers are SIGKILLed while clients pay, then the whole
server is; every payment a client saw a 201 for must be in the database when it
is opened again, and `tapstack gateway check` must find the books balanced.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tapstack(*args):
    return [sys.executable, "-m", "tapstack", "gateway", *args]


def _post(base, path, key, body, idem):
    request = urllib.request.Request(
        base + path, method="POST", data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idem, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def _workers(master: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find gunicorn's workers")
def test_killed_workers_lose_no_acknowledged_payment(tmp_path):
    data, port = tmp_path / "gw", _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(_tapstack("serve", "--data", str(data), "--port", str(port), "--workers", "2"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    acknowledged: list[str] = []
    failures = []
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 20
        while len(_workers(server.pid)) < 2 or not _answers(base):
            assert server.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)
        op = subprocess.run(_tapstack("operator-key", "--data", str(data)), capture_output=True,
                            text=True, check=True).stdout.strip()
        _, merchant = _post(base, "/v1/merchants", op, {"name": "Shop"}, "m")
        _, customer = _post(base, "/v1/customers", op, {"name": "Payer"}, "c")
        _, wallet = _post(base, "/v1/wallets", op, {"customer_id": customer["id"], "currency": "CNY"}, "w")
        _post(base, "/v1/topups", op, {"wallet_id": wallet["id"], "amount": 10_000_000, "currency": "CNY"}, "t")
        body = {"merchant_id": merchant["id"], "amount": 100, "currency": "CNY"}

        def pay(client: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    status, payment = _post(base, "/v1/payments", wallet["credential"], body, f"c{client}-{n}")
                except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # a killed worker's
                    failures.append(e)
                    time.sleep(0.01)
                    continue
                if status == 201:
                    acknowledged.append(payment["id"])

        clients = [threading.Thread(target=pay, args=(i,)) for i in range(6)]
        for c in clients:
            c.start()
        for _ in range(2):  # kill a worker mid-load, twice; gunicorn starts a new one
            time.sleep(0.7)
            before = len(acknowledged)
            os.kill(_workers(server.pid)[0], signal.SIGKILL)
            time.sleep(0.7)
            assert len(acknowledged) > before, "payments stopped after a worker was killed"
        os.killpg(server.pid, signal.SIGKILL)  # and then the whole server, mid-batch
        server.wait(timeout=10)
        stop.set()
        for c in clients:
            c.join(15)
    finally:
        stop.set()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)

    assert len(acknowledged) > 50
    db = sqlite3.connect(data / "gateway.db")
    try:
        stored = {row[0] for row in db.execute("SELECT id FROM payments")}
    finally:
        db.close()
    lost = set(acknowledged) - stored
    assert not lost, f"{len(lost)} acknowledged payments are not in the database"
    check = subprocess.run(_tapstack("check", "--data", str(data)), capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok:" in check.stdout


def _answers(base: str) -> bool:
    try:
        urllib.request.urlopen(base + "/v1/openapi.json", timeout=1).read()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
