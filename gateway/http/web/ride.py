"""/wallet/ride: the rider's QR ride code and trip history.

The ride code is a QR ticket (protocol.signed_qr) that the phone signs itself: the first
time, the page (static/ride.js) makes an Ed25519 key in the browser (WebCrypto; the
private key cannot be read out, not even by the page, and stays in the browser's
IndexedDB), and POST /wallet/ride/card has the gateway, as issuer, certify its public
key for this wallet. From then on the page signs a new ticket every REFRESH_SECONDS,
valid LIFETIME_SECONDS, and draws it (static/qrcode.js), with no round trip: a
validator's camera checks it offline with the issuer keys, and refuses a code shown
twice (refuse_replay) or a card of a locked wallet (the deny-list).

The trip history merges what the wallet's cards did on the buses:
- taps of its purse cards and ride codes (by card id): the fare the card paid at the tap;
- the trips of the bank and transit cards linked to it (by token): its taps paired into
  trips and priced with the published fare rules (gateway.core.trips), each trip's fare,
  transfer discount and the daily or weekly cap reached, line by line, and what the
  night's charging run charged for it (fare_charges: charged, unpaid) or that it is
  still to be charged;
- refused taps, with the reason.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

from flask import jsonify, request

from gateway.core import card_links, dashboard, fare_charges, issuer
from gateway.core.caller import Caller
from gateway.core.errors import DomainError
from gateway.core.trips import Tap, build_trips, price_trips
from gateway.http.api.wallets import fresh_balance
from gateway.http.errors import api_error
from gateway.http.runtime import runtime
from gateway.http.web import bp, check_csrf, page
from gateway.http.web.wallet import requires_wallet, signed_in_wallet
from gateway.store import wallet_views
from protocol.fares import FareError, FareRules

LIFETIME_SECONDS = 60  # a ride code is valid this long after it is drawn
REFRESH_SECONDS = 30   # and replaced this often, so the one on the screen always has time left
HISTORY_DAYS = 8       # trips shown: from the Monday of the week this many days ago
REASONS = {"deny_listed": "card on the deny-list", "insufficient_balance": "not enough on the card",
           "card_removed": "card taken away too soon", "already_tapped": "tapped twice",
           "denied_card": "card refused", "bad_qr": "code not accepted", "qr_replayed": "code shown twice"}


def _rules() -> FareRules | None:
    try:
        return fare_charges.read_rules(runtime().config.data_dir)
    except fare_charges.NoFareRules:
        return None


def _since(rules: FareRules | None, now: datetime) -> int:
    """Where the history starts: a week's Monday, so that caps are priced as the night's run prices them."""
    back = now - timedelta(days=HISTORY_DAYS)
    if rules is None:
        return int(back.timestamp())
    return fare_charges.day_bounds(rules, rules.week_start(back))[0]


def _route_name(rules: FareRules | None, route: str | None) -> str:
    if route is None:
        return "A bus"
    try:
        name = rules.route(route).name if rules else None
    except (FareError, KeyError):
        name = None
    return f"Route {route}" + (f" · {name}" if name and name != route else "")


def _stop(rules: FareRules | None, route: str | None, stop: str | None) -> str:
    """A stop by its name when the rules know it: "Railway Station", else "stop rs"."""
    try:
        return next(s.name for s in rules.route(route).stops if s.id == stop) if rules else f"stop {stop}"
    except (FareError, KeyError, StopIteration):
        return f"stop {stop}"


def token_trips(taps: list[dict], charges: list[dict], links: dict[str, dict], rules: FareRules | None,
                concession: str, now: datetime) -> list[dict]:
    """The linked cards' accepted taps as priced trips, and their refused taps; newest first.

    Each item: at (unix), title, where, card, lines [(text, amount)], badges (Transfer, Daily
    cap reached ...), amount and status: charged | unpaid | free | settled | pending (not
    charged yet: the fare shown is what the rules make of the trip now)."""
    items: list[dict] = []
    by_token: dict[str, list[Tap]] = defaultdict(list)
    for t in taps:
        card = links.get(t["token"], {}).get("label", "linked card")
        if not t["accepted"]:
            items.append({"at": t["at"], "title": _route_name(rules, t["route"]),
                          "where": _stop(rules, t["route"], t["stop"]),
                          "card": card, "status": "refused", "lines": [],
                          "badges": [REASONS.get(t["reason"], t["reason"].replace("_", " "))], "amount": None})
        elif t["route"] and t["stop"]:
            by_token[t["token"]].append(Tap(f"{t['terminal_id']}/{t['tap_id']}", t["token"],
                                            datetime.fromtimestamp(t["at"], timezone.utc), t["direction"] or "on",
                                            t["route"], t["stop"], t["rules_version"]))
    charged: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for c in charges:
        charged[(c["token"], c["trip_id"])].append(c)
    for token, token_taps in by_token.items():
        try:
            trips = build_trips(token_taps, now=now)
        except ValueError:  # two different taps under one id: no trip can be told from them
            continue
        try:
            priced = price_trips(rules, trips, concession) if rules else [None] * len(trips)
        except (FareError, ValueError):  # rules that cannot price these trips: shown unpriced
            priced = [None] * len(trips)
        for trip, charge in zip(trips, priced):
            on, off = trip.on, trip.off
            first = on or off
            lines = [(line.text, line.amount) for line in charge.lines] if charge else []
            badges = [{"transfer": "Transfer", "day_cap": "Daily cap reached",
                       "week_cap": "Weekly cap reached"}[line.kind] for line in (charge.lines if charge else ())
                      if line.kind in ("transfer", "day_cap", "week_cap")]
            recorded = charged.get((token, trip.id), [])
            if recorded:
                statuses = {c["status"] for c in recorded}
                status = "unpaid" if "unpaid" in statuses else ("charged" if statuses & {"charged", "settled"}
                                                                else "free")
                amount = sum(c["amount"] for c in recorded)
            else:
                status, amount = "pending", charge.amount if charge and charge.flag is None else None
            stop = lambda tap: _stop(rules, tap.route, tap.stop)  # noqa: E731
            where = (f"{stop(on)} → {stop(off)}" if on and off else
                     f"boarded at {stop(on)}" if on else f"left at {stop(off)}")
            items.append({"at": int(first.at.timestamp()), "title": _route_name(rules, first.route), "where": where,
                          "card": links.get(token, {}).get("label", "linked card"), "status": status,
                          "lines": lines, "badges": badges, "amount": amount,
                          "currency": charge.currency if charge else (recorded[0]["currency"] if recorded else None)})
    return sorted(items, key=lambda i: -i["at"])


def card_taps(rows: list[dict], rules: FareRules | None) -> list[dict]:
    """Taps of the wallet's purse cards and ride codes, as history items."""
    items = []
    for t in rows:
        paid = t["accepted"] and t["amount"]
        items.append({"at": t["at"], "title": _route_name(rules, t["route"]),
                      "where": _stop(rules, t["route"], t["stop"]) if t["stop"] else "",
                      "card": "travel card or ride code",
                      "status": ("paid at the tap" if paid else "no fare") if t["accepted"] else "refused",
                      "lines": [], "badges": [] if t["accepted"] else [REASONS.get(t["reason"], t["reason"])],
                      "amount": t["amount"] if paid else None, "currency": t["currency"]})
    return items


@bp.get("/wallet/ride")
@requires_wallet
def wallet_ride(wallet):
    rt = runtime()
    now = rt.now()
    rules = _rules()
    since = _since(rules, now)
    with rt.store.read() as tx:
        links = card_links.wallet_links(tx, Caller("wallet", wallet["id"]), wallet["id"])["data"]
        labels = {link["token"]: {"label": "linked bank card" if link["kind"] == "pan" else "linked transit card"}
                  for link in links}
        taps = wallet_views.token_taps(tx, labels, since=since)
        charges = wallet_views.fare_charges(tx, wallet["id"], labels, since=since)
        purse = dashboard.wallet_trips(tx, wallet["id"], limit=50)
    history = token_trips(taps, charges, labels, rules, wallet.get("concession") or "adult", now)
    history += card_taps([t for t in purse if t["at"] >= since], rules)
    history.sort(key=lambda i: -i["at"])
    return page("wallet_ride.html", tab="ride", wallet=wallet, history=history, links=links,
                lifetime=LIFETIME_SECONDS, refresh=REFRESH_SECONDS,
                balance=fresh_balance(wallet["account_id"], wallet["id"]))


@bp.post("/wallet/ride/card")
def wallet_ride_card():
    """Certify the public key the browser made for this wallet's ride codes; JSON."""
    wallet = signed_in_wallet()
    if wallet is None:
        return jsonify(message="Your session has ended; sign in again."), 401
    check_csrf()
    body = request.get_json(silent=True) or {}
    rt = runtime()
    try:
        key = issuer.parse_public_key(body.get("public_key"))
        card = rt.store.write(lambda tx: issuer.certify(tx, wallet_id=wallet["id"], public_key=key,
                                                          seed=rt.secret("issuer_seed"), now=rt.now()))
    except DomainError as failed:
        err = api_error(failed)
        message = ("This wallet is locked: it has no ride code until the issuer unlocks it."
                   if err.code == "wallet_locked" else err.message)
        return jsonify(message=message), err.status
    return jsonify(card_id=card["card_id"], certificate=card["certificate"], not_after=card["not_after_unix"],
                   lifetime=LIFETIME_SECONDS)
