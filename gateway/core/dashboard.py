"""What the operator dashboard and the wallet page show: plain functions over a Tx.

Each function takes the open (read) transaction and plain values (a day's bounds in
unix seconds, a time zone, `now`) and returns plain values; gateway.http.web renders them.
Nothing here reads a clock or a request. Money stays integer minor units with its
currency; formatting is the page's business.

Where a service already answers a question it is asked (taps.ridership,
issuer.deny_list, ledger.check, ledger.statement, bills.list_bill_payments); the
queries below are the ones no service had: riders and refusals of a day, validators'
last uploads, bills per biller, tills' purse sales, and plain descriptions of statement
lines. Their SQL is in gateway/store/dashboard.py.

A shop till uploads its sales apart from the taps (POST /v1/sales, stored in till_sales):
they are shop payments, and the transit figures (taps, riders, hours, routes) never see them.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.core import bills, fare_charges, issuer, ledger, taps, unix
from gateway.core.caller import Caller, key_hash
from gateway.core.merchants import api_key_view
from gateway.store import dashboard as dashboard_db
from gateway.store import issuer as issuer_db
from gateway.store import sales as sales_db
from gateway.store import wallets as wallets_db

DEFAULT_ZONE = "Asia/Shanghai"
ONLINE_MINUTES = 15  # a validator is online if it uploaded this close to the latest upload of any


# -- time -------------------------------------------------------------------------------------

def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError naming it when there is none."""
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise ValueError("a time zone is an IANA name such as Asia/Shanghai")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name[:64]!r}") from None


def day_bounds(day: date, tz: ZoneInfo) -> tuple[int, int]:
    """[since, until) in unix seconds of the local calendar day `day` in `tz` (23 to 25 hours)."""
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return int(start.timestamp()), int(end.timestamp())


def local(seconds: int | None, tz: ZoneInfo) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).astimezone(tz)


def latest_tap_at(tx) -> int | None:
    """When the latest transit tap uploaded happened (the validator's clock), or None."""
    return dashboard_db.latest_tap_at(tx)


def default_day(tx, *, now: datetime, tz: ZoneInfo) -> date:
    """The local day the dashboard opens on: that of the latest transit tap, else today."""
    at = latest_tap_at(tx)
    moment = local(at, tz) if at is not None else now.astimezone(tz)
    return moment.date()


# -- transit ----------------------------------------------------------------------------------

def tap_totals(tx, *, since: int, until: int) -> dict:
    """A day's transit headline: taps, accepted, denied by reason, and distinct riders.

    A rider is a card id (purse) or a keyed-hash token (EMV, UID) seen on an accepted tap.
    """
    row = dashboard_db.tap_counts(tx, since=since, until=until)
    reasons = dashboard_db.denied_reasons(tx, since=since, until=until)
    accepted = row["accepted"] or 0
    return {"taps": row["taps"], "accepted": accepted, "denied": row["taps"] - accepted,
            "riders": row["riders"], "denied_reasons": [(r["reason"], r["taps"]) for r in reasons]}


def ridership(tx, *, since: int, until: int) -> list[dict]:
    """taps.ridership's rows for [since, until): per route and UTC hour (read once per page)."""
    return taps.ridership(tx, since=since, until=until)["data"]


def taps_per_hour(rows: list[dict], *, since: int, until: int, tz: ZoneInfo) -> list[dict]:
    """Every hour of [since, until) with its taps and accepted taps (all routes), zeros included.

    `rows` are ridership rows (UTC hours); each hour is labelled with the local time it
    starts at. Pure.
    """
    counts: dict[int, list[int]] = {}
    for r in rows:
        hour = int(datetime.fromisoformat(r["hour"].replace("Z", "+00:00")).timestamp())
        slot = counts.setdefault(hour, [0, 0])
        slot[0] += r["taps"]
        slot[1] += r["accepted"]
    hours = []
    for start in range(since - since % 3600, until, 3600):
        taps_, accepted = counts.get(start, (0, 0))
        hours.append({"start": start, "label": local(max(start, since), tz).strftime("%H:%M"),
                      "taps": taps_, "accepted": accepted})
    return hours


def _route_row(route) -> dict:
    return {"route": route, "taps": 0, "accepted": 0, "token_taps": 0, "purse": 0, "token": 0,
            "token_trips": 0, "unpaid": 0, "revenue": 0, "currency": None}


def routes(rows: list[dict], charges: list[dict] = ()) -> list[dict]:
    """Per route: taps, accepted, token taps, and its revenue: purse fares cleared, token
    trips charged, and token debts still unpaid.

    `rows` are ridership rows; `charges` are fare_charges.day_by_route rows of the same day
    (token trips priced and charged by the day's charging run). Taps without a route are
    grouped under route None. `revenue` is purse + token, money collected; `unpaid` is owed,
    not collected. A route has one currency (that of its fare rules). Pure.
    """
    by_route: dict = {}
    for r in rows:
        row = by_route.setdefault(r["route"], _route_row(r["route"]))
        row["taps"] += r["taps"]
        row["accepted"] += r["accepted"]
        row["token_taps"] += r["token_taps"]
        row["purse"] += r["purse_revenue"] or 0
        if r["purse_revenue"]:
            row["currency"] = r["currency"]
    for c in charges:
        row = by_route.setdefault(c["route"], _route_row(c["route"]))
        row["token"] += c["collected"] or 0
        row["unpaid"] += c["unpaid"] or 0
        row["token_trips"] += c["trips"]
        row["currency"] = row["currency"] or c["currency"]
    for row in by_route.values():
        row["revenue"] = row["purse"] + row["token"]
    return sorted(by_route.values(), key=lambda r: (r["route"] is None, r["route"] or ""))


def revenue_by_currency(rows: list[dict], field: str = "revenue") -> dict[str, int]:
    """Sum of `field` per currency over rows that carry one (pure)."""
    total: dict[str, int] = {}
    for r in rows:
        if r["currency"] and r.get(field):
            total[r["currency"]] = total.get(r["currency"], 0) + r[field]
    return dict(sorted(total.items()))


def route_totals(rows: list[dict]) -> dict[str, dict]:
    """Per currency, the sums of routes' purse, token, unpaid and revenue (pure)."""
    total: dict[str, dict] = {}
    for r in rows:
        if not r["currency"]:
            continue
        t = total.setdefault(r["currency"], {"purse": 0, "token": 0, "unpaid": 0, "revenue": 0})
        for field in t:
            t[field] += r[field]
    return dict(sorted(total.items()))


def validators(tx, *, online_minutes: int = ONLINE_MINUTES) -> dict:
    """Terminals that have uploaded taps, with their last upload and whether they are online.

    A terminal that uploads sales (a shop till) is marked `till`: its `taps` are its sale
    records, counted apart from ridership. Online means its last upload came within `online_minutes` of the latest upload of
    any validator (the reference), so a replayed or simulated day reads the same as a
    live one; the page shows the reference so a fleet gone silent is visible too.
    """
    rows = dashboard_db.uploading_terminals(tx)
    reference = max((r["last_upload"] for r in rows), default=None)
    never = dashboard_db.silent_terminals(tx)
    window = online_minutes * 60
    listed = [{**{k: v for k, v in r.items() if k != "sales"}, "till": r["sales"] > 0 and r["sales"] == r["taps"],
               "online": r["status"] == "active" and reference - r["last_upload"] <= window}
              for r in rows]
    return {"reference": reference, "online_minutes": online_minutes, "terminals": listed,
            "online": sum(r["online"] for r in listed), "offline": sum(not r["online"] for r in listed),
            "never_uploaded": never}


# -- bills, shop, issuer, ledger ----------------------------------------------------------------

def bills_per_biller(tx, *, now: datetime) -> list[dict]:
    """Per biller and currency, over all periods: bills issued (count, amount due), bills paid
    in full, money received, and what is still outstanding on payable bills."""
    issued = dashboard_db.bills_per_biller(tx, now=int(now.timestamp()))
    idle = dashboard_db.idle_billers(tx)
    return issued + [{**r, "currency": None, "issued": 0, "issued_amount": 0, "paid": 0, "paid_amount": 0,
                      "outstanding": 0} for r in idle]


def shop_payments(tx, *, since: int, until: int) -> dict[str, dict]:
    """Wallet payments to merchants in [since, until), per currency: count, amount, refunded."""
    rows = dashboard_db.shop_payments(tx, since=since, until=until)
    return {r["currency"]: {"count": r["count"], "amount": r["amount"], "refunded": r["refunded"]} for r in rows}


def till_sales(tx, *, since: int, until: int) -> dict[str, dict]:
    """Purse sales at shop tills in [since, until), per currency:
    accepted sales and the amount clearing posted."""
    rows = sales_db.revenue(tx, since=since, until=until)
    return {r["currency"]: {"count": r["count"], "amount": r["amount"] or 0} for r in rows}


def latest_activity(tx, tz: ZoneInfo) -> dict:
    """The local days of the latest bill payment and shop payment (wallet or till purse sale),
    None where there is none: so a page showing a bus day can point to the day they happened."""
    latest = dashboard_db.latest_payment_times(tx)
    bill = latest["bill"]
    shop = max((t for t in (latest["shop"], latest["till"]) if t is not None), default=None)
    return {"bills": bill and local(bill, tz).date(), "shop": shop and local(shop, tz).date()}


def bill_payments(tx, *, since: int, until: int) -> dict[str, dict]:
    """Bill payments in [since, until), per currency: count and amount."""
    rows = dashboard_db.bill_payments(tx, since=since, until=until)
    return {r["currency"]: {"count": r["count"], "amount": r["amount"]} for r in rows}


def deny_list(tx) -> dict:
    """The issuer's deny-list now: version and entries (newest first) with reasons and who added them."""
    entries = [{k: r[k] for k in ("entry", "kind", "reason", "version", "source", "created_at")}
               for r in issuer_db.denied_entries(tx)]
    return {"version": issuer.current_version(tx), "entries": entries[::-1]}


KEYS_SHOWN = 100


def credentials(tx, *, now: datetime) -> dict:
    """Merchant API keys (the newest KEYS_SHOWN) with status and expiry, terminals suspended or
    revoked, and how many wallet credentials are revoked (docs/security.md, key lifecycle)."""
    at = unix(now)
    keys = [{**api_key_view(r, at), "name": r["name"]} for r in dashboard_db.api_keys(tx, limit=KEYS_SHOWN)]
    return {"api_keys": keys, "terminals": dashboard_db.stopped_terminals(tx),
            "revoked_wallets": dashboard_db.revoked_wallet_credentials(tx)}


def ledger_check(tx) -> dict:
    """ledger.check as plain values: ok, counts, totals per currency, problems."""
    report = ledger.check(tx)
    return {"ok": report.ok, "accounts": report.accounts, "transfers": report.transfers,
            "postings": report.postings, "open_pending": report.open_pending,
            "totals": [{"currency": c, "accounts": t.accounts, "debits": t.debits_posted,
                        "credits": t.credits_posted, "net": t.net, "held": t.debits_pending}
                       for c, t in report.totals.items()],
            "problems": [{"code": p.code, "message": p.message, "ref": p.ref} for p in report.problems]}


def overview(tx, *, day: date, tz: ZoneInfo, now: datetime, online_minutes: int = ONLINE_MINUTES) -> dict:
    """Everything the dashboard shows for the local day `day`, read in one snapshot, but the
    ledger check: that reads every posting, so the page runs it apart (ledger_check)."""
    since, until = day_bounds(day, tz)
    rows = ridership(tx, since=since, until=until)
    charges = fare_charges.day_by_route(tx, day)["data"]
    route_rows = routes(rows, charges)
    return {"day": day, "since": since, "until": until, "zone": tz.key,
            "taps": tap_totals(tx, since=since, until=until),
            "hours": taps_per_hour(rows, since=since, until=until, tz=tz),
            "routes": route_rows, "fare_revenue": revenue_by_currency(route_rows),
            "route_totals": route_totals(route_rows),
            "shop": shop_payments(tx, since=since, until=until),
            "till_sales": till_sales(tx, since=since, until=until),
            "bill_payments": bill_payments(tx, since=since, until=until),
            "latest": latest_activity(tx, tz),
            "validators": validators(tx, online_minutes=online_minutes),
            "billers": bills_per_biller(tx, now=now),
            "deny_list": deny_list(tx),
            "credentials": credentials(tx, now=now),
            "any_taps_ever": latest_tap_at(tx) is not None}


# -- the wallet page ------------------------------------------------------------------------------

def wallet_by_credential(tx, credential: str) -> dict | None:
    """The wallet whose wk_ credential this is, or None (looked up by its hash, as auth does)."""
    if not isinstance(credential, str) or not credential.startswith("wk_") or len(credential) > 200:
        return None
    wallet_id = wallets_db.wallet_id_by_credential(tx, key_hash(credential))
    return wallet_id and wallets_db.wallet(tx, wallet_id)


def wallet_row(tx, wallet_id: str) -> dict | None:
    return wallets_db.wallet(tx, wallet_id)


_VERBS = {
    "topup": "Top-up", "payment": "Paid {name}", "refund": "Refund from {name}",
    "bill_payment": "Bill paid to {name}", "pos_authorization": "Paid {name} at the till",
    "purse_load": "Moved to your travel card", "purse_load_refund": "Returned from your travel card",
    "purse_fare": "Bus fare",
}


def describe(code: str, counterparty: str | None, detail: str | None = None) -> str:
    """A statement line in words: 'Paid Corner Shop', 'Bill paid to City Water (bill B12)' (pure)."""
    text = _VERBS.get(code, code.replace("_", " ").capitalize()).format(name=counterparty or "a merchant")
    return f"{text} ({detail})" if detail else text


def wallet_activity(tx, wallet: dict, *, limit: int = 20) -> list[dict]:
    """The wallet's latest statement lines, newest first, each with a plain description."""
    entries, _ = ledger.statement(tx, wallet["account_id"], limit=limit)
    if not entries:
        return []
    names = dashboard_db.merchant_names(tx)
    ids = [e["transfer_id"] for e in entries]
    bill_numbers = dashboard_db.bill_numbers(tx, ids)
    notes = dashboard_db.payment_descriptions(tx, ids)
    lines = []
    for e in entries:
        detail = None
        if e["transfer_id"] in bill_numbers:
            detail = f"bill {bill_numbers[e['transfer_id']]}"
        elif notes.get(e["transfer_id"]):
            detail = notes[e["transfer_id"]]
        lines.append({**e, "description": describe(e["code"], names.get(e["counterparty_account_id"]), detail)})
    return lines


def wallet_trips(tx, wallet_id: str, *, limit: int = 10) -> list[dict]:
    """The latest taps of the wallet's purse cards, newest first (bank-card and UID taps carry
    only a keyed-hash token, which no wallet is linked to)."""
    return dashboard_db.purse_taps(tx, wallet_id, limit=limit)


def billers(tx) -> list[dict]:
    """Every biller a payer may look bills up at: id and name."""
    return dashboard_db.billers(tx)


def bills_to_pay(tx, wallet_id: str, *, biller_id: str, consumer_number: str, now: datetime) -> list[dict]:
    """The payable bills of a consumer number at a biller, as the wallet sees them (bills.list_bills)."""
    return bills.list_bills(tx, Caller("wallet", wallet_id), now=now, biller_id=biller_id,
                            consumer_number=consumer_number, limit=50)["data"]


def paid_bills(tx, wallet_id: str, *, now: datetime, limit: int = 10) -> list[dict]:
    """The wallet's latest bill payments, each with the bill as it stands now (paid or part paid)."""
    caller = Caller("wallet", wallet_id)
    payments = bills.list_bill_payments(tx, caller, limit=limit)["data"]
    return [{**p, "bill": bills.get_bill(tx, caller, p["bill_id"], now=now)} for p in payments]

