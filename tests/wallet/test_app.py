"""The wallet app end to end: a real gateway on 127.0.0.1 (werkzeug's server in a thread:
it starts in milliseconds, shares the test's store so the webhook deliverer can run on
it, and stops deterministically, while every request still crosses a real socket), the
`tapstack wallet` commands as a user types them, and a biller's webhook receiver that
checks the Tapstack-Signature header."""
from __future__ import annotations

import functools
import json
import socket
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from werkzeug.serving import make_server

from gateway.core import webhooks
from gateway.http import delivery
from gateway.http.app import create_app
from gateway.http.auth import operator_key
from gateway.config import Config
from gateway.store import SQLiteStore
from protocol import emvqr, signed_qr
from tapstack.cli import main
from tests.gateway.webhook_receiver import Receiver
from wallet import qr as wallet_qr
from wallet.app import Gateway, GatewayError, WalletApp, WalletAppError, load_profile


class Pilot:
    """A gateway serving on a free loopback port, with a biller, a shop, a till and two wallets."""

    def __init__(self, root: Path):
        self.root = root
        self.config = Config(root / "gateway", allow_private_webhooks=True)  # the biller's receiver is local
        self.store = SQLiteStore(self.config.db_path, synchronous="NORMAL")
        # The gateway keeps real time here: the wallet signs pay codes with the real clock.
        self.server = make_server("127.0.0.1", 0, create_app(self.config, store=self.store), threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.operator = Gateway(self.url, operator_key(self.config))
        biller = self.operator.post("/v1/billers", {"name": "Hangzhou Water", "city": "Hangzhou"})
        self.biller_id, self.biller = biller["id"], Gateway(self.url, biller["api_key"])
        shop = self.operator.post("/v1/merchants", {"name": "Corner Market"})
        self.shop_id, self.shop = shop["id"], Gateway(self.url, shop["api_key"])
        self.wallets = {}
        for name in ("a", "b"):
            customer = self.operator.post("/v1/customers", {"name": f"payer {name}"})
            wallet = self.operator.post("/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"})
            self.operator.post("/v1/topups", {"wallet_id": wallet["id"], "amount": 100_000, "currency": "CNY"})
            self.wallets[name] = (wallet["id"], wallet["credential"])

    def args(self, name: str = "a") -> list[str]:
        wallet_id, credential = self.wallets[name]
        return ["--gateway", self.url, "--wallet-id", wallet_id, "--credential", credential,
                "--profile", str(self.root / f"profile-{name}.json")]

    def wallet(self, name: str = "a") -> str:
        return self.wallets[name][0]

    def available(self, name: str) -> int:
        return self.operator.get(f"/v1/wallets/{self.wallet(name)}/balance")["available"]

    def bill(self, **fields) -> dict:
        body = {"consumer_number": "C-88", "period": "2026-11", "amount_due": 12_345, "currency": "CNY",
                "due_date": "2026-12-31", **fields}
        return self.biller.post("/v1/bills", body)

    def png(self, path: str, auth: Gateway) -> bytes:
        import urllib.request
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {auth.credential}"})
        with urllib.request.urlopen(request) as answer:
            return answer.read()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.store.close()


@pytest.fixture
def pilot(tmp_path):
    p = Pilot(tmp_path)
    yield p
    p.close()


def wallet_cli(pilot, *args, name="a", input=None):
    """Run `tapstack wallet ARGS` as a user would; (exit code, output)."""
    result = CliRunner().invoke(main, ["wallet", *args, *pilot.args(name)], input=input)
    assert "Traceback" not in result.output
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, output
    return lines[0]


def test_bill_to_png_to_scan_to_paid_to_the_billers_signed_webhook(pilot, tmp_path):
    with Receiver() as receiver:
        endpoint = pilot.biller.post("/v1/webhook_endpoints", {"url": receiver.url, "event_types": ["bill.paid"]})
        receiver.secret = endpoint["secret"]
        bill = pilot.bill(bill_number="W-2026-11-88")
        image = tmp_path / "bill.png"
        image.write_bytes(pilot.png(f"/v1/bills/{bill['id']}/qr.png", pilot.biller))
        code, out = wallet_cli(pilot, "scan", str(image), "--yes")
        assert code == 0, out
        assert "Bill W-2026-11-88 from Hangzhou Water" in out and "period 2026-11" in out
        assert "Paid 123.45 CNY to Hangzhou Water" in out and "bill now paid" in out
        assert pilot.biller.get(f"/v1/bills/{bill['id']}")["status"] == "paid"
        assert pilot.available("a") == 100_000 - 12_345
        deliverer = delivery.Deliverer(pilot.store, clock=lambda: datetime.now(timezone.utc), workers=1,
                                       seal_key=pilot.config.secret(webhooks.SEAL),
                                       post=functools.partial(delivery.http_post, private_targets=True))
        assert deliverer.deliver_due() == 1
        [got] = receiver.received
        event = json.loads(got["body"])
        assert got["verified"] and event["type"] == "bill.paid"
        assert (event["data"]["bill_id"], event["data"]["amount"], event["data"]["bill"]["status"]) == (
            bill["id"], 12_345, "paid")
        # the receipt the payer can fetch again
        receipt_id = event["data"]["id"]
        payer = Gateway(pilot.url, pilot.wallets["a"][1])
        assert payer.get(f"/v1/bill-payments/{receipt_id}")["amount"] == 12_345
        # scanning the paid bill again pays nothing and says why
        code, out = wallet_cli(pilot, "scan", str(image), "--yes")
        assert code == 1 and "already paid" in one_error_line(out)
        assert pilot.available("a") == 100_000 - 12_345


def test_the_payer_is_asked_and_a_no_pays_nothing(pilot, tmp_path):
    bill = pilot.bill()
    image = tmp_path / "bill.png"
    image.write_bytes(pilot.png(f"/v1/bills/{bill['id']}/qr.png", pilot.biller))
    code, out = wallet_cli(pilot, "scan", str(image), input="n\n")
    assert code == 1 and "Pay 123.45 CNY to Hangzhou Water?" in out and "not paid" in one_error_line(out)
    assert pilot.available("a") == 100_000
    code, out = wallet_cli(pilot, "scan", str(image), "--amount", "23.45", input="y\n")
    assert code == 1 and "less than this bill allows" in one_error_line(out)  # part payments not allowed
    code, out = wallet_cli(pilot, "scan", str(image), input="y\n")
    assert code == 0 and pilot.available("a") == 100_000 - 12_345


def test_bad_pictures_and_codes_get_one_clear_line(pilot, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (300, 300), 255).save(blank)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    bill = pilot.bill()
    whole = Image.open(__import__("io").BytesIO(pilot.png(f"/v1/bills/{bill['id']}/qr.png", pilot.biller)))
    torn = tmp_path / "torn.png"
    whole.crop((0, 0, whole.width, whole.height // 2)).save(torn)
    expired = tmp_path / "expired.png"
    wallet_qr.write(emvqr.bill_code(biller_id=pilot.biller_id, bill_number=bill["bill_number"], reference="C-88",
                                    amount=12_345, currency="CNY", merchant_name="Hangzhou Water",
                                    merchant_city="Hangzhou",
                                    expires_at=datetime.now(timezone.utc) - timedelta(hours=1)), expired)
    plain = tmp_path / "plain.png"
    wallet_qr.write("https://example.invalid/not-a-payment", plain)
    promptpay = tmp_path / "promptpay.png"  # read liberally, then refused by name
    wallet_qr.write("00020101021229370016A000000677010111011300660000000005802TH530376454044.226304E469", promptpay)
    for image, says in ((blank, "no QR code found"), (notes, "not an image"),
                        (tmp_path / "missing.png", "no such file"), (torn, "QR code"),
                        (expired, "expired"), (plain, "not an EMVCo payload"),
                        (promptpay, "this is a PromptPay (Thailand) code; this wallet pays tapstack codes only")):
        code, out = wallet_cli(pilot, "scan", str(image), "--yes")
        assert code == 1 and says in one_error_line(out), (image.name, out)
    assert pilot.available("a") == 100_000


def test_an_unreachable_gateway_and_a_missing_profile_are_one_line_each(pilot, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    result = CliRunner().invoke(main, ["wallet", "balance", "--gateway", f"http://127.0.0.1:{closed}",
                                       "--wallet-id", "wal_x", "--credential", "wk_x",
                                       "--profile", str(tmp_path / "none.json")])
    assert result.exit_code == 1 and "cannot reach the gateway" in one_error_line(result.output)
    result = CliRunner().invoke(main, ["wallet", "balance", "--profile", str(tmp_path / "none.json")],
                                env={"TAPSTACK_GATEWAY_URL": "", "TAPSTACK_WALLET_ID": "",
                                     "TAPSTACK_WALLET_CREDENTIAL": ""})
    assert result.exit_code == 1 and "no gateway_url, wallet_id, credential" in one_error_line(result.output)


def test_a_profile_file_alone_is_enough(pilot, tmp_path):
    wallet_id, credential = pilot.wallets["b"]
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"format": "tapstack-wallet-profile/1", "gateway_url": pilot.url,
                                   "wallet_id": wallet_id, "credential": credential}))
    result = CliRunner().invoke(main, ["wallet", "balance", "--profile", str(profile)],
                                env={"TAPSTACK_GATEWAY_URL": "", "TAPSTACK_WALLET_ID": "",
                                     "TAPSTACK_WALLET_CREDENTIAL": ""})
    assert result.exit_code == 0 and result.output == "1000.00 CNY available\n"


def test_a_shops_static_code_asks_for_the_amount_and_a_checkout_code_pays_once(pilot, tmp_path):
    static = tmp_path / "shop.png"
    static.write_bytes(pilot.png(f"/v1/merchants/{pilot.shop_id}/qr.png", pilot.shop))
    code, out = wallet_cli(pilot, "scan", str(static), input="12.50\ny\n")
    assert code == 0 and "Shop Corner Market" in out and "Paid 12.50 CNY" in out, out
    code, out = wallet_cli(pilot, "scan", str(static), input="12.505\n")
    assert code == 1 and "not an amount in CNY" in one_error_line(out)
    checkout = pilot.shop.post("/v1/checkouts", {"amount": 899, "currency": "CNY", "terminal_label": "Lane 2"})
    till_code = tmp_path / "checkout.png"
    till_code.write_bytes(pilot.png(f"/v1/checkouts/{checkout['id']}/qr.png", pilot.shop))
    code, out = wallet_cli(pilot, "scan", str(till_code), "--yes")
    assert code == 0 and "Checkout at Corner Market (Lane 2)" in out and "Paid 8.99 CNY" in out
    code, out = wallet_cli(pilot, "scan", str(till_code), "--yes", name="b")
    assert code == 1 and "this checkout is paid" in one_error_line(out)
    assert pilot.available("a") == 100_000 - 1_250 - 899 and pilot.available("b") == 100_000
    assert pilot.shop.get(f"/v1/merchants/{pilot.shop_id}/balance")["available"] == 1_250 + 899


def test_pay_bill_pays_each_outstanding_bill_of_a_consumer(pilot):
    pilot.bill(bill_number="OCT", period="2026-10", amount_due=1_000)
    pilot.bill(bill_number="NOV", period="2026-11", amount_due=2_000)
    code, out = wallet_cli(pilot, "pay-bill", pilot.biller_id, "C-88", "--yes")
    assert code == 0, out
    assert out.index("Bill OCT") < out.index("Bill NOV") and out.count("Paid ") == 2
    assert pilot.available("a") == 100_000 - 3_000
    code, out = wallet_cli(pilot, "pay-bill", pilot.biller_id, "C-88", "--yes")
    assert code == 0 and "No outstanding bills" in out


def test_a_pay_code_from_the_cli_is_charged_once_by_the_till(pilot, tmp_path):
    code, out = wallet_cli(pilot, "paycode", "--text")
    assert code == 0 and any(block in out for block in "█▀▄"), out
    text = out.strip().splitlines()[-1]
    assert text.startswith(signed_qr.PREFIX)
    saved = json.loads((tmp_path / "profile-a.json").read_text())
    assert saved["wallet_id"] == pilot.wallet("a") and len(saved["card"]["seed"]) == 64
    paid = pilot.shop.post("/v1/paycode-payments", {"pay_code": text, "amount": 700, "currency": "CNY"})
    assert paid["wallet_id"] == pilot.wallet("a")
    with pytest.raises(GatewayError) as again:
        pilot.shop.post("/v1/paycode-payments", {"pay_code": text, "amount": 700, "currency": "CNY"})
    assert again.value.code == "pay_code_used"
    assert pilot.available("a") == 100_000 - 700
    # the second code reuses the certified card kept in the profile
    out_file = tmp_path / "code.png"
    code, out = wallet_cli(pilot, "paycode", "--out", str(out_file), "--limit", "5")
    assert code == 0 and wallet_qr.read_text(out_file).startswith(signed_qr.PREFIX)
    assert json.loads((tmp_path / "profile-a.json").read_text())["card"] == saved["card"]
    with pytest.raises(GatewayError) as capped:
        pilot.shop.post("/v1/paycode-payments", {"pay_code": wallet_qr.read_text(out_file), "amount": 501,
                                                 "currency": "CNY"})
    assert capped.value.code == "above_pay_code_limit"


def test_a_ticket_verifies_offline_with_the_issuer_keys(pilot, tmp_path):
    out_file = tmp_path / "ticket.svg"
    code, out = wallet_cli(pilot, "ticket", "--route", "42", "--valid-minutes", "30", "--out", str(out_file), "--text")
    assert code == 0 and out_file.read_text().lstrip().startswith("<")
    text = out.strip().splitlines()[-1]
    keys = {bytes.fromhex(k["key_id"]): bytes.fromhex(k["public_key"])
            for k in pilot.operator.get("/v1/issuer/keys")["data"]}
    ticket = signed_qr.verify(text, keys, datetime.now(timezone.utc))
    assert ticket.route == "42" and ticket.valid_until - ticket.valid_from == timedelta(minutes=30)
    code, out = wallet_cli(pilot, "ticket", "--route", "x" * 40)
    assert code == 1 and "route" in one_error_line(out)


def test_topup_and_balance(pilot):
    code, out = wallet_cli(pilot, "topup", "50")
    assert code == 0 and out.splitlines() == [out.splitlines()[0], "Balance 1050.00 CNY"]
    assert out.startswith("Topped up 50.00 CNY (top_")
    code, out = wallet_cli(pilot, "balance")
    assert (code, out) == (0, "1050.00 CNY available\n")
    code, out = wallet_cli(pilot, "topup", "fifty")
    assert code == 1 and "not an amount" in one_error_line(out)


def test_two_wallets_paying_one_bill_at_once_over_http(pilot):
    for n in range(5):
        bill = pilot.bill(bill_number=f"RACE-{n}", amount_due=1_000)
        apps = {name: WalletApp.from_profile(load_profile(None, gateway_url=pilot.url, wallet_id=wallet_id,
                                                          credential=credential))
                for name, (wallet_id, credential) in pilot.wallets.items()}
        scanned = {name: app.read_payload(pilot.biller.get(f"/v1/bills/{bill['id']}/qr")["payload"])
                   for name, app in apps.items()}
        barrier, outcomes = threading.Barrier(2), {}

        def pay(name):
            barrier.wait()
            try:
                outcomes[name] = apps[name].pay(scanned[name])["id"]
            except WalletAppError as err:
                outcomes[name] = err

        threads = [threading.Thread(target=pay, args=(name,)) for name in apps]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        refused = [o for o in outcomes.values() if isinstance(o, WalletAppError)]
        assert len(refused) == 1 and refused[0].code == "bill_already_paid", outcomes
        assert "already paid" in str(refused[0])
    assert pilot.available("a") + pilot.available("b") == 200_000 - 5 * 1_000
