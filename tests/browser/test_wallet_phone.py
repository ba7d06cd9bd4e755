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

from gateway.core import dashboard, ledger
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


def photo_of(code_png: bytes, *, seed: int = 3) -> bytes:
    """A phone photo of a printed code: a grainy page, the code a little turned, as a JPEG."""
    rng = np.random.default_rng(seed)
    page = Image.fromarray(rng.normal(200, 18, (1200, 1600)).clip(0, 255).astype(np.uint8))
    code = Image.open(io.BytesIO(code_png)).convert("L").rotate(7, expand=True, fillcolor=255)
    code = code.resize((700, 700 * code.height // code.width))
    page.paste(code, (450, 220))
    out = io.BytesIO()
    page.convert("RGB").save(out, format="JPEG", quality=82)
    return out.getvalue()


def test_a_photo_of_a_bill_is_read_and_paid_and_a_photo_without_a_code_says_so(page, gateway, phone, camera,
                                                                             artifacts, tmp_path):
    sign_in(page, gateway, "scanner")
    bill = phone.bills[1]
    before = available(gateway, "scanner")
    camera.show(None)  # the camera sees an empty desk: the code is in the photo
    page.goto(gateway.base + "/wallet/scan")
    blank = tmp_path / "desk.jpg"
    Image.new("RGB", (1200, 900), (230, 225, 215)).save(blank)
    page.set_input_files("#photo", str(blank))
    page.wait_for_selector("#scan-error:not([hidden])")
    assert text(page, "#scan-error") == ("No QR code found in this photo. Fit the whole code in the frame, "
                                         "15 to 30 cm away, in good light.")
    shot(page, artifacts, "phone-scan-photo-without-code")
    photo = tmp_path / "bill.jpg"
    photo.write_bytes(photo_of(png(phone.biller, f"/v1/bills/{bill['id']}/qr.png")))
    page.set_input_files("#photo", str(photo))
    page.wait_for_url(re.compile(r"/wallet/pay\?code="), timeout=SCAN_SECONDS * 1000)
    assert text(page, "#amount") == ledger.format_amount(bill["amount_due"], "CNY")
    page.click("#confirm")
    page.wait_for_selector("#receipt")
    assert available(gateway, "scanner") == before - bill["amount_due"]
    assert phone.biller.get(f"/v1/bills/{bill['id']}")["status"] == "paid"


def test_a_shops_static_code_asks_for_the_amount_and_shows_the_balance_after_as_it_is_typed(page, gateway, phone,
                                                                                          camera, artifacts):
    wallet_id, credential = sign_in(page, gateway, "scanner")
    before = available(gateway, "scanner")
    scan(page, gateway, camera, png(phone.shop, f"/v1/merchants/{phone.shop_id}/qr.png"))
    assert text(page, "#payee") == "西湖便利店" and text(page, "#payee-latin") == "West Lake Mart"
    assert page.locator("#amount").count() == 0
    page.fill("#amount_text", "12.5")
    assert text(page, "#balance-after") == ledger.format_amount(before - 1250, "CNY")
    page.fill("#amount_text", "12.505")  # three decimals: not an amount of CNY
    assert text(page, "#balance-after") == "—"
    page.fill("#amount_text", "12.50")
    fits_the_phone(page)
    shot(page, artifacts, "phone-confirm-shop")
    page.click("#confirm")
    page.wait_for_selector("#receipt")
    assert text(page, "#paid-amount") == "12.50 CNY" and text(page, "#payee") == "西湖便利店"
    mine = gateway.operator.as_(credential).get("/v1/payments")["data"]
    assert (mine[0]["merchant_id"], mine[0]["amount"], mine[0]["wallet_id"]) == (phone.shop_id, 1250, wallet_id)
    assert available(gateway, "scanner") == before - 1250


def test_a_checkout_code_pays_once_however_often_the_pay_button_or_the_form_is_sent(page, gateway, phone, camera,
                                                                                  artifacts):
    wallet_id, credential = sign_in(page, gateway, "scanner")
    sale = phone.shop.post("/v1/checkouts", {"amount": 2_680, "currency": "CNY", "terminal_label": "Lane 2"})
    before = available(gateway, "scanner")
    scan(page, gateway, camera, png(phone.shop, f"/v1/checkouts/{sale['id']}/qr.png"))
    assert text(page, "#amount") == "26.80 CNY" and "Lane 2" in text(page, ".pairs")
    form = {name: page.locator(f'form.pay input[name="{name}"]').get_attribute("value")
            for name in ("csrf_token", "idempotency_key", "code", "amount")}
    shot(page, artifacts, "phone-confirm-checkout")
    page.dblclick("#confirm")
    page.wait_for_selector("#receipt")
    receipt = page.url
    # the same form sent again, as a reload of the POST or a retry does: the same receipt, no payment
    again = page.request.post(gateway.base + "/wallet/pay", form=form, max_redirects=0)
    assert again.status == 302 and again.headers["location"].endswith(receipt.split(gateway.base)[1])
    assert available(gateway, "scanner") == before - 2_680
    assert phone.shop.get(f"/v1/checkouts/{sale['id']}")["status"] == "paid"
    paid = [p for p in gateway.operator.as_(credential).get("/v1/payments")["data"]
            if p["description"] == f"checkout {sale['id']}"]
    assert len(paid) == 1


def _code(gateway, phone, kind: str) -> str | bytes:
    """The text (or image) of a code that cannot be paid, of each kind a payer meets."""
    if kind == "web address":
        return "https://example.com/menu"
    if kind == "damaged":  # a bill's code with one digit of its CRC changed
        payload = phone.biller.get(f"/v1/bills/{phone.bills[2]['id']}/qr")["payload"]
        return payload[:-1] + ("0" if payload[-1] != "0" else "1")
    if kind == "expired checkout":  # an old checkout code: its expiry passed a minute ago
        sale = phone.shop.post("/v1/checkouts", {"amount": 500, "currency": "CNY"})
        return emvqr.checkout_code(merchant_id=phone.shop_id, terminal_label="till", amount=500, currency="CNY",
                                   merchant_name="West Lake Mart", merchant_city="Hangzhou", mcc="5411",
                                   reference=sale["id"],
                                   expires_at=datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1))
    if kind == "PromptPay":
        return "00020101021229370016A000000677010111011300660000000005802TH530376454044.226304E469"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, title, says", [
    ("web address", "Not a payment code", "This QR code is not a payment code: it holds a web address (example.com), "
                                          "which was not opened."),
    ("damaged", "Damaged code", "This payment code is damaged: its check digits (CRC) do not match"),
    ("expired checkout", "Checkout expired", "This checkout code expired at "),
    ("PromptPay", "Another scheme's code", "This is a PromptPay (Thailand) code. This wallet pays tapstack codes only"),
])
def test_a_code_that_cannot_be_paid_says_why_and_pays_nothing(page, gateway, phone, camera, artifacts, kind, title,
                                                               says):
    sign_in(page, gateway, "scanner")
    before = available(gateway, "scanner")
    scan(page, gateway, camera, wallet_qr.render_png(_code(gateway, phone, kind), box_size=6))
    page.wait_for_selector("#refusal")
    assert text(page, "#h-refused") == title
    assert says in text(page, "#refusal") and "Nothing was paid" in text(page, "#refusal")
    assert available(gateway, "scanner") == before
    fits_the_phone(page)
    shot(page, artifacts, f"phone-refused-{kind.replace(' ', '-')}")


def test_with_no_code_in_view_the_scanner_keeps_looking_then_gives_advice(page, gateway, camera, artifacts):
    sign_in(page, gateway, "scanner")
    camera.show(None)
    page.goto(gateway.base + "/wallet/scan")
    page.wait_for_selector("#camera")
    page.wait_for_selector("#scan-hint:not([hidden])", timeout=SCAN_SECONDS * 1000)
    assert "/wallet/scan" in page.url and text(page, "#scan-status") == "Looking for a QR code…"
    assert text(page, "#scan-hint").startswith("No code yet. Hold the phone 15 to 30 cm from the code")
    assert page.evaluate("document.getElementById('camera').videoWidth") == 640  # the camera's own picture
    fits_the_phone(page)
    shot(page, artifacts, "phone-scan-no-code")



def test_where_the_browser_has_a_barcode_detector_the_phone_decodes_the_frames_itself(page, gateway, phone, camera):
    """Debian's chromium has no BarcodeDetector (Chrome has it on Android, ChromeOS and macOS); a
    stand-in that reports a code once it has been shown the camera's picture a few times shows the
    page uses it, on the video itself, and sends no frame to the gateway."""
    sign_in(page, gateway, "scanner")
    payload = phone.shop.get(f"/v1/merchants/{phone.shop_id}/qr")["payload"]
    page.add_init_script("""window.BarcodeDetector = class {
        static async getSupportedFormats() { return ["qr_code", "ean_13"]; }
        constructor(options) { window.detectorFormats = options.formats; }
        async detect(source) {
            window.detected = (window.detected || 0) + (source instanceof HTMLVideoElement && source.videoWidth ? 1 : 0);
            return window.detected > 2 ? [{rawValue: %s, format: "qr_code"}] : [];
        }
    };""" % json.dumps(payload))
    sent = []
    page.on("request", lambda r: sent.append(r.url) if "/wallet/scan/frame" in r.url else None)
    camera.show(None)
    page.goto(gateway.base + "/wallet/scan")
    page.wait_for_url(re.compile(r"/wallet/pay\?code="), timeout=SCAN_SECONDS * 1000)
    assert text(page, "#payee") == "西湖便利店" and sent == []

# -- riding ---------------------------------------------------------------------------------------

def issuer_keys(gateway) -> dict[bytes, bytes]:
    return {bytes.fromhex(k["key_id"]): bytes.fromhex(k["public_key"])
            for k in gateway.operator.get("/v1/issuer/keys")["data"]}


def ride_code(page) -> str:
    page.wait_for_selector("#ride-code svg.qr")
    return page.locator("#ride-code").get_attribute("data-text")


def test_the_ride_code_is_signed_by_the_phone_verifies_as_a_validator_checks_it_and_refreshes_itself(
        page, gateway, phone, artifacts):
    wallet_id, credential = sign_in(page, gateway, "rider")
    page.goto(gateway.base + "/wallet/ride")
    shown = ride_code(page)
    # what the validator's camera reads off the screen is the code the page made
    assert wallet_qr.read_text(page.locator("#ride-code").screenshot()) == shown
    ticket = signed_qr.verify(shown, issuer_keys(gateway), datetime.now(timezone.utc))
    assert isinstance(ticket, signed_qr.Ticket) and ticket.route == "" and ticket.product == 1
    assert (ticket.expires_at - ticket.issued_at).total_seconds() == 60
    cards = gateway.operator.as_(credential).get(f"/v1/wallets/{wallet_id}/cards")["data"]
    assert [c["card_id"] for c in cards] == [ticket.card_id.hex()]  # certified for this wallet, once
    assert re.fullmatch(r"Valid for \d+ s · refreshes by itself", text(page, "#ride-status"))
    fits_the_phone(page)
    shot(page, artifacts, "phone-ride")
    # a new code on coming back to the page (and every 30 s): another nonce, the same card
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    page.wait_for_function("t => document.getElementById('ride-code').dataset.text !== t", arg=shown)
    fresh = signed_qr.verify(ride_code(page), issuer_keys(gateway), datetime.now(timezone.utc))
    assert fresh.card_id == ticket.card_id and fresh.nonce != ticket.nonce
    seen = signed_qr.refuse_replay(ticket, {}, datetime.now(timezone.utc))
    seen = signed_qr.refuse_replay(fresh, seen, datetime.now(timezone.utc))  # each code works once
    with pytest.raises(signed_qr.Replayed):
        signed_qr.refuse_replay(ticket, seen, datetime.now(timezone.utc))
    # the key stays in the phone: a reload signs with it again, no new certificate
    page.reload()
    again = signed_qr.verify(ride_code(page), issuer_keys(gateway), datetime.now(timezone.utc))
    assert again.card_id == ticket.card_id
    assert len(gateway.operator.as_(credential).get(f"/v1/wallets/{wallet_id}/cards")["data"]) == 1


def test_trips_show_the_taps_fares_transfer_and_the_daily_cap(page, gateway, phone, artifacts):
    sign_in(page, gateway, "rider")
    page.goto(gateway.base + "/wallet/ride")
    trips = page.locator("#trips li.trip")
    rows = [" ".join(trips.nth(i).inner_text().split()) for i in range(trips.count())]
    day = phone.ride_day.isoformat()
    yesterday = [r for r in rows if day in r]
    assert len(yesterday) == 5 and len(rows) == 6, rows
    newest, refused, capped, noon, transfer, first = rows[0], *yesterday
    assert "Route 12 · Railway Station - Hospital" in newest and "2.00 CNY to be charged" in newest
    assert "refused" in refused and "card on the deny-list" in refused
    assert "Daily cap reached" in capped and "0.00 CNY free" in capped
    assert "2.00 CNY charged" in noon and "Transfer" not in noon
    assert "Transfer" in transfer and "1.00 CNY charged" in transfer
    assert "Route 12" in first and "2.00 CNY charged" in first and "linked bank card" in first
    # what the trips charged is what the wallet paid: 2.00 + 1.00 + 2.00 + 0.00
    wallet_id, credential = gateway.seed["wallets"]["rider"]
    charged = gateway.operator.as_(credential).get(f"/v1/wallets/{wallet_id}/fare-charges")["data"]
    assert sum(c["amount"] for c in charged if c["status"] == "charged") == 500
    breakdown = trips.nth(2).locator("details.fare")
    breakdown.locator("summary").click()
    assert "Daily cap for" in " ".join(breakdown.inner_text().split())
    fits_the_phone(page)
    shot(page, artifacts, "phone-trips")


# -- money ----------------------------------------------------------------------------------------

def test_the_statement_pages_by_cursor_as_the_api_does(page, gateway, phone, artifacts):
    wallet_id, credential = sign_in(page, gateway, "saver")
    for amount in range(101, 121):  # twenty payments: two pages and a bit
        gateway.operator.as_(credential).post("/v1/payments", {"merchant_id": phone.shop_id, "amount": amount,
                                                               "currency": "CNY"})
    api = gateway.operator.as_(credential)
    page.goto(gateway.base + "/wallet/money")
    seen, cursor = [], None
    while True:
        lines = page.locator("#statement-lines li")
        seqs = [int(lines.nth(i).get_attribute("data-seq")) for i in range(lines.count())]
        expected = api.get(f"/v1/wallets/{wallet_id}/statement?limit=15" + (f"&after={cursor}" if cursor else ""))
        assert seqs == [e["seq"] for e in expected["data"]]
        assert "Paid 西湖便利店" in text(page, "#statement-lines li:first-child") or cursor
        seen += seqs
        cursor = expected["next_cursor"]
        if page.locator("#older").count() == 0:
            assert cursor is None
            break
        if not seen[15:]:
            fits_the_phone(page)
            shot(page, artifacts, "phone-money")
        page.click("#older")
        page.wait_for_load_state()
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 21  # 20 payments and the top-up


def test_a_top_up_sent_twice_tops_up_once(page, gateway, phone, artifacts):
    sign_in(page, gateway, "saver")
    before = available(gateway, "saver")
    page.goto(gateway.base + "/wallet/money")
    page.click("button.chip[data-value='50']")
    form = {name: page.locator(f'form.topup input[name="{name}"]').get_attribute("value")
            for name in ("csrf_token", "idempotency_key")}
    page.dblclick("#topup-button")
    page.wait_for_selector("#topped")
    assert text(page, "#topped") == "Topped up 50.00 CNY."
    again = page.request.post(gateway.base + "/wallet/topup", form={**form, "amount": "50"}, max_redirects=0)
    assert again.status == 302
    assert available(gateway, "saver") == before + 5_000
    page.fill("#topup-amount", "1,000")
    page.click("#topup-button")
    page.wait_for_selector("#topup-error")
    assert text(page, "#topup-error").startswith("Type the amount as digits, such as 12.50")
    assert available(gateway, "saver") == before + 5_000


def test_a_linked_card_is_listed_and_unlinked(page, gateway, phone, artifacts):
    wallet_id, credential = sign_in(page, gateway, "rider")
    page.goto(gateway.base + "/wallet/money")
    cards = page.locator("#linked-cards li")
    assert cards.count() == 1 and "Bank card" in text(page, "#linked-cards li")
    assert PAN not in page.content()  # a token's tail only
    page.click("button:text('Link a card')")
    page.wait_for_selector("#link-code")
    assert re.search(r"Link code [0-9A-Z]{5}-[0-9A-Z]{5}", text(page, "#link-code"))
    shot(page, artifacts, "phone-money-cards")
    page.locator("#linked-cards details.unlink summary").click()
    page.click("#linked-cards button.danger")
    page.wait_for_selector("#unlinked")
    assert page.locator("#linked-cards li").count() == 0
    assert gateway.operator.as_(credential).get(f"/v1/wallets/{wallet_id}/linked-cards")["data"] == []


def test_a_lost_phones_wallet_is_locked_from_the_page_and_its_ride_code_is_denied(page, gateway, phone, artifacts):
    wallet_id, credential = sign_in(page, gateway, "loser")
    page.goto(gateway.base + "/wallet/ride")
    card_id = signed_qr.verify(ride_code(page), issuer_keys(gateway), datetime.now(timezone.utc)).card_id.hex()
    page.goto(gateway.base + "/wallet/money")
    page.click("#lock")
    page.wait_for_selector("#lock-confirm")
    shot(page, artifacts, "phone-lock-confirm")
    page.click("#lock-confirm")
    page.wait_for_selector("#lock-result")
    assert "refused at every validator and till" in text(page, "#lock-result")
    shot(page, artifacts, "phone-locked")
    assert gateway.operator.get(f"/v1/wallets/{wallet_id}")["status"] == "locked"
    deny = gateway.operator.get("/v1/issuer/deny-list")
    assert card_id in {e["entry"] for e in deny["entries"]}  # validators refuse its ride codes
    page.goto(gateway.base + "/wallet")
    assert "This wallet is locked" in text(page, "#locked")
    page.goto(gateway.base + "/wallet/ride")
    assert page.locator("#ride-code").count() == 0 and "no ride code" in text(page, "#ride-locked")
    before = available(gateway, "loser")
    page.goto(gateway.base + "/wallet/pay?code=" + __import__("urllib.parse").parse.quote(
        phone.shop.get(f"/v1/merchants/{phone.shop_id}/qr")["payload"]))
    page.fill("#amount_text", "5")
    page.click("#confirm")
    page.wait_for_selector("#pay-error")
    assert text(page, "#pay-error") == "This wallet is locked: it cannot pay until the issuer unlocks it."
    assert available(gateway, "loser") == before


# -- the pages themselves -------------------------------------------------------------------------

def test_the_phones_qr_encoder_draws_the_symbol_python_draws(page, gateway, phone):
    sign_in(page, gateway, "scanner")
    page.goto(gateway.base + "/wallet/ride")
    page.wait_for_function("window.tapstackQr !== undefined")
    alphabet = signed_qr._B45
    rng = np.random.default_rng(5)
    texts = ["TS:" + "".join(rng.choice(list(alphabet), n)) for n in (20, 150, 318, 640)]
    texts += ["0002010102", "https://example.com/账单"]
    for text_ in texts:
        drawn = np.array(page.evaluate("t => tapstackQr.matrix(t)", text_), dtype=bool)
        assert (drawn == wallet_qr.modules(text_)[4:-4, 4:-4]).all(), len(text_)  # same version, mask, modules


def test_every_wallet_page_fits_a_phone_and_loads_nothing_from_elsewhere(page, gateway, phone, camera, artifacts):
    sign_in(page, gateway, "scanner")
    camera.show(None)
    elsewhere = []
    page.on("request", lambda r: elsewhere.append(r.url) if not r.url.startswith((gateway.base, "data:", "blob:"))
            else None)
    for path, name in (("/wallet", "phone-pay"), ("/wallet/scan", "phone-scan"), ("/wallet/ride", "phone-ride-tab"),
                       ("/wallet/money", "phone-money-tab"), ("/wallet/lock", "phone-lock")):
        page.goto(gateway.base + path)
        page.wait_for_selector("#ride-code svg.qr" if path == "/wallet/ride" else "main")
        fits_the_phone(page)
        shot(page, artifacts, name)
    page.goto("about:blank")  # the scanner's camera off
    response = page.request.get(gateway.base + "/wallet/scan")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "http" not in policy
    assert response.headers["permissions-policy"].startswith("camera=(self)")
    assert elsewhere == []
