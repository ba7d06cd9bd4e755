"""/wallet: a payer's phone page — balance, recent activity, bills to pay, a pay code.

Sign-in takes the wallet credential (wk_...) in a POSTed form; the session keeps the
wallet id and a fingerprint of the credential's stored hash, so a replaced credential
ends the session.

Bills. The gateway links no consumer numbers to wallets, so the payer looks bills up
by biller and consumer number; the lookups are remembered in the session (at most
MAX_LOOKUPS) and listed again on every visit. Paying takes one confirmation: the
confirmation form carries the amount shown and an idempotency key made when the form
was drawn, stored in the API's idempotency table under this wallet, so a double
submit (or a reload of the POST) pays once and shows the same receipt.

Pay code. A signed offline code (protocol.signed_qr) needs the card's private key,
which only the phone holds; the gateway never does. The page shows the gateway's own
pay code instead (gateway.services.wallets.create_pay_code): a random single-use
reference valid 60 seconds, which a till redeems online through /v1/pos/authorizations.
It is drawn only in answer to a POST and never cached.
"""
from __future__ import annotations

import hmac
import json
import re
import secrets

from flask import redirect, request, session, url_for
from markupsafe import Markup

from gateway import dashboard, idempotency
from gateway.api.bills import qr_image
from gateway.api.wallets import fresh_balance
from gateway.app import runtime
from gateway.auth import Caller
from gateway.errors import ApiError, invalid
from gateway.services import bills, wallets
from gateway.web import bp, check_csrf, fingerprint, page

MAX_LOOKUPS = 5
KEY_PREFIX = "web-"  # apart from keys API clients choose
_CONSUMER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,24}")  # what a bill's consumer number may be
_BILLER = re.compile(r"mer_[A-Za-z0-9]{8,64}")


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


def _lookups() -> list[list[str]]:
    saved = session.get("bill_lookups")
    return [x for x in saved if isinstance(x, list) and len(x) == 2] if isinstance(saved, list) else []


@bp.get("/wallet")
def wallet_page():
    wallet = signed_in_wallet()
    if wallet is None:
        return page("wallet_login.html")
    rt = runtime()
    balance = fresh_balance(wallet["account_id"], wallet["id"])
    caller = Caller("wallet", wallet["id"])
    with rt.store.read() as tx:
        activity = dashboard.wallet_activity(tx, wallet)
        trips = dashboard.wallet_trips(tx, wallet["id"])
        billers = dashboard.billers(tx)
        names = {b["id"]: b["name"] for b in billers}
        to_pay = []
        for biller_id, consumer in _lookups():
            if biller_id in names:
                found = dashboard.bills_to_pay(tx, wallet["id"], biller_id=biller_id, consumer_number=consumer,
                                               now=rt.now())
                to_pay.append({"biller_id": biller_id, "biller_name": names[biller_id],
                               "consumer_number": consumer, "bills": found})
        paid = dashboard.paid_bills(tx, wallet["id"], now=rt.now())
        receipt = None
        if request.args.get("paid"):
            try:
                receipt = bills.get_bill_payment(tx, caller, request.args["paid"][:80])
            except ApiError:
                receipt = None
    return page("wallet.html", wallet=wallet, balance=balance, activity=activity, trips=trips, billers=billers,
                to_pay=to_pay, paid=paid, receipt=receipt)


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
def wallet_bill_lookup():
    check_csrf()
    if signed_in_wallet() is None:
        return redirect(url_for("web.wallet_page"))
    biller_id = request.form.get("biller_id", "").strip()
    consumer = request.form.get("consumer_number", "").strip()
    if not _BILLER.fullmatch(biller_id):
        raise invalid("invalid_parameter", "Choose a biller.", "biller_id")
    if not _CONSUMER.fullmatch(consumer):
        raise invalid("invalid_parameter", "A consumer number is 1 to 25 letters, digits and . _ / - "
                                           "as printed on the bill.", "consumer_number")
    with runtime().store.read() as tx:
        if biller_id not in {b["id"] for b in dashboard.billers(tx)}:
            raise invalid("invalid_parameter", "There is no such biller.", "biller_id")
    saved = [x for x in _lookups() if x != [biller_id, consumer]]
    session["bill_lookups"] = ([[biller_id, consumer]] + saved)[:MAX_LOOKUPS]
    return redirect(url_for("web.wallet_page", _anchor="bills"))


@bp.get("/wallet/bills/<bill_id>/pay")
def wallet_confirm_bill(bill_id):
    wallet = signed_in_wallet()
    if wallet is None:
        return redirect(url_for("web.wallet_page"))
    rt = runtime()
    with rt.store.read() as tx:
        bill = bills.get_bill(tx, Caller("wallet", wallet["id"]), bill_id[:80], now=rt.now())
    return page("wallet_confirm.html", bill=bill, balance=fresh_balance(wallet["account_id"], wallet["id"]),
                idempotency_key=KEY_PREFIX + secrets.token_urlsafe(18))


def _form_amount() -> int:
    raw = request.form.get("amount", "")
    if not (raw.isascii() and raw.isdigit() and 0 < len(raw) <= 15 and int(raw) > 0):
        raise invalid("invalid_amount", "The amount to pay is missing; open the bill again.", "amount")
    return int(raw)


@bp.post("/wallet/bills/<bill_id>/pay")
def wallet_pay_bill(bill_id):
    check_csrf()
    wallet = signed_in_wallet()
    if wallet is None:
        return redirect(url_for("web.wallet_page"))
    key = request.form.get("idempotency_key", "")
    if not key.startswith(KEY_PREFIX) or len(key) > idempotency.MAX_KEY_LENGTH or not key.isascii():
        raise invalid("invalid_idempotency_key", "This form is damaged; open the bill again.", "idempotency_key")
    amount = _form_amount()
    caller = Caller("wallet", wallet["id"])
    rt = runtime()
    seal_key = rt.secret("idempotency_seal")
    # The same thing as an API request would be, so a retry of it is recognised as one.
    body = json.dumps({"bill_id": bill_id, "amount": amount}, sort_keys=True).encode()
    request_hash = idempotency.fingerprint("POST", request.path, body)
    path = request.path

    def pay(tx) -> dict:
        # The form's key is claimed first, as an API request's is (gateway.idempotency).
        prior = idempotency.claim(tx, caller, key, method="POST", path=path, request_hash=request_hash,
                                  now_unix=int(rt.now().timestamp()),
                                  reused_message="This form was already used for another payment; open the bill again.")
        if prior is not None:
            return json.loads(idempotency.unseal(seal_key, caller, key, prior["response"]))
        receipt = bills.pay_bill(tx, caller, bill_id[:80], amount=amount, now=rt.now())
        idempotency.record(tx, caller, key, status=201,
                           response=idempotency.seal(seal_key, caller, key, json.dumps(receipt)))
        return receipt

    receipt = rt.store.write(pay)
    return redirect(url_for("web.wallet_page", paid=receipt["id"], _anchor="receipt"))


def qr_svg(text: str, label: str) -> Markup:
    """`text` as an inline SVG QR code (the same symbol the bills API draws), labelled for readers."""
    svg = qr_image(text, "svg").get_data(as_text=True)
    svg = re.sub(r'^<svg width="[^"]*" height="[^"]*"',
                 f'<svg class="qr" role="img" aria-label="{Markup.escape(label)}"', svg, count=1)
    return Markup(svg)


@bp.post("/wallet/pay-code")
def wallet_pay_code():
    check_csrf()
    wallet = signed_in_wallet()
    if wallet is None:
        return redirect(url_for("web.wallet_page"))
    rt = runtime()
    code = rt.store.write(lambda tx: wallets.create_pay_code(tx, wallet, now=rt.now()))
    return page("wallet_paycode.html", code=code, qr=qr_svg(code["code"], "Pay code for the till"),
                seconds=wallets.PAY_CODE_SECONDS)
