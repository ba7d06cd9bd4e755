"""The phone wallet in Debian's chromium at a phone's size, against a served gateway: codes
scanned through the fake camera (a Y4M made from the code's PNG) and from photos, the
confirm screen, paying once, the receipt; every message a scan can end in; the ride code
the phone signs and draws itself, verified as a validator would; the trips with their
transfers and caps; the Money tab (statement pages, top-up, linked cards, the lock).
Screenshots of every screen go to test-artifacts/browser/."""
from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image

from gateway import dashboard, ledger
from protocol import emvqr, signed_qr
from tests.browser.conftest import Http, shot
from wallet import qr as wallet_qr

PHONE = {"width": 390, "height": 844}
SHANGHAI = dashboard.zone("Asia/Shanghai")
SCAN_SECONDS = 20  # the longest a scan may take before the test says the camera found nothing
RULES = {
    "version": 1, "effective_from": "2026-01-01T00:00:00Z", "currency": "CNY", "timezone": "Asia/Shanghai",
    "products": {"city_flat": {"kind": "flat", "amount": 200}},
    "routes": [{"id": "12", "name": "Railway Station - Hospital", "product": "city_flat",
                "stops": [{"id": "rs", "name": "Railway Station"}, {"id": "hs", "name": "Hospital"}]},
               {"id": "7", "name": "Market - University", "product": "city_flat",
                "stops": [{"id": "ma", "name": "Market"}, {"id": "un", "name": "University"}]}],
    "transfer": {"window_minutes": 90, "max_transfers": 2, "discount": {"kind": "amount", "amount": 100},
                 "same_route": False},
    "concessions": {"adult": {"discount": None, "caps": {"day": 500, "week": 1200}}},
}
PAN = "pan_" + "a" * 32  # a linked bank card's token (no card number anywhere)


@dataclass
class Phone:
    """What the phone tests add to the served gateway: a biller and a shop with Chinese names,
    payers, and a rider whose linked card rode yesterday."""
    biller_id: str
    biller: Http
    shop_id: str
    shop: Http
    bills: list = field(default_factory=list)
    ride_day: date | None = None


def new_wallet(gateway, name: str, amount: int) -> tuple[str, str]:
    op = gateway.operator
    customer = op.post("/v1/customers", {"name": name})
    wallet = op.post("/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"})
    op.post("/v1/topups", {"wallet_id": wallet["id"], "amount": amount, "currency": "CNY"})
    gateway.seed["wallets"][name] = (wallet["id"], wallet["credential"])
    return wallet["id"], wallet["credential"]


@pytest.fixture(scope="session")
def phone(gateway) -> Phone:
    op = gateway.operator
    biller = op.post("/v1/billers", {"name": "杭州水务集团", "name_latin": "Hangzhou Water",
                                     "city": "杭州", "city_latin": "Hangzhou"})
    water = op.as_(biller["api_key"])
    due = (datetime.now(timezone.utc) + timedelta(days=20)).date()
    shop = op.post("/v1/merchants", {"name": "西湖便利店", "name_latin": "West Lake Mart"})
    merchant = op.as_(shop["api_key"])
    merchant.post(f"/v1/merchants/{shop['id']}/qr-profile", {"city": "杭州", "city_latin": "Hangzhou"}, expect=200)
    found = Phone(biller["id"], water, shop["id"], merchant)
    found.bills = [water.post("/v1/bills", {"consumer_number": "HZ-2001", "period": due.strftime("%Y-%m"),
                                            "amount_due": amount, "currency": "CNY", "due_date": due.isoformat()})
                   for amount in (8_860, 4_210, 3_300)]
    for name, amount in (("scanner", 100_000), ("rider", 20_000), ("saver", 30_000), ("loser", 10_000)):
        new_wallet(gateway, name, amount)
    found.ride_day = _ride_yesterday(gateway)
    return found


def _local(day: date, hhmm: str) -> int:
    hour, minute = map(int, hhmm.split(":"))
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI).timestamp())


def _ride_yesterday(gateway) -> date:
    """The rider links a bank card and rides four times yesterday (a transfer, then the daily cap),
    is refused once, and boards again a minute ago; the night's run charges yesterday."""
    (gateway.data_dir / "fare_rules.json").write_text(json.dumps(RULES))
    op = gateway.operator
    wallet_id, credential = gateway.seed["wallets"]["rider"]
    code = op.as_(credential).post(f"/v1/wallets/{wallet_id}/card-links")["code"]
    bus = gateway.seed["terminals"]["bus-1"]
    bus.post(f"/v1/card-links/{code}/tap", {"token": PAN})
    yesterday = (datetime.now(SHANGHAI) - timedelta(days=1)).date()
    rides = [("07:00", "12", "rs", True), ("07:30", "7", "ma", True), ("12:00", "12", "rs", True),
             ("18:00", "7", "ma", True), ("19:00", "12", "rs", False)]
    taps = [{"id": f"ride-{n:03d}", "at": _local(yesterday, hhmm), "kind": "emv", "accepted": ok,
             "reason": "token" if ok else "deny_listed", "route": route, "stop": stop, "rules_version": 1,
             "token": PAN} for n, (hhmm, route, stop, ok) in enumerate(rides)]
    taps.append({"id": "ride-now", "at": int(time.time()) - 60, "kind": "emv", "accepted": True, "reason": "token",
                 "route": "12", "stop": "rs", "rules_version": 1, "token": PAN})
    bus.post("/v1/taps", {"taps": taps}, expect=200)
    gateway.seed["taps"].extend(taps)  # the dashboard test counts riders from the seeded taps
    op.post("/v1/fare-charges/runs", {"day": yesterday.isoformat()}, expect=200)
    return yesterday


def sign_in(page, gateway, name: str) -> tuple[str, str]:
    wallet_id, credential = gateway.seed["wallets"][name]
    page.set_viewport_size(PHONE)
    page.goto(gateway.base + "/wallet")
    page.fill("#credential", credential)
    page.click("button[type=submit]")
    page.wait_for_selector("#balance")
    return wallet_id, credential


def available(gateway, name: str) -> int:
    wallet_id, credential = gateway.seed["wallets"][name]
    return gateway.operator.as_(credential).get(f"/v1/wallets/{wallet_id}/balance")["available"]


def png(api: Http, path: str) -> bytes:
    import urllib.request
    request = urllib.request.Request(api.base + path, headers={"Authorization": f"Bearer {api.auth}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read()


def scan(page, gateway, camera, image) -> None:
    """Show `image` to the camera and open the scanner; returns once the page left it for the
    confirm screen (or a refusal)."""
    camera.show(image)
    page.goto(gateway.base + "/wallet/scan")
    page.wait_for_url(re.compile(r"/wallet/pay\?code="), timeout=SCAN_SECONDS * 1000)
    page.wait_for_load_state()


def fits_the_phone(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    overflowing = page.evaluate("""() => [...document.querySelectorAll('.panel')]
        .filter(p => p.scrollWidth > p.clientWidth + 1).map(p => p.querySelector('h1,h2')?.id || '?')""")
    assert overflowing == []


def text(page, selector: str) -> str:
    return " ".join(page.locator(selector).inner_text().split())


# -- scanning and paying --------------------------------------------------------------------------

def test_a_bill_scanned_with_the_camera_is_paid_end_to_end_and_shows_the_local_name(page, gateway, phone, camera,
                                                                                    artifacts):
    sign_in(page, gateway, "scanner")
    bill = phone.bills[0]
    before = available(gateway, "scanner")
    scan(page, gateway, camera, png(phone.biller, f"/v1/bills/{bill['id']}/qr.png"))
    assert text(page, "#payee") == "杭州水务集团" and text(page, "#payee-latin") == "Hangzhou Water"
    assert text(page, "#amount") == ledger.format_amount(bill["amount_due"], "CNY")
    assert text(page, "#due") == bill["due_date"]
    assert bill["bill_number"] in text(page, ".pairs") and "HZ-2001" in text(page, ".pairs")
    assert text(page, "#balance-after") == ledger.format_amount(before - bill["amount_due"], "CNY")
    fits_the_phone(page)
    shot(page, artifacts, "phone-confirm-bill")
    page.click("#confirm")
    page.wait_for_selector("#receipt")
    assert text(page, "#paid-amount") == ledger.format_amount(bill["amount_due"], "CNY")
    assert text(page, "#payee") == "杭州水务集团"
    after = available(gateway, "scanner")
    assert after == before - bill["amount_due"] == int(page.locator("#balance").get_attribute("data-amount"))
    assert phone.biller.get(f"/v1/bills/{bill['id']}")["status"] == "paid"
    fits_the_phone(page)
    shot(page, artifacts, "phone-receipt-bill")
    page.reload()  # the receipt again: nothing more is paid
    page.wait_for_selector("#receipt")
    assert available(gateway, "scanner") == after
    page.go_back()  # the confirm screen again: the bill is paid now
    page.wait_for_selector("#refusal")
    assert text(page, "#h-refused") == "Already paid"
    assert text(page, "#refusal") == f"Bill {bill['bill_number']} from 杭州水务集团 is already paid. There is nothing to pay."
    shot(page, artifacts, "phone-refused-already-paid")
