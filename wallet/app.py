"""The wallet's app side: a client of the gateway holding the wallet's credential, and
its flows — scan a QR code and pay it (a bill, a till's checkout, a shop's static code),
pay a biller's outstanding bills, top up, read the balance, and show a signed pay code
or QR ticket.

Where the wallet finds its gateway and credential, first found wins:
1. the command's options (--gateway, --wallet-id, --credential);
2. the environment: TAPSTACK_GATEWAY_URL, TAPSTACK_WALLET_ID, TAPSTACK_WALLET_CREDENTIAL;
3. the profile file (--profile, default $TAPSTACK_HOME/wallet/profile.json, mode 0600):

    {"format": "tapstack-wallet-profile/1", "gateway_url": "http://127.0.0.1:8000",
     "wallet_id": "wal_...", "credential": "wk_...",
     "card": {"seed": "<64 hex>", "certificate": "<226 hex>"}}

"card" is written by the app the first time it needs a pay code or ticket: it makes an
Ed25519 key, has the gateway certify it (POST /v1/wallets/{id}/card) and keeps both.

Every failure a user can cause or meet (no QR in the picture, a damaged or expired code,
a bill already paid, a gateway that does not answer) is a `WalletAppError` whose text is
one line; the commands print it and exit 1. Each payment is sent with its own
Idempotency-Key and retried with the same key when the connection fails, so a retry
never pays twice.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import click
import qrcode

from protocol import ed25519, emvqr, signed_qr, uplink
from protocol.currency import AmountError, UnknownCurrency, money, parse_decimal
from wallet import qr as wallet_qr
from wallet.state import write_atomically

PROFILE_FORMAT = "tapstack-wallet-profile/1"
ENV_GATEWAY, ENV_WALLET, ENV_CREDENTIAL = "TAPSTACK_GATEWAY_URL", "TAPSTACK_WALLET_ID", "TAPSTACK_WALLET_CREDENTIAL"


class WalletAppError(Exception):
    """Something the user is told in one line; nothing was paid unless the line says so."""


class GatewayError(WalletAppError):
    """The gateway answered with its error shape."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- the profile -------------------------------------------------------------------------------

def default_profile_path() -> Path:
    return Path(os.environ.get("TAPSTACK_HOME", ".tapstack")) / "wallet" / "profile.json"


@dataclass(frozen=True)
class Profile:
    gateway_url: str
    wallet_id: str
    credential: str
    path: Path
    card_seed: bytes | None = None
    card_certificate: bytes | None = None


def _read_profile(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise WalletAppError(f"cannot read wallet profile {path}: {err.strerror}") from None
    except ValueError:
        raise WalletAppError(f"wallet profile {path} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != PROFILE_FORMAT:
        raise WalletAppError(f"wallet profile {path} is not in format {PROFILE_FORMAT}")
    return doc


def load_profile(path: Path | None = None, *, gateway_url: str | None = None, wallet_id: str | None = None,
                 credential: str | None = None, env=os.environ) -> Profile:
    """The wallet's profile: options over environment over the file; see the module docstring."""
    path = Path(path) if path else default_profile_path()
    doc = _read_profile(path)
    values = {"gateway_url": gateway_url or env.get(ENV_GATEWAY) or doc.get("gateway_url"),
              "wallet_id": wallet_id or env.get(ENV_WALLET) or doc.get("wallet_id"),
              "credential": credential or env.get(ENV_CREDENTIAL) or doc.get("credential")}
    missing = [name for name, value in values.items() if not isinstance(value, str) or not value]
    if missing:
        raise WalletAppError(f"no {', '.join(missing)}: set them in {path}, the environment "
                             f"({ENV_GATEWAY}, {ENV_WALLET}, {ENV_CREDENTIAL}) or the options")
    card = doc.get("card") if doc.get("wallet_id") == values["wallet_id"] else None
    try:
        seed = bytes.fromhex(card["seed"]) if card else None
        certificate = bytes.fromhex(card["certificate"]) if card else None
    except (KeyError, TypeError, ValueError):
        raise WalletAppError(f"wallet profile {path} has a damaged card section") from None
    return Profile(values["gateway_url"].rstrip("/"), values["wallet_id"], values["credential"], path,
                   seed, certificate)


def save_card(profile: Profile, seed: bytes, certificate: bytes) -> Profile:
    """Keep the certified card key in the profile file (created if need be, mode 0600)."""
    doc = _read_profile(profile.path) or {"format": PROFILE_FORMAT, "gateway_url": profile.gateway_url,
                                          "wallet_id": profile.wallet_id, "credential": profile.credential}
    if doc.get("wallet_id") != profile.wallet_id:
        raise WalletAppError(f"wallet profile {profile.path} belongs to another wallet; not changing it")
    doc["card"] = {"seed": seed.hex(), "certificate": certificate.hex()}
    try:
        profile.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(profile.path, json.dumps(doc, indent=2) + "\n")
    except OSError as err:
        raise WalletAppError(f"cannot write wallet profile {profile.path}: {err.strerror or err}") from None
    return Profile(profile.gateway_url, profile.wallet_id, profile.credential, profile.path, seed, certificate)


# -- the gateway client ------------------------------------------------------------------------

class Gateway:
    """The wallet's calls over protocol.uplink's client, with its bearer credential; a
    refusal becomes GatewayError, no answer (after `retries` more tries) WalletAppError."""

    def __init__(self, base_url: str, credential: str, *, timeout: float = 10.0, retries: int = 2):
        self.base_url, self.credential, self.retries = base_url.rstrip("/"), credential, retries
        self._client = uplink.Client.bearer(self.base_url, credential, send=uplink.urllib_send(timeout))

    def get(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return self._send("GET", path + (f"?{query}" if query else ""), None, None)

    def post(self, path: str, body: dict | None = None, *, key: str | None = None) -> dict:
        """POST with an Idempotency-Key (a new one unless given), retried with it on a failed connection."""
        return self._send("POST", path, body or {}, key or f"wallet-{secrets.token_hex(16)}")

    def _send(self, method: str, path: str, body: dict | None, key: str | None) -> dict:
        for attempt in range(self.retries + 1):
            try:
                return self._client.request(method, path, body, idempotency_key=key)
            except uplink.GatewayRefused as err:
                code, message = err.error.get("code"), err.error.get("message")
                if not (isinstance(code, str) and isinstance(message, str)):
                    code, message = "http_error", f"the gateway answered HTTP {err.status}"
                raise GatewayError(err.status, code, message) from None
            except uplink.GatewayUnavailable as err:
                if err.status is not None:  # it answered, with nothing usable
                    raise GatewayError(err.status, "http_error",
                                       f"the gateway at {self.base_url} answered HTTP {err.status}") from None
                if attempt == self.retries:
                    raise WalletAppError(f"cannot reach the gateway at {self.base_url}: {err}") from None
        raise AssertionError("unreachable")


# -- money as people type and read it ------------------------------------------------------------

def parse_money(text: str, currency: str) -> int:
    """"23.72" in CNY -> 2372 minor units, exactly; WalletAppError for anything else."""
    try:
        amount = parse_decimal(text.strip(), currency)
    except (AmountError, UnknownCurrency) as err:
        raise WalletAppError(str(err)) from None
    if amount == 0:
        raise WalletAppError(f"{text.strip()!r} is zero: give an amount to move")
    return amount


# -- scanned codes -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scanned:
    """A code the wallet read and looked up: what it would pay, and to whom."""
    kind: str                 # bill | checkout | merchant
    payee_id: str
    payee_name: str
    currency: str
    amount: int | None        # None: a static code, the payer enters it
    bill: dict | None = None
    checkout: dict | None = None

    def lines(self) -> list[str]:
        if self.kind == "bill":
            b = self.bill
            lines = [f"Bill {b['bill_number']} from {b['biller_name']}",
                     f"  consumer {b['consumer_number']}, period {b['period']}, due {b['due_date']}",
                     f"  amount due {money(b['amount_due'], b['currency'])}"]
            if b["amount_paid"]:
                lines.append(f"  already paid {money(b['amount_paid'], b['currency'])}")
            return lines + [f"  to pay {money(self.amount, self.currency)}"]
        if self.kind == "checkout":
            c = self.checkout
            return [f"Checkout at {c['merchant_name']} ({c['terminal_label']})",
                    f"  to pay {money(self.amount, self.currency)}, code valid until {c['expires_at']}"]
        return [f"Shop {self.payee_name} ({self.payee_id}): you enter the amount, in {self.currency}"]


def receipt_lines(receipt: dict) -> list[str]:
    if receipt.get("object") == "bill_payment":
        bill = receipt.get("bill") or {}
        left = bill.get("amount_outstanding")
        return [f"Paid {money(receipt['amount'], receipt['currency'])} to {receipt['biller_name']}",
                f"  bill {receipt['bill_number']}, consumer {receipt['consumer_number']}, period {receipt['period']}",
                f"  receipt {receipt['id']} at {receipt['created_at']}",
                f"  bill now {bill.get('status', '?')}" + (f", {money(left, receipt['currency'])} outstanding"
                                                            if left else "")]
    return [f"Paid {money(receipt['amount'], receipt['currency'])} to merchant {receipt['merchant_id']}",
            f"  payment {receipt['id']} at {receipt['created_at']}"]


# -- the app -------------------------------------------------------------------------------------

class WalletApp:
    """The wallet's flows over a Gateway; `clock` gives the time codes are checked and signed at."""

    def __init__(self, gateway: Gateway, profile: Profile, clock: Callable[[], datetime] = utc_now):
        self.gateway, self.profile, self.clock = gateway, profile, clock

    @classmethod
    def from_profile(cls, profile: Profile, clock: Callable[[], datetime] = utc_now) -> "WalletApp":
        return cls(Gateway(profile.gateway_url, profile.credential), profile, clock)

    # scanning and paying

    def read(self, image) -> Scanned:
        """Decode the QR code in an image file (or its bytes) and look up what it asks to pay."""
        try:
            scan = wallet_qr.scan(image, require_emv=True)
        except wallet_qr.ScanError as err:
            raise WalletAppError(str(err)) from None
        return self.read_payload(scan.text)

    def read_payload(self, payload: str) -> Scanned:
        try:
            qr = emvqr.parse(payload)
        except emvqr.QrFormatError as err:
            raise WalletAppError(f"not a payment code this wallet can read: {err}") from None
        scheme = emvqr.scheme(qr)
        if scheme not in (None, "tapstack"):
            raise WalletAppError(f"this is a {scheme} code; this wallet pays tapstack codes only")
        try:
            code = emvqr.read_tapstack(qr, self.clock())
        except emvqr.CodeExpired as err:
            raise WalletAppError(f"this code has expired ({err.message}); ask for a new one") from None
        except emvqr.QrFormatError as err:
            raise WalletAppError(f"not a tapstack payment code: {err}") from None
        if code.kind == "bill":
            return self._bill(code)
        if code.kind == "checkout":
            return self._checkout(code)
        return Scanned("merchant", code.merchant_id, qr.local_name or qr.name or code.merchant_id, code.currency, None)

    def _bill(self, code: emvqr.TapstackCode) -> Scanned:
        found = self.gateway.get("/v1/bills", biller_id=code.merchant_id, bill_number=code.bill_number)["data"]
        if not found:
            raise WalletAppError(f"the gateway knows no bill {code.bill_number} of this biller")
        bill = found[0]
        if bill["status"] == "paid":
            raise WalletAppError(f"bill {bill['bill_number']} is already paid: nothing to pay")
        if bill["status"] not in ("open", "partially_paid"):
            raise WalletAppError(f"bill {bill['bill_number']} is {bill['status']}; it cannot be paid")
        return Scanned("bill", bill["biller_id"], bill["biller_name"], bill["currency"],
                       bill["amount_outstanding"], bill=bill)

    def _checkout(self, code: emvqr.TapstackCode) -> Scanned:
        if not code.reference:
            raise WalletAppError("this checkout code names no checkout (no reference in 62/05)")
        try:
            checkout = self.gateway.get(f"/v1/checkouts/{urllib.parse.quote(code.reference)}")
        except GatewayError as err:
            if err.status == 404:
                raise WalletAppError("the gateway knows no such checkout") from None
            raise
        if checkout["status"] != "open":
            raise WalletAppError(f"this checkout is {checkout['status']}; nothing to pay")
        return Scanned("checkout", checkout["merchant_id"], checkout["merchant_name"], checkout["currency"],
                       checkout["amount"], checkout=checkout)

    def pay(self, scanned: Scanned, amount: int | None = None) -> dict:
        """Pay what was scanned (amount: the payer's, needed for a static code); the receipt."""
        if scanned.kind == "bill":
            return self.gateway.post(f"/v1/bills/{scanned.bill['id']}/payments",
                                     {"amount": amount or scanned.amount})
        if scanned.kind == "checkout":
            return self.gateway.post(f"/v1/checkouts/{scanned.checkout['id']}/payments")
        if amount is None:
            raise WalletAppError("a shop's static code needs the amount you pay")
        return self.gateway.post("/v1/payments", {"merchant_id": scanned.payee_id, "amount": amount,
                                                  "currency": scanned.currency})

    def outstanding_bills(self, biller_id: str, consumer_number: str) -> list[Scanned]:
        bills = self.gateway.get("/v1/bills", biller_id=biller_id, consumer_number=consumer_number)["data"]
        oldest_first = sorted(bills, key=lambda b: (b["period"], b["due_date"], b["created_at"]))
        return [Scanned("bill", b["biller_id"], b["biller_name"], b["currency"], b["amount_outstanding"], bill=b)
                for b in oldest_first]

    # money

    def wallet(self) -> dict:
        return self.gateway.get(f"/v1/wallets/{self.profile.wallet_id}")

    def balance(self) -> dict:
        return self.gateway.get(f"/v1/wallets/{self.profile.wallet_id}/balance")

    def topup(self, amount: int, currency: str) -> dict:
        return self.gateway.post("/v1/topups", {"wallet_id": self.profile.wallet_id, "amount": amount,
                                                "currency": currency})

    # codes the wallet shows

    def card(self) -> tuple[bytes, bytes]:
        """The wallet's certified card key (seed, certificate), made and certified on first use."""
        if self.profile.card_seed and self.profile.card_certificate:
            return self.profile.card_seed, self.profile.card_certificate
        seed = secrets.token_bytes(32)
        made = self.gateway.post(f"/v1/wallets/{self.profile.wallet_id}/card",
                                 {"public_key": ed25519.public_key(seed).hex()})
        self.profile = save_card(self.profile, seed, bytes.fromhex(made["certificate"]))
        return self.profile.card_seed, self.profile.card_certificate

    def pay_code(self, *, limit: int | None = None, currency: str | None = None, lifetime: int = 60) -> str:
        seed, certificate = self.card()
        return signed_qr.pay_code(seed, certificate, issued_at=self.clock(), nonce=secrets.token_bytes(8),
                                  lifetime=lifetime, limit=limit, currency=currency if limit else None)

    def ticket(self, *, route: str, product: int, valid_minutes: int, lifetime: int = 60) -> str:
        seed, certificate = self.card()
        now = self.clock()
        try:
            return signed_qr.ticket_code(seed, certificate, issued_at=now, nonce=secrets.token_bytes(8),
                                         ticket_id=secrets.token_bytes(8), product=product, route=route,
                                         valid_from=now, valid_until=now + timedelta(minutes=valid_minutes),
                                         lifetime=lifetime)
        except ValueError as err:
            raise WalletAppError(f"cannot make this ticket: {err}") from None


def ascii_qr(text: str) -> str:
    """text's QR code drawn with block characters, for a terminal."""
    code = qrcode.QRCode(error_correction=wallet_qr.ERROR_CORRECTION, border=wallet_qr.QUIET_ZONE)
    code.add_data(text)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()


# -- `tapstack wallet scan | pay-bill | paycode | ticket | topup | balance` --------------------------

def _profile_options(command):
    for option in reversed((
            click.option("--profile", "profile_path", type=click.Path(dir_okay=False, path_type=Path),
                         default=None, help="Wallet profile file (default $TAPSTACK_HOME/wallet/profile.json)."),
            click.option("--gateway", "gateway_url", default=None, metavar="URL",
                         help=f"The gateway's base URL (or ${ENV_GATEWAY})."),
            click.option("--wallet-id", default=None, help=f"The wallet's id, wal_... (or ${ENV_WALLET})."),
            click.option("--credential", default=None, help=f"The wallet's key, wk_... (or ${ENV_CREDENTIAL})."))):
        command = option(command)
    return command


def _app(profile_path, gateway_url, wallet_id, credential) -> WalletApp:
    return WalletApp.from_profile(load_profile(profile_path, gateway_url=gateway_url, wallet_id=wallet_id,
                                               credential=credential))


def _fail(err: Exception):
    raise click.ClickException(str(err)) from None


def _confirm_and_pay(app: WalletApp, scanned: Scanned, amount: int | None, yes: bool) -> None:
    for line in scanned.lines():
        click.echo(line)
    if scanned.kind == "merchant" and amount is None:
        amount = parse_money(click.prompt(f"Amount to pay ({scanned.currency})"), scanned.currency)
    shown = amount or scanned.amount
    if not yes and not click.confirm(f"Pay {money(shown, scanned.currency)} to {scanned.payee_name}?"):
        raise WalletAppError("not paid: cancelled")
    for line in receipt_lines(app.pay(scanned, amount)):
        click.echo(line)


@click.command("scan")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Pay without asking for confirmation.")
@click.option("--amount", default=None, help="Amount to pay, e.g. 23.50 (a static code; a part payment of a bill).")
@_profile_options
def scan_command(image, yes, amount, profile_path, gateway_url, wallet_id, credential):
    """Scan a QR code in a photo or screenshot (a bill, a checkout or a shop's code), show it,
    confirm and pay it (`decode IMAGE` only shows what a code holds)."""
    try:
        app = _app(profile_path, gateway_url, wallet_id, credential)
        scanned = app.read(image)
        _confirm_and_pay(app, scanned, parse_money(amount, scanned.currency) if amount else None, yes)
    except WalletAppError as err:
        _fail(err)


@click.command("pay-bill")
@click.argument("biller_id")
@click.argument("consumer_number")
@click.option("--yes", is_flag=True, help="Pay without asking for confirmation.")
@_profile_options
def pay_bill_command(biller_id, consumer_number, yes, profile_path, gateway_url, wallet_id, credential):
    """Pay a biller's outstanding bills for a consumer number, oldest first, each confirmed."""
    try:
        app = _app(profile_path, gateway_url, wallet_id, credential)
        bills = app.outstanding_bills(biller_id, consumer_number)
        if not bills:
            click.echo(f"No outstanding bills for consumer {consumer_number} at {biller_id}.")
            return
        for scanned in bills:
            _confirm_and_pay(app, scanned, None, yes)
    except WalletAppError as err:
        _fail(err)


def _show(text: str, out: Path | None, show_text: bool) -> None:
    """Draw a code in the terminal, or save it to `out`; then its text when asked."""
    if out is None:
        click.echo(ascii_qr(text), nl=False)
    else:
        try:
            wallet_qr.write(text, out)
        except (ValueError, OSError) as err:
            raise WalletAppError(str(err)) from None
        click.echo(f"wrote {out}")
    if show_text:
        click.echo(text)


@click.command("paycode")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save as PNG or SVG (by the suffix) instead of drawing it in the terminal.")
@click.option("--limit", default=None, help="The most the till may charge, e.g. 50.00 (in the wallet's currency).")
@click.option("--text", "show_text", is_flag=True, help="Print the code's text as well.")
@_profile_options
def paycode_command(out, limit, show_text, profile_path, gateway_url, wallet_id, credential):
    """Show a pay code for the till: signed by this wallet, valid 60 s, good for one payment."""
    try:
        app = _app(profile_path, gateway_url, wallet_id, credential)
        currency = app.wallet()["currency"] if limit else None
        code = app.pay_code(limit=parse_money(limit, currency) if limit else None, currency=currency)
        _show(code, out, show_text)
    except WalletAppError as err:
        _fail(err)


@click.command("ticket")
@click.option("--route", required=True, help="The route the ticket is for, e.g. 42.")
@click.option("--product", type=click.IntRange(0, 0xFFFF), default=1, show_default=True)
@click.option("--valid-minutes", type=click.IntRange(1, 24 * 60), default=90, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save as PNG or SVG (by the suffix) instead of drawing it in the terminal.")
@click.option("--text", "show_text", is_flag=True, help="Print the code's text as well.")
@_profile_options
def ticket_command(route, product, valid_minutes, out, show_text, profile_path, gateway_url, wallet_id,
                   credential):
    """Show a QR ticket for a validator: signed by this wallet, the code valid 60 s."""
    try:
        app = _app(profile_path, gateway_url, wallet_id, credential)
        code = app.ticket(route=route, product=product, valid_minutes=valid_minutes)
        _show(code, out, show_text)
    except WalletAppError as err:
        _fail(err)


@click.command("topup")
@click.argument("amount")
@_profile_options
def topup_command(amount, profile_path, gateway_url, wallet_id, credential):
    """Top the wallet up by AMOUNT in its currency, e.g. 50 or 50.00."""
    try:
        app = _app(profile_path, gateway_url, wallet_id, credential)
        currency = app.wallet()["currency"]
        topup = app.topup(parse_money(amount, currency), currency)
        click.echo(f"Topped up {money(topup['amount'], currency)} ({topup['id']})")
        click.echo(f"Balance {money(app.balance()['available'], currency)}")
    except WalletAppError as err:
        _fail(err)


@click.command("balance")
@_profile_options
def balance_command(profile_path, gateway_url, wallet_id, credential):
    """Show the wallet's available balance."""
    try:
        balance = _app(profile_path, gateway_url, wallet_id, credential).balance()
        click.echo(f"{money(balance['available'], balance['currency'])} available"
                   + (f" ({money(balance['pending_debits'], balance['currency'])} held)"
                      if balance["pending_debits"] else ""))
    except WalletAppError as err:
        _fail(err)


COMMANDS = (scan_command, pay_bill_command, paycode_command, ticket_command, topup_command, balance_command)
