"""Tap ingestion: a validator's batch of journalled taps, each row judged on its own.

`check_row` (pure) validates one row and says what is suspicious about it; `ingest`
stores the good rows once per (terminal, tap id), verifies the purse receipts of new
taps and sends them to clearing (gateway.core.clearing, which settles the upload
in one ledger call) and answers per row:

    {"id": ..., "status": "accepted" | "duplicate" | "rejected", "reason": ...,
     "flags": [...], "clearing": "posted" | "held" | <refusal> | "unpriced" | null}

A rejected row is garbage (wrong types, missing fields, a purse tap without its
receipt) and is not stored: sending it again gets the same answer. Flags mark a row
that is stored but suspect: `clock_suspect` (the validator's clock is in the future or
far in the past), `unknown_route` (not in the fare rules the gateway knows).

A row's `direction` is "on" (the default: a row without one is a tap-on) or "off", from a
validator at a bus's exit door. A purse tap-off moves no money (the purse paid at tap-on)
and carries no receipt: it is stored, and clearing skips it.

Token taps (EMV, UID) are stored with clearing "unpriced": `token_taps` hands them to
gateway.core.trips, which pairs tap-ons with tap-offs into trips for account-based pricing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from gateway.core import clearing, iso, unix
from gateway.store import taps as taps_db
from protocol import purse, tokens, uplink
from protocol.uplink import records

MAX_BATCH = uplink.MAX_BATCH
FUTURE_SKEW = 300  # seconds a validator's clock may run ahead of the gateway's
MAX_AGE = 90 * 24 * 3600  # a tap older than this says the validator's clock is wrong
EPOCH_FLOOR = 1_577_836_800  # 2020-01-01: an earlier time is a clock that was never set
# The tap row's fields and their forms are the contract's (protocol.uplink.records); check_row
# reads them in its own order, in one pass, for speed.
KINDS, DIRECTIONS, FIELDS = records.KINDS, records.DIRECTIONS, records.TAP_FIELDS
_ID, _WORD, _HEX16, _CURRENCY, _RECEIPT = records.ID, records.WORD, records.CARD_ID, records.CURRENCY, records.RECEIPT
RowError = records.RecordError  # why a row is rejected (a short code and words)
_int, _text = records.integer, records.text


@dataclass(frozen=True)
class TapRow:
    id: str
    at: int
    kind: str
    accepted: bool
    reason: str
    route: str | None
    stop: str | None
    rules_version: int | None
    amount: int | None
    currency: str | None
    card_id: str | None
    token: str | None
    receipt: str | None
    flags: tuple[str, ...] = ()
    direction: str = "on"

    @property
    def clears(self) -> bool:
        """A paid purse tap: its receipt goes to clearing (a tap-off paid nothing)."""
        return self.kind == "purse" and self.accepted and self.direction == "on"


def check_row(row, *, now: int, routes: frozenset[str] | None = None) -> TapRow:
    """One upload row as a TapRow with its flags; RowError saying why it is garbage."""
    if not isinstance(row, dict):
        raise RowError("not_an_object", "a tap is a JSON object")
    unknown = sorted(set(row) - FIELDS)
    if unknown:
        raise RowError("unknown_field", f"unknown field {unknown[0][:40]!r}")
    for name in ("id", "at", "kind", "accepted", "reason"):
        if row.get(name) is None:
            raise RowError("missing_field", f"{name} is required")
    tap_id = _text(row["id"], "id", _ID, optional=False)
    at = _int(row["at"], "at", 0, 2**32 - 1, optional=False)
    kind = row["kind"]
    if kind not in KINDS:
        raise RowError("invalid_field", f"kind must be one of {', '.join(KINDS)}")
    if not isinstance(row["accepted"], bool):
        raise RowError("invalid_field", "accepted must be true or false")
    accepted = row["accepted"]
    direction = row.get("direction") or "on"
    if direction not in DIRECTIONS:
        raise RowError("invalid_field", "direction must be on or off")
    reason = _text(row["reason"], "reason", _WORD, optional=False)
    route = _text(row.get("route"), "route", _WORD)
    stop = _text(row.get("stop"), "stop", _WORD)
    rules_version = _int(row.get("rules_version"), "rules_version", 0, 2**53)
    amount = _int(row.get("amount"), "amount", 1, purse.MAX_AMOUNT)
    _int(row.get("balance_after"), "balance_after", 0, purse.MAX_BALANCE)
    currency = _text(row.get("currency"), "currency", _CURRENCY)
    card_id = _text(row.get("card_id"), "card_id", _HEX16)
    token = row.get("token")
    if token is not None and tokens.token_kind(token) is None:
        raise RowError("invalid_field", "token is not a keyed-hash token (pan_... or uid_...)")
    receipt = row.get("receipt")
    if receipt is not None and not (isinstance(receipt, str) and _RECEIPT.fullmatch(receipt)):
        raise RowError("invalid_field", f"receipt must be {purse.RECEIPT_SIZE} bytes in lower-case hex")
    if accepted and kind == "purse" and direction == "on" and None in (card_id, receipt, amount, currency):
        raise RowError("missing_field", "an accepted purse tap carries card_id, amount, currency and receipt")
    if accepted and kind == "purse" and direction == "off" and card_id is None:
        raise RowError("missing_field", "an accepted purse tap-off carries its card_id")
    if accepted and kind in ("emv", "uid") and token is None:
        raise RowError("missing_field", "an accepted token tap carries its token")
    if accepted and kind in ("unknown", "error"):
        raise RowError("invalid_field", f"a tap of kind {kind} cannot be accepted")
    flags = []
    if at > now + FUTURE_SKEW or at < max(EPOCH_FLOOR, now - MAX_AGE):
        flags.append("clock_suspect")
    if routes is not None and route is not None and route not in routes:
        flags.append("unknown_route")
    return TapRow(tap_id, at, kind, accepted, reason, route, stop, rules_version, amount, currency, card_id,
                  token, receipt, tuple(flags), direction)


def row_answer(tap_id, status: str, reason: str | None = None, flags=(), clearing_status=None) -> dict:
    """One row's answer in an upload (taps here, sales in services/sales.py)."""
    return {"id": tap_id, "status": status, "reason": reason, "flags": list(flags), "clearing": clearing_status}


def _first_clearing(t: TapRow, verification: tuple | None) -> str | None:
    """The clearing state a row is stored with: a refusal, held (clearing decides next), unpriced."""
    if verification is not None:
        return verification[1] or "held"
    if t.accepted and t.kind in ("emv", "uid"):
        return "unpriced"
    return None


def _stored(tx, terminal_id: str, tap_ids) -> dict[str, dict]:
    """The taps of this terminal already stored, by tap id (what makes a re-upload a duplicate)."""
    return taps_db.stored_taps(tx, terminal_id=terminal_id, tap_ids=sorted(set(tap_ids)))


def _duplicate(tap_id: str, stored: dict) -> dict:
    return row_answer(tap_id, "duplicate", flags=[f for f in stored["flags"].split(",") if f],
                   clearing_status=stored["clearing"])


def sort_upload(rows: list, parse, refused: type[Exception], stored_of, flags_of) -> tuple[list, list, dict]:
    """An upload's rows, in order, as taps and sales both judge them: a row `parse` refuses
    (with `refused`, which has a .code) is answered rejected; a record `stored_of(ids)` already
    holds, the duplicate it is; a repeat inside the batch, a duplicate (with `flags_of(record)`);
    the rest is new. Returns the answers (None where a new record goes), the new [(index,
    record)] and the index of each new id's first row."""
    checked = []
    for row in rows:
        try:
            checked.append(parse(row))
        except refused as e:
            raw_id = row.get("id") if isinstance(row, dict) and isinstance(row.get("id"), str) else None
            checked.append(row_answer(raw_id[:80] if raw_id else None, "rejected", f"{e.code}: {e}"))
    stored = stored_of({r.id for r in checked if not isinstance(r, dict)})
    results: list[dict | None] = []
    new: list[tuple[int, object]] = []
    first: dict[str, int] = {}
    for index, r in enumerate(checked):
        if isinstance(r, dict):
            results.append(r)
        elif r.id in stored:
            results.append(_duplicate(r.id, stored[r.id]))
        elif r.id in first:
            results.append(row_answer(r.id, "duplicate", flags=flags_of(r)))
        else:
            first[r.id] = index
            results.append(None)
            new.append((index, r))
    return results, new, first


def answer_upload(name: str, received: int, results: list, new: list, first: dict, taken: dict,
                  accepted) -> dict:
    """The upload's answer: each new record `accepted(record)`, unless another upload stored it
    meanwhile (in `taken`: the duplicate it is); a repeat inside the batch reports where its
    first row ended; then the counts."""
    for index, r in new:
        results[index] = _duplicate(r.id, taken[r.id]) if r.id in taken else accepted(r)
    for r in results:
        if r["status"] == "duplicate" and r["id"] in first and r["clearing"] is None:
            r["clearing"] = results[first[r["id"]]]["clearing"]
    return batch(name, received, results)


def batch(name: str, received: int, results: list[dict]) -> dict:
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("accepted", "duplicate", "rejected")}
    return {"object": name, "received": received, **counts, "results": results}


@dataclass(frozen=True)
class Verified:
    """Receipts checked before the upload's write transaction, and the issuer keys they were
    checked against: (receipt hex, card id, amount, currency, certificate hex) -> the
    check_receipt answer, a pure function of those and the keys."""
    issuer_keys: dict[bytes, bytes]
    results: dict[tuple, tuple]


def _receipt_key(t: TapRow, certificate_hex: str | None) -> tuple:
    return t.receipt, t.card_id, t.amount, t.currency, certificate_hex


def verify_ahead(tx, *, terminal_id: str, rows, now: datetime) -> Verified | None:
    """Check the purse receipts of a batch's new taps in a read transaction, before the
    upload's write: the Ed25519 work of two uploads then runs in two workers at once.
    `ingest` uses an answer only if the issuer keys and the card's certificate it reads
    in the write are the ones checked here. None when there is nothing to check."""
    if not isinstance(rows, list) or len(rows) > MAX_BATCH:
        return None
    # Not check_row: ingest judges every row in the write. An answer here is keyed by
    # the very values check_receipt read, so a row ingest refuses is never looked up, and
    # one it accepts finds the answer those values give.
    purse = [TapRow(row["id"], 0, "purse", True, "", None, None, None, row["amount"], row["currency"],
                    row["card_id"], None, row["receipt"])
             for row in rows if isinstance(row, dict) and row.get("kind") == "purse" and row.get("accepted") is True
             and (row.get("direction") or "on") == "on"
             and all(isinstance(row.get(f), str) for f in ("id", "card_id", "currency", "receipt"))
             and type(row.get("amount")) is int]
    if not purse:
        return None
    stored = _stored(tx, terminal_id, {t.id for t in purse})
    purse = [t for t in purse if t.id not in stored]
    keys = clearing.trusted_keys(tx)
    certificates = clearing.issuer_certificates(tx, [t.card_id for t in purse])
    cache = clearing.VERIFIED.using(keys)
    return Verified(keys, {_receipt_key(t, certificates.get(t.card_id)): clearing.check_receipt(
        t.receipt, card_id=t.card_id, amount=t.amount, currency=t.currency,
        certificate_hex=certificates.get(t.card_id), cache=cache) for t in purse})


def ingest(tx, *, terminal_id: str, merchant_id: str, rows: list, now: datetime,
           routes: frozenset[str] | None = None, ahead: Verified | None = None) -> dict:
    """Store and clear a batch in the open transaction; the per-row answer. `ahead`: receipts
    verify_ahead checked before the transaction (re-checked here if stale).

    Another node may be storing the same upload at this moment. Its purse cards are held
    by whichever clears them first (clearing.hold_cards): the other then finds their
    receipts replayed. Each tap is inserted once (ON CONFLICT DO NOTHING): a tap the other
    stored first is answered as the duplicate it is, with the other's flags and clearing."""
    at_now = unix(now)
    results, new, first = sort_upload(rows, lambda row: check_row(row, now=at_now, routes=routes), RowError,
                                      lambda ids: _stored(tx, terminal_id, ids), lambda t: t.flags)

    # Receipts are verified only for taps not seen before: a re-upload costs no signature checks.
    purse = [t for _, t in new if t.clears]
    verified: dict[str, tuple] = {}
    if purse:
        keys = clearing.trusted_keys(tx)
        known = ahead.results if ahead is not None and ahead.issuer_keys == keys else {}
        cache = clearing.VERIFIED.using(keys)
        certificates = clearing.issuer_certificates(tx, [t.card_id for t in purse])
        for t in purse:
            certificate = certificates.get(t.card_id)
            verified[t.id] = known.get(_receipt_key(t, certificate)) or clearing.check_receipt(
                t.receipt, card_id=t.card_id, amount=t.amount, currency=t.currency, certificate_hex=certificate,
                cache=cache)
    status: dict[str, str | None] = {t.id: _first_clearing(t, verified.get(t.id)) for _, t in new}
    submitted = [clearing.Submitted(verified[t.id][0], t.receipt, terminal_id, t.id, merchant_id)
                 for _, t in new if t.id in verified and verified[t.id][0] is not None]
    if submitted:
        # One settlement per upload: the cleared receipts move money in one linked ledger call.
        cleared = clearing.clear_upload(tx, submitted, now=now,
                                        settlement=clearing.settlement_id(terminal_id, [t.id for _, t in new]))
        status.update({tap_id: s for (_, tap_id), s in cleared.items()})
    inserted = taps_db.insert_taps(tx, [
        {"terminal_id": terminal_id, "tap_id": t.id, "merchant_id": merchant_id, "at": t.at, "kind": t.kind,
         "accepted": int(t.accepted), "reason": t.reason, "route": t.route, "stop": t.stop,
         "rules_version": t.rules_version, "amount": t.amount, "currency": t.currency, "card_id": t.card_id,
         "token": t.token, "flags": ",".join(t.flags), "clearing": status[t.id], "received_at": at_now,
         "direction": t.direction} for _, t in new])
    taken = _stored(tx, terminal_id, {t.id for _, t in new if t.id not in inserted})  # by another upload meanwhile
    return answer_upload("tap_batch", len(rows), results, new, first, taken,
                         lambda t: row_answer(t.id, "accepted", flags=t.flags, clearing_status=status[t.id]))


def token_taps(tx, *, since: int, until: int) -> list:
    """Accepted token taps in [since, until) as gateway.core.trips.Tap values, for trip pricing:
    tap-ons, and tap-offs from exit validators (rows stored before 0011 are tap-ons)."""
    from gateway.core.trips import Tap

    rows = taps_db.unpriced_token_taps(tx, since=since, until=until)
    return [Tap(f"{r['terminal_id']}/{r['tap_id']}", r["token"], datetime.fromtimestamp(r["at"], timezone.utc),
                r["direction"] or "on", r["route"], r["stop"], r["rules_version"]) for r in rows]


def ridership(tx, *, since: int, until: int, route: str | None = None,
              merchant_id: str | None = None) -> dict:
    """Per route and per hour (UTC): taps, accepted taps, and purse revenue cleared."""
    rows = taps_db.ridership(tx, since=since, until=until, route=route, merchant_id=merchant_id)
    return {"object": "ridership", "from": iso(since), "to": iso(until),
            "data": [{"route": r["route"], "hour": iso(r["hour"]), "taps": r["taps"], "accepted": r["accepted"],
                      "token_taps": r["token_taps"], "purse_revenue": r["purse_revenue"],
                      "currency": r["currency"]} for r in rows]}
