"""/dashboard and /wallet through Flask's test client: sign-in, CSRF, empty states, the figures
on the page, paying a bill once however often the form is sent, and the pay code."""
from __future__ import annotations

import re
from html import unescape

import pytest

from gateway.http.auth import operator_key
from tests.gateway.fixtures import ok
from tests.gateway.test_clearing import upload
from tests.gateway.test_dashboard import T0, issue, tap_row


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def figure(html: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}">(.*?)</dd>|data-figure="{name}">(.*?)</strong>', html, re.S)
    return unescape(re.sub(r"<[^>]+>", " ", found.group(1) or found.group(2))).split()


def text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.fixture
def biller(operator):
    made = ok(operator.post("/v1/billers", {"name": "City Water", "city": "Hangzhou"}), 201)
    return made["id"], operator.as_(made["api_key"])


def sign_in_operator(client, config):
    page = client.get("/dashboard/login").get_data(as_text=True)
    answer = client.post("/dashboard/login", data={"csrf_token": csrf(page), "operator_key": operator_key(config)})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/dashboard")


def sign_in_wallet(client, credential: str):
    page = client.get("/wallet").get_data(as_text=True)
    answer = client.post("/wallet/login", data={"csrf_token": csrf(page), "credential": credential})
    assert answer.status_code == 302


# -- operator ----------------------------------------------------------------------------------

def test_the_dashboard_needs_the_operator_key_posted_in_a_form(client, config):
    assert client.get("/dashboard").headers["Location"].endswith("/dashboard/login")
    page = client.get("/dashboard/login").get_data(as_text=True)
    assert 'method="post"' in page and 'type="password"' in page
    wrong = client.post("/dashboard/login", data={"csrf_token": csrf(page), "operator_key": "op_" + "0" * 64})
    assert wrong.status_code == 401 and "not this gateway" in wrong.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302
    forged = client.post("/dashboard/login", data={"operator_key": operator_key(config)})  # no CSRF token
    assert forged.status_code == 400 and forged.mimetype == "text/html"
    assert "reload the page" in forged.get_data(as_text=True)
    sign_in_operator(client, config)
    assert client.get("/dashboard").status_code == 200


def test_signing_out_ends_the_session(client, config):
    sign_in_operator(client, config)
    page = client.get("/dashboard").get_data(as_text=True)
    assert client.post("/dashboard/logout", data={"csrf_token": csrf(page)}).status_code == 302
    assert client.get("/dashboard").status_code == 302


def test_each_signed_in_page_signs_out_of_its_own_session_and_a_sign_in_page_offers_none(client, config, world):
    assert "Sign out" not in client.get("/dashboard/login").get_data(as_text=True)
    assert "Sign out" not in client.get("/wallet").get_data(as_text=True)   # the wallet's sign-in form
    sign_in_operator(client, config)
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert dashboard.count("Sign out") == 1 and 'action="/dashboard/logout"' in dashboard
    sign_in_wallet(client, world.wallet("a")[1].auth)
    wallet = client.get("/wallet").get_data(as_text=True)
    assert wallet.count("Sign out") == 1 and 'action="/wallet/logout"' in wallet


def test_pages_carry_a_strict_policy_and_are_not_cached(client, config):
    sign_in_operator(client, config)
    answer = client.get("/dashboard")
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert "<script" not in answer.get_data(as_text=True)
    css = client.get("/web/static/tapstack.css")
    assert css.status_code == 200 and b"http" not in css.data  # no external fonts or imports


def test_an_empty_gateway_says_so_in_every_panel(client, config):
    sign_in_operator(client, config)
    page = text(client.get("/dashboard").get_data(as_text=True))
    for empty in ("No taps uploaded yet.", "No validator has uploaded taps yet.", "No billers yet.",
                  "Nothing is denied.", "ok: the books balance", "No money has moved yet."):
        assert empty in page, empty
    assert "Times in Asia/Shanghai" in page


def test_the_figures_on_the_page_are_the_days(client, config, world, clock):
    rows = [tap_row(1, at=T0, rider=1), tap_row(2, at=T0 + 60, rider=2, route="R2"),
            tap_row(3, at=T0 + 120, rider=3, accepted=False, reason="denied_card")]
    upload(world, rows)
    world.top_up("a", 5_000)
    world.pay("a", "x", 1_234)
    sign_in_operator(client, config)
    html = client.get("/dashboard").get_data(as_text=True)
    assert figure(html, "riders") == ["2"]
    assert (figure(html, "taps"), figure(html, "accepted"), figure(html, "denied")) == (["3"], ["2"], ["1"])
    assert figure(html, "shop") == ["1", "·", "12.34", "CNY"]
    assert figure(html, "online") == ["1"] and figure(html, "offline") == ["0"]
    assert "denied_card" in text(re.search(r'id="denied-reasons".*?</table>', html, re.S).group(0))
    assert 'role="img"' in html and "Taps per hour, 2026-11-27 (Asia/Shanghai)" in html
    # the 17:00 Shanghai hour holds all three taps, as text in the chart
    assert "<title>17: 3</title>" in html
    other_day = client.get("/dashboard?day=2026-11-20").get_data(as_text=True)
    assert figure(other_day, "taps") == ["0"] and "No taps on 2026-11-20." in text(other_day)
    bad_day = client.get("/dashboard?day=soon").get_data(as_text=True)
    assert "not a date" in bad_day and figure(bad_day, "taps") == ["3"]


def test_the_credentials_panel_lists_keys_with_status_and_expiry(client, config, world, operator):
    merchant_id, shop = world.merchant("x")
    rolled = ok(shop.post(f"/v1/merchants/{merchant_id}/api_keys/roll", {"expires_in": 3600}), 201)
    terminal_id, _ = world.terminal("y")
    ok(operator.post(f"/v1/terminals/{terminal_id}/suspend"))
    ok(operator.post(f"/v1/wallets/{world.wallet('b')[0]}/credential/revoke"))
    sign_in_operator(client, config)
    html = client.get("/dashboard").get_data(as_text=True)
    keys = text(re.search(r'id="api-keys".*?</table>', html, re.S).group(0))
    assert f"sk_…{rolled['last4']} active" in keys and "expiring 2026-11-27T09:00:00Z 2026-11-27T10:00:00Z" in keys
    assert rolled["secret"] not in html
    assert figure(html, "revoked-wallets") == ["1"] and figure(html, "stopped-terminals") == ["1"]
    assert f"{terminal_id} till 1 Shop y suspended" in text(re.search(r'id="stopped-terminals".*?</table>',
                                                                       html, re.S).group(0))


def test_the_time_zone_is_a_setting_named_on_the_page(client, config, world):
    upload(world, [tap_row(1, at=T0)])  # 09:00 UTC
    sign_in_operator(client, config)
    page = client.get("/dashboard").get_data(as_text=True)
    token = csrf(page)
    bad = client.post("/dashboard/settings", data={"csrf_token": token, "zone": "Mars/Olympus",
                                                   "online_minutes": "15"})
    assert bad.status_code == 400 and "Mars/Olympus" in unescape(bad.get_data(as_text=True))
    client.post("/dashboard/settings", data={"csrf_token": token, "zone": "Europe/London", "online_minutes": "5"})
    page = text(client.get("/dashboard").get_data(as_text=True))
    assert "Times in Europe/London" in page and "within 5 minutes" in page
    assert "2026-11-27 09:00" in page  # the validator's last tap, in London time


# -- wallet ------------------------------------------------------------------------------------

def test_a_wallet_signs_in_with_its_credential_and_sees_its_balance_and_activity(client, world):
    world.top_up("a", 8_800)
    world.pay("a", "x", 800)
    page = client.get("/wallet").get_data(as_text=True)
    wrong = client.post("/wallet/login", data={"csrf_token": csrf(page), "credential": "wk_nobody"})
    assert wrong.status_code == 401
    sign_in_wallet(client, world.wallet("a")[1].auth)
    page = client.get("/wallet").get_data(as_text=True)
    assert re.search(r'id="balance" data-amount="8000"', page)
    assert "Paid Shop x" in text(page) and "Top-up" in text(page)
    assert "No billers take payments here yet." in text(page)


def test_a_bill_is_paid_once_however_often_the_confirmation_is_sent(client, world, biller, store):
    _, api = biller
    world.top_up("a", 20_000)
    bill = issue(api, consumer="C-77", amount=4_321)
    sign_in_wallet(client, world.wallet("a")[1].auth)
    page = client.get("/wallet").get_data(as_text=True)
    client.post("/wallet/bills/lookup", data={"csrf_token": csrf(page), "biller_id": bill["biller_id"],
                                              "consumer_number": "C-77"})
    page = client.get("/wallet").get_data(as_text=True)
    assert f'data-bill="{bill["id"]}" data-status="open"' in page
    confirm = client.get(f"/wallet/bills/{bill['id']}/pay").get_data(as_text=True)
    assert "43.21 CNY" in confirm
    form = dict(re.findall(r'name="(csrf_token|idempotency_key|amount)" value="([^"]+)"', confirm))
    first = client.post(f"/wallet/bills/{bill['id']}/pay", data=form)
    again = client.post(f"/wallet/bills/{bill['id']}/pay", data=form)  # the double submit
    assert first.status_code == again.status_code == 302
    assert first.headers["Location"] == again.headers["Location"]
    assert world.available("a") == 20_000 - 4_321
    with store.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM bill_payments")["n"] == 1
    page = client.get(first.headers["Location"]).get_data(as_text=True)  # the receipt
    assert "Paid" in page and bill["bill_number"] in page
    assert re.search(rf'id="balance" data-amount="{20_000 - 4_321}"', page)
    assert f'data-bill="{bill["id"]}" data-status="paid"' in client.get("/wallet").get_data(as_text=True)
    # a new confirmation of the paid bill pays nothing more
    confirm = client.get(f"/wallet/bills/{bill['id']}/pay").get_data(as_text=True)
    assert "nothing to pay" in confirm and 'id="confirm"' not in confirm
    form["idempotency_key"] = "web-another"
    late = client.post(f"/wallet/bills/{bill['id']}/pay", data=form)
    assert late.status_code == 409 and "already paid" in late.get_data(as_text=True)
    assert world.available("a") == 20_000 - 4_321


def test_bad_lookups_and_forms_are_pages_that_say_why(client, world, biller):
    sign_in_wallet(client, world.wallet("a")[1].auth)
    token = csrf(client.get("/wallet").get_data(as_text=True))
    bad = client.post("/wallet/bills/lookup", data={"csrf_token": token, "biller_id": biller[0],
                                                    "consumer_number": "<script>"})
    assert bad.status_code == 400 and "consumer number" in bad.get_data(as_text=True)
    missing = client.get("/wallet/bills/bill_0000000000000000/pay")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    broke = client.post("/wallet/bills/bill_0000000000000000/pay", data={"csrf_token": token, "amount": "5",
                                                                        "idempotency_key": "web-x"})
    assert broke.status_code == 404 and "No such bill" in broke.get_data(as_text=True)


def test_bill_lookups_on_the_wallet_page_share_the_wallets_limit(client, world, biller, config):
    config.bill_lookups_per_minute = 2
    sign_in_wallet(client, world.wallet("a")[1].auth)
    token = csrf(client.get("/wallet").get_data(as_text=True))
    answers = [client.post("/wallet/bills/lookup", data={"csrf_token": token, "biller_id": biller[0],
                                                          "consumer_number": f"C-{n}"}) for n in range(3)]
    assert [a.status_code for a in answers] == [302, 302, 429]
    assert "at most 2 a minute" in answers[2].get_data(as_text=True) and answers[2].headers["Retry-After"] == "60"
    wallet_id, wallet = world.wallet("a")
    assert wallet.get(f"/v1/bills?biller_id={biller[0]}&consumer_number=C-9").status_code == 429  # one count


def test_the_pay_code_is_a_qr_a_till_can_redeem_once(client, world):
    world.top_up("a", 1_000)
    sign_in_wallet(client, world.wallet("a")[1].auth)
    token = csrf(client.get("/wallet").get_data(as_text=True))
    shown = client.post("/wallet/pay-code", data={"csrf_token": token})
    page = shown.get_data(as_text=True)
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    assert '<svg class="qr" role="img"' in page
    code = re.search(r'id="pay-code">(pc_[^<]+)<', page).group(1)
    till = world.terminal("x")[1]
    ok(till.post("/v1/pos/authorizations", {"pay_code": code, "amount": 300, "currency": "CNY"}), 201)
    assert till.post("/v1/pos/authorizations", {"pay_code": code, "amount": 300,
                                                "currency": "CNY"}).status_code == 404
    assert client.post("/wallet/pay-code", data={}).status_code == 400  # no CSRF token, no code


def test_a_replaced_session_or_wallet_signs_out(client, world):
    sign_in_wallet(client, world.wallet("a")[1].auth)
    assert 'id="balance"' in client.get("/wallet").get_data(as_text=True)
    with client.session_transaction() as s:
        s["wallet_id"] = world.wallet("b")[0]  # a session pointed at another wallet
    assert 'id="credential"' in client.get("/wallet").get_data(as_text=True)


def test_the_latest_day_reloads_itself_and_a_chosen_day_stays_put(client, config):
    sign_in_operator(client, config)
    assert 'http-equiv="refresh"' in client.get("/dashboard").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in client.get("/dashboard?day=2026-11-20").get_data(as_text=True)
    assert client.get("/web/static/tapstack.css").headers.get("Cache-Control") != "no-store"


def test_the_wallet_page_lists_its_cards_bus_taps(client, world, clock):
    from tests.gateway.test_clearing import Rider

    world.top_up("a", 3000)
    rider = Rider(world)
    rider.load(1000)
    upload(world, [rider.tap(clock, fare=230)])
    sign_in_wallet(client, world.wallet("a")[1].auth)
    ride = client.get("/wallet/ride").get_data(as_text=True)  # the Ride tab lists the trips
    trips = re.search(r'<ul class="list trips" id="trips">(.*?)</ul>', ride, re.S)
    assert "Route R1" in text(trips.group(1)) and "stop S3" in text(trips.group(1))
    assert "2.30 CNY" in text(trips.group(1)) and "paid at the tap" in text(trips.group(1))


def test_a_ledger_check_is_reused_until_the_operator_asks_for_a_new_one(client, config, world, store):
    world.top_up("a", 1_000)
    sign_in_operator(client, config)
    page = client.get("/dashboard").get_data(as_text=True)
    assert "ok: the books balance" in page
    with store.transaction() as tx:  # a balance edited behind the ledger's back
        tx.execute("UPDATE ledger_accounts SET credits_posted = credits_posted + 1"
                   " WHERE id = (SELECT account_id FROM wallets ORDER BY id LIMIT 1)")
    assert "ok: the books balance" in client.get("/dashboard").get_data(as_text=True)  # the last check
    answer = client.post("/dashboard/check", data={"csrf_token": csrf(page), "day": ""})
    assert answer.status_code == 302 and "day=" not in answer.headers["Location"]
    page = text(client.get("/dashboard").get_data(as_text=True))
    assert "FAILED" in page and "books_unbalanced" in page
