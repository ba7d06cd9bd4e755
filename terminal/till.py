"""The shop till: `tapstack terminal till`, the shell around terminal.pos.

The cashier rings up a sale (`sale 12.50` on stdin, or a scripted --sales file); the
customer then pays it one of three ways:

- a purse tap on the reader: the card decision the bus validator makes too (terminal.card,
  with the sale's amount as the fare), offline, journalled (terminal/writeahead.py:
  fsynced) as a sale before the customer is told, uploaded through POST /v1/sales by the
  same uploader;
- a pay code scanned from a camera frame (--qr-frame, --qr-dir) or typed (`code TEXT`):
  the gateway's single-use pc_... codes are authorised then captured
  (POST /v1/pos/authorizations, .../capture); a wallet-signed TS:... code is verified
  offline with the cached issuer keys, then charged (POST /v1/paycode-payments);
- a checkout QR for the amount (`qr`: POST /v1/checkouts), drawn on the terminal and saved
  as a PNG, polled until the wallet app pays it or it expires.

Every online call carries an Idempotency-Key derived from the sale id (pos.idempotency_key)
and is retried with it when no answer came, so a timeout never charges twice. A capture
left unanswered keeps the sale `capturing` (in the journal, across restarts) and is
retried until the gateway answers. Without the gateway only the purse works; the till
says so and keeps the sale open.
"""
from __future__ import annotations

import io
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from protocol.purse import MAX_TRANSACTION_AMOUNT
from protocol.uplink import Client, GatewayError, GatewayRefused, GatewayUnavailable, urllib_send
from terminal import card, pos
from terminal.frames import Frames, read_qr_text
from terminal.journal import Journal, JournalError
from terminal.loop import ClockWatch, Service, read_commands, serve, utc_now
from terminal.settings import TillSettings, check_till_settings
from terminal.sync import Sync
from terminal.uploader import Uploader, upload_all
from terminal.writeahead import WriteAhead

SALE_STATE = "till_sale"  # the current sale, in the journal's named state
SALE_COUNTER = "till_sales"
CAPTURE_RETRY_CAP = 30.0  # seconds between retries of an unanswered capture, at most


class Till:
    """The till desk: between_cards, handle_card, finished, clock_jumped (terminal.loop.Desk)."""

    def __init__(self, settings: TillSettings, reader, journal: Journal, *, client: Client | None = None,
                 clock: Callable[[], datetime] = utc_now, out: Callable[[str], None] = print,
                 pause: Callable[[float], None] = time.sleep, service: Service | None = None):
        check_till_settings(settings)
        self.s, self.reader, self.journal, self.client = settings, reader, journal, client
        self.clock, self.out, self.pause = clock, out, pause
        self.service = service or Service(out)
        self.token_key = settings.token_key or os.urandom(32)
        self.sync = Sync(journal, client=client, every=settings.refresh_every, clock=clock, out=out,
                         service=self.service, issuer_keys=settings.issuer_keys)
        self.write_ahead = WriteAhead(journal, self.service, clock)
        self.frames = Frames(settings.qr_frame, settings.qr_dir)
        saved = journal.load(SALE_STATE)
        self.sale: pos.Sale | None = pos.Sale.from_json(saved[0]) if saved and saved[0] else None
        if self.sale is not None and self.sale.state == pos.OPEN:
            self._paid_by_journalled_tap()
        self.seen: dict = {}  # signed pay codes charged here (their replay keys), until they expire
        self.completed = 0
        self.merchant: Client | None = None  # refunds under the merchant's key, when given one
        # A pay code's call that never got an answer: (step, its sale, the code), in memory only.
        self.unanswered: tuple[str, pos.Sale, str] | None = None
        self.uploader: Uploader | None = None
        self.script: deque[str] = deque()
        self._next_poll: datetime | None = None
        self._capture_failures = 0
        self._next_capture: datetime | None = None
        self._next_release: datetime | None = None
        self.commands: queue.Queue | None = None

    # -- the sale -----------------------------------------------------------------------

    def _save(self, sale: pos.Sale | None) -> None:
        """The sale now, kept in the journal. A journal that cannot take it leaves it in memory:
        a purse payment is found again from its journalled tap (_paid_by_journalled_tap)."""
        self.sale = sale
        try:
            self.journal.save(SALE_STATE, sale.to_json() if sale else None, self.clock())
        except JournalError as e:
            self.service.report("journal", str(e))

    def _finish(self, sale: pos.Sale) -> None:
        self._save(sale)
        self.completed += 1

    def _paid_by_journalled_tap(self) -> None:
        """A till that died between journalling a purse payment and closing its sale finds
        the tap (its row names the sale) and closes the sale, so nobody pays it twice."""
        for row in reversed(self.journal.taps()):
            if pos.journalled_sale(row) == self.sale.id and row["kind"] == "purse" and row["accepted"]:
                self._save(pos.paid(self.sale, "purse", tap_id=row["id"], balance_after=row["balance_after"]))
                return
            if row["at"] < int(self.sale.opened_at.timestamp()):
                return

    def open_sale(self, amount: int, reference: str | None = None) -> pos.Sale | None:
        if self.sale is not None and self.sale.is_open:
            self.out(f"sale {self.sale.id} is still open ({pos.money(self.sale.amount, self.sale.currency)}): "
                     "cancel it first")
            return None
        try:  # sale ids never repeat: the counter is journalled before the sale opens
            found = self.journal.load(SALE_COUNTER)
            salt, number = (found[0]["salt"], found[0]["number"] + 1) if found else (os.urandom(4).hex(), 1)
            self.journal.save(SALE_COUNTER, {"salt": salt, "number": number}, self.clock())
        except JournalError as e:
            self.service.report("journal", str(e))
            self.out(f"no sale opened: the journal cannot be written ({e})")
            return None
        try:
            sale = pos.open_sale(pos.sale_id(self.s.terminal_id, salt, number), amount, self.s.currency,
                                 reference, self.clock())
        except ValueError as e:
            self.out(str(e))
            return None
        self._save(sale)
        self._next_poll = None
        self.out(pos.sale_line(sale))
        return sale

    def show(self, result: pos.Result) -> pos.Result:
        for line in pos.panel(self.sale, result):
            self.out(line)
        return result

    def _payable(self, method: str) -> pos.Result | None:
        """None when the open sale may take a payment now; else the refusal."""
        if self.sale is None or self.sale.state != pos.OPEN:
            detail = "a pay code is being captured" if self.sale and self.sale.state == pos.CAPTURING else ""
            return pos.refused("no_sale", method, detail)
        if self.sale.checkout_id:
            return self._close_checkout()
        return None

    # -- a tap --------------------------------------------------------------------------

    def handle_card(self, session) -> pos.Result:
        """Decide a card in the field; journal it (durably), then signal and show."""
        refusal = self._payable("card")
        if refusal is None and self.sale.amount > MAX_TRANSACTION_AMOUNT:
            refusal = pos.refused("above_card_limit", "purse",
                                  f"a purse pays at most {pos.money(MAX_TRANSACTION_AMOUNT, self.sale.currency)} a tap")
        if refusal is not None:  # nothing was sent to the card
            self._signal("deny")
            return self.show(refusal)
        sale = self.sale
        intent = self.write_ahead.decide(session, self.terms(sale))
        decision, result = intent.decision, pos.tap_result(intent.decision)
        if decision.accepted and not result.approved:  # a bank or UID card: recorded as refused, never charged
            decision = replace(decision, accepted=False, reason=result.reason, message=result.message)
        tap_id, _ = self.write_ahead.write(replace(intent, decision=decision, entry=pos.sale_record(decision, sale.id)))
        if tap_id is None:  # not journalled, so not taken: the sale stays open (a paid purse recovers)
            result = pos.refused("journal_unavailable", "purse" if decision.kind == "purse" else "card",
                                 f"the journal cannot be written: {self.write_ahead.error}")
        elif result.approved:
            result = replace(result, tap_id=tap_id)
            self._finish(pos.paid(sale, "purse", tap_id=tap_id, balance_after=result.balance_after))
        self._signal(decision.signal)
        if self.uploader is not None:
            self.uploader.poke()
        return self.show(result)

    def terms(self, sale: pos.Sale) -> card.Terms:
        """The card decision's terms at a till: the sale's amount is the fare, its id the stop.
        No repeat window: one purse may pay two sales in a row (a sale is paid once anyway)."""
        ref = self.sync.ref
        return card.Terms(self.clock(), card.Place("pos", sale.id), sale.amount, self.s.currency, None,
                          self.s.terminal_id, self.token_key, ref.issuer_keys, ref.deny, self.write_ahead.pending,
                          window=timedelta(0), journal_down=self.write_ahead.down())

    def _signal(self, outcome: str) -> None:
        try:
            self.reader.signal(outcome)
        except Exception:  # the LED is a courtesy: the screen says it too
            pass

    # -- pay codes ----------------------------------------------------------------------

    def handle_code(self, text: str) -> pos.Result:
        """A code the customer showed (scanned or typed)."""
        text = text.strip()
        kind = pos.code_kind(text)
        method = "pay_code" if kind == "gateway_pay_code" else "signed_pay_code"
        if kind == "other":  # a bill, a ticket, a shop's own code: nothing to pay a sale with
            return self.show(pos.refused("not_a_pay_code", "code", "neither a pc_... nor a TS:... code"))
        refusal = self._payable(method)
        if refusal is not None:
            return self.show(refusal)
        if kind == "signed_pay_code":
            return self.show(self._signed_code(text))
        if self.client is None:
            return self.show(pos.refused("unreachable", method, "no gateway configured"))
        return self.show(self._gateway_code(text))

    def _call(self, method: str, path: str, body: dict | None = None, step: str | None = None,
              detail: str = "", *, tries: int | None = None, sale: pos.Sale | None = None) -> dict:
        """One online call of the sale (the open one unless given), tried s.retries times with
        the same Idempotency-Key; GatewayUnavailable when no try got an answer, GatewayRefused
        for a 4xx."""
        if self.client is None:
            raise GatewayUnavailable("no gateway configured")
        key = pos.idempotency_key(sale or self.sale, step, detail) if step else None
        tries = tries or self.s.retries
        for attempt in range(tries):
            try:
                return self.client.request(method, path, body, idempotency_key=key)
            except GatewayUnavailable:
                if attempt + 1 == tries:
                    raise
                self.pause(min(0.25 * 2 ** attempt, 2.0))
        raise AssertionError("unreachable")

    def _gateway_code(self, text: str) -> pos.Result:
        sale = self.sale
        body = {"pay_code": text, "amount": sale.amount, "currency": sale.currency}
        try:
            auth = self._call("POST", "/v1/pos/authorizations", body, "authorize", text)
        except GatewayUnavailable as e:
            # It may have been authorised: shown again, the code replays under the same key;
            # if the sale ends another way, tick() finds the hold and voids it.
            self.unanswered = ("authorize", sale, text)
            return pos.refused("unreachable", "pay_code", str(e))
        except GatewayRefused as e:
            self._answered(text)
            return pos.gateway_refusal(e.status, e.error, "pay_code")
        self._answered(text)
        self._save(replace(sale, state=pos.CAPTURING, method="pay_code", authorization_id=auth["id"]))
        return self.capture()

    def _answered(self, text: str) -> None:
        if self.unanswered is not None and self.unanswered[2] == text:
            self.unanswered = None

    def release_unanswered(self) -> bool:
        """Undo what a pay code's unanswered call may have done, once its sale has ended
        another way (a card, cash and cancel): asking again under the same key tells. An
        authorisation's hold is voided; a signed pay code's payment is refunded (or the
        cashier told to refund it). True when nothing is left to do."""
        if self.unanswered is None:
            return True
        step, sale, text = self.unanswered
        body = {"pay_code": text, "amount": sale.amount, "currency": sale.currency}
        path = "/v1/pos/authorizations" if step == "authorize" else "/v1/paycode-payments"
        try:
            done = self._call("POST", path, body, step, text, sale=sale, tries=1)
            if step == "authorize" and done.get("status") == "pending":
                self._call("POST", f"/v1/pos/authorizations/{done['id']}/void", {}, "void", done["id"], sale=sale,
                           tries=1)
                self.out(f"released the hold of {done['id']} (sale {sale.id}, whose answer was lost)")
            elif step == "paycode":
                self.out(f"the pay code of sale {sale.id} was charged after all ({done['id']}), "
                         "and the sale was paid another way")
                self.refund(done["id"], None)
        except GatewayUnavailable:
            return False
        except GatewayRefused:
            pass  # nothing was done (or it is no longer pending): nothing to undo
        self.unanswered = None
        return True

    def capture(self) -> pos.Result:
        """Capture the sale's authorisation, with its own key every time (a retry replays)."""
        sale = self.sale
        path = f"/v1/pos/authorizations/{sale.authorization_id}/capture"
        try:
            answer = self._call("POST", path, {}, "capture", sale.authorization_id)
        except GatewayUnavailable as e:
            self._capture_failures += 1
            delay = min(CAPTURE_RETRY_CAP, 2.0 ** self._capture_failures)
            self._next_capture = self.clock() + timedelta(seconds=delay)
            return pos.Result(False, "unreachable", "pay_code",
                              "gateway unreachable: authorised, the capture is retried", detail=str(e))
        except GatewayRefused as e:
            # Expired or voided meanwhile: the hold is gone, nothing was charged.
            self._save(replace(sale, state=pos.OPEN, authorization_id=None, method=None))
            return pos.gateway_refusal(e.status, e.error, "pay_code")
        self._capture_failures, self._next_capture = 0, None
        self._finish(pos.paid(sale, "pay_code", payment_id=answer["payment_id"]))
        return pos.Result(True, "pay_code", "pay_code", pos.message("pay_code"), answer["amount_captured"],
                          answer["currency"], payment_id=answer["payment_id"])

    def _signed_code(self, text: str) -> pos.Result:
        sale = self.sale
        refusal, seen = pos.check_signed_code(sale, text, self.sync.ref.issuer_keys, self.seen, self.clock())
        if refusal is not None:
            return refusal
        body = {"pay_code": text, "amount": sale.amount, "currency": sale.currency}
        try:
            payment = self._call("POST", "/v1/paycode-payments", body, "paycode", text)
        except GatewayUnavailable as e:
            # Not remembered as used: shown again, it is sent again under the same key.
            self.unanswered = ("paycode", sale, text)
            return pos.refused("unreachable", "signed_pay_code", str(e))
        except GatewayRefused as e:
            self._answered(text)
            if e.error.get("code") == "pay_code_used":
                self.seen = seen
            return pos.gateway_refusal(e.status, e.error, "signed_pay_code")
        self._answered(text)
        self.seen = seen
        self._finish(pos.paid(sale, "signed_pay_code", payment_id=payment["id"]))
        return pos.Result(True, "pay_code", "signed_pay_code", pos.message("pay_code"), payment["amount"],
                          payment["currency"], payment_id=payment["id"])

    # -- checkout QR --------------------------------------------------------------------

    def show_checkout(self) -> pos.Result | None:
        """Make a checkout for the open sale, draw its code, save the PNG; polled by tick()."""
        sale = self.sale
        if sale is None or sale.state != pos.OPEN:
            return self.show(pos.refused("no_sale", "checkout"))
        if sale.checkout_id:
            self.out(f"checkout {sale.checkout_id} is open; its code is in {self.s.qr_out}")
            return None
        number = sale.checkouts + 1
        body = {"amount": sale.amount, "currency": sale.currency, "expires_in": self.s.checkout_seconds}
        try:
            checkout = self._call("POST", "/v1/checkouts", body, "checkout", str(number))
        except GatewayUnavailable as e:
            return self.show(pos.refused("unreachable", "checkout", str(e)))
        except GatewayRefused as e:
            return self.show(pos.gateway_refusal(e.status, e.error, "checkout"))
        self._save(replace(sale, checkout_id=checkout["id"], checkouts=number))
        self._next_poll = self.clock() + timedelta(seconds=self.s.poll_every)
        for line in draw_qr(checkout["qr_payload"], self.s.qr_out):
            self.out(line)
        self.out(f"QR        {pos.money(sale.amount, sale.currency)}   checkout {checkout['id']} until "
                 f"{checkout['expires_at']}; saved {self.s.qr_out}")
        return None

    def poll_checkout(self) -> pos.Result | None:
        """Ask the gateway about the open checkout: paid ends the sale, expired reopens it."""
        sale = self.sale
        try:
            checkout = self._call("GET", f"/v1/checkouts/{sale.checkout_id}", tries=1)
        except (GatewayUnavailable, GatewayRefused):
            return None  # asked again at the next poll
        settled = self._checkout_settled(checkout)
        return self.show(settled) if settled is not None else None

    def _checkout_settled(self, checkout: dict) -> pos.Result | None:
        sale = self.sale
        status = checkout.get("status")
        if status == "paid":
            self._finish(pos.paid(replace(sale, checkout_id=checkout["id"]), "checkout",
                                  payment_id=checkout["payment_id"]))
            return pos.Result(True, "checkout", "checkout", pos.message("checkout"), checkout["amount"],
                              checkout["currency"], payment_id=checkout["payment_id"])
        if status in ("expired", "cancelled"):
            self._save(replace(sale, checkout_id=None))
            return pos.refused(f"checkout_{status}", "checkout", "type qr for a new code")
        return None

    def _close_checkout(self) -> pos.Result | None:
        """Before the sale is paid another way (or cancelled), cancel its open checkout, so it
        can never be paid twice. None when it is closed; the paid result if the customer had
        paid it; a refusal when the gateway cannot confirm it."""
        sale = self.sale
        try:
            self._call("POST", f"/v1/checkouts/{sale.checkout_id}/cancel", {}, "cancel", sale.checkout_id)
        except GatewayUnavailable as e:
            return pos.refused("checkout_open", "checkout", f"the gateway cannot confirm it is unpaid: {e}")
        except GatewayRefused as e:
            if e.error.get("code") == "checkout_already_paid":
                try:
                    settled = self._checkout_settled(self._call("GET", f"/v1/checkouts/{sale.checkout_id}"))
                except (GatewayUnavailable, GatewayRefused) as err:
                    return pos.refused("checkout_open", "checkout", f"paid, but not confirmed yet: {err}")
                return settled or pos.refused("checkout_open", "checkout")
            if e.error.get("code") not in ("checkout_expired", "checkout_cancelled"):
                return pos.gateway_refusal(e.status, e.error, "checkout")
        self._save(replace(sale, checkout_id=None))
        return None

    # -- cancel and refund --------------------------------------------------------------

    def cancel(self) -> None:
        sale = self.sale
        if sale is None or not sale.is_open:
            self.out("no sale open")
            return
        if sale.checkout_id:
            closed = self._close_checkout()
            if closed is not None:
                self.show(closed)
                if closed.approved:
                    self.out("the sale was already paid: refund it to give the money back")
                return
        if sale.state == pos.CAPTURING:
            try:
                self._call("POST", f"/v1/pos/authorizations/{sale.authorization_id}/void", {}, "void",
                           sale.authorization_id)
            except GatewayUnavailable as e:
                self.out(f"cannot cancel yet: the authorisation {sale.authorization_id} is not voided ({e})")
                return
            except GatewayRefused as e:
                if e.error.get("code") == "authorization_captured":
                    self.capture()  # it was captured: a replay of the capture shows the payment
                    self.out("the sale was already paid: refund it to give the money back")
                    return
        self._save(replace(self.sale, state=pos.CANCELLED))
        self.out(pos.sale_line(self.sale))

    def refund(self, payment_id: str, amount: int | None) -> None:
        """Refund a payment (all that is left of it, or amount): under the merchant's key when
        the till was given one, else signed with the till's own terminal key (the gateway lets
        a merchant's terminals refund its payments)."""
        body = {"payment_id": payment_id, **({"amount": amount} if amount is not None else {})}
        # The same refund asked twice is one refund: the key is the payment and the amount.
        key = f"till-refund-{payment_id}-{amount if amount is not None else 'rest'}"
        client = self.merchant or self.client
        refund = None
        for attempt in range(self.s.retries):
            try:
                if client is None:
                    raise GatewayUnavailable("no gateway configured")
                refund = client.post("/v1/refunds", body, idempotency_key=key)
                break
            except GatewayUnavailable as e:
                if attempt + 1 == self.s.retries:
                    self.out(f"REFUND    not done: gateway unreachable ({e}); try again later")
                    return
                self.pause(min(0.25 * 2 ** attempt, 2.0))
            except GatewayRefused as e:
                if e.status == 403:  # a gateway from before terminals could refund
                    self.out("REFUND    not done: this gateway lets only the merchant refund: "
                             "start the till with --merchant-key")
                else:
                    self.out(f"REFUND    not done: {e.error.get('message') or e}")
                return
        self.out(f"REFUND    {pos.money(refund['amount'], refund['currency'])} of {payment_id}   refund {refund['id']}")

    # -- the loop -----------------------------------------------------------------------

    def command(self, line: str, stop: threading.Event | None = None) -> None:
        try:
            cmd = pos.parse_command(line, self.s.currency)
        except pos.CommandError as e:
            self.out(str(e))
            return
        if cmd.verb == "sale":
            self.open_sale(cmd.amount, cmd.reference)
        elif cmd.verb == "qr":
            self.show_checkout()
        elif cmd.verb == "code":
            self.handle_code(cmd.text)
        elif cmd.verb == "cancel":
            self.cancel()
        elif cmd.verb == "refund":
            self.refund(cmd.payment_id, cmd.amount)
        elif cmd.verb == "status":
            self.out(pos.sale_line(self.sale) if self.sale else "no sale yet")
            self.out(f"{'online' if self.sync.online else 'OFFLINE'}   "
                     f"{self.journal.counts()['unsent']} taps to upload")
        elif cmd.verb == "help":
            self.out(pos.USAGE)
        elif cmd.verb == "quit" and stop is not None:
            stop.set()

    def scan_frames(self) -> list[pos.Result]:
        """Camera frames new since the last look (--qr-frame, --qr-dir): each code shown is
        taken as a pay code; a frame without a code is nobody showing one."""
        results = []
        for frame in self.frames.new():
            text = read_qr_text(frame)
            if text is not None:
                results.append(self.handle_code(text))
        return results

    def tick(self) -> None:
        """Between cards: poll an open checkout, retry an unanswered capture, release the hold
        of an unanswered authorisation whose sale has ended."""
        sale, now = self.sale, self.clock()
        if self.unanswered is not None and (sale is None or sale.id != self.unanswered[1].id or not sale.is_open) \
                and (self._next_release is None or now >= self._next_release):
            self._next_release = None if self.release_unanswered() else now + timedelta(seconds=5)
        if sale is None:
            return
        if sale.state == pos.OPEN and sale.checkout_id and (self._next_poll is None or now >= self._next_poll):
            self._next_poll = now + timedelta(seconds=self.s.poll_every)
            self.poll_checkout()
        elif sale.state == pos.CAPTURING and (self._next_capture is None or now >= self._next_capture):
            result = self.capture()
            if result.reason != "unreachable" or self._capture_failures == 1:
                self.show(result)

    @property
    def idle(self) -> bool:
        return self.sale is None or not self.sale.is_open

    @property
    def scripted_done(self) -> bool:
        """An unattended (--sales) run has done its last sale."""
        return self.s.sales is not None and not self.script and self.idle

    # -- the desk terminal.loop.serve drives ------------------------------------------------

    def between_cards(self, stop: threading.Event) -> None:
        if self.script and self.idle:
            self.command(self.script.popleft(), stop)
        while self.commands is not None and not self.commands.empty():
            self.command(self.commands.get_nowait(), stop)
        self.scan_frames()
        self.sync.keep_fresh()
        if "journal" in self.service.problems:
            self.write_ahead.works()
        self.tick()

    def finished(self) -> bool:
        return self.scripted_done

    def clock_jumped(self, by: timedelta) -> None:
        """Timers set by the old clock fire now: a poll, a capture retry, a release, a refresh."""
        self._next_poll = self._next_capture = self._next_release = None
        self.sync.clock_jumped()

    def run(self, stop: threading.Event, commands: queue.Queue | None = None, *,
            watch: ClockWatch | None = None) -> None:
        """The card loop; with a gateway, the reference data are downloaded in the background."""
        if self.sale is not None and self.sale.is_open:
            self.out(pos.sale_line(self.sale))
        self.commands = commands
        with self.sync.running():
            serve(self, self.reader, stop, watch=watch)


def merchant_client(base_url: str, api_key: str, *, send=None) -> Client:
    """A client under the merchant's own API key (Bearer sk_...), for a till that refunds as
    the merchant rather than with its terminal key."""
    if not api_key.startswith("sk_"):
        raise ValueError("a merchant key starts with sk_ (from POST /v1/merchants)")
    return Client.bearer(base_url, api_key, send=send or urllib_send(timeout=5.0))


def draw_qr(payload: str, png: Path | None) -> list[str]:
    """The payload's QR code as terminal lines (block characters), saved as PNG too."""
    import qrcode

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(payload)
    code.make(fit=True)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    if png is not None:
        png.parent.mkdir(parents=True, exist_ok=True)
        code.make_image().save(str(png))
    return out.getvalue().splitlines()


def read_script(path: Path) -> list[str]:
    """A --sales file: commands one a line; blank lines and # comments skipped."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def run(settings: TillSettings, *, out: Callable[[str], None] = print) -> int:
    """`tapstack terminal till`: open the reader and journal, upload, take sales."""
    from terminal.loop import open_terminal

    check_till_settings(settings)
    script = read_script(settings.sales) if settings.sales else []
    opened = open_terminal(settings.reader, settings.journal, settings.terminal_id, out)
    stop, reader, journal = opened.stop, opened.reader, opened.journal
    if journal is None:  # stopped before the journal could be opened
        return 0
    # A short timeout: the customer waits for each try, and a try without an answer is retried.
    client = (Client(settings.gateway, settings.key_id, settings.secret, send=urllib_send(timeout=5.0))
              if settings.gateway else None)
    till = Till(settings, reader, journal, client=client, out=out, service=opened.service)
    if settings.gateway and settings.merchant_key:
        till.merchant = merchant_client(settings.gateway, settings.merchant_key)
    till.script.extend(script)
    commands: queue.Queue = queue.Queue()
    if settings.sales is None:
        threading.Thread(target=read_commands, args=(commands,), daemon=True).start()
    if client is not None:
        till.uploader = Uploader(settings.journal, settings.terminal_id, client, utc_now, on_error=out)
        till.uploader.start()
    out(f"till {settings.terminal_id.hex()} on {reader.name}; "
        f"{'gateway ' + settings.gateway if client else 'no gateway: purse taps only'}; {pos.USAGE}")
    try:
        till.run(stop, commands, watch=ClockWatch(utc_now))
    finally:
        if till.uploader is not None:
            till.uploader.stop()
            try:  # what the last sales journalled, before an unattended run ends
                upload_all(journal, client, utc_now)
            except (GatewayError, JournalError) as e:
                out(f"taps left to upload at the next start ({e})")
        reader.close()
        journal.close()
    return 0
