"""Browser tests: a real gateway (`tapstack gateway serve` under gunicorn, in a subprocess on
a free port with a temp data dir), seeded through its HTTP API, driven by Debian's chromium
through Playwright.

Chromium is the system one (/usr/bin/chromium, Debian package `chromium`); Playwright's own
browser download is never used, so the tests need no network. Without chromium or the
`playwright` package the tests fail saying what to install: they are never skipped.

Screenshots go to test-artifacts/browser/ at the repository root (gitignored).

The browser has a fake camera: chromium's --use-fake-device-for-media-stream shows the
Y4M file CAMERA_FILE as the camera's picture, re-read each time a page opens the camera,
so `camera.show(image)` puts a code (or nothing) in front of the lens for the next scan.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway.http.auth import operator_key
from gateway.config import Config
from protocol import request_signing, tokens

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("TAPSTACK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_SECONDS = 30
CAMERA_SIZE = (640, 480)


class Camera:
    """The fake camera's picture: a Y4M file (YUV 4:2:0) that chromium loops as its video."""

    def __init__(self, path: Path):
        self.path = path
        self.show(None)

    def show(self, image: Image.Image | bytes | None, *, size: int = 300) -> None:
        """Put `image` (a PNG's bytes or an image; None for an empty desk) in the middle of
        a light picture, `size` pixels wide, as the camera sees it from now on."""
        frame = Image.new("RGB", CAMERA_SIZE, (214, 208, 196))
        if image is not None:
            if isinstance(image, (bytes, bytearray)):
                image = Image.open(io.BytesIO(image))
            code = image.convert("RGB").resize((size, size * image.height // image.width), Image.NEAREST)
            frame.paste(code, ((CAMERA_SIZE[0] - code.width) // 2, (CAMERA_SIZE[1] - code.height) // 2))
        ycc = np.asarray(frame.convert("YCbCr"))
        width, height = CAMERA_SIZE
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
            out.write(b"FRAME\n" + ycc[:, :, 0].tobytes() + ycc[::2, ::2, 1].tobytes() + ycc[::2, ::2, 2].tobytes())
        os.replace(tmp, self.path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Http:
    """JSON over HTTP to the served gateway, as one caller: a bearer key or a terminal."""

    def __init__(self, base: str, auth=None):
        self.base, self.auth = base, auth
        self._keys = itertools.count()

    def as_(self, auth) -> "Http":
        return Http(self.base, auth)

    def _headers(self, method: str, path: str, body: bytes) -> dict:
        headers = {"Content-Type": "application/json"}
        if isinstance(self.auth, tuple):
            key_id, secret = self.auth
            headers.update(request_signing.signed_headers(key_id, secret, method, path, body,
                                                          timestamp=int(time.time()),
                                                          nonce=secrets.token_hex(16)))
        elif self.auth:
            headers["Authorization"] = f"Bearer {self.auth}"
        if method == "POST":
            headers["Idempotency-Key"] = f"seed-{secrets.token_hex(8)}-{next(self._keys)}"
        return headers

    def call(self, method: str, path: str, body=None, expect: int | None = None) -> dict:
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else b""
        request = urllib.request.Request(self.base + path, data=data if method == "POST" else None,
                                         method=method, headers=self._headers(method, path, data))
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, text = answer.status, answer.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        if expect is not None and status != expect:
            raise AssertionError(f"{method} {path} answered {status}, not {expect}: {text}")
        return json.loads(text)

    def get(self, path: str, expect: int = 200) -> dict:
        return self.call("GET", path, expect=expect)

    def post(self, path: str, body=None, expect: int = 201) -> dict:
        return self.call("POST", path, body, expect=expect)


@dataclass
class Gateway:
    base: str
    data_dir: Path
    operator: Http
    log: Path
    seed: dict = field(default_factory=dict)


def _wait_until_up(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(base + "/wallet", timeout=1).read()
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"the gateway did not answer within {START_SECONDS} s:\n{log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def served_gateway(tmp_path_factory):
    """`tapstack gateway serve` on a free port over a fresh data dir; stopped (by pid) at the end."""
    data_dir = tmp_path_factory.mktemp("browser") / "gateway"
    port = free_port()
    log = data_dir.parent / "gateway.log"
    env = {**os.environ, "TAPSTACK_TIMEZONE": "Asia/Shanghai", "PYTHONPATH": str(ROOT)}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tapstack", "gateway", "serve", "--data", str(data_dir),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process, log)
        yield Gateway(base, data_dir, Http(base, operator_key(Config(data_dir))), log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def token(n: int) -> str:
    return tokens.uid_token(b"browser-test-key".ljust(32, b"."), bytes([4, n, 9, 9, 9, 9, 9]))


@pytest.fixture(scope="session")
def gateway(served_gateway):
    """The served gateway seeded through its API: a shop, two riders' wallets with top-ups and
    payments, a biller with bills, a bus operator's validators and their taps."""
    op = served_gateway.operator
    seed: dict = {"wallets": {}}
    shop = op.post("/v1/merchants", {"name": "Corner Shop"})
    seed["shop"] = (shop["id"], shop["api_key"])
    for name in ("mei", "jun"):
        customer = op.post("/v1/customers", {"name": name})
        wallet = op.post("/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"})
        seed["wallets"][name] = (wallet["id"], wallet["credential"])
        op.post("/v1/topups", {"wallet_id": wallet["id"], "amount": 50_000, "currency": "CNY"})
    for name, amount in (("mei", 1_250), ("jun", 3_480), ("mei", 990)):
        op.as_(seed["wallets"][name][1]).post("/v1/payments", {"merchant_id": shop["id"], "amount": amount,
                                                               "currency": "CNY"})
    biller = op.post("/v1/billers", {"name": "City Water", "city": "Hangzhou"})
    water = op.as_(biller["api_key"])
    seed["biller_id"] = biller["id"]
    due = (datetime.now(timezone.utc) + timedelta(days=20)).date()
    seed["bills"] = [water.post("/v1/bills", {"consumer_number": "HZ-1001", "period": due.strftime("%Y-%m"),
                                              "amount_due": amount, "currency": "CNY",
                                              "due_date": due.isoformat()})
                     for amount in (12_345, 6_780)]
    bus = op.post("/v1/merchants", {"name": "City Bus"})
    now = int(time.time())
    rows = {"bus-1": [], "bus-2": []}
    for n in range(12):
        accepted = n % 4 != 3
        rows["bus-1" if n % 2 else "bus-2"].append(
            {"id": f"tap-{n:04d}", "at": now - 600 + n * 30, "kind": "uid", "accepted": accepted,
             "reason": "token" if accepted else "denied_card", "route": "R1" if n < 8 else "R2", "stop": "S1",
             "token": token(n % 5)})
    seed["taps"] = rows["bus-1"] + rows["bus-2"]
    seed["uploads"] = []
    seed["terminals"] = {}
    for name, batch in rows.items():
        terminal = op.post("/v1/terminals", {"merchant_id": bus["id"], "name": name})
        signed = op.as_((terminal["key_id"], bytes.fromhex(terminal["secret"])))
        seed["terminals"][name] = signed
        seed["uploads"].append(signed.post("/v1/taps", {"taps": batch}, expect=200))
    op.post("/v1/issuer/deny-list", {"entry": token(7), "kind": "token", "reason": "reported stolen"})
    served_gateway.seed = seed
    return served_gateway


@pytest.fixture(scope="session")
def camera(tmp_path_factory) -> Camera:
    return Camera(tmp_path_factory.mktemp("camera") / "camera.y4m")


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory, camera):
    """A headless Debian chromium with a fresh profile and the fake camera, driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need the Python package 'playwright' (pip install playwright); "
                    "they use the system chromium, so never run 'playwright install'", pytrace=False)
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"the browser tests need chromium at {CHROMIUM} (apt-get install -y chromium, "
                    "or set TAPSTACK_CHROMIUM)", pytrace=False)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                                  f"--use-file-for-fake-video-capture={camera.path}"],
            viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context):
    """A new tab with no cookies from earlier tests."""
    browser_context.clear_cookies()
    tab = browser_context.new_page()
    yield tab
    tab.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def shot(page, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

