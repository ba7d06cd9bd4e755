"""Account-based bus fares: taps become trips, trips become charges under transfers and caps.

`build_trips` pairs each rider's tap-ons and tap-offs in time order. `price_trips`
prices one rider's trips with `protocol.fares`, then applies the transfer discount and
the daily and weekly caps of the rider's concession class, in time order, and says
why each charge is what it is, line by line, for the rider's statement.

Pure: plain values in and out. Times are aware datetimes passed in; local days and
weeks are the operator's (the rules' time zone). Imports only the standard library
and `protocol` (the fare engine is `protocol.fares`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Sequence

from protocol.currency import money
from protocol.fares import FareError, FareRules, Line, price_boarding, rules_for

TAP_KINDS = ("on", "off")
REPEAT_WINDOW = timedelta(minutes=2)  # same tap, same stop, within this: one tap
MAX_TRIP = timedelta(hours=3)  # a tap-off later than this after the tap-on does not end that trip
TRIP_STATUSES = ("complete", "missing_tap_off", "open", "orphan_tap_off")


@dataclass(frozen=True)
class Tap:
    """One tap at a validator: a rider token (never a card number), an aware time, on or off,
    where, and the fare rules version the validator priced it with (None if it did not)."""
    id: str
    token: str
    at: datetime
    kind: str
    route: str
    stop: str
    rules_version: int | None = None

    def __post_init__(self):
        for name in ("id", "token", "route", "stop"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > 128:
                raise ValueError(f"tap {name} must be a non-empty string of at most 128 characters")
        if not isinstance(self.at, datetime) or self.at.utcoffset() is None:
            raise ValueError("tap time must be a timezone-aware datetime")
        if self.kind not in TAP_KINDS:
            raise ValueError("tap kind must be 'on' or 'off'")
        v = self.rules_version
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError("tap rules_version must be a positive integer or None")


@dataclass(frozen=True)
class Trip:
    """A rider's boarding. complete: tap-on and tap-off. missing_tap_off: a tap-on that the
    next tap did not end. open: the rider's last tap-on, still in progress. orphan_tap_off:
    a tap-off with no tap-on, never charged. `repeats` are taps merged into this trip's
    taps as the same tap repeated."""
    token: str
    status: str
    on: Tap | None
    off: Tap | None = None
    repeats: tuple[Tap, ...] = ()

    @property
    def at(self) -> datetime:
        return (self.on or self.off).at

    @property
    def id(self) -> str:
        """The id of the trip's first tap: stable as later taps arrive."""
        return (self.on or self.off).id


@dataclass(frozen=True)
class Charge:
    """What one trip costs the rider: `amount` is the sum of `lines`, each saying why.
    `transfer_number` is n when the boarding was the n-th transfer in a row (0 otherwise);
    `flag` marks trips charged nothing for a reason to review: open, orphan_tap_off,
    unpriced (the rules do not know the route or stop)."""
    trip: Trip
    amount: int
    currency: str
    rules_version: int | None
    local_day: date | None
    lines: tuple[Line, ...]
    transfer_number: int = 0
    flag: str | None = None

    def statement(self) -> str:
        """The charge in plain words, one clause per line of the breakdown."""
        parts = [f"{line.text} ({money(line.amount, self.currency)})" if line.amount else line.text
                 for line in self.lines]
        return "; ".join(parts) + f". Charged {money(self.amount, self.currency)}."


def tap_from_dict(data: dict, path: str = "tap") -> Tap:
    """A Tap from its JSON form {"id", "token", "at" (ISO 8601 with offset), "kind",
    "route", "stop", "rules_version" (optional)}; ValueError naming the field otherwise."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be an object")
    fields = ("id", "token", "at", "kind", "route", "stop", "rules_version")
    for key in data:
        if key not in fields:
            raise ValueError(f"{path}.{key}: unknown field")
    for key in fields[:-1]:
        if key not in data:
            raise ValueError(f"{path}.{key}: is required")
    at = data["at"]
    try:
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ValueError(f"{path}.at: must be an ISO 8601 time with a UTC offset") from None
    if at.utcoffset() is None:
        raise ValueError(f"{path}.at: must carry a UTC offset (Z or +08:00)")
    try:
        return Tap(data["id"], data["token"], at, data["kind"], data["route"], data["stop"],
                   data.get("rules_version"))
    except ValueError as e:  # Tap's own message names the field ("tap kind must be ...")
        raise ValueError(f"{path}: {e}") from None


def tap_to_dict(tap: Tap) -> dict:
    """The JSON form of a tap (time in UTC); tap_from_dict(tap_to_dict(t)) == t up to the time's zone."""
    return {"id": tap.id, "token": tap.token, "at": _utc(tap.at), "kind": tap.kind, "route": tap.route,
            "stop": tap.stop, "rules_version": tap.rules_version}


def charge_to_dict(charge: Charge) -> dict:
    """The JSON form of a charge for a rider's statement or an API answer."""
    trip = charge.trip
    return {"trip": {"id": trip.id, "token": trip.token, "status": trip.status,
                     "on": None if trip.on is None else tap_to_dict(trip.on),
                     "off": None if trip.off is None else tap_to_dict(trip.off),
                     "repeats": [t.id for t in trip.repeats]},
            "amount": charge.amount, "currency": charge.currency, "rules_version": charge.rules_version,
            "local_day": None if charge.local_day is None else charge.local_day.isoformat(),
            "transfer_number": charge.transfer_number, "flag": charge.flag,
            "lines": [{"kind": line.kind, "amount": line.amount, "text": line.text} for line in charge.lines],
            "statement": charge.statement()}


def _utc(at: datetime) -> str:
    text = at.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


def _order(tap: Tap) -> tuple:
    return (tap.at, tap.id)


def build_trips(taps: Iterable[Tap], *, now: datetime | None = None,
                repeat_window: timedelta = REPEAT_WINDOW, max_trip: timedelta = MAX_TRIP) -> list[Trip]:
    """Pair taps into trips, per rider token, in time order (ties by tap id), whatever
    order the taps arrive in. The result is sorted by (time of the first tap, trip id).

    - A tap-off ends the rider's pending tap-on if it is on the same route within
      `max_trip`; otherwise the tap-on is a missing tap-off and the tap-off an orphan.
    - A tap-on while a tap-on is pending closes the pending one as missing_tap_off.
    - A tap of the same kind at the same route and stop within `repeat_window` of the
      rider's previous counted tap is that tap repeated: kept in the trip's `repeats`, not counted.
    - The same tap delivered twice (equal in every field) counts once.
    - The rider's last tap-on without a tap-off is open, or missing_tap_off once `now`
      is given and `max_trip` has passed since it.
    Raises ValueError if two different taps share an id.
    """
    unique: dict[str, Tap] = {}
    for tap in taps:
        seen = unique.setdefault(tap.id, tap)
        if seen != tap:
            raise ValueError(f"two different taps share the id {tap.id!r}")
    by_token: dict[str, list[Tap]] = {}
    for tap in unique.values():
        by_token.setdefault(tap.token, []).append(tap)
    trips: list[Trip] = []
    for token in by_token:
        trips.extend(_rider_trips(token, sorted(by_token[token], key=_order), now, repeat_window, max_trip))
    trips.sort(key=lambda trip: (trip.at, trip.id))
    return trips


def _rider_trips(token, taps, now, repeat_window, max_trip) -> list[Trip]:
    rows: list[list] = []  # [status, on, off, repeats]
    pending = None  # the row of a tap-on waiting for its tap-off
    last, last_row = None, None
    for tap in taps:
        if (last is not None and tap.kind == last.kind and tap.route == last.route
                and tap.stop == last.stop and tap.at - last.at <= repeat_window):
            last_row[3].append(tap)
            continue
        if tap.kind == "on":
            if pending is not None:
                pending[0] = "missing_tap_off"
            pending = ["open", tap, None, []]
            rows.append(pending)
            row = pending
        elif pending is not None and pending[1].route == tap.route and tap.at - pending[1].at <= max_trip:
            pending[0], pending[2] = "complete", tap
            row, pending = pending, None
        else:
            if pending is not None:
                pending[0], pending = "missing_tap_off", None
            row = ["orphan_tap_off", None, tap, []]
            rows.append(row)
        last, last_row = tap, row
    if pending is not None and now is not None and now - pending[1].at >= max_trip:
        pending[0] = "missing_tap_off"
    return [Trip(token, status, on, off, tuple(repeats)) for status, on, off, repeats in rows]


def price_trips(rules: FareRules | Sequence[FareRules], trips: Iterable[Trip], concession: str,
                already_charged_today: int = 0, already_charged_this_week: int = 0) -> list[Charge]:
    """Charge one rider's trips, in time order: each trip's fare (`price_boarding` with the
    rules version its tap-on names if `rules` holds it, else the version in effect then),
    less the transfer discount, then cut so that no local day goes above the class's day
    cap and no week (from Monday) above its week cap.

    `already_charged_today` and `already_charged_this_week` are what the rider already
    paid, outside these trips, in the local day and week of the first trip.
    Open trips on tap-off routes and orphan tap-offs are charged 0 with a flag; so are
    trips whose route or stop the rules do not know. Raises FareError if the concession
    class is unknown or no rules are in effect for a trip; ValueError for trips of
    several riders or negative amounts already charged.
    """
    versions = (rules,) if isinstance(rules, FareRules) else tuple(rules)
    if len({v.currency for v in versions}) != 1:
        raise ValueError("price_trips needs fare rules versions, all in one currency")
    for value in (already_charged_today, already_charged_this_week):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("amounts already charged must be non-negative integers (minor units)")
    ordered = sorted(trips, key=lambda trip: (trip.at, trip.id))
    if len({trip.token for trip in ordered}) > 1:
        raise ValueError("price_trips prices one rider's trips at a time")
    day_totals: dict[date, int] = {}
    week_totals: dict[date, int] = {}
    if ordered:
        first = ordered[0].on or ordered[0].off
        r = rules_for(versions, first.rules_version, first.at)
        day_totals[r.local_day(first.at)] = already_charged_today
        week_totals[r.week_start(first.at)] = already_charged_this_week
    charges = []
    previous = None  # the previous boarding's tap-on
    chain = 0  # transfers in a row so far
    for trip in ordered:
        tap = trip.on or trip.off
        r = rules_for(versions, tap.rules_version, tap.at)
        klass = r.concession(concession)
        day = r.local_day(tap.at)
        if trip.on is None:
            charges.append(Charge(trip, 0, r.currency, r.version, day, (Line(
                "not_charged", 0, f"Tap-off at stop {tap.stop} on route {tap.route} with no tap-on: "
                                  f"not charged"),), flag="orphan_tap_off"))
            continue
        try:
            route = r.route(trip.on.route)
            product = r.products[route.product]
            if trip.status == "open" and product.needs_tap_off:
                charges.append(Charge(trip, 0, r.currency, r.version, day, (Line(
                    "not_charged", 0, f"Trip on route {route.name} in progress: priced at tap-off"),),
                    flag="open"))
                previous, chain = trip.on, _next_chain(r, previous, trip.on, chain)
                continue
            fare = price_boarding(r, route.id, trip.on.stop, trip.off.stop if trip.off else None, concession)
        except FareError as e:
            charges.append(Charge(trip, 0, r.currency, r.version, day, (Line(
                "not_charged", 0, f"Not priced, held for review: {e}"),), flag="unpriced"))
            previous, chain = trip.on, _next_chain(r, previous, trip.on, chain)
            continue
        lines, amount = list(fare.lines), fare.amount
        chain = _next_chain(r, previous, trip.on, chain)
        if chain and amount:
            t = r.transfer
            cut = t.discount.off(amount)
            if cut:
                local = previous.at.astimezone(r.local_time_zone).strftime("%H:%M")
                lines.append(Line("transfer", -cut, f"Transfer {chain} of at most {t.max_transfers}, "
                                                    f"within {t.window_minutes} minutes of boarding at {local}: "
                                                    f"{t.discount.describe(r.currency)}"))
                amount -= cut
        previous = trip.on
        week = r.week_start(tap.at)
        for cap, totals, key, kind, text in (
                (klass.caps.day, day_totals, day, "day_cap", f"Daily cap for {day.isoformat()}"),
                (klass.caps.week, week_totals, week, "week_cap", f"Weekly cap for the week from {week.isoformat()}")):
            if cap is not None and amount > cap - totals.get(key, 0):
                room = max(0, cap - totals.get(key, 0))
                lines.append(Line(kind, room - amount, f"{text} ({klass.name}, {money(cap, r.currency)}) reached"))
                amount = room
        day_totals[day] = day_totals.get(day, 0) + amount
        week_totals[week] = week_totals.get(week, 0) + amount
        charges.append(Charge(trip, amount, r.currency, r.version, day, tuple(lines), transfer_number=chain))
    return charges


def _next_chain(rules: FareRules, previous: Tap | None, on: Tap, chain: int) -> int:
    """How many transfers in a row boarding `on` makes: chain + 1 if it is a transfer, else 0."""
    t = rules.transfer
    if (t is None or previous is None or on.at - previous.at > t.window or chain >= t.max_transfers
            or (not t.same_route and previous.route == on.route)):
        return 0
    return chain + 1
