"""Fare rules of the bus pilot as plain values, and the price of one boarding.

A `FareRules` is one version of an operator's whole fare system: routes with ordered
stops (each with a zone and/or a distance in metres from the route's start), fare
products (flat, zone, distance), the transfer window, and concession classes with
their discounts and daily/weekly caps. `parse_rules` reads its JSON form strictly,
naming the field path of every error; `rules_to_dict` writes it back.

`price_boarding` is the fare of one boarding before transfers and caps: what a
validator shows and debits from a purse, and what `gateway.core.trips` starts from.

Pure: plain values in and out, times passed in as aware datetimes. Imports only the
standard library and `protocol`: the validator prices purse taps with it, the gateway
prices trips with it (gateway/core/trips.py), and neither imports the other.

Rounding: a percentage discount is rounded half up to the whole fen, so the rider
gets the half fen: 25% off 150 is 38 off (37.5 rounded up), 112 to pay.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol import currency as iso4217
from protocol.currency import money

MAX_AMOUNT = 10**9  # fen: far above any fare, far below any overflow
MAX_DISTANCE_M = 10**7  # 10,000 km
MAX_WINDOW_MINUTES = 24 * 60
_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_CLASS = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
PRODUCT_KINDS = ("flat", "zone", "distance")
DISCOUNT_KINDS = ("free", "amount", "percent")
MISSING_TAP_OFF_RULES = ("max_fare", "penalty")


class RulesError(ValueError):
    """Fare rules that do not validate; `errors` lists (field path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{path or 'fare rules'}: {message}" for path, message in errors))


class FareError(ValueError):
    """A boarding the rules cannot price (unknown route, stop or concession class)."""


# ------------------------------------------------------------------------ values

@dataclass(frozen=True)
class Discount:
    """Money off a fare: the whole fare ("free"), a fixed amount, or a whole percentage."""
    kind: str
    amount: int = 0  # fen, for "amount"
    percent: int = 0  # 0..100, for "percent"

    def off(self, fare: int) -> int:
        """The fen taken off `fare`: never more than the fare; percentages rounded half up."""
        if self.kind == "free":
            return fare
        if self.kind == "amount":
            return min(self.amount, fare)
        return min(fare, (fare * self.percent + 50) // 100)

    def describe(self, currency: str) -> str:
        if self.kind == "free":
            return "free"
        if self.kind == "amount":
            return f"{money(self.amount, currency)} off"
        return f"{self.percent}% off"


@dataclass(frozen=True)
class Stop:
    id: str
    name: str
    zone: int | None = None
    distance_m: int | None = None


@dataclass(frozen=True)
class Route:
    id: str
    name: str
    product: str
    stops: tuple[Stop, ...]

    def index(self, stop_id: str) -> int:
        """The stop's position on the route; FareError if it is not on it."""
        for i, stop in enumerate(self.stops):
            if stop.id == stop_id:
                return i
        raise FareError(f"stop {stop_id!r} is not on route {self.id!r}")


@dataclass(frozen=True)
class MissingTapOff:
    """What a zone or distance trip costs without a tap-off: the maximum fare from the
    tap-on stop to the end of the route, or a fixed penalty."""
    rule: str
    amount: int = 0  # fen, for "penalty"


@dataclass(frozen=True)
class Product:
    """A fare product. flat: `amount`. zone: `by_zones[n-1]` for a trip through n zones.
    distance: `base` for the first `base_m` metres, then `step` per started `step_m`,
    at most `max` (None: no maximum)."""
    id: str
    kind: str
    amount: int = 0
    by_zones: tuple[int, ...] = ()
    base: int = 0
    base_m: int = 0
    step: int = 0
    step_m: int = 1
    max: int | None = None
    missing_tap_off: MissingTapOff | None = None  # None only for flat

    @property
    def needs_tap_off(self) -> bool:
        return self.kind != "flat"


@dataclass(frozen=True)
class Transfer:
    """A boarding within `window_minutes` of the previous boarding's tap-on is a transfer
    and gets `discount`, for at most `max_transfers` in a row; `same_route` says whether
    boarding the same route again counts."""
    window_minutes: int
    max_transfers: int
    discount: Discount
    same_route: bool = False

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)


@dataclass(frozen=True)
class Caps:
    """The most a rider of a class pays per operator-local day and week (None: no cap)."""
    day: int | None = None
    week: int | None = None


@dataclass(frozen=True)
class Concession:
    name: str
    discount: Discount | None = None
    caps: Caps = Caps()


@dataclass(frozen=True)
class FareRules:
    """One version of the fare system. Versions are ordered by `version`; the one in
    effect at a time is the highest version whose `effective_from` is not after it."""
    version: int
    effective_from: datetime  # aware, UTC
    currency: str
    timezone: str  # zoneinfo name of the operator's local time, e.g. Asia/Shanghai
    products: dict[str, Product]
    routes: tuple[Route, ...]
    concessions: dict[str, Concession]
    transfer: Transfer | None = None
    _routes_by_id: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_routes_by_id", {r.id: r for r in self.routes})

    @property
    def local_time_zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def route(self, route_id: str) -> Route:
        try:
            return self._routes_by_id[route_id]
        except (KeyError, TypeError):
            raise FareError(f"route {route_id!r} is not in fare rules version {self.version}") from None

    def concession(self, name: str) -> Concession:
        try:
            return self.concessions[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self.concessions))
            raise FareError(f"concession class {name!r} is not in fare rules version {self.version} "
                            f"(known: {known})") from None

    def local_day(self, at: datetime) -> date:
        """The operator's local date of `at`: days start at local midnight."""
        return at.astimezone(self.local_time_zone).date()

    def week_start(self, at: datetime) -> date:
        """The local date of the Monday that starts `at`'s week."""
        day = self.local_day(at)
        return day - timedelta(days=day.weekday())


# ------------------------------------------------------------------------ pricing

@dataclass(frozen=True)
class Line:
    """One line of a fare or charge breakdown: a signed amount and why, in plain words."""
    kind: str  # fare | missing_tap_off | concession | transfer | day_cap | week_cap | not_charged
    amount: int
    text: str


@dataclass(frozen=True)
class Fare:
    """The fare of one boarding before transfers and caps: `amount` is the sum of `lines`."""
    amount: int
    currency: str
    rules_version: int
    route: str
    product: str
    missing_tap_off: bool
    lines: tuple[Line, ...]


def price_boarding(rules: FareRules, route: str, stop_on: str, stop_off: str | None,
                   concession: str) -> Fare:
    """The fare from `stop_on` to `stop_off` on `route` for a rider of `concession`.

    `stop_off` None on a zone or distance route prices a missing tap-off by the
    product's rule (what a validator debits at tap-on before the rider taps off).
    Raises FareError for a route, stop or class the rules do not know.
    """
    r = rules.route(route)
    product = rules.products[r.product]
    klass = rules.concession(concession)
    on = r.index(stop_on)
    off = None if stop_off is None else r.index(stop_off)
    lines = [_base_line(r, product, on, off)]
    amount = lines[0].amount
    if klass.discount is not None and amount:
        cut = klass.discount.off(amount)
        if cut:
            lines.append(Line("concession", -cut, f"{klass.name.capitalize()} concession: "
                                                  f"{klass.discount.describe(rules.currency)}"))
            amount -= cut
    return Fare(amount, rules.currency, rules.version, r.id, product.id,
                product.needs_tap_off and off is None, tuple(lines))


def _between(product: Product, a: Stop, b: Stop) -> tuple[int, str]:
    """The fare from stop a to stop b (either direction) and a few words on how."""
    if product.kind == "flat":
        return product.amount, "flat fare"
    if product.kind == "zone":
        zones = abs(b.zone - a.zone) + 1
        word = "zone" if zones == 1 else "zones"
        return product.by_zones[zones - 1], f"{zones} {word} (zone {a.zone} to {b.zone})"
    metres = abs(b.distance_m - a.distance_m)
    fare = product.base
    if metres > product.base_m:
        fare += -(-(metres - product.base_m) // product.step_m) * product.step
    if product.max is not None:
        fare = min(fare, product.max)
    return fare, f"{metres / 1000:.1f} km"


def _base_line(route: Route, product: Product, on: int, off: int | None) -> Line:
    a = route.stops[on]
    if product.kind == "flat":
        return Line("fare", product.amount, f"Flat fare, route {route.name}, boarding at {a.name}")
    if off is not None:
        b = route.stops[off]
        fare, how = _between(product, a, b)
        return Line("fare", fare, f"Fare, route {route.name}, {a.name} to {b.name}: {how}")
    rule = product.missing_tap_off
    if rule.rule == "penalty":
        return Line("missing_tap_off", rule.amount,
                    f"No tap-off after boarding route {route.name} at {a.name}: "
                    f"fixed fare for a missing tap-off")
    fare, end = max(((_between(product, a, b)[0], b) for b in route.stops[on:]), key=lambda x: x[0])
    return Line("missing_tap_off", fare,
                f"No tap-off after boarding route {route.name} at {a.name}: "
                f"the highest fare from there to the end of the route ({end.name})")


# ------------------------------------------------------------------------ versions

def rules_for(versions: FareRules | Sequence[FareRules], named: int | None, at: datetime) -> FareRules:
    """The rules to price a tap with: the version the tap names if it is among
    `versions`, otherwise the version in effect at the tap's time `at`.
    FareError if no version is in effect then."""
    if isinstance(versions, FareRules):
        versions = (versions,)
    if named is not None:
        for rules in versions:
            if rules.version == named:
                return rules
    in_effect = [r for r in versions if r.effective_from <= at]
    if not in_effect:
        raise FareError(f"no fare rules in effect at {at.isoformat()}")
    return max(in_effect, key=lambda r: r.version)


def diff_rules(old: FareRules, new: FareRules) -> list[str]:
    """What changed from `old` to `new`, one line per field path ("a: x -> y"), in the
    JSON form's terms; empty when they are the same fare system (version aside)."""
    changes: list[str] = []
    _diff("", rules_to_dict(old), rules_to_dict(new), changes)
    return changes


def _diff(path: str, a, b, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{key}" if path else key
            if key not in b:
                out.append(f"{sub}: removed")
            elif key not in a:
                out.append(f"{sub}: added {b[key]!r}")
            else:
                _diff(sub, a[key], b[key], out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(f"{path}[{i}]", x, y, out)
    elif a != b:
        out.append(f"{path}: {a!r} -> {b!r}")


# ------------------------------------------------------------------------ JSON form

def rules_to_dict(rules: FareRules) -> dict:
    """The JSON form of `rules`; parse_rules(rules_to_dict(r)) == r."""
    return {
        "version": rules.version,
        "effective_from": rules.effective_from.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "currency": rules.currency,
        "timezone": rules.timezone,
        "products": {pid: _product_to_dict(p) for pid, p in rules.products.items()},
        "routes": [{"id": r.id, "name": r.name, "product": r.product,
                    "stops": [_stop_to_dict(s) for s in r.stops]} for r in rules.routes],
        "transfer": None if rules.transfer is None else {
            "window_minutes": rules.transfer.window_minutes,
            "max_transfers": rules.transfer.max_transfers,
            "discount": _discount_to_dict(rules.transfer.discount),
            "same_route": rules.transfer.same_route},
        "concessions": {name: {"discount": _discount_to_dict(c.discount),
                               "caps": {"day": c.caps.day, "week": c.caps.week}}
                        for name, c in rules.concessions.items()},
    }


def _stop_to_dict(s: Stop) -> dict:
    out = {"id": s.id, "name": s.name}
    if s.zone is not None:
        out["zone"] = s.zone
    if s.distance_m is not None:
        out["distance_m"] = s.distance_m
    return out


def _discount_to_dict(d: Discount | None) -> dict | None:
    if d is None:
        return None
    if d.kind == "free":
        return {"kind": "free"}
    if d.kind == "amount":
        return {"kind": "amount", "amount": d.amount}
    return {"kind": "percent", "percent": d.percent}


def _product_to_dict(p: Product) -> dict:
    if p.kind == "flat":
        return {"kind": "flat", "amount": p.amount}
    rule = {"rule": p.missing_tap_off.rule}
    if p.missing_tap_off.rule == "penalty":
        rule["amount"] = p.missing_tap_off.amount
    if p.kind == "zone":
        return {"kind": "zone", "by_zones": list(p.by_zones), "missing_tap_off": rule}
    return {"kind": "distance", "base": p.base, "base_m": p.base_m, "step": p.step,
            "step_m": p.step_m, "max": p.max, "missing_tap_off": rule}


class _Check:
    """Collects (path, message) errors while reading a JSON document."""

    def __init__(self):
        self.errors: list[tuple[str, str]] = []

    def fail(self, path: str, message: str):
        self.errors.append((path, message))
        return None

    def obj(self, value, path: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict | None:
        if not isinstance(value, dict):
            return self.fail(path, "must be an object")
        before = len(self.errors)
        for key in value:
            if key not in required and key not in optional:
                self.fail(_join(path, key), "unknown field")
        for key in required:
            if key not in value:
                self.fail(_join(path, key), "is required")
        return value if len(self.errors) == before else None

    def int(self, value, path: str, low: int = 0, high: int = MAX_AMOUNT) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return self.fail(path, "must be an integer")
        if not low <= value <= high:
            return self.fail(path, f"must be between {low} and {high}")
        return value

    def str(self, value, path: str, pattern: re.Pattern | None = None, what: str = "") -> str | None:
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            return self.fail(path, "must be a non-empty string of at most 200 characters")
        if pattern is not None and not pattern.match(value):
            return self.fail(path, f"must be {what}")
        return value


def _join(path: str, key) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def parse_rules(data: dict) -> FareRules:
    """Read and validate the JSON form of one fare rules version.

    Raises RulesError listing every problem found, each with its field path, e.g.
    "routes[2].stops[5].zone: must be an integer".
    """
    c = _Check()
    top = c.obj(data, "", ("version", "effective_from", "currency", "timezone", "products", "routes",
                           "concessions"), ("transfer",))
    if top is None:
        raise RulesError(c.errors)
    version = c.int(data["version"], "version", 1, 2**31 - 1)
    effective_from = _parse_time(c, data["effective_from"], "effective_from")
    currency = data["currency"]
    if not iso4217.is_known(currency):
        c.fail("currency", "must be one of the ISO 4217 codes with a minor unit, such as CNY")
    tz = data["timezone"]
    if not _is_zone_name(tz):
        c.fail("timezone", "must be a time zone name such as Asia/Shanghai")
    products = _parse_products(c, data["products"])
    routes = _parse_routes(c, data["routes"], products)
    concessions = _parse_concessions(c, data["concessions"])
    transfer = None
    if data.get("transfer") is not None:
        transfer = _parse_transfer(c, data["transfer"], "transfer")
    if c.errors:
        raise RulesError(c.errors)
    return FareRules(version, effective_from, currency, tz, products, routes, concessions, transfer)


def _is_zone_name(name) -> bool:
    if not isinstance(name, str) or not name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _parse_time(c: _Check, value, path: str) -> datetime | None:
    if not isinstance(value, str):
        return c.fail(path, "must be an ISO 8601 time with a UTC offset, e.g. 2026-12-01T00:00:00+08:00")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return c.fail(path, "must be an ISO 8601 time with a UTC offset, e.g. 2026-12-01T00:00:00+08:00")
    if at.tzinfo is None:
        return c.fail(path, "must carry a UTC offset (Z or +08:00)")
    return at.astimezone(timezone.utc)


def _parse_discount(c: _Check, value, path: str) -> Discount | None:
    if not isinstance(value, dict) or value.get("kind") not in DISCOUNT_KINDS:
        return c.fail(_join(path, "kind") if isinstance(value, dict) else path,
                      f"must be one of {', '.join(DISCOUNT_KINDS)}")
    kind = value["kind"]
    if kind == "free":
        return Discount("free") if c.obj(value, path, ("kind",)) is not None else None
    if c.obj(value, path, ("kind", kind)) is None:
        return None
    if kind == "amount":
        amount = c.int(value["amount"], _join(path, "amount"))
        return None if amount is None else Discount("amount", amount=amount)
    percent = c.int(value["percent"], _join(path, "percent"), 0, 100)
    return None if percent is None else Discount("percent", percent=percent)


def _parse_products(c: _Check, value, path="products") -> dict[str, Product]:
    if not isinstance(value, dict) or not value:
        c.fail(path, "must be an object of products by id, with at least one")
        return {}
    products = {}
    for pid, p in value.items():
        at = _join(path, pid)
        if not _ID.match(pid):
            c.fail(at, "product id must be 1-64 letters, digits or _.:-")
            continue
        kind = p.get("kind") if isinstance(p, dict) else None
        if kind not in PRODUCT_KINDS:
            c.fail(_join(at, "kind") if isinstance(p, dict) else at, f"must be one of {', '.join(PRODUCT_KINDS)}")
            continue
        product = None
        if kind == "flat":
            if c.obj(p, at, ("kind", "amount")) is not None:
                amount = c.int(p["amount"], _join(at, "amount"))
                product = None if amount is None else Product(pid, "flat", amount=amount)
        elif kind == "zone":
            if c.obj(p, at, ("kind", "by_zones", "missing_tap_off")) is not None:
                by_zones = _parse_amounts(c, p["by_zones"], _join(at, "by_zones"))
                rule = _parse_missing(c, p["missing_tap_off"], _join(at, "missing_tap_off"))
                if by_zones is not None and rule is not None:
                    product = Product(pid, "zone", by_zones=by_zones, missing_tap_off=rule)
        elif c.obj(p, at, ("kind", "base", "base_m", "step", "step_m", "missing_tap_off"), ("max",)) is not None:
            n = len(c.errors)
            base = c.int(p["base"], _join(at, "base"))
            base_m = c.int(p["base_m"], _join(at, "base_m"), 0, MAX_DISTANCE_M)
            step = c.int(p["step"], _join(at, "step"))
            step_m = c.int(p["step_m"], _join(at, "step_m"), 1, MAX_DISTANCE_M)
            top = p.get("max")
            if top is not None and c.int(top, _join(at, "max")) is not None and base is not None and top < base:
                c.fail(_join(at, "max"), "must not be below base")
            rule = _parse_missing(c, p["missing_tap_off"], _join(at, "missing_tap_off"))
            if len(c.errors) == n:
                product = Product(pid, "distance", base=base, base_m=base_m, step=step, step_m=step_m,
                                  max=top, missing_tap_off=rule)
        if product is not None:
            products[pid] = product
    return products


def _parse_amounts(c: _Check, value, path: str) -> tuple[int, ...] | None:
    if not isinstance(value, list) or not value:
        return c.fail(path, "must be a non-empty list of amounts")
    n = len(c.errors)
    amounts = tuple(c.int(v, _join(path, i)) for i, v in enumerate(value))
    return amounts if len(c.errors) == n else None


def _parse_missing(c: _Check, value, path: str) -> MissingTapOff | None:
    rule = value.get("rule") if isinstance(value, dict) else None
    if rule not in MISSING_TAP_OFF_RULES:
        return c.fail(_join(path, "rule") if isinstance(value, dict) else path,
                      f"must be one of {', '.join(MISSING_TAP_OFF_RULES)}")
    if rule == "max_fare":
        return MissingTapOff("max_fare") if c.obj(value, path, ("rule",)) is not None else None
    if c.obj(value, path, ("rule", "amount")) is None:
        return None
    amount = c.int(value["amount"], _join(path, "amount"))
    return None if amount is None else MissingTapOff("penalty", amount)


def _parse_routes(c: _Check, value, products: dict[str, Product], path="routes") -> tuple[Route, ...]:
    if not isinstance(value, list) or not value:
        c.fail(path, "must be a non-empty list of routes")
        return ()
    routes, seen = [], set()
    for i, r in enumerate(value):
        at = _join(path, i)
        if c.obj(r, at, ("id", "name", "product", "stops")) is None:
            continue
        n = len(c.errors)
        rid = c.str(r["id"], _join(at, "id"), _ID, "1-64 letters, digits or _.:-")
        if rid is not None and rid in seen:
            c.fail(_join(at, "id"), f"route {rid!r} appears twice")
        seen.add(rid)
        name = c.str(r["name"], _join(at, "name"))
        pid = r["product"]
        product = products.get(pid) if isinstance(pid, str) else None
        if product is None:
            c.fail(_join(at, "product"), f"must name a product ({', '.join(sorted(products)) or 'none valid'})")
        stops = _parse_stops(c, r["stops"], _join(at, "stops"), product)
        zones = [s.zone for s in stops if s.zone is not None]
        if product is not None and product.kind == "zone" and zones and len(c.errors) == n:
            span = max(zones) - min(zones) + 1
            if span > len(product.by_zones):
                c.fail(_join(at, "stops"), f"span {span} zones but product {pid!r} prices at most "
                                           f"{len(product.by_zones)} (by_zones is too short)")
        if len(c.errors) == n:
            routes.append(Route(rid, name, pid, stops))
    return tuple(routes)


def _parse_stops(c: _Check, value, path: str, product: Product | None) -> tuple[Stop, ...]:
    if not isinstance(value, list) or not value:
        c.fail(path, "must be a non-empty list of stops")
        return ()
    stops, seen, last_m = [], set(), 0
    need = product.kind if product is not None else None
    for i, s in enumerate(value):
        at = _join(path, i)
        if c.obj(s, at, ("id", "name"), ("zone", "distance_m")) is None:
            continue
        sid = c.str(s["id"], _join(at, "id"), _ID, "1-64 letters, digits or _.:-")
        if sid is not None and sid in seen:
            c.fail(_join(at, "id"), f"stop {sid!r} appears twice on this route")
        seen.add(sid)
        name = c.str(s["name"], _join(at, "name"))
        zone = s.get("zone")
        if zone is not None or need == "zone":
            zone = c.int(zone, _join(at, "zone"), 0, 999)
        metres = s.get("distance_m")
        if metres is not None or need == "distance":
            metres = c.int(metres, _join(at, "distance_m"), 0, MAX_DISTANCE_M)
            if metres is not None:
                if metres < last_m:
                    c.fail(_join(at, "distance_m"), f"must not be less than the previous stop's ({last_m})")
                last_m = max(last_m, metres)
        stops.append(Stop(sid, name, zone, metres))
    return tuple(stops)


def _parse_concessions(c: _Check, value, path="concessions") -> dict[str, Concession]:
    if not isinstance(value, dict) or "adult" not in value:
        c.fail(path, "must be an object of concession classes by name, with at least 'adult'")
        return {}
    out = {}
    for name, k in value.items():
        at = _join(path, name)
        if not _CLASS.match(name):
            c.fail(at, "class name must be lowercase letters, digits or _ (e.g. student)")
            continue
        if c.obj(k, at, ("discount", "caps")) is None:
            continue
        n = len(c.errors)
        discount = None if k["discount"] is None else _parse_discount(c, k["discount"], _join(at, "discount"))
        caps = Caps()
        if k["caps"] is not None and c.obj(k["caps"], _join(at, "caps"), (), ("day", "week")) is not None:
            day, week = k["caps"].get("day"), k["caps"].get("week")
            if day is not None:
                day = c.int(day, _join(at, "caps.day"))
            if week is not None:
                week = c.int(week, _join(at, "caps.week"))
            caps = Caps(day, week)
        if len(c.errors) == n:
            out[name] = Concession(name, discount, caps)
    return out


def _parse_transfer(c: _Check, value, path: str) -> Transfer | None:
    if c.obj(value, path, ("window_minutes", "max_transfers", "discount"), ("same_route",)) is None:
        return None
    n = len(c.errors)
    window = c.int(value["window_minutes"], _join(path, "window_minutes"), 1, MAX_WINDOW_MINUTES)
    most = c.int(value["max_transfers"], _join(path, "max_transfers"), 1, 100)
    discount = _parse_discount(c, value["discount"], _join(path, "discount"))
    same = value.get("same_route", False)
    if not isinstance(same, bool):
        c.fail(_join(path, "same_route"), "must be true or false")
    return Transfer(window, most, discount, same) if len(c.errors) == n else None

