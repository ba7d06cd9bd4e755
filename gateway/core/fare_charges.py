"""Account-based fares: a day's token taps become trips, priced and charged to linked wallets.

`run_day` takes the operator's local day, builds each token's trips from its taps
(gateway.core.trips.build_trips), prices them with the fare rules, transfers and caps
(price_trips, with what the token's other days of the week already cost), and charges
the difference from what earlier runs of that day charged. So a rerun charges
nothing, and a rerun after late taps charges only what the day now costs beyond what
was charged, which never takes the day or week beyond its cap.

Each charge is one ledger transfer, wallet -> the revenue account of the operator
whose validator saw the trip's first tap (clearing.revenue_account_id), with an id
derived from (token, trip id, seq): a charge can move money once only. A token with
no linked wallet, or a wallet short of funds, leaves the charge unpaid: a debt, and
the token goes on the deny-list ("unpaid fare"). `collect_debts` (each run does it
first) and `settle_debt` (the wallet asks) collect debts oldest first under the same
transfer ids; once a token owes nothing its unpaid-fare entry leaves the deny-list.

Each token is priced with the concession class of the wallet it is linked to (set by the
operator, migration 0010); an unlinked token with the run's `concession` ("adult"). A
token whose wallet's class the rules no longer know is held, not charged, until they do.

Runs on several nodes at once charge nothing twice: a run holds the row of every token
it prices or collects from (gateway.store.fare_charges.hold_tokens) before it reads what
was charged, so a second run of the day waits, then finds the first one's charges and
charges only what is left (nothing, if no taps came meanwhile).

The fare rules are published into the database (`publish_rules`), the same for every
node; `current_rules` reads the highest version. A gateway whose database has none yet
reads data_dir/fare_rules.json, where rules were published before.
Plain functions over a Tx; the rules, the day and `now` are passed in.
"""
from __future__ import annotations

import functools
import hashlib
import json
from datetime import date, datetime, time, timedelta
from pathlib import Path

from gateway.core import iso, issuer, ledger, unix
from gateway.core.card_links import linked_wallet
from gateway.core.clearing import open_revenue_account
from gateway.core.errors import Conflict, Invalid, not_found
from gateway.core.taps import token_taps
from gateway.core.trips import build_trips, price_trips
from gateway.core.wallets import DEFAULT_CONCESSION, wallet_row
from gateway.store import fare_charges as charges_db
from gateway.store import issuer as issuer_db
from protocol.currency import money
from protocol.fares import FareError, FareRules, RulesError, parse_rules

TRANSFER_CODE = "token_fare"
DENY_REASON = "unpaid fare"
DENY_SOURCE = "fare_debt"
RULES_FILE = "fare_rules.json"
STATUSES = ("charged", "free", "unpaid", "settled")


class NoFareRules(Exception):
    """No fare rules are published, or they do not parse."""


class BrokenFareRules(NoFareRules):
    """Fare rules are published but do not parse (only a data directory's file can be:
    the database holds validated ones)."""


# --- the published fare rules ------------------------------------------------------------

def _canonical(document: dict) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@functools.lru_cache(maxsize=16)
def _parsed(text: str) -> FareRules:
    """The rules a JSON text holds (parsed once per text: uploads check routes against them)."""
    return parse_rules(json.loads(text))


def rules_version_view(row: dict, *, already_published: bool) -> dict:
    return {"object": "fare_rules_version", "version": row["version"], "digest": row["digest"],
            "effective_from": iso(row["effective_from"]), "published_at": iso(row["published_at"]),
            "already_published": already_published}


def publish_rules(tx, document, *, now: datetime) -> dict:
    """Publish a fare rules document for every gateway node and validator; its version's view.

    The document is validated by protocol.fares (400 invalid_fare_rules naming what is
    wrong). Publishing a document again does nothing and answers its version with
    `already_published` true. A version number names one document: other content under a
    published number is 409 fare_rules_version_exists, and a number below the current
    version is 409 stale_fare_rules_version (publish above it, even to go back to older
    fares: validators and charging runs take the highest version)."""
    try:
        rules = parse_rules(document)
    except RulesError as e:
        raise Invalid("invalid_fare_rules", f"The fare rules do not validate: {e}", "rules") from None
    text = _canonical(document)
    digest = hashlib.sha256(text.encode()).hexdigest()
    published = charges_db.rule_version(tx, rules.version)
    if published is not None:
        return _published_before(published, digest)
    current = charges_db.current_rules(tx)
    if current is not None and current["version"] > rules.version:
        raise Conflict("stale_fare_rules_version", f"Fare rules version {current['version']} are published; "
                       f"a new version must be above it, not {rules.version}.", "version")
    row = {"version": rules.version, "document": text, "digest": digest,
           "effective_from": unix(rules.effective_from), "published_at": unix(now)}
    if charges_db.insert_rule_version(tx, **row):
        return rules_version_view(row, already_published=False)
    return _published_before(charges_db.rule_version(tx, rules.version), digest)  # by another node, just now


def _published_before(published: dict, digest: str) -> dict:
    """The published version's view if it is this document (digest); 409 if it is another."""
    if published["digest"] != digest:
        raise Conflict("fare_rules_version_exists", f"Fare rules version {published['version']} are published "
                       "with other content; publish these under a new version.", "version")
    return rules_version_view(published, already_published=True)


def current_rules_document(tx, data_dir: Path | None = None) -> dict | None:
    """The current fare rules as validators download them: the highest published version;
    only when the database has none, data_dir/fare_rules.json (as published before rules
    moved into the database). None when there are none; BrokenFareRules for a file that
    is not JSON."""
    row = charges_db.current_rules(tx)
    if row is not None:
        return json.loads(row["document"])
    text = _rules_file(data_dir)
    try:
        return None if text is None else json.loads(text)
    except ValueError as e:
        raise BrokenFareRules(f"the fare rules in {Path(data_dir) / RULES_FILE} are not JSON: {e}") from None


def current_rules(tx, data_dir: Path | None = None) -> FareRules:
    """The current fare rules (see current_rules_document for where they come from);
    NoFareRules when there are none, BrokenFareRules when the fallback file's do not parse."""
    row = charges_db.current_rules(tx)
    if row is not None:
        return _parsed(row["document"])
    if data_dir is None:
        raise NoFareRules("no fare rules published")
    return read_rules(data_dir)


def read_rules(data_dir: Path) -> FareRules:
    """The fare rules of data_dir/fare_rules.json, where they were published before they
    moved into the database (current_rules reads them when the database has none)."""
    path = Path(data_dir) / RULES_FILE
    text = _rules_file(data_dir)
    if text is None:
        raise NoFareRules(f"no fare rules published ({path} is missing)")
    try:
        return _parsed(text)
    except ValueError as e:
        raise BrokenFareRules(f"the fare rules in {path} do not parse: {e}") from None


def _rules_file(data_dir: Path | None) -> str | None:
    if data_dir is None:
        return None
    try:
        return (Path(data_dir) / RULES_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def parse_day(text) -> date:
    """YYYY-MM-DD, or a 400 naming `day`."""
    try:
        if not isinstance(text, str) or len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise Invalid("invalid_parameter", "day must be a date YYYY-MM-DD.", "day") from None


def day_bounds(rules: FareRules, day: date) -> tuple[int, int]:
    """[since, until) in unix seconds: the operator's local day, midnight to midnight."""
    tz = rules.local_time_zone
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return unix(start), unix(end)


def charge_key(token: str, trip_id: str, seq: int) -> str:
    """The hex digest every id of one charge derives from: its row id and its transfer id."""
    return hashlib.sha256(f"{token}\n{trip_id}\n{seq}".encode()).hexdigest()


def transfer_id(token: str, trip_id: str, seq: int) -> str:
    return "fare:" + charge_key(token, trip_id, seq)[:40]


def charge_view(row: dict) -> dict:
    return {"object": "fare_charge", "id": row["id"], "token": row["token"], "trip_id": row["trip_id"],
            "seq": row["seq"], "local_day": row["local_day"], "at": iso(row["at"]), "route": row["route"],
            "stop": row["stop"], "merchant_id": row["merchant_id"], "wallet_id": row["wallet_id"],
            "amount": row["amount"], "currency": row["currency"], "rules_version": row["rules_version"],
            "status": row["status"], "statement": row["statement"], "created_at": iso(row["created_at"]),
            "settled_at": iso(row["settled_at"])}


# --- collecting one charge ---------------------------------------------------------------

def _collect(tx, row: dict, now: datetime) -> bool:
    """Move the charge's money from the token's linked wallet; False if it cannot (no wallet,
    locked, another currency, short of funds). Nothing is written when it cannot."""
    wallet = linked_wallet(tx, row["token"])
    if wallet is None or wallet["status"] != "active" or wallet["currency"] != row["currency"]:
        return False
    try:
        ledger.transfer(tx, transfer_id=transfer_id(row["token"], row["trip_id"], row["seq"]),
                        debit_account_id=wallet["account_id"],
                        credit_account_id=open_revenue_account(tx, row["merchant_id"], row["currency"], now=now),
                        amount=row["amount"], currency=row["currency"], code=TRANSFER_CODE, now=now,
                        metadata={"fare_charge": row["id"], "route": row["route"]})
    except ledger.InsufficientFunds:
        return False
    row["wallet_id"] = wallet["id"]
    row["transfer_id"] = transfer_id(row["token"], row["trip_id"], row["seq"])
    return True


def _release(tx, token: str, now: datetime) -> bool:
    """Take the token off the deny-list if it is there for unpaid fares and owes nothing now."""
    entry = issuer_db.denied_entry(tx, token)
    if entry is None or entry["source"] != DENY_SOURCE or charges_db.owes(tx, token):
        return False
    issuer.allow(tx, entry=token, now=now)
    return True


def _deny(tx, token: str, now: datetime) -> bool:
    if issuer_db.denied_entry(tx, token) is not None:
        return False
    issuer.deny(tx, entry=token, kind="token", reason=DENY_REASON, now=now, source=DENY_SOURCE)
    return True


def _settle(tx, row: dict, now: datetime) -> bool:
    """Mark the collected debt settled; False if it was settled meanwhile (by the same transfer)."""
    return charges_db.settle_charge(tx, charge_id=row["id"], status="settled", wallet_id=row["wallet_id"],
                                    transfer_id=row["transfer_id"], settled_at=unix(now))


def collect_debts(tx, *, now: datetime, token: str | None = None) -> dict:
    """Collect unpaid charges, oldest first per token, from the linked wallets; a token's
    collection stops at its first debt its wallet cannot pay. Tokens that owe nothing any
    more leave the deny-list. {"count", "amount", "allowed_tokens"}. The tokens are held
    first (see the module doc), so a run pricing one of them meanwhile is waited for."""
    charges_db.hold_tokens(tx, charges_db.owing_tokens(tx, token), at=unix(now))
    rows = charges_db.unpaid_charges(tx, token)
    count = amount = allowed = 0
    blocked: set[str] = set()
    for row in rows:
        if row["token"] in blocked:
            continue
        if not _collect(tx, row, now):
            blocked.add(row["token"])
            continue
        if _settle(tx, row, now):
            count, amount = count + 1, amount + row["amount"]
    for t in sorted({r["token"] for r in rows} - blocked):
        allowed += _release(tx, t, now)
    return {"count": count, "amount": amount, "allowed_tokens": allowed}


def settle_debt(tx, caller, charge_id: str, *, now: datetime) -> dict:
    """The wallet pays one of its debts now (a debt of a token linked to it); 402 if short."""
    row = charges_db.charge(tx, charge_id)
    if row is not None:
        charges_db.hold_tokens(tx, [row["token"]], at=unix(now))
        row = charges_db.charge(tx, charge_id)  # as it is now the token is held
    wallet = linked_wallet(tx, row["token"]) if row is not None else None
    if wallet is None or not (caller.kind == "operator" or (caller.kind == "wallet" and caller.id == wallet["id"])):
        raise not_found("fare debt", "id")
    if row["status"] != "unpaid":
        raise Conflict("not_unpaid", f"This fare charge is {row['status']}, not unpaid.", "id")
    if wallet["status"] != "active":
        raise Conflict("wallet_locked", "This wallet is locked.", "wallet_id")
    if not _collect(tx, row, now):
        raise ledger.InsufficientFunds("the wallet's balance is below the fare owed", "amount")
    _settle(tx, row, now)
    _release(tx, row["token"], now)
    return charge_view({**row, "status": "settled", "settled_at": unix(now)})


# --- the run -----------------------------------------------------------------------------

def run_day(tx, *, rules: FareRules, day: date, now: datetime, concession: str = DEFAULT_CONCESSION) -> dict:
    """Charge the token trips of the operator's local `day`; the run's summary (see module doc).
    `concession` prices the tokens linked to no wallet."""
    try:
        rules.concession(concession)
    except FareError as e:
        raise Invalid("invalid_parameter", str(e), "concession") from None
    since, until = day_bounds(rules, day)
    by_token: dict[str, list] = {}
    for tap in token_taps(tx, since=since, until=until):
        by_token.setdefault(tap.token, []).append(tap)
    # Every token this run touches, held at once in token order (see the module doc).
    charges_db.hold_tokens(tx, set(by_token) | set(charges_db.owing_tokens(tx)), at=unix(now))
    collected = collect_debts(tx, now=now)
    merchants = charges_db.terminal_merchants(tx)
    week = (day - timedelta(days=day.weekday())).isoformat()
    summary = {"object": "fare_charge_run", "day": day.isoformat(), "rules_version": rules.version,
               "currency": rules.currency, "tokens": len(by_token), "trips": 0, "held": 0,
               "charged": {"count": 0, "amount": 0}, "free": 0, "unpaid": {"count": 0, "amount": 0},
               "debts_collected": {"count": collected["count"], "amount": collected["amount"]},
               "denied_tokens": 0, "allowed_tokens": collected["allowed_tokens"]}
    for token in sorted(by_token):
        wallet = linked_wallet(tx, token)
        klass = (wallet or {}).get("concession") or concession
        trips = build_trips(by_token[token], now=now)
        if klass not in rules.concessions:
            summary["held"] += len(trips)  # its trips wait for rules that know the class
            continue
        other_days = charges_db.week_charged_besides(tx, token=token, week_start=week, day=day.isoformat())
        charges = price_trips(rules, trips, klass, 0, other_days)
        # trip id -> (amount so far, last seq)
        recorded = charges_db.day_charged_by_trip(tx, token=token, day=day.isoformat())
        # What the day costs now beyond what earlier runs charged: never negative (an
        # amount once charged stays charged; docs/account-fares.md says when that matters).
        day_total = sum(c.amount for c in charges if c.flag is None)
        before = sum(a for a, _ in recorded.values())
        owed = max(0, day_total - before)
        for charge in charges:
            if charge.flag is not None:
                summary["held"] += 1
                continue
            summary["trips"] += 1
            trip = charge.trip
            so_far, seq = recorded.get(trip.id, (0, 0))
            amount = min(max(0, charge.amount - so_far), owed)
            if seq and not amount:
                continue  # charged before, nothing more to charge
            owed -= amount
            statement = charge.statement()
            if seq or amount != charge.amount:  # what earlier runs charged changes what this trip costs
                statement = (f"Charged {money(amount, charge.currency)}: with the taps known now the day costs "
                             f"{money(day_total, charge.currency)}, of which {money(before, charge.currency)} "
                             f"was charged before. The trip priced with the day: {statement}")
            row = _charge_row(token, trip, seq + 1, amount, charge, rules, merchants, statement, now)
            if amount == 0:
                row["status"] = "free"
                summary["free"] += 1
            elif _collect(tx, row, now):
                row["status"] = "charged"
                summary["charged"]["count"] += 1
                summary["charged"]["amount"] += amount
            else:
                row["status"] = "unpaid"
                summary["unpaid"]["count"] += 1
                summary["unpaid"]["amount"] += amount
                summary["denied_tokens"] += _deny(tx, token, now)
            charges_db.insert_charge(tx, row)
    return summary


def _charge_row(token, trip, seq, amount, charge, rules, merchants, statement, now) -> dict:
    on = trip.on
    terminal_id = trip.id.split("/", 1)[0]
    key = charge_key(token, trip.id, seq)
    return {"id": "fch_" + key[:24], "token": token, "trip_id": trip.id, "seq": seq,
            "local_day": charge.local_day.isoformat(), "week_start": rules.week_start(on.at).isoformat(),
            "at": unix(on.at), "route": on.route, "stop": on.stop, "terminal_id": terminal_id,
            "merchant_id": merchants.get(terminal_id, "unknown"), "wallet_id": None, "amount": amount,
            "currency": charge.currency, "rules_version": charge.rules_version, "status": "free",
            "transfer_id": None, "statement": statement, "created_at": unix(now), "settled_at": None}


# --- reading -------------------------------------------------------------------------------

def wallet_charges(tx, caller, wallet_id: str, *, status: str | None = None, limit: int = 100) -> dict:
    """The wallet's fare charges, newest first: those it paid, and those of tokens linked to it
    now (its debts among them). `unpaid_total` is what it owes."""
    wallet_row(tx, caller, wallet_id)
    if status is not None and status not in STATUSES:
        raise Invalid("invalid_parameter", f"status must be one of {', '.join(STATUSES)}.", "status")
    rows = charges_db.wallet_charges(tx, wallet_id=wallet_id, status=status, limit=limit + 1)
    # The newest `limit` charges; `has_more` says there are older ones (no cursor yet).
    return {"object": "list", "wallet_id": wallet_id, "data": [charge_view(r) for r in rows[:limit]],
            "has_more": len(rows) > limit, "next_cursor": None, "unpaid_total": charges_db.wallet_owes(tx, wallet_id)}


def day_by_route(tx, day: date, *, merchant_id: str | None = None) -> dict:
    """A local day's charges per route: trips, what was collected and what is owed."""
    rows = charges_db.day_by_route(tx, day=day.isoformat(), merchant_id=merchant_id)
    return {"object": "fare_charges_by_route", "day": day.isoformat(), "data": [
        {"route": r["route"], "currency": r["currency"], "trips": r["trips"], "free_trips": r["free_trips"],
         "collected": r["collected"], "unpaid": r["unpaid"]} for r in rows]}


def revenue(tx, day: date, *, merchant_id: str | None = None) -> dict:
    """Token ridership and revenue per route and hour (UTC, like /v1/taps/ridership) of a local day."""
    rows = charges_db.day_by_route_and_hour(tx, day=day.isoformat(), merchant_id=merchant_id)
    return {"object": "token_revenue", "day": day.isoformat(), "data": [
        {"route": r["route"], "hour": iso(r["hour"]), "currency": r["currency"], "trips": r["trips"],
         "token_revenue": r["collected"], "unpaid": r["unpaid"]} for r in rows]}


def run_lines(summary: dict) -> str:
    """A run's summary for a person, one line per fact."""
    def money(amount: int) -> str:
        return ledger.format_amount(amount, summary["currency"])

    c, u, d = summary["charged"], summary["unpaid"], summary["debts_collected"]
    return "\n".join([
        f"day {summary['day']} (fare rules version {summary['rules_version']}): "
        f"{summary['tokens']} cards, {summary['trips']} trips priced, {summary['held']} held for review",
        f"charged {c['count']} ({money(c['amount'])}); free {summary['free']}",
        f"unpaid {u['count']} ({money(u['amount'])}); "
        f"cards deny-listed {summary['denied_tokens']}",
        f"debts collected {d['count']} ({money(d['amount'])}); "
        f"cards allowed again {summary['allowed_tokens']}"])
