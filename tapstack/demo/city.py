"""The demo's city: a day of riders, cards, trips, bills and shoppers, as a pure function of a seed.

`plan_day(seed, riders, day)` answers a `DayPlan`: who lives in the city and what card each
carries (a purse card on a wallet, a bank card, a plain transit card), every tap of the day
(local times 06:00-22:00, Asia/Shanghai, as UTC datetimes), the bills the water company
issues and who pays them, and what the corner shop sells. The same seed and size give the
same plan; nothing here reads a clock, a file or the network. `FARE_RULES` is the fare
rules document the demo's gateway publishes for its three routes.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("Asia/Shanghai")
CURRENCY = "CNY"
FIRST_HOUR, LAST_HOUR = 6, 22  # the buses run 06:00-22:00 local
OUTAGE_HOURS = (7, 11)  # bus 9 loses its network from 07:00 to 11:00 local, in the morning rush
DOUBLE_TAP_SECONDS = 20  # a rider who taps again within the validator's repeat window
RETAP_SECONDS = 5  # a torn tap's rider presents the card again this much later


@dataclass(frozen=True)
class Route:
    id: str
    name: str
    fare: int  # minor units: the flat boarding fare of the route's product
    reader: str  # pcsc0 / pcsc1: a slot of the virtual PC/SC reader; nfc: nfcpy's udp emulation
    stops: tuple[tuple[str, str], ...]  # (stop id, name)


ROUTES = (
    Route("12", "Railway Station - Hospital", 200, "pcsc0",
          (("rs", "Railway Station"), ("ps", "People's Square"), ("lb", "Library"), ("ho", "Hospital"))),
    Route("9", "North Gate - Harbour", 300, "pcsc1",
          (("ng", "North Gate"), ("mk", "Market"), ("un", "University"), ("hb", "Harbour"))),
    Route("A1", "Airport Express", 500, "nfc",
          (("ch", "City Hall"), ("ex", "Expo"), ("ap", "Airport"))),
)
OFFLINE_ROUTE = "9"


def fare_rules(rules_version: int = 1) -> dict:
    """The fare rules document (docs/fares.md) for ROUTES: a flat fare per route."""
    return {
        "version": rules_version,
        "effective_from": "2020-01-01T00:00:00+08:00",
        "currency": CURRENCY,
        "timezone": ZONE.key,
        "products": {f"route_{r.id}": {"kind": "flat", "amount": r.fare} for r in ROUTES},
        "routes": [{"id": r.id, "name": r.name, "product": f"route_{r.id}",
                    "stops": [{"id": s, "name": n} for s, n in r.stops]} for r in ROUTES],
        "transfer": {"window_minutes": 90, "max_transfers": 2, "discount": {"kind": "amount", "amount": 100},
                     "same_route": False},
        "concessions": {"adult": {"discount": None, "caps": {"day": 1200, "week": 5000}}},
    }


@dataclass(frozen=True)
class Rider:
    id: str  # rider-001 ...
    name: str
    card: str  # purse | emv | uid | stranger (a loyalty card the validators do not know)
    uid: bytes  # the card's anticollision UID
    pan: str | None = None  # emv: a test card number (never leaves the card in clear)
    load: int = 0  # purse: value loaded onto the card before the day, minor units
    locked: bool = False  # purse: the operator locks the wallet (stolen phone) before the day
    lost: bool = False  # emv: the bank card was reported lost; its token is deny-listed
    home: str = "12"  # the route the rider usually takes

    @property
    def has_wallet(self) -> bool:
        return self.card != "stranger"


@dataclass(frozen=True)
class Tap:
    at: datetime  # UTC
    rider: str
    route: str
    stop: str
    action: str = "tap"  # tap | tear (pulled away mid-debit, then presented again) | double (tapped twice)

    @property
    def hour(self) -> int:
        return self.at.astimezone(ZONE).hour


@dataclass(frozen=True)
class Bill:
    number: str
    consumer_number: str
    rider: str
    amount_due: int
    paid: bool  # whether the rider pays it today (scanning the bill's QR code)


@dataclass(frozen=True)
class Purchase:
    rider: str
    amount: int
    method: str  # tap (a purse on the till's reader) | paycode (the wallet shows one) | checkout (the till shows one)


@dataclass(frozen=True)
class DayPlan:
    seed: int
    day: date
    riders: tuple[Rider, ...]
    taps: tuple[Tap, ...]  # in time order
    bills: tuple[Bill, ...]
    purchases: tuple[Purchase, ...]
    outage: tuple[datetime, datetime]  # [from, to) UTC, when OFFLINE_ROUTE's validator has no network

    def rider(self, rider_id: str) -> Rider:
        return next(r for r in self.riders if r.id == rider_id)

    def taps_in_hour(self, hour: int) -> tuple[Tap, ...]:
        return tuple(t for t in self.taps if t.hour == hour)

    @property
    def period(self) -> str:
        return f"{self.day:%Y-%m}"


def local_time(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """The UTC instant of a local wall-clock time in the city on `day`."""
    return datetime.combine(day, time(hour, minute, second), ZONE).astimezone(timezone.utc)


def demo_pan(rng: random.Random) -> str:
    """A 16-digit card number in the 4000 00.. test range with a valid Luhn check digit."""
    body = "400000" + "".join(str(rng.randrange(10)) for _ in range(9))
    total = 0
    for i, digit in enumerate(reversed(body)):
        d = int(digit) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


FIRST_NAMES = ("Li", "Wang", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun",
               "Ma", "Zhu", "Hu", "Guo", "He", "Lin", "Gao", "Luo")
GIVEN_NAMES = ("Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yan", "Jie", "Tao", "Ming", "Hui", "Qiang",
               "Xia", "Ping", "Bo", "Yu", "Lan", "Hong", "Jun", "Ying")


def _riders(rng: random.Random, n: int) -> list[Rider]:
    riders = []
    for i in range(1, n + 1):
        roll = rng.random()
        card = "purse" if roll < 0.5 else "emv" if roll < 0.75 else "uid"
        uid = bytes([0x04]) + rng.randbytes(6)  # a 7-byte NXP-style UID (a fixed card, not a phone's random one)
        home = rng.choices([r.id for r in ROUTES], weights=(4, 4, 2))[0]
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(GIVEN_NAMES)}"
        load = (300 if rng.random() < 0.1 else 2000) if card == "purse" else 0
        riders.append(Rider(f"rider-{i:03d}", name, card, uid, demo_pan(rng) if card == "emv" else None,
                            load, home=home))
    # The incidents of the day, on the first riders that fit: a stolen phone's wallet and a lost bank card.
    for kind, field in (("purse", "locked"), ("emv", "lost")):
        found = next((k for k, r in enumerate(riders) if r.card == kind and r.load != 300), None)
        if found is not None:
            riders[found] = Rider(**{**riders[found].__dict__, field: True})
    return riders


def _rider_taps(rng: random.Random, rider: Rider, day: date) -> list[Tap]:
    hours = [rng.randrange(6, 10), rng.randrange(16, 20)]  # to work and back
    if rng.random() < 0.3:
        hours.append(rng.randrange(10, 16))
    if rng.random() < 0.1:
        hours.append(rng.randrange(20, LAST_HOUR))
    taps = []
    for hour in sorted(set(hours)):
        route = rider.home if rng.random() < 0.7 else rng.choice(ROUTES).id
        stops = next(r for r in ROUTES if r.id == route).stops
        at = local_time(day, hour, rng.randrange(60), rng.randrange(60))
        taps.append(Tap(at, rider.id, route, rng.choice(stops)[0]))
    return taps


SALE_METHODS = ("tap", "paycode", "checkout")


def _purchases(rng: random.Random, payers: list[Rider], n: int) -> list[Purchase]:
    """n sales at the corner shop, paid in turn by purse tap, pay code and checkout QR.
    A tap needs a purse: with no purse among the payers, that sale is paid by pay code."""
    purses = [r for r in payers if r.card == "purse"]
    sales = []
    for k in range(n):
        method = SALE_METHODS[k % len(SALE_METHODS)]
        if method == "tap" and not purses:
            method = "paycode"
        shopper = rng.choice(purses if method == "tap" else payers)
        amount = rng.randrange(5, 80) * 100 + rng.choice((0, 50, 90))
        sales.append(Purchase(shopper.id, amount, method))
    return sales


def plan_day(seed: int, riders: int, day: date) -> DayPlan:
    """The whole day of the demo city; the same (seed, riders, day) always gives the same plan.

    Every rider taps at most once in any local hour, so one card is never in two readers'
    fields at once and a purse's transactions happen in the order of their times.
    """
    if riders < 1:
        raise ValueError("the city needs at least one rider")
    rng = random.Random(seed)
    people = _riders(rng, riders)
    taps = [t for r in people for t in _rider_taps(rng, r, day)]
    # A visitor taps a phone with no transit wallet (it shows a random UID each time) on route 12.
    stranger = Rider("visitor", "a visitor", "stranger", bytes([0x08]) + rng.randbytes(3))
    taps.append(Tap(local_time(day, 8, rng.randrange(60), rng.randrange(60)), stranger.id, "12", "rs"))
    taps.sort(key=lambda t: (t.at, t.rider))
    # Two purse taps torn mid-debit and one rider tapping twice, on the PC/SC routes.
    pcsc = {r.id for r in ROUTES if r.reader.startswith("pcsc")}
    good = {r.id for r in people if r.card == "purse" and not r.locked and r.load > 300}
    candidates = [i for i, t in enumerate(taps) if t.rider in good and t.route in pcsc]
    picked = rng.sample(candidates, min(3, len(candidates)))
    for n, i in enumerate(sorted(picked)):
        t = taps[i]
        taps[i] = Tap(t.at, t.rider, t.route, t.stop, "double" if n == 1 else "tear")
    payers = [r for r in people if r.has_wallet and not r.locked]
    bills = tuple(
        Bill(f"W{day:%y%m}-{k:04d}", f"{rng.randrange(10**7, 10**8)}", p.id, rng.randrange(30, 200) * 100 + 50,
             paid=k != 1)  # one household has not paid yet
        for k, p in enumerate(rng.sample(payers, min(len(payers), max(3, riders // 5))), 1))
    purchases = tuple(_purchases(rng, payers, max(3, riders // 6)))
    outage = (local_time(day, OUTAGE_HOURS[0]), local_time(day, OUTAGE_HOURS[1]))
    return DayPlan(seed, day, tuple(people) + (stranger,), tuple(taps), bills, purchases, outage)


def demo_day(now: datetime) -> date:
    """The local day the demo replays: the last one whose buses have stopped running by `now`,
    so no tap lies in the gateway's future."""
    local_now = now.astimezone(ZONE)
    if local_now.time() >= time(LAST_HOUR, 5):
        return local_now.date()
    return local_now.date() - timedelta(days=1)
