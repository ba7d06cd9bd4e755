"""The phone wallet's server side through Flask's test client: camera frames and photos
decoded by the gateway, the photo form that works without a script, every reason a
scanned code is refused, paying a shop's code once, the ride code's certificate, the
Money tab's forms, and the pages' security headers. (The pages in a real browser, with
the camera: tests/browser/test_wallet_phone.py.)"""
from __future__ import annotations

import io
import re
import urllib.parse
from datetime import timedelta

import pytest
from PIL import Image

from gateway.http.web import codes
from protocol import certs, ed25519, emvqr, signed_qr
from tests.gateway.fixtures import START, ok
from tests.gateway.test_dashboard_web import csrf, sign_in_wallet, text
from wallet import qr as wallet_qr


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def payer(client, world):
    """Wallet a, topped up and signed in; (wallet id, the session's CSRF token)."""
    world.top_up("a", 50_000)
    sign_in_wallet(client, world.wallet("a")[1].auth)
    return world.wallet("a")[0], csrf(client.get("/wallet").get_data(as_text=True))


@pytest.fixture
def water(operator):
    made = ok(operator.post("/v1/billers", {"name": "杭州水务", "name_latin": "Hangzhou Water", "city": "杭州",
                                            "city_latin": "Hangzhou"}), 201)
    return made["id"], operator.as_(made["api_key"])


def bill(water, amount: int = 4_321, **fields) -> dict:
    return ok(water[1].post("/v1/bills", {"consumer_number": "C-9", "period": "2026-11", "amount_due": amount,
                                          "currency": "CNY", "due_date": "2026-12-10", **fields}), 201)


def bill_payload(water, found: dict) -> str:
    return ok(water[1].get(f"/v1/bills/{found['id']}/qr"))["payload"]


def test_a_camera_frame_is_decoded_by_the_gateway_and_answered_in_json(client, payer, water):
    _, token = payer
    payload = bill_payload(water, bill(water))
    frame = lambda body, **headers: client.post("/wallet/scan/frame", data=body,  # noqa: E731
                                                headers={"X-CSRF-Token": token, **headers})
    found = frame(wallet_qr.render_png(payload, box_size=4))
    assert found.get_json() == {"found": True, "text": payload}
    assert frame(png(Image.new("L", (640, 480), 210))).get_json() == {
        "found": False, "seen": False, "message": "No QR code found yet."}
    torn = Image.open(io.BytesIO(wallet_qr.render_png(payload, box_size=4)))
    half = frame(png(torn.crop((0, 0, torn.width, torn.height // 2)))).get_json()
    assert half["found"] is False
    two = Image.new("L", (torn.width * 2 + 20, torn.height), 255)
    two.paste(torn, (0, 0))
    two.paste(Image.open(io.BytesIO(wallet_qr.render_png("https://example.com", box_size=4))), (torn.width + 20, 0))
    assert frame(png(two)).get_json()["message"] == "There are 2 QR codes in the picture. Show one code at a time."
    assert frame(b"not a picture").get_json()["message"] == "That file is not a picture this wallet can read."
    assert client.post("/wallet/scan/frame", data=png(Image.new("L", (8, 8)))).status_code == 400  # no CSRF token
    assert frame(b"\0" * (5 * 1024 * 1024)).status_code == 413
    client.post("/wallet/logout", data={"csrf_token": token})
    gone = frame(wallet_qr.render_png(payload, box_size=4))
    assert gone.status_code == 401 and gone.get_json()["found"] is False


def test_a_photo_posted_by_the_form_alone_goes_to_the_confirm_screen(client, payer, water):
    _, token = payer
    found = bill(water, 6_000)
    payload = bill_payload(water, found)
    upload = lambda data, name="photo.png": client.post(  # noqa: E731
        "/wallet/scan/photo", data={"csrf_token": token, "photo": (io.BytesIO(data), name)},
        content_type="multipart/form-data")
    read = upload(wallet_qr.render_png(payload))
    assert read.status_code == 302
    assert read.headers["Location"] == "/wallet/pay?" + urllib.parse.urlencode({"code": payload})
    confirm = client.get(read.headers["Location"]).get_data(as_text=True)
    assert "60.00 CNY" in text(confirm) and "杭州水务" in confirm and "Hangzhou Water" in confirm
    blank = upload(png(Image.new("L", (400, 300), 230)))
    assert blank.status_code == 422 and "No QR code found in this photo." in text(blank.get_data(as_text=True))
    none = client.post("/wallet/scan/photo", data={"csrf_token": token}, content_type="multipart/form-data")
    assert none.status_code == 400 and "Choose a photo" in text(none.get_data(as_text=True))


def refusal(store, wallet_id: str, text_: str, now=START) -> codes.Refusal:
    with store.read() as tx:
        wallet = tx.one("SELECT * FROM wallets WHERE id = :id", {"id": wallet_id})
        with pytest.raises(codes.Refusal) as err:
            codes.read_code(tx, wallet, text_, now=now)
    return err.value


def test_every_code_that_cannot_be_paid_is_refused_in_words(store, world, water, clock):
    wallet_id, _ = world.wallet("a")
    merchant_id, shop = world.merchant("x")
    terminal_id, till = world.terminal("x")
    open_bill = bill(water, bill_number="N-1")
    payload = bill_payload(water, open_bill)
    sale = ok(till.post("/v1/checkouts", {"amount": 990, "currency": "CNY"}), 201)
    cases = [
        ("", "No code", "No QR code was read."),
        ("TS:ABCDEF", "Not a code to pay", "a wallet shows to a till or a bus validator"),
        ("https://example.com/x", "Not a payment code", "it holds a web address (example.com)"),
        ("Table 7", "Not a payment code", "it holds text, not a payment request"),
        (payload[:-1] + ("0" if payload[-1] != "0" else "1"), "Damaged code", "check digits (CRC) do not match"),
        (emvqr.with_crc("000201" + "52AB"), "Unreadable code", "length 'AB' is not two digits"),
        ("00020101021129370016A000000677010111011300668012345675802TH530376463046197", "Another scheme's code",
         "This is a PromptPay (Thailand) code. This wallet pays tapstack codes only"),
        ("00020101021130470009khqr@aclb0111855124649170215ACLEDA Bank Plc5204599953038405802KH5907BUN MAO"
         "6010Phnom Penh6102126213020901050033164310002KM0107BUN MAO0210Phnom Penh6304E313",
         "Another scheme's code", "This is a KHQR (Cambodia) code for BUN MAO."),
        (emvqr.bill_code(biller_id=water[0], bill_number="N-404", reference="C-9", amount=100, currency="CNY",
                         merchant_name="Hangzhou Water", merchant_city="Hangzhou", expires_at=START + timedelta(days=9)),
         "Unknown bill", "knows no bill N-404"),
        (emvqr.bill_code(biller_id=water[0], bill_number="N-1", reference="C-9", amount=100, currency="USD",
                         merchant_name="Hangzhou Water", merchant_city="Hangzhou", expires_at=START + timedelta(days=9)),
         "Another currency", "asks for USD; your wallet holds CNY"),
        (emvqr.checkout_code(merchant_id=merchant_id, terminal_label="till", amount=990, currency="CNY",
                             merchant_name="Shop x", merchant_city="Beijing", mcc="5411", reference="chk_nope",
                             expires_at=START + timedelta(minutes=5)), "Unknown checkout", "not known here"),
        (emvqr.merchant_code(merchant_id="mer_nobodyatall0000", merchant_name="Ghost", merchant_city="Nowhere",
                             mcc="5411"), "Unknown shop", "a shop this gateway does not know"),
    ]
    for text_, title, says in cases:
        err = refusal(store, wallet_id, text_)
        assert (err.title, says in err.message) == (title, True), (text_, err.message)
    # the bill and the checkout as they change: paid, then too late
    late = START + timedelta(minutes=6)
    assert refusal(store, wallet_id, sale["qr_payload"], late).title == "Checkout expired"
    assert "Ask the cashier for a new one" in refusal(store, wallet_id, sale["qr_payload"], late).message
    ok(world.wallet("a")[1].post(f"/v1/bills/{open_bill['id']}/payments"), 402)  # no money yet: still open
    world.top_up("a", 10_000)
    ok(world.wallet("a")[1].post(f"/v1/bills/{open_bill['id']}/payments"), 201)
    paid = refusal(store, wallet_id, payload)
    assert (paid.title, paid.message) == ("Already paid", "Bill N-1 from 杭州水务 is already paid. There is nothing "
                                                          "to pay.")
    ok(world.wallet("a")[1].post(f"/v1/checkouts/{sale['id']}/payments"), 201)
    assert refusal(store, wallet_id, sale["qr_payload"]).title == "Already paid"
    cancelled = bill(water, bill_number="N-2")
    ok(water[1].post(f"/v1/bills/{cancelled['id']}/cancel"))
    expiring = bill(water, bill_number="N-3", expires_at=(START + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    for number, when, title, says in (("N-2", START, "Bill cancelled", "was cancelled by the biller"),
                                      ("N-3", START + timedelta(days=2), "Bill expired", "could be paid until")):
        printed = emvqr.bill_code(biller_id=water[0], bill_number=number, reference="C-9", amount=4_321,
                                  currency="CNY", merchant_name="Hangzhou Water", merchant_city="Hangzhou",
                                  expires_at=START + timedelta(days=30))  # the code outlives the bill
        err = refusal(store, wallet_id, printed, when)
        assert err.title == title and says in err.message, err.message
    assert expiring["status"] == "open"


def test_a_shops_code_pays_the_typed_amount_once(client, payer, world):
    wallet_id, token = payer
    merchant_id, shop = world.merchant("x")
    payload = ok(shop.get(f"/v1/merchants/{merchant_id}/qr"))["payload"]
    confirm = client.get("/wallet/pay?" + urllib.parse.urlencode({"code": payload})).get_data(as_text=True)
    form = dict(re.findall(r'name="(csrf_token|idempotency_key|code)" value="([^"]*)"', confirm))
    assert 'name="amount_text"' in confirm and form["code"] == payload
    bad = client.post("/wallet/pay", data={**form, "amount": "", "amount_text": "12,50"})
    assert bad.status_code == 400 and "Type the amount as digits, such as 12.50" in text(bad.get_data(as_text=True))
    first = client.post("/wallet/pay", data={**form, "amount": "", "amount_text": "12.5"})
    again = client.post("/wallet/pay", data={**form, "amount": "", "amount_text": "12.5"})
    assert first.status_code == again.status_code == 302 and first.headers["Location"] == again.headers["Location"]
    assert world.available("a") == 50_000 - 1_250
    receipt = client.get(first.headers["Location"]).get_data(as_text=True)
    assert "12.50 CNY" in text(receipt) and "Shop x" in text(receipt)
    other = client.post("/wallet/pay", data={**form, "amount": "", "amount_text": "99"})  # the key, reused
    assert other.status_code == 409 and world.available("a") == 50_000 - 1_250


def test_the_ride_card_is_certified_for_the_signed_in_wallet(client, payer, world, operator, store):
    wallet_id, token = payer
    seed = bytes(range(32))
    body = {"public_key": ed25519.public_key(seed).hex()}
    assert client.post("/wallet/ride/card", json=body).status_code == 400  # no CSRF token
    made = client.post("/wallet/ride/card", json=body, headers={"X-CSRF-Token": token})
    answer = made.get_json()
    assert made.status_code == 200 and answer["lifetime"] == 60
    keys = {bytes.fromhex(k["key_id"]): bytes.fromhex(k["public_key"]) for k in ok(operator.get("/v1/issuer/keys"))["data"]}
    cert = certs.verify(certs.parse(bytes.fromhex(answer["certificate"])), keys, int(START.timestamp()))
    assert cert.card_public_key == ed25519.public_key(seed) and cert.card_id.hex() == answer["card_id"]
    code = signed_qr.ticket_code(seed, cert, issued_at=START, nonce=b"\1" * 8, ticket_id=b"\2" * 8, product=1,
                                 route="", valid_from=START, valid_until=START + timedelta(seconds=60))
    assert signed_qr.verify(code, keys, START).card_id == cert.card_id
    bad = client.post("/wallet/ride/card", json={"public_key": "00"}, headers={"X-CSRF-Token": token})
    assert bad.status_code == 400 and "64 hex digits" in bad.get_json()["message"]
    ok(operator.post(f"/v1/wallets/{wallet_id}/lock", {"reason": "test"}))
    locked = client.post("/wallet/ride/card", json={"public_key": ed25519.public_key(b"\3" * 32).hex()},
                         headers={"X-CSRF-Token": token})
    assert locked.status_code == 409 and "locked" in locked.get_json()["message"]


def test_top_up_unlink_and_lock_are_forms_on_the_money_tab(client, payer, world, store):
    wallet_id, token = payer
    page = client.get("/wallet/money").get_data(as_text=True)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
    for _ in range(2):
        done = client.post("/wallet/topup", data={"csrf_token": token, "idempotency_key": key, "amount": "25"})
        assert done.status_code == 302
    assert world.available("a") == 50_000 + 2_500
    assert "Topped up 25.00 CNY." in text(client.get(done.headers["Location"]).get_data(as_text=True))
    assert client.get("/wallet/money?after=x").status_code == 400
    assert "Lock your wallet?" in text(client.get("/wallet/lock").get_data(as_text=True))
    locked = client.post("/wallet/lock", data={"csrf_token": token})
    assert locked.status_code == 200 and "Wallet locked" in text(locked.get_data(as_text=True))
    with store.read() as tx:
        assert tx.one("SELECT status FROM wallets WHERE id = :id", {"id": wallet_id})["status"] == "locked"
    key = re.search(r'name="idempotency_key" value="([^"]+)"', client.get("/wallet/money").get_data(as_text=True)).group(1)
    refused = client.post("/wallet/topup", data={"csrf_token": token, "idempotency_key": key, "amount": "25"})
    assert refused.status_code == 409 and "locked" in text(refused.get_data(as_text=True))


def test_wallet_pages_may_run_the_gateways_own_scripts_and_use_the_camera_the_dashboard_neither(client, payer):
    wallet = client.get("/wallet/scan")
    policy = wallet.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert wallet.headers["Permissions-Policy"].startswith("camera=(self)")
    dashboard = client.get("/dashboard/login")
    assert "script-src" not in dashboard.headers["Content-Security-Policy"]
    assert "Permissions-Policy" not in dashboard.headers
    for name in ("wallet.js", "scan.js", "ride.js", "qrcode.js"):
        script = client.get(f"/web/static/{name}")
        assert script.status_code == 200 and script.mimetype in ("text/javascript", "application/javascript")
        assert set(re.findall(r"\w+://[^\s\"'`)]+", script.get_data(as_text=True))) <= {"http://www.w3.org/2000/svg"}
