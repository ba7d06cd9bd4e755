"""/wallet: a payer's phone wallet. This module holds the Pay tab and what every tab shares.

Tabs: Pay (here: scan to pay, bills, a pay code for the till, the latest activity),
Ride (gateway.http.web.ride: the ride code and the trips), Money (gateway.http.web.funds: balance,
statement, top-up, linked cards, lock). Scanning is gateway.http.web.scan; what a scanned
code asks is gateway.http.web.codes.

Sign-in takes the wallet credential (wk_...) in a POSTed form; the session keeps the
wallet id and a fingerprint of the credential's stored hash, so a replaced credential
ends the session.

Paying: a confirm screen (whom, how much, which bill or sale, due date, the balance
after) whose form carries an idempotency key made when the screen was drawn. `once`
stores the answer under that key in the API's idempotency table, in the payment's own
transaction, so a double tap, a reload of the POST or a retry pays once and shows the
same receipt. The receipt is a page of its own (/wallet/receipts/<id>): reloading it
pays nothing.

Bills can also be looked up by biller and consumer number; the lookups are remembered
in the session (at most MAX_LOOKUPS) and listed again on every visit.

Pay code. A signed offline code (protocol.signed_qr) needs the card's private key,
which only the phone holds; the gateway never does. The Pay tab shows the gateway's own
pay code instead (gateway.core.wallets.create_pay_code): a random single-use
reference valid 60 seconds, which a till redeems online through /v1/pos/authorizations.
It is drawn only in answer to a POST and never cached. (The ride code, on the Ride tab,
is signed by a key the phone's browser made and keeps.)
"""
from __future__ import annotations

import functools
import hmac
import json
import re
import secrets
from typing import Callable

from flask import redirect, request, session, url_for
from markupsafe import Markup

from gateway.core import bills, checkout, dashboard, ledger, payments, wallets
from gateway.core.caller import Caller
from gateway.core.errors import DomainError, Invalid
from gateway.http import idempotency, rate_limits
from gateway.http.api.bills import qr_image
from gateway.http.api.wallets import fresh_balance
from gateway.http.errors import ApiError, api_error
from gateway.http.runtime import runtime
from gateway.http.web import bp, check_csrf, current_zone, fingerprint, page
from gateway.http.web.codes import Confirm, Refusal, bill_confirm, read_code
from gateway.store import wallet_views
from protocol import currency as iso4217
from protocol.currency import AmountError, parse_decimal

MAX_LOOKUPS = 5
KEY_PREFIX = "web-"  # apart from keys API clients choose
_CONSUMER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,24}")  # what a bill's consumer number may be
_BILLER = re.compile(r"mer_[A-Za-z0-9]{8,64}")
_VERBS = {"token_fare": "Bus fare"}  # ledger codes gateway.core.dashboard.describe does not word


# -- the signed-in wallet ------------------------------------------------------------------------

def signed_in_wallet() -> dict | None:
    """The session's wallet row, if its credential is still the one signed in with."""
    wallet_id, mark = session.get("wallet_id"), session.get("wallet")
    if not wallet_id or not mark:
        return None
    with runtime().store.read() as tx:
        row = dashboard.wallet_row(tx, wallet_id)
    if row is None or not hmac.compare_digest(mark, fingerprint(row["credential_hash"])):
        return None
    return row


def requires_wallet(view):
    """Run view(wallet, ...) for a signed-in wallet; others go to the sign-in page."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        wallet = signed_in_wallet()
        if wallet is None:
            return redirect(url_for("web.wallet_page"))
        return view(wallet, *args, **kwargs)
    return wrapper


def when(seconds: int) -> str:
    """Unix seconds as the pages show them: '2026-11-27 17:05 (Asia/Shanghai)'."""
    return f"{dashboard.local(seconds, current_zone()):%Y-%m-%d %H:%M} ({current_zone().key})"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(18)


def form_key() -> str:
    key = request.form.get("idempotency_key", "")
    if not key.startswith(KEY_PREFIX) or len(key) > idempotency.MAX_KEY_LENGTH or not key.isascii():
        raise Invalid("invalid_idempotency_key", "This form is damaged; open it again.", "idempotency_key")
    return key


def once(wallet: dict, key: str, what: dict, job: Callable) -> dict:
    """Run job(tx) once per idempotency key, in one transaction with the record of its answer
    (the API's idempotency table, under this wallet): a second submit gets the first answer."""
    caller = Caller("wallet", wallet["id"])
    rt = runtime()
    seal_key = rt.secret("idempotency_seal")
    request_hash = idempotency.fingerprint("POST", request.path, json.dumps(what, sort_keys=True).encode())

    path, now_unix = request.path, int(rt.now().timestamp())

    def write(tx) -> dict:
        # The form's key is claimed first, as an API request's is (gateway.http.idempotency).
        prior = idempotency.claim(tx, caller, key, method="POST", path=path, request_hash=request_hash,
                                  now_unix=now_unix,
                                  reused_message="This form was already sent with other values; open it again.")
        if prior is not None:
            return json.loads(idempotency.unseal(seal_key, caller, key, prior["response"]))
        answer = job(tx)
        idempotency.record(tx, caller, key, status=201,
                           response=idempotency.seal(seal_key, caller, key, json.dumps(answer)))
        return answer
    return rt.store.write(write)


def typed_amount(raw: str, currency: str) -> int:
    """An amount as a payer types it ("12.50"), in minor units, exactly; Invalid saying what is wrong."""
    text = raw.strip().replace("¥", "").replace("￥", "")
    try:
        amount = parse_decimal(text, currency)
    except AmountError as err:
        raise Invalid("invalid_amount", f"Type the amount as digits, such as 12.50 ({err.reason}).",
                      "amount") from None
    if amount <= 0:
        raise Invalid("invalid_amount", "Type an amount above zero.", "amount")
    return amount


def statement_lines(tx, wallet: dict, *, limit: int, after: str | None = None) -> tuple[list[dict], str | None]:
    """A page of the wallet's statement, newest first, each line in plain words; the next cursor."""
    entries, next_cursor = ledger.statement(tx, wallet["account_id"], limit=limit, after=after)
    names = wallet_views.names_by_account(tx, [e["counterparty_account_id"] for e in entries])
    details = wallet_views.transfer_details(tx, [e["transfer_id"] for e in entries])
    lines = []
    for e in entries:
        name = names.get(e["counterparty_account_id"], {}).get("name")
        detail = details.get(e["transfer_id"])
        if e["code"] in _VERBS:
            text = _VERBS[e["code"]] + (f" ({detail})" if detail else "")
        else:
            text = dashboard.describe(e["code"], name, detail)
        lines.append({**e, "description": text})
    return lines, next_cursor


def _lookups() -> list[list[str]]:
    saved = session.get("bill_lookups")
    return [x for x in saved if isinstance(x, list) and len(x) == 2] if isinstance(saved, list) else []


# -- the Pay tab ---------------------------------------------------------------------------------

@bp.get("/wallet")
def wallet_page():
    wallet = signed_in_wallet()
    if wallet is None:
        return page("wallet_login.html")
    rt = runtime()
    balance = fresh_balance(wallet["account_id"], wallet["id"])
    with rt.store.read() as tx:
        activity, _ = statement_lines(tx, wallet, limit=5)
        billers = dashboard.billers(tx)
        names = {b["id"]: b["name"] for b in billers}
        to_pay = []
        for biller_id, consumer in _lookups():
            if biller_id in names:
                found = dashboard.bills_to_pay(tx, wallet["id"], biller_id=biller_id, consumer_number=consumer,
                                               now=rt.now())
                to_pay.append({"biller_id": biller_id, "biller_name": names[biller_id],
                               "consumer_number": consumer, "bills": found})
        paid = dashboard.paid_bills(tx, wallet["id"], now=rt.now(), limit=5)
    return page("wallet.html", tab="pay", wallet=wallet, balance=balance, activity=activity, billers=billers,
                to_pay=to_pay, paid=paid)


@bp.post("/wallet/login")
def wallet_login():
    check_csrf()
    credential = request.form.get("credential", "").strip()
    with runtime().store.read() as tx:
        row = dashboard.wallet_by_credential(tx, credential)
    if row is None:
        return page("wallet_login.html", 401, error="That is not a wallet credential this gateway knows.")
    session.permanent = True
    session["wallet_id"] = row["id"]
    session["wallet"] = fingerprint(row["credential_hash"])
    session.pop("bill_lookups", None)
    return redirect(url_for("web.wallet_page"))


@bp.post("/wallet/logout")
def wallet_logout():
    check_csrf()
    for name in ("wallet_id", "wallet", "bill_lookups"):
        session.pop(name, None)
    return redirect(url_for("web.wallet_page"))


@bp.post("/wallet/bills/lookup")
@requires_wallet
def wallet_bill_lookup(wallet):
    check_csrf()
    biller_id = request.form.get("biller_id", "").strip()
    consumer = request.form.get("consumer_number", "").strip()
    if not _BILLER.fullmatch(biller_id):
        raise Invalid("invalid_parameter", "Choose a biller.", "biller_id")
    if not _CONSUMER.fullmatch(consumer):
        raise Invalid("invalid_parameter", "A consumer number is 1 to 25 letters, digits and . _ / - "
                                           "as printed on the bill.", "consumer_number")
    with runtime().store.read() as tx:
        if biller_id not in {b["id"] for b in dashboard.billers(tx)}:
            raise Invalid("invalid_parameter", "There is no such biller.", "biller_id")
    rate_limits.check_bill_lookup(runtime(), wallet["id"])  # as the API's: guessing numbers is slow
    saved = [x for x in _lookups() if x != [biller_id, consumer]]
    session["bill_lookups"] = ([[biller_id, consumer]] + saved)[:MAX_LOOKUPS]
    return redirect(url_for("web.wallet_page", _anchor="bills"))


# -- confirm and pay -----------------------------------------------------------------------------

def confirm_page(wallet: dict, confirm: Confirm, *, action: str, fields: dict, error: str | None = None,
                 status: int = 200, typed: str = ""):
    balance = fresh_balance(wallet["account_id"], wallet["id"])
    return page("wallet_confirm.html", status, tab="pay", wallet=wallet, confirm=confirm, balance=balance,
                action=action, fields={**fields, "idempotency_key": new_key()}, error=error, typed=typed,
                exponent=iso4217.exponent(confirm.currency))


def refusal_page(refusal: Refusal, status: int = 409):
    return page("wallet_refused.html", status, tab="pay", refusal=refusal)


@bp.get("/wallet/pay")
@requires_wallet
def wallet_confirm_code(wallet):
    """The confirm screen of a scanned code (?code=, the code's text)."""
    text = request.args.get("code", "")
    rt = runtime()
    try:
        with rt.store.read() as tx:
            confirm = read_code(tx, wallet, text, now=rt.now(), when=when)
    except Refusal as refusal:
        return refusal_page(refusal)
    return confirm_page(wallet, confirm, action=url_for("web.wallet_pay_code"),
                        fields={"code": text.strip(), "amount": confirm.amount or ""})


def _pay(tx, caller: Caller, confirm: Confirm, amount: int) -> dict:
    if confirm.kind == "bill":
        return bills.pay_bill(tx, caller, confirm.target, amount=amount, now=runtime().now())
    if confirm.kind == "checkout":
        if amount != confirm.amount:
            raise Invalid("amount_changed", "This checkout's amount is not the one shown; scan it again.", "amount")
        return checkout.pay_checkout(tx, caller, confirm.target, now=runtime().now())
    return payments.create_payment(tx, caller, merchant_id=confirm.target, amount=amount,
                                   currency=confirm.currency, description=None, now=runtime().now())


def _shown_amount() -> int:
    raw = request.form.get("amount", "")
    if not (raw.isascii() and raw.isdigit() and 0 < len(raw) <= 15 and int(raw) > 0):
        raise Invalid("invalid_amount", "The amount to pay is missing; open the bill again.", "amount")
    return int(raw)


@bp.post("/wallet/pay")
@requires_wallet
def wallet_pay_code(wallet):
    """Pay a scanned code: the amount shown (bill, checkout) or the amount typed (a shop's code)."""
    check_csrf()
    text = request.form.get("code", "").strip()
    key = form_key()
    raw = request.form.get("amount", "")
    typed = request.form.get("amount_text", "")
    caller = Caller("wallet", wallet["id"])
    rt = runtime()

    def job(tx) -> dict:
        confirm = read_code(tx, wallet, text, now=rt.now(), when=when)
        amount = typed_amount(typed, confirm.currency) if confirm.amount is None else _shown_amount()
        return _pay(tx, caller, confirm, amount)

    try:
        receipt = once(wallet, key, {"code": text, "amount": raw, "amount_text": typed}, job)
    except Refusal as refusal:
        return refusal_page(refusal)
    except (ApiError, DomainError) as failed:
        err = api_error(failed)
        with rt.store.read() as tx:
            try:
                confirm = read_code(tx, wallet, text, now=rt.now(), when=when)
            except Refusal as refusal:
                return refusal_page(refusal)
        return confirm_page(wallet, confirm, action=url_for("web.wallet_pay_code"), error=_message(err),
                            status=err.status, fields={"code": text, "amount": confirm.amount or ""}, typed=typed)
    return redirect(url_for("web.wallet_receipt", payment_id=receipt["id"]))


def _message(err: ApiError) -> str:
    if err.code == "insufficient_funds":
        return "Your balance is too low for this payment. Top up, then pay again."
    if err.code == "wallet_locked":
        return "This wallet is locked: it cannot pay until the issuer unlocks it."
    return err.message


@bp.get("/wallet/bills/<bill_id>/pay")
@requires_wallet
def wallet_confirm_bill(wallet, bill_id):
    rt = runtime()
    with rt.store.read() as tx:
        bill = bills.get_bill(tx, Caller("wallet", wallet["id"]), bill_id[:80], now=rt.now())
    try:
        confirm = bill_confirm(bill, when=when)
    except Refusal as refusal:
        return refusal_page(refusal)
    return confirm_page(wallet, confirm, action=url_for("web.wallet_pay_bill", bill_id=bill["id"]),
                        fields={"amount": confirm.amount})


@bp.post("/wallet/bills/<bill_id>/pay")
@requires_wallet
def wallet_pay_bill(wallet, bill_id):
    check_csrf()
    key, amount = form_key(), _shown_amount()
    caller = Caller("wallet", wallet["id"])
    # The same thing as an API request would be, so a retry of it is recognised as one.
    try:
        receipt = once(wallet, key, {"bill_id": bill_id, "amount": amount},
                       lambda tx: bills.pay_bill(tx, caller, bill_id[:80], amount=amount, now=runtime().now()))
    except (ApiError, DomainError) as failed:
        err = api_error(failed)
        if err.status == 404:
            raise err from None
        rt = runtime()
        with rt.store.read() as tx:
            bill = bills.get_bill(tx, caller, bill_id[:80], now=rt.now())
        try:
            confirm = bill_confirm(bill, when=when)
        except Refusal as refusal:
            return refusal_page(refusal)
        return confirm_page(wallet, confirm, action=url_for("web.wallet_pay_bill", bill_id=bill["id"]),
                            fields={"amount": confirm.amount}, error=_message(err), status=err.status)
    return redirect(url_for("web.wallet_receipt", payment_id=receipt["id"]))


@bp.get("/wallet/receipts/<payment_id>")
@requires_wallet
def wallet_receipt(wallet, payment_id):
    """A payment's receipt: whom, how much, for what, when, and the balance now."""
    caller = Caller("wallet", wallet["id"])
    rt = runtime()
    with rt.store.read() as tx:
        if payment_id.startswith("bpay_"):
            paid = bills.get_bill_payment(tx, caller, payment_id[:80])
            bill = bills.get_bill(tx, caller, paid["bill_id"], now=rt.now())
            payee_id = paid["biller_id"]
            details = [("Bill", paid["bill_number"]), ("Period", paid["period"]),
                       ("Consumer number", paid["consumer_number"]),
                       ("Bill now", bill["status"].replace("_", " ") + (
                           f", {ledger.format_amount(bill['amount_outstanding'], bill['currency'])} outstanding"
                           if bill["amount_outstanding"] else ""))]
        else:
            paid = payments.get_payment(tx, caller, payment_id[:80])
            payee_id = paid["merchant_id"]
            note = paid["description"] or ""
            details = [("Checkout", note.split(" ", 1)[1]) if note.startswith("checkout ") else ("Note", note)
                       ] if note else []
        names = wallet_views.merchant_names(tx, payee_id) or {"name": payee_id, "name_latin": None}
    balance = fresh_balance(wallet["account_id"], wallet["id"])
    return page("wallet_receipt.html", tab="pay", wallet=wallet, paid=paid, payee=names["name"],
                payee_latin=names["name_latin"], details=details, balance=balance)


# -- the gateway's pay code ---------------------------------------------------------------------

def qr_svg(text: str, label: str) -> Markup:
    """`text` as an inline SVG QR code (the same symbol the bills API draws), labelled for readers."""
    svg = qr_image(text, "svg").get_data(as_text=True)
    svg = re.sub(r'^<svg width="[^"]*" height="[^"]*"',
                 f'<svg class="qr" role="img" aria-label="{Markup.escape(label)}"', svg, count=1)
    return Markup(svg)


@bp.post("/wallet/pay-code")
@requires_wallet
def wallet_pay_code_show(wallet):
    check_csrf()
    rt = runtime()
    code = rt.store.write(lambda tx: wallets.create_pay_code(tx, wallet, now=rt.now()))
    return page("wallet_paycode.html", tab="pay", code=code, qr=qr_svg(code["code"], "Pay code for the till"),
                seconds=wallets.PAY_CODE_SECONDS)
