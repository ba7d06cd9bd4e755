"""The gateway's double-entry ledger: accounts, immutable transfers, two-phase holds.

Invariants (kept by construction, proved by `check()`):

1. Money is an integer of minor units (fen for CNY) in one ISO 4217 currency.
   A transfer moves a positive amount (1 .. 10**15) between two different
   accounts of that same currency.
2. Every movement debits one account and credits another by the same amount,
   in one transaction, so per currency the balances (credits_posted -
   debits_posted) of all accounts sum to zero, and pending debits equal
   pending credits.
3. Transfers are immutable. A transfer id is an idempotency key: the same id
   with the same fields returns the first transfer; different fields raise
   TransferExists.
4. Accounts of kinds that may not go negative (all but funding_source and
   suspense) never go below zero counting their pending debits:
   credits_posted - debits_posted - debits_pending >= 0. The check is the
   WHERE clause of the UPDATE that moves the money (and a CHECK constraint).
5. A pending transfer reserves its amount (debits_pending / credits_pending)
   and is resolved exactly once, by a post (up to its amount; the rest is
   released), a void or an expiry. The resolving transfer carries
   `pending_id`, which is UNIQUE in the schema.
6. Each posted movement writes one posting per account, numbered per account;
   an account's stored totals equal the sums of its postings and are updated
   in the same transaction, so a balance is read, never summed, at read time.
7. A failed call writes nothing (each runs inside a savepoint).

The rules hold with many writers at once (gateway nodes on one PostgreSQL at
READ COMMITTED) and no lock of the gateway's: the funds check is evaluated by
the database on the account row as the writer before left it; a transfer id
is a primary key and `pending_id` is UNIQUE, so of two writers storing one the
second gets IntegrityError inside its savepoint and replays (or refuses) as if
it had come second; account rows are updated in id order, so movements in
opposite directions never deadlock. The SQL lives in gateway/store/ledger.py.

Every function takes an open `Tx` (gateway.store) and, when it writes, `now`:
a timezone-aware datetime, stored as ISO 8601 UTC text ending in Z.
"""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from gateway.core.errors import Conflict, Declined, DomainError, Invalid, NotFound
from gateway.store import IntegrityError
from gateway.store import ledger as ledger_db
from protocol import currency as iso4217

# kind -> may the balance go below zero?
ACCOUNT_KINDS = {
    "customer_wallet": False,
    "purse_float": False,
    "merchant": False,
    "biller": False,
    "operator_revenue": False,
    "funding_source": True,
    "suspense": True,
}
MAX_POSTING_AMOUNT = 10**15  # one posting's bound: sums of many stay far from overflow
MAX_TOTAL = 2**62  # an account's running totals stay far from int64 overflow
MAX_TIMEOUT_SECONDS = 366 * 24 * 3600
MAX_METADATA_BYTES = 4096
_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")  # no '#': reserved for expiry ids
_CODE = re.compile(r"^[a-z0-9_.\-]{1,64}$")

# alpha code -> minor-unit exponent, from the one ISO 4217 table; gateway.core imports it.
CURRENCY_EXPONENTS = {c.alpha: c.exponent for c in iso4217.CURRENCIES.values()}

_NO_CURSOR = 2**63 - 1  # above every posting number
_RESOLUTION_STATUS = {"post_pending": "posted", "void_pending": "voided", "expire_pending": "expired"}


# -- errors ------------------------------------------------------------------

class LedgerError(DomainError):
    """A request the ledger refuses. `code` is stable, `message` says what is wrong, `param`
    names the field; the kind of refusal is the gateway.core.errors class it also is."""


class _Coded(LedgerError):
    code_name = "ledger_error"

    def __init__(self, message: str, param: str | None = None):
        super().__init__(self.code_name, message, param)


class InsufficientFunds(_Coded, Declined):
    code_name = "insufficient_funds"


class AccountNotFound(_Coded, NotFound):
    code_name = "account_not_found"


class CurrencyMismatch(_Coded, Invalid):
    code_name = "currency_mismatch"


class UnknownCurrency(_Coded, Invalid):
    code_name = "unknown_currency"


class InvalidAmount(_Coded, Invalid):
    code_name = "invalid_amount"


class TransferExists(_Coded, Conflict):
    code_name = "transfer_exists"


class PendingNotFound(_Coded, NotFound):
    code_name = "pending_not_found"


class PendingAlreadyResolved(_Coded, Conflict):
    code_name = "pending_already_resolved"


class PendingExpired(_Coded, Conflict):
    code_name = "pending_expired"


class SameAccount(_Coded, Invalid):
    code_name = "same_account"


class RefundExceedsPayment(_Coded, Invalid):
    code_name = "refund_exceeds_payment"


# -- values ------------------------------------------------------------------

@dataclass(frozen=True)
class Balance:
    posted: int  # credits_posted - debits_posted
    debits_pending: int
    credits_pending: int
    available: int  # posted - debits_pending: what may still be debited
    currency: str


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    ref: str | None = None  # the account or transfer id concerned


@dataclass(frozen=True)
class CurrencyTotals:
    accounts: int
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def net(self) -> int:
        """Sum of all balances in this currency: zero when the books balance."""
        return self.credits_posted - self.debits_posted


@dataclass(frozen=True)
class CheckReport:
    ok: bool
    totals: dict[str, CurrencyTotals]
    problems: list[Problem] = field(default_factory=list)
    accounts: int = 0
    transfers: int = 0
    postings: int = 0
    open_pending: int = 0


# -- pure rules --------------------------------------------------------------

def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point of `currency` (CNY 2, JPY 0, KWD 3); UnknownCurrency otherwise."""
    if not iso4217.is_known(currency):
        raise UnknownCurrency(f"{_show(currency)} is not an ISO 4217 currency code with a minor unit", "currency")
    return iso4217.exponent(currency)


def format_amount(amount: int, currency: str) -> str:
    """123456, "CNY" -> "1234.56 CNY" (for reports; never parse it back)."""
    minor_unit_exponent(currency)  # the ledger's own error for an unknown code
    return iso4217.money(amount, currency)


def check_amount(amount, param: str = "amount") -> int:
    """`amount` if it is an int in 1 .. 10**15; InvalidAmount saying why otherwise."""
    if not _is_int(amount):
        raise InvalidAmount(
            f"{param} must be an integer number of minor units, not {type(amount).__name__} {_show(amount)}", param)
    if amount <= 0:
        raise InvalidAmount(f"{param} must be positive, not {amount}", param)
    if amount > MAX_POSTING_AMOUNT:
        raise InvalidAmount(f"{param} {amount} is above the limit of {MAX_POSTING_AMOUNT} minor units", param)
    return amount


def refundable(amount_paid: int, refunded_so_far: int, requested: int | None = None) -> int:
    """The amount to refund now: `requested`, or all that is left when None.

    Never more than was paid: RefundExceedsPayment when `requested` is above
    amount_paid - refunded_so_far, InvalidAmount for a bad amount or when
    nothing is left to refund.
    """
    check_amount(amount_paid, "amount_paid")
    if not _is_int(refunded_so_far) or not 0 <= refunded_so_far <= amount_paid:
        raise InvalidAmount(
            f"refunded_so_far must be an integer in 0 .. {amount_paid}, not {_show(refunded_so_far)}", "refunded_so_far")
    left = amount_paid - refunded_so_far
    if requested is None:
        if left == 0:
            raise RefundExceedsPayment(f"the payment of {amount_paid} is already refunded in full", "amount")
        return left
    check_amount(requested)
    if requested > left:
        raise RefundExceedsPayment(
            f"refund of {requested} is more than the {left} left to refund"
            f" ({amount_paid} paid, {refunded_so_far} refunded)",
            "amount",
        )
    return requested


def timestamp(now: datetime) -> str:
    """A timezone-aware datetime as fixed-width ISO 8601 UTC text (sorts as time does)."""
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, not {now!r}")
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value, limit: int = 40) -> str:
    """A caller's value for an error message: its repr, cut short (never echo a megabyte back)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_id(value, param: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise LedgerError(
            f"invalid_{param}",
            f"{param} must be 1 to 128 characters of letters, digits and _ . : -, not {_show(value)}", param
        )
    return value


def _check_code(code) -> str:
    if not isinstance(code, str) or not _CODE.match(code):
        raise LedgerError(
            "invalid_code", f"code must be a short lower-case name such as 'topup' or 'payment', not {_show(code)}",
            "code")
    return code


def _metadata_json(metadata) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise LedgerError("invalid_metadata", "metadata must be an object with string keys", "metadata")
    try:
        text = json.dumps(metadata, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise LedgerError("invalid_metadata", f"metadata must hold only JSON values: {e}", "metadata") from None
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise LedgerError(
            "invalid_metadata", f"metadata is {len(text.encode())} bytes as JSON; the limit is {MAX_METADATA_BYTES}",
            "metadata")
    return text


# -- accounts ----------------------------------------------------------------

def open_account(tx, *, kind: str, currency: str = "CNY", owner_id: str | None = None,
                 account_id: str | None = None, now: datetime) -> dict:
    """Open an account. Reopening the same id with the same kind, currency and owner returns it."""
    at = timestamp(now)
    if kind not in ACCOUNT_KINDS:
        raise LedgerError(
            "invalid_kind", f"kind must be one of {', '.join(ACCOUNT_KINDS)}, not {_show(kind)}", "kind")
    minor_unit_exponent(currency)
    if owner_id is not None and (not isinstance(owner_id, str) or not 0 < len(owner_id) <= 128):
        raise LedgerError(
            "invalid_owner_id", f"owner_id must be a string of 1 to 128 characters, not {_show(owner_id)}", "owner_id")
    account_id = _check_id(account_id, "account_id") if account_id is not None else "acc_" + secrets.token_hex(12)
    # The primary key decides between two writers opening one id: the second finds the first's.
    if ledger_db.insert_account(tx, id=account_id, kind=kind, currency=currency, owner_id=owner_id,
                                allow_negative=ACCOUNT_KINDS[kind], created_at=at):
        return get_account(tx, account_id)
    existing = get_account(tx, account_id)
    if (existing["kind"], existing["currency"], existing["owner_id"]) == (kind, currency, owner_id):
        return existing
    raise LedgerError(
        "account_exists",
        f"account {account_id} already exists as a {existing['kind']} account in {existing['currency']}"
        f" owned by {_show(existing['owner_id'])}",
        "account_id",
    )


def _account_view(row: dict) -> dict:
    row["allow_negative"] = bool(row["allow_negative"])
    row["balance"] = row["credits_posted"] - row["debits_posted"]
    row["available"] = row["balance"] - row["debits_pending"]
    return row


def get_account(tx, account_id: str) -> dict | None:
    row = ledger_db.account(tx, account_id)
    return _account_view(row) if row is not None else None


def find_accounts(tx, *, kind: str | None = None, currency: str | None = None,
                  owner_id: str | None = None, limit: int = 100) -> list[dict]:
    """Accounts matching every filter given, oldest first (e.g. the CNY funding_source)."""
    rows = ledger_db.find_accounts(tx, kind=kind, currency=currency, owner_id=owner_id, limit=limit)
    return [_account_view(row) for row in rows]


def balance(tx, account_id: str) -> Balance:
    """The account's balance, read from its stored totals."""
    row = ledger_db.account(tx, account_id)
    if row is None:
        raise AccountNotFound(f"no account {_show(account_id)}", "account_id")
    posted = row["credits_posted"] - row["debits_posted"]
    return Balance(posted, row["debits_pending"], row["credits_pending"],
                   posted - row["debits_pending"], row["currency"])


def _account_for(tx, account_id, param: str) -> dict:
    _check_id(account_id, param)
    account = get_account(tx, account_id)
    if account is None:
        raise AccountNotFound(f"no account {_show(account_id)}", param)
    return account


# -- transfers ---------------------------------------------------------------

def get_transfer(tx, transfer_id: str) -> dict | None:
    """The transfer as stored, with `metadata` decoded; a pending one also has
    `status` (pending, posted, voided or expired) and `resolved_by`."""
    row = ledger_db.transfer(tx, transfer_id)
    if row is None:
        return None
    row["metadata"] = json.loads(row["metadata"]) if row["metadata"] is not None else None
    if row["kind"] == "pending":
        resolution = ledger_db.resolution(tx, transfer_id)
        row["status"] = _RESOLUTION_STATUS[resolution["kind"]] if resolution else "pending"
        row["resolved_by"] = resolution["id"] if resolution else None
    return row


def transfer(tx, *, transfer_id: str, debit_account_id: str, credit_account_id: str, amount: int,
             currency: str, code: str, now: datetime, pending: bool = False,
             timeout_seconds: int | None = None, metadata: dict | None = None) -> dict:
    """Move `amount` from the debit account to the credit account (or hold it, when pending).

    `code` names what the money is for ('topup', 'payment', 'refund', ...).
    A pending transfer with `timeout_seconds` expires at now + timeout.
    """
    row = _transfer_row(transfer_id=transfer_id, debit_account_id=debit_account_id,
                        credit_account_id=credit_account_id, amount=amount, currency=currency, code=code,
                        now=now, pending=pending, timeout_seconds=timeout_seconds, metadata=metadata)
    if not _transfer_at_once(tx, row, pending):
        replay = _transfer_with_checks(tx, row, pending)
        if replay is not None:
            return replay
    return _made(row)


def _made(row: dict) -> dict:
    """What transfer() answers for a transfer it made from `row`."""
    made = {**row, "metadata": json.loads(row["metadata"]) if row["metadata"] is not None else None}
    if made["kind"] == "pending":
        made.update(status="pending", resolved_by=None)
    return made


def _transfer_row(*, transfer_id, debit_account_id, credit_account_id, amount, currency, code, now: datetime,
                  pending=False, timeout_seconds=None, metadata=None) -> dict:
    """The ledger_transfers row of a transfer() call, its arguments checked (LedgerError naming the first
    that is wrong)."""
    at = timestamp(now)
    _check_id(transfer_id, "transfer_id")
    check_amount(amount)
    minor_unit_exponent(currency)
    _check_code(code)
    if not isinstance(pending, bool):
        raise LedgerError("invalid_pending", f"pending must be true or false, not {_show(pending)}", "pending")
    expires_at = None
    if timeout_seconds is not None:
        if not pending:
            raise LedgerError(
                "invalid_timeout", "timeout_seconds applies only to pending transfers", "timeout_seconds")
        if not _is_int(timeout_seconds) or not 0 < timeout_seconds <= MAX_TIMEOUT_SECONDS:
            raise LedgerError(
                "invalid_timeout",
                f"timeout_seconds must be an integer in 1 .. {MAX_TIMEOUT_SECONDS}, not {_show(timeout_seconds)}",
                "timeout_seconds")
        expires_at = timestamp(now + timedelta(seconds=timeout_seconds))
    meta = _metadata_json(metadata)
    _check_id(debit_account_id, "debit_account_id")
    _check_id(credit_account_id, "credit_account_id")
    if debit_account_id == credit_account_id:
        raise SameAccount(
            f"a transfer needs two different accounts; both are {_show(debit_account_id)}", "credit_account_id")
    return {"id": transfer_id, "debit_account_id": debit_account_id, "credit_account_id": credit_account_id,
            "amount": amount, "currency": currency, "code": code, "kind": "pending" if pending else "posted",
            "pending_id": None, "timeout_seconds": timeout_seconds, "metadata": meta, "expires_at": expires_at,
            "created_at": at}


def _transfer_at_once(tx, row: dict, pending: bool) -> bool:
    """The usual transfer in five statements, every rule in their WHERE clauses.

    Insert the transfer (its primary key refuses a second one with the same id, its
    foreign keys unknown accounts), then move the money where both accounts hold the
    currency, the debit has the funds and neither total passes MAX_TOTAL. Anything
    else (a retry, an unknown account, short funds ...) undoes this savepoint and
    returns False: _transfer_with_checks then finds and names the problem.
    """
    try:
        with tx.savepoint():
            ledger_db.insert_transfer(tx, **row)
            moved = _move(tx, row, pending)
            if None in moved:
                raise _Unusual
            if not pending:
                _post(tx, row["id"], moved, row["amount"], row["created_at"])
    except _Unusual:
        return False
    except IntegrityError:  # a constraint refused it (a duplicate id, an unknown account)
        return False
    return True


class _Unusual(Exception):
    """The one-pass transfer met something it does not explain (see _transfer_at_once)."""


def _transfer_with_checks(tx, row: dict, pending: bool) -> dict | None:
    """The transfer step by step: a retry returns the first transfer, every refusal is named."""
    transfer_id, amount, currency = row["id"], row["amount"], row["currency"]
    fields = {name: row[name] for name in ("debit_account_id", "credit_account_id", "amount", "currency",
                                            "code", "kind", "pending_id", "timeout_seconds", "metadata")}
    replay = _replay(tx, transfer_id, fields)
    if replay is not None:
        return replay
    try:
        with tx.savepoint():
            debit = _account_for(tx, row["debit_account_id"], "debit_account_id")
            credit = _account_for(tx, row["credit_account_id"], "credit_account_id")
            for account, param in ((debit, "debit_account_id"), (credit, "credit_account_id")):
                if account["currency"] != currency:
                    raise CurrencyMismatch(
                        f"account {account['id']} holds {account['currency']}, the transfer is in {currency}", param)
            for account, side in ((debit, "debits"), (credit, "credits")):
                if account[f"{side}_posted"] + account[f"{side}_pending"] + amount > MAX_TOTAL:
                    raise LedgerError(
                        "account_limit_exceeded", f"account {account['id']} has reached the limit of its {side}")
            ledger_db.insert_transfer(tx, **row)
            moved = _move(tx, row, pending)
            if moved[0] is None:
                available = debit["credits_posted"] - debit["debits_posted"] - debit["debits_pending"]
                raise InsufficientFunds(
                    f"account {debit['id']} has {available} available, {amount} needed", "debit_account_id")
            if moved[1] is None:  # another writer took the credit to its limit since it was read
                raise LedgerError(
                    "account_limit_exceeded", f"account {credit['id']} has reached the limit of its credits")
            if not pending:
                _post(tx, transfer_id, moved, amount, row["created_at"])
    except IntegrityError:
        # Another writer stored this transfer id since _replay looked: the first one stands.
        replay = _replay(tx, transfer_id, fields)
        if replay is None:
            raise
        return replay
    return None


def _in_account_order(debit_account_id: str, credit_account_id: str, update) -> list:
    """[update("debit", debit_account_id), update("credit", credit_account_id)], made in account
    id order: every writer locks account rows in that one order, so two movements between the
    same accounts in opposite directions never wait on each other in a circle."""
    sides = sorted([(debit_account_id, "debit"), (credit_account_id, "credit")])
    done = {side: update(side, account_id) for account_id, side in sides}
    return [done["debit"], done["credit"]]


def _move(tx, row: dict, pending: bool) -> list[dict | None]:
    """Debit and credit the running totals (posted, or pending for a hold). The debit's WHERE
    clause is the funds check; each side also refuses another currency or a total past
    MAX_TOTAL. Each side's new posting number and balance, debit first; None where refused."""
    column = "pending" if pending else "posted"
    return _in_account_order(row["debit_account_id"], row["credit_account_id"], lambda side, account_id: (
        ledger_db.move(tx, side=side, column=column, account_id=account_id, amount=row["amount"],
                       currency=row["currency"], max_total=MAX_TOTAL)))


def _post(tx, transfer_id: str, moved: list[dict], amount: int, at: str) -> None:
    """Write the postings of a posted movement; `moved` is what _move or settling a hold returned (debit first)."""
    ledger_db.insert_postings(tx, [
        {"account_id": state["id"], "seq": state["postings_count"], "transfer_id": transfer_id, "side": side,
         "amount": amount, "balance_after": state["balance"], "created_at": at}
        for state, side in zip(moved, ("debit", "credit"))])


def _replay(tx, transfer_id: str, fields: dict) -> dict | None:
    """The existing transfer when `transfer_id` is a retry of the same request; TransferExists when it differs."""
    existing = ledger_db.transfer(tx, transfer_id)
    if existing is None:
        return None
    differ = [name for name, value in fields.items() if existing[name] != value]
    if differ:
        name = differ[0]
        raise TransferExists(
            f"transfer {transfer_id} already exists with {name} {_show(existing[name])}, not {_show(fields[name])}",
            name
        )
    return get_transfer(tx, transfer_id)

def transfer_linked(tx, legs: list[dict], *, now: datetime) -> list[dict]:
    """Make every leg (the keyword arguments of transfer(), without now) or none.

    A failing leg raises its LedgerError with the message prefixed by
    "leg N: " and `param` as "legs[N].name"; nothing of any leg is written.
    """
    if not isinstance(legs, list) or not legs or not all(isinstance(leg, dict) for leg in legs):
        raise LedgerError("invalid_legs", "legs must be a non-empty list of transfers", "legs")
    allowed = {"transfer_id", "debit_account_id", "credit_account_id", "amount", "currency", "code",
               "pending", "timeout_seconds", "metadata"}
    ids = [leg.get("transfer_id") for leg in legs]
    if len(set(map(str, ids))) != len(ids):
        raise LedgerError("invalid_legs", "two legs share a transfer_id", "legs")
    at_once = _linked_at_once(tx, legs, allowed, now)
    if at_once is not None:
        return at_once
    done = []
    with tx.savepoint():
        for index, leg in enumerate(legs):
            unknown = sorted(set(leg) - allowed)
            if unknown:
                raise LedgerError("invalid_legs", f"leg {index}: unknown field {_show(unknown[0])}", f"legs[{index}]")
            try:
                done.append(transfer(tx, **leg, now=now))
            except TypeError as e:  # a required field missing
                raise LedgerError("invalid_legs", f"leg {index}: {e}", f"legs[{index}]") from None
            except LedgerError as e:
                e.message = f"leg {index}: {e.message}"
                e.args = (e.message,)
                e.param = f"legs[{index}].{e.param}" if e.param else f"legs[{index}]"
                raise
    return done


def _linked_at_once(tx, legs: list[dict], allowed: set[str], now: datetime) -> list[dict] | None:
    """The usual settlement, set-based: posted legs none of whose accounts is both debited and
    credited among them. Their transfers in one bulk insert, one conditional update per account
    with the sum of its legs (the funds, currency and limit checks on the sum hold for every
    leg, as an account here only moves one way), their postings in one bulk insert, numbered
    per account in leg order as leg by leg would. None, having written nothing, for anything
    else (a retried leg, short funds, a bad field ...): transfer_linked then goes leg by leg
    and names what is wrong."""
    try:
        rows = [_transfer_row(**leg, now=now) for leg in legs if not set(leg) - allowed]
    except (LedgerError, TypeError):
        return None
    if len(rows) != len(legs) or any(row["kind"] != "posted" for row in rows):
        return None
    debits: dict[str, list[dict]] = {}
    credits: dict[str, list[dict]] = {}
    for row in rows:
        debits.setdefault(row["debit_account_id"], []).append(row)
        credits.setdefault(row["credit_account_id"], []).append(row)
    if debits.keys() & credits.keys():
        return None
    sides = sorted([(account_id, "debit", group) for account_id, group in debits.items()]
                   + [(account_id, "credit", group) for account_id, group in credits.items()])
    try:
        with tx.savepoint():
            ledger_db.insert_transfers(tx, rows)
            postings = []
            for account_id, side, group in sides:  # in account id order, as every writer locks them
                moved = ledger_db.move(tx, side=side, column="posted", account_id=account_id,
                                       amount=sum(row["amount"] for row in group), currency=group[0]["currency"],
                                       max_total=MAX_TOTAL, postings=len(group))
                if moved is None:
                    raise _Unusual
                sign = -1 if side == "debit" else 1
                seq, balance = moved["postings_count"] - len(group), moved["balance"] - sign * sum(
                    row["amount"] for row in group)
                for row in group:
                    seq, balance = seq + 1, balance + sign * row["amount"]
                    postings.append({"account_id": account_id, "seq": seq, "transfer_id": row["id"], "side": side,
                                     "amount": row["amount"], "balance_after": balance, "created_at": row["created_at"]})
            ledger_db.insert_postings(tx, postings)
    except (_Unusual, IntegrityError):
        return None
    return [_made(row) for row in rows]


# -- two-phase ---------------------------------------------------------------

def post_pending(tx, *, transfer_id: str, pending_id: str, amount: int | None = None, now: datetime) -> dict:
    """Post a pending transfer, in full or in part (`amount` up to its amount; the rest is released)."""
    return _resolve(tx, "post_pending", transfer_id, pending_id, amount, now)


def void_pending(tx, *, transfer_id: str, pending_id: str, now: datetime) -> dict:
    """Release a pending transfer's whole amount."""
    return _resolve(tx, "void_pending", transfer_id, pending_id, None, now)


def expire_pending(tx, *, now: datetime, limit: int = 1000, account_id: str | None = None) -> list[str]:
    """Expire pending transfers whose timeout has passed (only those on `account_id`
    when given); returns the ids of those it expired.

    The expiring transfer's id is "<pending_id>#expire" ('#' is not allowed
    in caller ids, so it cannot collide). A hold that another writer captured
    or voided since it was found is left to that writer.
    """
    if account_id is not None:
        due = lapsed_holds(tx, account_id, now, limit=limit)
    else:
        due = ledger_db.lapsed_holds(tx, at=timestamp(now), limit=limit)
    expired = []
    for pending_id in due:
        try:
            _resolve(tx, "expire_pending", pending_id + "#expire", pending_id, None, now, internal=True)
        except PendingAlreadyResolved:
            continue
        expired.append(pending_id)
    return expired


def lapsed_holds(tx, account_id: str, now: datetime, *, limit: int = 1000) -> list[str]:
    """Ids of the account's pending transfers (either side) whose time is up and that
    nothing resolved yet, oldest first: what expire_pending(account_id=...) would expire.

    An account that holds nothing pending is answered from its own row, so asking
    costs one primary-key read on the usual path.
    """
    held = ledger_db.account(tx, account_id)
    if held is None or not (held["debits_pending"] or held["credits_pending"]):
        return []
    return ledger_db.lapsed_holds_of(tx, account_id=account_id, at=timestamp(now), limit=limit)


def _resolve(tx, kind: str, transfer_id: str, pending_id: str, amount: int | None, now: datetime,
             *, internal: bool = False) -> dict:
    at = timestamp(now)
    if not internal:
        _check_id(transfer_id, "transfer_id")
    _check_id(pending_id, "pending_id")
    if amount is not None:
        check_amount(amount)
    try:
        return _resolve_once(tx, kind, transfer_id, pending_id, amount, at)
    except IntegrityError:
        # Another writer resolved the hold, or stored this transfer id, since it was read:
        # look again, and answer as if that writer had come first.
        return _resolve_once(tx, kind, transfer_id, pending_id, amount, at)


def _resolve_once(tx, kind: str, transfer_id: str, pending_id: str, amount: int | None, at: str) -> dict:
    """Check and make one resolution. The resolving transfer is stored first, so of two writers
    resolving one hold the second waits on `pending_id` UNIQUE and gets IntegrityError."""
    existing = ledger_db.transfer(tx, transfer_id)
    if existing is not None:
        same = (existing["kind"], existing["pending_id"]) == (kind, pending_id)
        if not same or amount not in (None, existing["amount"]):
            of = f" of {existing['pending_id']}" if existing["pending_id"] else ""
            raise TransferExists(
                f"transfer {transfer_id} already exists: {existing['kind']}{of} for {existing['amount']}",
                "transfer_id",
            )
        return get_transfer(tx, transfer_id)
    held = ledger_db.transfer(tx, pending_id)
    if held is None or held["kind"] != "pending":
        raise PendingNotFound(f"no pending transfer {_show(pending_id)}", "pending_id")
    resolution = ledger_db.resolution(tx, pending_id)
    if resolution is not None:
        raise PendingAlreadyResolved(
            f"pending transfer {pending_id} was already {_RESOLUTION_STATUS[resolution['kind']]}"
            f" by {resolution['id']}",
            "pending_id",
        )
    if kind == "post_pending" and held["expires_at"] is not None and at >= held["expires_at"]:
        raise PendingExpired(f"pending transfer {pending_id} expired at {held['expires_at']}", "pending_id")
    held_amount = held["amount"]
    if amount is not None and amount > held_amount:
        raise InvalidAmount(f"amount {amount} is more than the {held_amount} held by {pending_id}", "amount")
    posted = (amount if amount is not None else held_amount) if kind == "post_pending" else 0
    with tx.savepoint():
        ledger_db.insert_transfer(
            tx, id=transfer_id, debit_account_id=held["debit_account_id"],
            credit_account_id=held["credit_account_id"], amount=posted or held_amount, currency=held["currency"],
            code=held["code"], kind=kind, pending_id=pending_id, timeout_seconds=None, expires_at=None,
            metadata=None, created_at=at)
        moved = _in_account_order(held["debit_account_id"], held["credit_account_id"], lambda side, account_id: (
            ledger_db.settle_hold(tx, side=side, account_id=account_id, held=held_amount, posted=posted)))
        if posted:
            _post(tx, transfer_id, moved, posted, at)
    return get_transfer(tx, transfer_id)


# -- statements --------------------------------------------------------------

def statement(tx, account_id: str, *, limit: int = 50, after: str | None = None) -> tuple[list[dict], str | None]:
    """Posted entries of an account, newest first, and the cursor of the next page (None at the end).

    Entries are numbered per account as they are written, so a page read
    with a cursor never shifts when new entries arrive.
    """
    if not _is_int(limit) or not 1 <= limit <= 500:
        raise LedgerError("invalid_limit", f"limit must be an integer in 1 .. 500, not {_show(limit)}", "limit")
    if after is not None and (not isinstance(after, str) or not after.isdigit() or len(after) > 18):
        raise LedgerError(
            "invalid_cursor", f"after must be a cursor returned by a previous page, not {_show(after)}", "after")
    account = get_account(tx, account_id)
    if account is None:
        raise AccountNotFound(f"no account {_show(account_id)}", "account_id")
    rows = ledger_db.postings_before(tx, account_id=account_id, limit=limit + 1,
                                     before_seq=int(after) if after is not None else _NO_CURSOR)
    entries = []
    for row in rows[:limit]:
        debit = row["side"] == "debit"
        entries.append({
            "seq": row["seq"], "transfer_id": row["transfer_id"], "code": row["code"], "side": row["side"],
            "amount": row["amount"], "change": -row["amount"] if debit else row["amount"],
            "balance_after": row["balance_after"], "currency": account["currency"],
            "counterparty_account_id": row["credit_account_id"] if debit else row["debit_account_id"],
            "created_at": row["created_at"],
        })
    next_cursor = str(entries[-1]["seq"]) if len(rows) > limit else None
    return entries, next_cursor


# -- proof -------------------------------------------------------------------

def check(tx) -> CheckReport:
    """Prove the books: every invariant of the module docstring, recomputed from postings and transfers."""
    accounts = ledger_db.all_accounts(tx)
    problems = _check_accounts(tx, accounts)
    totals = _currency_totals(accounts)
    for currency, t in totals.items():
        if t.net != 0:
            problems.append(Problem("books_unbalanced", f"{currency} balances sum to {t.net}, not zero", currency))
        if t.debits_pending != t.credits_pending:
            problems.append(Problem(
                "pending_unbalanced",
                f"{currency} pending debits {t.debits_pending} differ from pending credits {t.credits_pending}",
                currency))
    problems += _check_transfers(tx)
    counts = ledger_db.counts(tx)
    return CheckReport(not problems, totals, problems, len(accounts),
                       counts["transfers"], counts["postings"], counts["open_pending"])


def _check_accounts(tx, accounts: list[dict]) -> list[Problem]:
    """Each account's stored totals against its postings and open holds, and its sign rule."""
    sums = ledger_db.posting_sums(tx)
    held_debits, held_credits = ledger_db.open_holds(tx)
    last_balance = ledger_db.last_balances(tx)
    problems = []
    for a in accounts:
        aid, posted = a["id"], a["credits_posted"] - a["debits_posted"]
        s = sums.get(aid, {"debits": 0, "credits": 0, "n": 0, "last": 0})
        if (a["debits_posted"], a["credits_posted"]) != (s["debits"], s["credits"]):
            problems.append(Problem(
                "balance_mismatch",
                f"account {aid} stores debits {a['debits_posted']} / credits {a['credits_posted']},"
                f" its postings sum to {s['debits']} / {s['credits']}", aid))
        if not a["postings_count"] == s["n"] == (s["last"] or 0):
            problems.append(Problem(
                "postings_gap",
                f"account {aid} counts {a['postings_count']} postings, has {s['n']}, numbered up to {s['last']}",
                aid))
        if s["n"] and last_balance.get(aid) != posted:
            problems.append(Problem(
                "running_balance_mismatch",
                f"account {aid} balance {posted}, its last posting says {last_balance.get(aid)}", aid))
        held = (held_debits.get(aid, 0), held_credits.get(aid, 0))
        if (a["debits_pending"], a["credits_pending"]) != held:
            problems.append(Problem(
                "pending_mismatch",
                f"account {aid} stores pending debits {a['debits_pending']} / credits {a['credits_pending']},"
                f" its open pending transfers hold {held[0]} / {held[1]}", aid))
        if not a["allow_negative"] and posted - a["debits_pending"] < 0:
            problems.append(Problem(
                "negative_balance",
                f"{a['kind']} account {aid} is at {posted} with {a['debits_pending']} pending debits", aid))
        if bool(a["allow_negative"]) != ACCOUNT_KINDS.get(a["kind"]):
            problems.append(Problem(
                "wrong_sign_rule", f"account {aid} of kind {a['kind']} has allow_negative {a['allow_negative']}", aid))
    return problems


def _currency_totals(accounts: list[dict]) -> dict[str, CurrencyTotals]:
    columns = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
    by_currency: dict[str, list[dict]] = {}
    for a in accounts:
        by_currency.setdefault(a["currency"], []).append(a)
    return {
        currency: CurrencyTotals(len(group), *(sum(a[c] for a in group) for c in columns))
        for currency, group in sorted(by_currency.items())
    }


def _check_transfers(tx) -> list[Problem]:
    """Resolutions against their holds, postings against their transfers, currencies against accounts."""
    problems = []
    for r in ledger_db.resolved_twice(tx):
        problems.append(Problem(
            "resolved_twice", f"pending transfer {r['pending_id']} is resolved {r['n']} times", r["pending_id"]))
    for r in ledger_db.mismatched_resolutions(tx):
        problems.append(Problem(
            "bad_resolution",
            f"{r['kind']} {r['id']} of {r['amount']} does not match its pending transfer"
            f" ({r['held_kind']} of {r['held_amount']})", r["id"]))
    for r in ledger_db.transfer_postings(tx):
        moves_money = r["kind"] in ("posted", "post_pending")
        if (moves_money and (r["n"], r["d"], r["c"]) != (2, 1, 1)) or (not moves_money and r["n"]):
            problems.append(Problem(
                "bad_postings", f"{r['kind']} transfer {r['id']} has {r['n']} postings that do not match it", r["id"]))
    for r in ledger_db.cross_currency_transfers(tx):
        problems.append(Problem(
            "currency_mismatch", f"transfer {r['id']} in {r['currency']} touches an account of another currency",
            r["id"]))
    return problems


def report_lines(report: CheckReport, source: str = "the ledger", *, max_problems: int = 50) -> list[str]:
    """A CheckReport as a short readable report (what `tapstack gateway check` prints)."""
    lines = [
        f"ledger check of {source}",
        f"  {report.accounts} accounts, {report.transfers} transfers, {report.postings} postings,"
        f" {report.open_pending} open pending",
    ]
    for currency, t in report.totals.items():
        money = lambda v: iso4217.decimal_text(v, currency)  # noqa: E731
        lines.append(
            f"  {currency}: {t.accounts} accounts, debits {money(t.debits_posted)}, credits {money(t.credits_posted)},"
            f" sum of balances {money(t.net)}, held {money(t.debits_pending)}"
        )
    if report.ok:
        lines.append("ok: the books balance and every balance matches its postings")
        return lines
    lines.append(f"FAILED: {len(report.problems)} problem{'s' if len(report.problems) != 1 else ''}")
    lines += [f"  {p.code}: {p.message}" for p in report.problems[:max_problems]]
    if len(report.problems) > max_problems:
        lines.append(f"  ... and {len(report.problems) - max_problems} more")
    return lines
