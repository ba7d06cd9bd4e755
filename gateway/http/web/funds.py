"""/wallet/money: balance, the statement a page at a time, top-up, linked cards, and the
lock for a lost phone.

- The statement pages by the ledger's cursor (?after=): a page never shifts when new
  lines arrive, and "Older" continues where the page ended.
- A top-up is one form with an idempotency key made when the page was drawn, paid once
  however often it is sent (gateway.http.web.wallet.once); the funding source is the
  gateway's simulated one (POST /v1/topups).
- Linked cards: a bank or transit card linked to the wallet pays its bus trips (the
  night's charging run); unlinking stops that for trips from now on. A link code lets a
  validator in link mode link one more card with a tap.
- Lock: a payer who lost the phone signs in elsewhere and locks the wallet. Locking
  denies every card and ride code it holds at every validator and till (the issuer's
  deny-list, gateway.core.issuer.lock) and stops every payment; only the issuer (the
  operator) unlocks it, after checking who asks.
"""
from __future__ import annotations

from flask import redirect, request, url_for

from gateway.core import card_links, issuer, payments
from gateway.core.caller import Caller
from gateway.core.errors import DomainError, Invalid
from gateway.http.api.wallets import fresh_balance
from gateway.http.errors import ApiError, api_error
from gateway.http.runtime import runtime
from gateway.http.web import bp, check_csrf, page
from gateway.http.web.wallet import form_key, new_key, once, requires_wallet, statement_lines, typed_amount

PAGE_SIZE = 15
LOCK_REASON = "lost phone: locked by the wallet holder"


def _money_page(wallet: dict, status: int = 200, **shown):
    rt = runtime()
    after = request.args.get("after")
    if after is not None and not (after.isascii() and after.isdigit() and len(after) <= 18):
        raise Invalid("invalid_cursor", "That page of the statement does not exist.", "after")
    with rt.store.read() as tx:
        lines, next_cursor = statement_lines(tx, wallet, limit=PAGE_SIZE, after=after)
        links = card_links.wallet_links(tx, Caller("wallet", wallet["id"]), wallet["id"])["data"]
    return page("wallet_money.html", status, tab="money", wallet=wallet,
                balance=fresh_balance(wallet["account_id"], wallet["id"]), lines=lines, after=after,
                next_cursor=next_cursor, links=links, topup_key=new_key(), **shown)


@bp.get("/wallet/money")
@requires_wallet
def wallet_money(wallet):
    notice = None
    if request.args.get("topped"):
        with runtime().store.read() as tx:
            try:
                topup = payments.get_topup(tx, Caller("wallet", wallet["id"]), request.args["topped"][:80])
                notice = ("Topped up", topup)
            except DomainError:
                notice = None
    return _money_page(wallet, notice=notice, unlinked=request.args.get("unlinked") == "1")


@bp.post("/wallet/topup")
@requires_wallet
def wallet_topup(wallet):
    check_csrf()
    key, raw = form_key(), request.form.get("amount", "")
    caller = Caller("wallet", wallet["id"])
    try:
        amount = typed_amount(raw, wallet["currency"])
        topup = once(wallet, key, {"amount": raw}, lambda tx: payments.create_topup(
            tx, caller, wallet_id=wallet["id"], amount=amount, currency=wallet["currency"], now=runtime().now()))
    except (ApiError, DomainError) as failed:
        err = api_error(failed)
        return _money_page(wallet, err.status, topup_error=err.message, typed=raw)
    return redirect(url_for("web.wallet_money", topped=topup["id"], _anchor="balance"))


@bp.post("/wallet/cards/<link_id>/unlink")
@requires_wallet
def wallet_unlink(wallet, link_id):
    check_csrf()
    with runtime().store.transaction() as tx:
        card_links.unlink(tx, Caller("wallet", wallet["id"]), wallet["id"], link_id[:80])
    return redirect(url_for("web.wallet_money", unlinked=1, _anchor="cards"))


@bp.post("/wallet/card-links")
@requires_wallet
def wallet_link_code(wallet):
    check_csrf()
    rt = runtime()
    try:
        with rt.store.transaction() as tx:
            code = card_links.create_code(tx, Caller("wallet", wallet["id"]), wallet["id"], now=rt.now())
    except (ApiError, DomainError) as failed:
        err = api_error(failed)
        return _money_page(wallet, err.status, link_error=err.message)
    return _money_page(wallet, link_code=code)


@bp.get("/wallet/lock")
@requires_wallet
def wallet_lock_confirm(wallet):
    return page("wallet_lock.html", tab="money", wallet=wallet)


@bp.post("/wallet/lock")
@requires_wallet
def wallet_lock(wallet):
    check_csrf()
    rt = runtime()
    with rt.store.transaction() as tx:
        state = issuer.lock(tx, wallet_id=wallet["id"], reason=LOCK_REASON, now=rt.now())
    return page("wallet_lock.html", tab="money", wallet={**wallet, "status": state["status"]}, locked=state)
