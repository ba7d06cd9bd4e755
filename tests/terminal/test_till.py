"""The till against a real gateway over HTTP (the app served by werkzeug on loopback) with
the mock reader: purse, gateway pay code, signed pay code and checkout sales; a pay code
used twice; a capture whose answer was lost; the gateway down."""
from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from terminal import pos
from protocol.uplink import Client, urllib_send
from terminal.journal import Journal
from terminal.readers.mock import MockReader
from terminal.settings import TillSettings
from terminal.till import merchant_client, Till, read_script
from terminal.uploader import upload_all
from tests.gateway.fixtures import ok
from tests.gateway.test_clearing import Rider

TID = b"TILL-001"


@pytest.fixture
def gateway_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


class Wire:
    """urllib over loopback, recording each request; `lose(part, n)` drops the answers of
    the next n requests whose URL holds part, after the gateway has handled them."""

    def __init__(self):
        self.real = urllib_send(5)
        self.requests: list[tuple[str, str, dict]] = []
        self.losing: dict[str, int] = {}
        self.down = False

    def lose(self, part: str, n: int = 1) -> None:
        self.losing[part] = n

    def __call__(self, method, url, headers, body):
        if self.down:
            raise ConnectionRefusedError("connection refused")
        self.requests.append((method, url, headers))
        answer = self.real(method, url, headers, body)
        for part, n in self.losing.items():
            if part in url and n:
                self.losing[part] = n - 1
                raise TimeoutError("timed out")
        return answer

    def keys(self, part: str) -> list[str]:
        return [h.get("Idempotency-Key") for m, u, h in self.requests if part in u and m == "POST"]


def make_till(world, url, clock, tmp_path, wire=None, name="x"):
    _, api = world.terminal(name)
    key_id, secret = api.auth
    wire = wire or Wire()
    client = Client(url, key_id, secret, send=wire, clock=clock)
    settings = TillSettings(reader="mock", gateway=url, key_id=key_id, secret=secret, journal=tmp_path / "till.db",
                            terminal_id=TID, qr_out=tmp_path / "qr.png")
    lines: list[str] = []
    till = Till(settings, MockReader(), Journal(tmp_path / "till.db", TID), client=client, clock=clock,
                out=lines.append, pause=lambda _: None)
    assert till.sync.refresh()  # issuer keys and deny-list, cached in the journal
    return till, lines, wire


def payments_of(store, wallet_id):
    with store.read() as tx:
        return tx.query("SELECT id, amount FROM payments WHERE wallet_id = :w", {"w": wallet_id})


def test_a_purse_sale_is_paid_offline_journalled_and_cleared_to_the_merchant(world, gateway_url, clock, store,
                                                                          tmp_path):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(2000)
    till, lines, _ = make_till(world, gateway_url, clock, tmp_path)
    till.command("sale 12.50 basket-1")
    till.reader.present(rider.card)
    result = till.handle_card(till.reader.wait_for_card(0))
    assert (result.approved, result.method, result.amount, result.balance_after) == (True, "purse", 1250, 750)
    assert rider.balance == 750 and till.sale.state == pos.PAID and till.reader.signals == ["accept"]
    assert lines[-1] == f"APPROVED  Paid from the card 12.50 CNY   balance 7.50 CNY   tap {result.tap_id}"
    [row] = till.journal.taps()
    assert (row["id"], row["kind"], row["amount"], row["sale"]) == (result.tap_id, "purse", 1250, till.sale.id)
    assert "route" not in row and "stop" not in row  # a sale record, not a bus tap

    # The card is still in the field: no sale is open, so nothing more is taken.
    again = till.handle_card(till.reader.wait_for_card(0))
    assert (again.approved, again.reason, rider.balance) == (False, "no_sale", 750)

    report = upload_all(till.journal, till.client, clock)
    assert report.accepted == 1
    merchant_id, _ = world.merchant("x")
    with store.read() as tx:
        sale = tx.one("SELECT merchant_id, sale_id, clearing FROM till_sales WHERE record_id = :t",
                      {"t": result.tap_id})
        assert tx.one("SELECT COUNT(*) AS n FROM transit_taps")["n"] == 0
    assert sale == {"merchant_id": merchant_id, "sale_id": till.sale.id, "clearing": "posted"}


def test_a_gateway_pay_code_is_authorised_and_captured_once(world, gateway_url, clock, store, tmp_path):
    world.top_up("a", 5000)
    till, lines, wire = make_till(world, gateway_url, clock, tmp_path)
    code = world.pay_code("a")
    till.command("sale 12.50")
    result = till.handle_code(code)
    assert (result.approved, result.method, result.amount) == (True, "pay_code", 1250)
    assert world.available("a") == 3750 and world.merchant_available("x") == 1250
    assert payments_of(store, world.wallet("a")[0]) == [{"id": result.payment_id, "amount": 1250}]
    assert lines[-1] == f"APPROVED  Paid by pay code 12.50 CNY   payment {result.payment_id}"
    assert not any(code in k for k in wire.keys("/v1/pos/"))  # the code is a secret: never a header

    # The same code on the next sale: spent, nothing charged twice.
    till.command("sale 3.00")
    again = till.handle_code(code)
    assert (again.approved, again.reason) == (False, "pay_code_unknown")
    assert till.sale.is_open and world.available("a") == 3750
    assert lines[-1] == f"          sale {till.sale.id} still open: 3.00 CNY"


def test_a_capture_whose_answer_was_lost_is_retried_with_its_key_and_charges_once(world, gateway_url, clock,
                                                                                 store, tmp_path):
    world.top_up("a", 5000)
    till, _, wire = make_till(world, gateway_url, clock, tmp_path)
    wire.lose("/capture")  # the gateway captured; its answer never came back
    till.command("sale 20.00")
    result = till.handle_code(world.pay_code("a"))
    assert result.approved and till.sale.state == pos.PAID
    first, second = wire.keys("/capture")
    assert first == second == pos.idempotency_key(till.sale, "capture", till.sale.authorization_id)
    assert payments_of(store, world.wallet("a")[0]) == [{"id": result.payment_id, "amount": 2000}]
    assert world.available("a") == 3000


def test_a_capture_unanswered_for_long_survives_a_restart_and_completes_once(world, gateway_url, clock, store,
                                                                            tmp_path):
    world.top_up("a", 5000)
    till, lines, wire = make_till(world, gateway_url, clock, tmp_path)
    wire.lose("/capture", 3)  # every try of the first round
    till.command("sale 20.00")
    result = till.handle_code(world.pay_code("a"))
    assert (result.approved, result.reason, till.sale.state) == (False, "unreachable", pos.CAPTURING)
    assert "the capture is retried" in lines[-3]
    till.command("sale 1.00")  # the capturing sale is not left behind
    assert "still open" in lines[-1]

    # The till restarts on its journal: it finishes the capture with the same key.
    restarted, lines, wire2 = make_till(world, gateway_url, clock, tmp_path)
    assert restarted.sale.state == pos.CAPTURING
    restarted.tick()
    assert restarted.sale.state == pos.PAID and lines[-1].startswith("APPROVED  Paid by pay code 20.00 CNY")
    assert set(wire.keys("/capture") + wire2.keys("/capture")) == {
        pos.idempotency_key(restarted.sale, "capture", restarted.sale.authorization_id)}
    assert [p["amount"] for p in payments_of(store, world.wallet("a")[0])] == [2000]
    assert world.available("a") == 3000


def _wallet_app(world, url, clock, tmp_path, name="a"):
    from wallet.app import Gateway, Profile, WalletApp

    wallet_id, api = world.wallet(name)
    return WalletApp(Gateway(url, api.auth), Profile(url, wallet_id, api.auth, tmp_path / f"{name}.json"), clock)


def test_a_signed_pay_code_is_checked_offline_then_charged_once(world, gateway_url, clock, store, tmp_path):
    world.top_up("a", 5000)
    wallet = _wallet_app(world, gateway_url, clock, tmp_path)
    code = wallet.pay_code()
    till, lines, wire = make_till(world, gateway_url, clock, tmp_path)
    till.command("sale 8.80")
    result = till.handle_code(code)
    assert (result.approved, result.method, result.amount) == (True, "signed_pay_code", 880)
    assert world.available("a") == 4120

    till.command("sale 1.00")
    assert till.handle_code(code).reason == "pay_code_used"  # refused here, before any request
    sent = len(wire.requests)
    other, _, _ = make_till(world, gateway_url, clock, tmp_path / "other")
    other.command("sale 1.00")
    assert other.handle_code(code).reason == "pay_code_used"  # another till: the gateway refuses it
    assert len(wire.requests) == sent and world.available("a") == 4120
    assert len(payments_of(store, world.wallet("a")[0])) == 1

    # A code above the limit the customer set is refused offline.
    till.command("cancel")
    till.command("sale 50.00")
    assert till.handle_code(wallet.pay_code(limit=4000, currency="CNY")).reason == "above_pay_code_limit"


def test_a_checkout_qr_is_shown_paid_from_the_wallet_app_and_polled(world, gateway_url, clock, store, tmp_path):
    world.top_up("b", 5000)
    till, lines, _ = make_till(world, gateway_url, clock, tmp_path)
    till.command("sale 6.60 r-9")
    till.command("qr")
    assert till.sale.checkout_id and (tmp_path / "qr.png").stat().st_size > 0
    assert any("█" in line for line in lines)  # drawn on the terminal

    wallet = _wallet_app(world, gateway_url, clock, tmp_path, "b")
    scanned = wallet.read(tmp_path / "qr.png")
    assert (scanned.kind, scanned.amount) == ("checkout", 660)
    payment = wallet.pay(scanned)
    clock.advance(2)
    till.tick()
    assert till.sale.state == pos.PAID and till.sale.payment_id == payment["id"]
    assert lines[-1] == f"APPROVED  Paid by QR 6.60 CNY   payment {payment['id']}"
    assert world.available("b") == 4340


def test_a_tap_while_a_checkout_is_open_cancels_it_first(world, gateway_url, clock, tmp_path):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    till, _, _ = make_till(world, gateway_url, clock, tmp_path)
    till.command("sale 2.00")
    till.command("qr")
    checkout_id = till.sale.checkout_id
    till.reader.present(rider.card)
    assert till.handle_card(till.reader.wait_for_card(0)).approved
    assert ok(world.merchant("x")[1].get(f"/v1/checkouts/{checkout_id}"))["status"] == "cancelled"
    assert rider.balance == 800


def test_an_expired_checkout_reopens_the_sale_for_a_new_code(world, gateway_url, clock, tmp_path):
    till, lines, wire = make_till(world, gateway_url, clock, tmp_path)
    till.command("sale 2.00")
    till.command("qr")
    first = till.sale.checkout_id
    clock.advance(400)
    till.tick()
    assert till.sale.checkout_id is None and "QR code expired" in lines[-3]
    till.command("qr")
    assert till.sale.checkout_id not in (None, first)
    assert len(set(wire.keys("/v1/checkouts"))) == 2


def test_with_the_gateway_down_a_purse_still_pays_and_pay_codes_wait(world, gateway_url, clock, tmp_path):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    code = world.pay_code("a")
    till, lines, wire = make_till(world, gateway_url, clock, tmp_path)
    wire.down = True
    till.command("sale 3.00")
    refused = till.handle_code(code)
    assert (refused.approved, refused.reason) == (False, "unreachable")
    assert lines[-3] == "DECLINED  gateway unreachable: ask for a card tap or cash"
    assert till.sale.is_open
    till.command("qr")
    assert lines[-3] == "DECLINED  gateway unreachable: ask for a card tap or cash"
    till.reader.present(rider.card)
    paid = till.handle_card(till.reader.wait_for_card(0))
    assert (paid.approved, paid.balance_after, rider.balance) == (True, 700, 700)
    assert till.journal.counts()["unsent"] == 1 and world.available("a") == 4000


def test_bank_and_uid_cards_are_refused_and_recorded_as_refused(world, gateway_url, clock, tmp_path):
    from wallet.card import plain_uid_card
    from wallet.emv_card import emv_card

    till, lines, _ = make_till(world, gateway_url, clock, tmp_path)
    till.command("sale 3.00")
    till.reader.present(emv_card(bytes.fromhex("04A1B2C3D4E5F6")))
    bank = till.handle_card(till.reader.wait_for_card(0))
    assert (bank.approved, bank.reason) == (False, "bank_card")
    assert "does not authorise bank cards online" in lines[-2]
    till.reader.present(plain_uid_card(bytes.fromhex("04112233445566")))
    assert till.handle_card(till.reader.wait_for_card(0)).reason == "unknown_card"
    rows = till.journal.taps()
    assert [(r["kind"], r["accepted"]) for r in rows] == [("emv", False), ("uid", False)]
    assert till.sale.is_open and till.reader.signals == ["deny", "deny"]
    assert upload_all(till.journal, till.client, clock).accepted == 2


def test_refunds_and_bad_lines_are_one_line_each(world, gateway_url, clock, tmp_path):
    world.top_up("a", 5000)
    till, lines, _ = make_till(world, gateway_url, clock, tmp_path)
    till.command("sale 12.505")
    assert lines[-1].startswith("'12.505' is not an amount in CNY")
    till.command("refund pay_nothing")
    assert lines[-1].startswith("REFUND    not done: ") and "payment" in lines[-1].lower()
    till.command("cancel")
    assert lines[-1] == "no sale open"


def test_without_a_merchant_key_the_till_refunds_with_its_terminal_key_its_merchants_payments_only(
        world, gateway_url, clock, store, tmp_path):
    world.top_up("a", 5000)
    till, lines, wire = make_till(world, gateway_url, clock, tmp_path)
    assert till.merchant is None
    till.command("sale 20.00")
    payment_id = till.handle_code(world.pay_code("a")).payment_id
    wire.lose("/v1/refunds")  # refunded at the first try; the answer is lost and the till retries
    till.command(f"refund {payment_id} 5.00")
    assert lines[-1].startswith(f"REFUND    5.00 CNY of {payment_id}   refund re_")
    assert len(set(wire.keys("/v1/refunds"))) == 1 and len(wire.keys("/v1/refunds")) == 2
    assert world.available("a") == 3500
    # merchant y's till cannot refund merchant x's payment: to it the payment does not exist
    (tmp_path / "y").mkdir()
    other, other_lines, _ = make_till(world, gateway_url, clock, tmp_path / "y", name="y")
    other.command(f"refund {payment_id}")
    assert other_lines[-1].startswith("REFUND    not done:") and world.available("a") == 3500
    with store.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM refunds")["n"] == 1


def test_an_unattended_run_takes_its_scripted_sale_and_stops(world, gateway_url, clock, tmp_path):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    till, lines, _ = make_till(world, gateway_url, clock, tmp_path)
    (tmp_path / "sales.txt").write_text("# the morning\n\nsale 4.00 m-1\n")
    till.s.sales = tmp_path / "sales.txt"
    till.script.extend(read_script(tmp_path / "sales.txt"))
    till.reader.present(rider.card)
    stop = threading.Event()
    guard = threading.Timer(30, stop.set)  # a till that never ends fails the test rather than hanging it
    guard.start()
    till.run(stop)
    guard.cancel()
    assert not stop.is_set() and till.scripted_done
    assert rider.balance == 600 and till.sale.reference == "m-1" and till.sale.state == pos.PAID
    assert [line.split()[0] for line in lines] == ["SALE", "APPROVED"]


def test_a_refund_under_the_merchant_key_is_done_once_even_when_its_answer_is_lost(world, gateway_url, clock,
                                                                                  store, tmp_path):
    world.top_up("a", 5000)
    till, lines, _ = make_till(world, gateway_url, clock, tmp_path)
    till.command("sale 20.00")
    payment_id = till.handle_code(world.pay_code("a")).payment_id
    wire = Wire()
    wire.lose("/v1/refunds")
    till.merchant = merchant_client(gateway_url, world.merchant("x")[1].auth, send=wire)
    till.command(f"refund {payment_id} 5.00")
    assert lines[-1].startswith(f"REFUND    5.00 CNY of {payment_id}   refund re_")
    assert len(set(wire.keys("/v1/refunds"))) == 1 and len(wire.keys("/v1/refunds")) == 2
    with store.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n, SUM(amount) AS s FROM refunds")["n"] == 1
    assert world.available("a") == 3500
    till.command(f"refund {payment_id} 99.00")
    assert lines[-1].startswith("REFUND    not done:") and world.available("a") == 3500


def test_a_signed_pay_code_not_sent_while_offline_is_sent_again_under_its_key(world, gateway_url, clock, store,
                                                                             tmp_path):
    world.top_up("a", 5000)
    code = _wallet_app(world, gateway_url, clock, tmp_path).pay_code()
    till, _, wire = make_till(world, gateway_url, clock, tmp_path)
    till.command("sale 7.00")
    wire.lose("/v1/paycode-payments", 3)  # charged at the first try; no answer reached the till
    assert till.handle_code(code).reason == "unreachable" and till.sale.is_open
    paid = till.handle_code(code)  # the customer shows it again
    assert paid.approved and len(set(wire.keys("/v1/paycode-payments"))) == 1
    assert [p["amount"] for p in payments_of(store, world.wallet("a")[0])] == [700]


def test_cancelling_a_sale_being_captured_voids_the_hold(world, gateway_url, clock, tmp_path):
    world.top_up("a", 5000)
    till, lines, wire = make_till(world, gateway_url, clock, tmp_path)
    wire.lose("/capture", 3)
    till.command("sale 30.00")
    till.handle_code(world.pay_code("a"))
    assert till.sale.state == pos.CAPTURING
    wire.losing.clear()
    # The capture had gone through: cancelling finds it captured and shows the payment.
    till.command("cancel")
    assert till.sale.state == pos.PAID and lines[-1].startswith("the sale was already paid")

    wire.down = True
    till.command("sale 10.00")
    wire.down = False
    wire.losing["/v1/pos/authorizations"] = 3  # authorised, and every answer lost
    assert till.handle_code(world.pay_code("a")).reason == "unreachable"
    assert till.sale.state == pos.OPEN and world.available("a") == 1000  # held by an unanswered authorisation
    till.command("cancel")
    assert till.sale.state == pos.CANCELLED
    wire.down = True
    till.tick()  # the gateway is away: the hold stays until it is back
    assert till.unanswered is not None and world.available("a") == 1000
    wire.down = False
    clock.advance(6)
    till.tick()  # the same key tells the till which authorisation it was: voided
    assert till.unanswered is None and world.available("a") == 2000
    assert lines[-1].startswith("released the hold of auth_")


def test_a_code_shown_again_after_a_lost_authorisation_answer_replays_it(world, gateway_url, clock, store,
                                                                         tmp_path):
    world.top_up("a", 5000)
    till, _, wire = make_till(world, gateway_url, clock, tmp_path)
    code = world.pay_code("a")
    till.command("sale 10.00")
    wire.losing["/v1/pos/authorizations"] = 3
    assert till.handle_code(code).reason == "unreachable"
    paid = till.handle_code(code)  # spent at the first try; the replay answers with its authorisation
    assert paid.approved and till.unanswered is None
    assert [p["amount"] for p in payments_of(store, world.wallet("a")[0])] == [1000]
    assert world.available("a") == 4000


def test_a_till_that_died_after_journalling_a_purse_payment_finds_its_sale_paid(world, gateway_url, clock,
                                                                               tmp_path):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    till, _, _ = make_till(world, gateway_url, clock, tmp_path)
    till.command("sale 2.50")
    open_sale = till.sale
    till._finish = lambda sale: (_ for _ in ()).throw(SystemExit("power cut"))  # dies right after the journal
    till.reader.present(rider.card)
    with pytest.raises(SystemExit):
        till.handle_card(till.reader.wait_for_card(0))
    restarted, _, _ = make_till(world, gateway_url, clock, tmp_path)
    assert restarted.sale.id == open_sale.id and restarted.sale.state == pos.PAID
    assert restarted.sale.balance_after == 750 == rider.balance


def test_pay_codes_are_read_from_camera_frames(world, gateway_url, clock, tmp_path):
    from wallet import qr as wallet_qr

    world.top_up("a", 5000)
    camera = tmp_path / "camera"
    camera.mkdir()
    till, _, _ = make_till(world, gateway_url, clock, tmp_path)
    till.frames.directory = camera
    till.command("sale 9.90")
    assert till.scan_frames() == []  # nobody shows anything yet
    wallet_qr.write(_wallet_app(world, gateway_url, clock, tmp_path).pay_code(), camera / "0001.png")
    wallet_qr.write("a bill, not a pay code", camera / "0002.png")
    first, second = till.scan_frames()
    assert (first.approved, first.method, first.amount) == (True, "signed_pay_code", 990)
    assert (second.approved, second.reason) == (False, "not_a_pay_code")
    assert till.scan_frames() == [] and world.available("a") == 4010  # a frame is read once


def test_a_signed_pay_code_charged_without_an_answer_is_refunded_when_the_sale_is_paid_by_card(
        world, gateway_url, clock, store, tmp_path):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    till, lines, wire = make_till(world, gateway_url, clock, tmp_path)
    till.merchant = merchant_client(gateway_url, world.merchant("x")[1].auth)
    till.command("sale 7.00")
    wire.lose("/v1/paycode-payments", 3)  # charged; the till never heard
    assert till.handle_code(_wallet_app(world, gateway_url, clock, tmp_path).pay_code()).reason == "unreachable"
    assert world.available("a") == 3300
    till.reader.present(rider.card)  # the customer pays by card instead
    assert till.handle_card(till.reader.wait_for_card(0)).approved
    till.tick()
    assert till.unanswered is None and world.available("a") == 4000  # the code's payment refunded
    assert lines[-1].startswith("REFUND    7.00 CNY of pay_")


def test_a_suspended_tills_sales_wait_in_its_journal_until_it_is_resumed(world, gateway_url, clock, store,
                                                                         tmp_path, operator):
    """docs/security.md: a suspended terminal's uploads are refused whole (403), whatever its
    taps' times; the till keeps them unsent, and they count once when it is resumed."""
    from protocol.uplink.client import GatewayRefused

    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(2000)
    till, _, _ = make_till(world, gateway_url, clock, tmp_path)
    till.command("sale 3.00 basket-9")
    till.reader.present(rider.card)
    assert till.handle_card(till.reader.wait_for_card(0)).approved       # taken before the suspension
    terminal_id, _ = world.terminal("x")
    ok(operator.post(f"/v1/terminals/{terminal_id}/suspend"))
    with pytest.raises(GatewayRefused) as refused:
        upload_all(till.journal, till.client, clock)
    assert refused.value.status == 403 and "suspended" in str(refused.value.error)
    assert [row["id"] for row in till.journal.unsent()] == [till.journal.taps()[0]["id"]]
    ok(operator.post(f"/v1/terminals/{terminal_id}/resume"))
    assert upload_all(till.journal, till.client, clock).accepted == 1
    assert till.journal.unsent() == [] and upload_all(till.journal, till.client, clock).accepted == 0
