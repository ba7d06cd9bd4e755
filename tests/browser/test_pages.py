"""The operator dashboard and the wallet page in a real browser against a served gateway:
the figures on the page are those the API and the ledger give; a bill looked up by
consumer number is paid from the phone page once, and the balance drops by its amount;
the pay code's QR scans. (Scanning, riding and the Money tab: test_wallet_phone.py.)"""
from __future__ import annotations

import re
from datetime import date, datetime

from gateway.core import dashboard, ledger
from gateway.store import SQLiteStore
from tests.browser.conftest import shot
from wallet.qr import read_text

SHANGHAI = dashboard.zone("Asia/Shanghai")
PHONE = {"width": 360, "height": 740}


def figure(page, name: str) -> str:
    return " ".join(page.locator(f'[data-figure="{name}"]').inner_text().split())


def sign_in_operator(page, gateway) -> None:
    page.goto(gateway.base + "/dashboard")
    assert page.url.endswith("/dashboard/login")
    page.fill("#operator_key", gateway.operator.auth)
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard")
    assert "op_" not in page.url


def sign_in_wallet(page, gateway, name: str) -> tuple[str, str]:
    wallet_id, credential = gateway.seed["wallets"][name]
    page.goto(gateway.base + "/wallet")
    page.fill("#credential", credential)
    page.click("button[type=submit]")
    page.wait_for_selector("#balance")
    assert "wk_" not in page.url
    return wallet_id, credential


def available(gateway, wallet_id: str, credential: str) -> int:
    return gateway.operator.as_(credential).get(f"/v1/wallets/{wallet_id}/balance")["available"]


def page_balance(page) -> int:
    return int(page.locator("#balance").get_attribute("data-amount"))


def test_the_dashboard_shows_what_the_api_and_the_ledger_say(page, gateway, artifacts):
    op = gateway.operator
    sign_in_operator(page, gateway)
    # the day on screen: the Shanghai day of the latest tap uploaded
    shown_day = date.fromisoformat(re.search(r"\d{4}-\d{2}-\d{2}", page.title()).group(0))
    latest = max(t["at"] for t in gateway.seed["taps"])
    assert shown_day == dashboard.local(latest, SHANGHAI).date()
    since, until = dashboard.day_bounds(shown_day, SHANGHAI)

    ridership = op.get(f"/v1/taps/ridership?from={since}&to={until}")["data"]
    assert figure(page, "taps") == str(sum(r["taps"] for r in ridership)) != "0"
    assert figure(page, "accepted") == str(sum(r["accepted"] for r in ridership))
    assert figure(page, "denied") == str(sum(r["taps"] - r["accepted"] for r in ridership))
    day_taps = [t for t in gateway.seed["taps"] if since <= t["at"] < until]
    assert figure(page, "riders") == str(len({t["token"] for t in day_taps if t["accepted"]}))
    for route in {r["route"] for r in ridership}:
        row = page.locator(f'#routes tr[data-route="{route}"] td')
        assert row.nth(1).inner_text() == str(sum(r["taps"] for r in ridership if r["route"] == route))

    payments = [p for p in op.get("/v1/payments")["data"]
                if since <= datetime.fromisoformat(p["created_at"].replace("Z", "+00:00")).timestamp() < until]
    total = ledger.format_amount(sum(p["amount"] for p in payments), "CNY")
    assert figure(page, "shop") == (f"{len(payments)} · {total}" if payments else "none")

    assert figure(page, "online") == "2" and figure(page, "offline") == "0"
    deny = op.get("/v1/issuer/deny-list")
    assert figure(page, "deny-version") == str(deny["version"])
    assert figure(page, "deny-entries") == str(len(deny["entries"]))
    assert "reported stolen" in page.locator("#deny-list").inner_text()

    bills = op.get(f"/v1/bills?biller_id={gateway.seed['biller_id']}")["data"]
    cells = page.locator(f'#billers tr[data-biller="{gateway.seed["biller_id"]}"] td')
    assert cells.nth(1).inner_text() == str(len(bills))
    assert cells.nth(2).inner_text() == str(sum(b["status"] == "paid" for b in bills))

    store = SQLiteStore(gateway.data_dir / "gateway.db", migrate=False)
    try:
        with store.read() as tx:
            report = ledger.check(tx)
    finally:
        store.close()
    assert report.ok and page.locator("#ledger-status").inner_text().startswith("ok:")
    cny = page.locator('#ledger-totals tr[data-currency="CNY"] td')
    assert cny.nth(2).inner_text() == ledger.format_amount(report.totals["CNY"].debits_posted, "CNY")
    assert cny.nth(4).inner_text() == ledger.format_amount(report.totals["CNY"].net, "CNY")

    chart = page.get_by_role("img", name=re.compile("^Taps per hour"))  # the chart's accessible name
    hours = chart.locator("g.bar > title").all_text_contents()
    assert sum(int(h.split(": ")[1]) for h in hours) == sum(r["taps"] for r in ridership)
    assert "Asia/Shanghai" in page.locator("#zone").inner_text()
    shot(page, artifacts, "dashboard")


OVERFLOWING = """() => [...document.querySelectorAll('.panel')]
    .filter(p => p.scrollWidth > p.clientWidth).map(p => p.querySelector('h2')?.id || '?')"""


def test_no_dashboard_panel_overflows_its_card_at_desktop_or_phone_width(page, gateway, artifacts):
    sign_in_operator(page, gateway)
    for size, name in (({"width": 1280, "height": 900}, "dashboard-1280"), (PHONE, "dashboard-360")):
        page.set_viewport_size(size)
        assert page.evaluate(OVERFLOWING) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]
        shot(page, artifacts, name)
    # at desktop width every table is wholly visible: none needs its scroller
    page.set_viewport_size({"width": 1280, "height": 900})
    hidden = page.evaluate("""() => [...document.querySelectorAll('.scroll')]
        .filter(s => s.scrollWidth > s.clientWidth + 1).map(s => s.querySelector('table')?.id)""")
    assert [t for t in hidden if t] == []


def test_a_bill_on_the_wallet_page_is_paid_from_it(page, gateway, artifacts):
    page.set_viewport_size(PHONE)
    wallet_id, credential = sign_in_wallet(page, gateway, "mei")
    before = available(gateway, wallet_id, credential)
    assert page_balance(page) == before
    bill = gateway.seed["bills"][0]
    page.select_option("#biller_id", gateway.seed["biller_id"])
    page.fill("#consumer_number", bill["consumer_number"])
    page.click("button:text('Find bills')")
    entry = page.locator(f'#bills li[data-bill="{bill["id"]}"]')
    assert entry.get_attribute("data-status") == "open"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # fits a phone
    shot(page, artifacts, "wallet-bills")

    entry.locator("a", has_text="Pay").click()
    page.wait_for_selector("#confirm")
    assert page.locator("#amount").inner_text() == ledger.format_amount(bill["amount_due"], "CNY")
    shot(page, artifacts, "wallet-confirm")
    page.click("#confirm")
    page.wait_for_selector("#receipt")

    assert bill["bill_number"] in page.locator("#receipt").inner_text()
    shot(page, artifacts, "wallet-receipt")
    page.click("text=Done")
    page.wait_for_selector("#bills")
    assert page.locator(f'li.paid-bill[data-bill="{bill["id"]}"]').get_attribute("data-status") == "paid"
    assert page.locator(f'#bills li[data-bill="{bill["id"]}"]').count() == 0
    after = available(gateway, wallet_id, credential)
    assert after == before - bill["amount_due"] == page_balance(page)
    assert gateway.operator.as_(credential).get(f"/v1/bills/{bill['id']}")["status"] == "paid"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.evaluate(OVERFLOWING) == []
    shot(page, artifacts, "wallet-paid")


def test_a_double_click_on_confirm_pays_once(page, gateway):
    page.set_viewport_size(PHONE)
    wallet_id, credential = sign_in_wallet(page, gateway, "jun")
    bill = gateway.seed["bills"][1]
    before = available(gateway, wallet_id, credential)
    page.goto(f"{gateway.base}/wallet/bills/{bill['id']}/pay")
    page.dblclick("#confirm")
    page.wait_for_selector("#receipt")
    assert available(gateway, wallet_id, credential) == before - bill["amount_due"] == page_balance(page)
    mine = gateway.operator.as_(credential).get("/v1/bill-payments")["data"]
    assert [p["bill_id"] for p in mine] == [bill["id"]]


def test_the_pay_code_qr_scans_and_a_till_redeems_it(page, gateway, artifacts):
    page.set_viewport_size(PHONE)
    wallet_id, credential = sign_in_wallet(page, gateway, "jun")
    page.click("button:text('Show a pay code')")
    page.wait_for_selector("svg.qr")
    shown = page.locator("#pay-code").inner_text()
    assert read_text(page.locator(".qrbox").screenshot()) == shown
    shot(page, artifacts, "wallet-pay-code")
    _, shop_key = gateway.seed["shop"]
    till = gateway.operator.as_(shop_key)
    before = available(gateway, wallet_id, credential)
    held = till.post("/v1/pos/authorizations", {"pay_code": shown, "amount": 500, "currency": "CNY"})
    assert held["amount"] == 500 and available(gateway, wallet_id, credential) == before - 500
    till.post("/v1/pos/authorizations", {"pay_code": shown, "amount": 500, "currency": "CNY"}, expect=404)
