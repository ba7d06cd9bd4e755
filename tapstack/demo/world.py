"""The demo's people and businesses, each acting through the gateway's HTTP API as its own
program would: the operator, the bus company's validators, the water company, the corner
shop's till and every rider's wallet app. `World.summary` reads the day back from the
gateway's API and its ledger check.
"""
from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tapstack.demo import city, stack
from tapstack.demo.buses import Bus, BusConfig, Presented
from tapstack.demo.receiver import WebhookReceiver
from tapstack.demo.shop import write_secret
from tapstack.demo.stack import DemoError
from tapstack.demo.summary import RouteFigures, Summary
from wallet.app import Gateway

READERS = {"pcsc0": "PC/SC (pcscd + vpcd)", "pcsc1": "PC/SC (pcscd + vpcd)", "nfc": "nfcpy (udp)"}
WALLET_TOPUP = 100_000  # each rider's wallet gets 1000.00 CNY from their bank before the day


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class World:
    """The city's people and businesses (city.DayPlan) with their keys, cards and readers."""

    def __init__(self, url: str, op_key: str, plan: city.DayPlan, receiver: WebhookReceiver, data_dir: Path):

        self.url, self.plan, self.receiver, self.data_dir = url, plan, receiver, data_dir
        self.operator = Gateway(url, op_key)
        self.token_key = _token_key()
        self.cards: dict = {}  # rider id -> VirtualCard
        self.wallets: dict[str, tuple[str, str]] = {}  # rider id -> (wallet id, credential)
        self.purses: dict[str, tuple[bytes, bytes]] = {}  # rider id -> (card seed, certificate)
        self.stores: dict = {}  # rider id -> (the purse's MemoryStore, card id hex)
        self.terminals: dict[str, tuple[str, bytes]] = {}
        self.sales: Counter = Counter()

    # -- enrolment --

    def enrol(self) -> None:
        from protocol.tokens import pan_token
        from wallet.card import plain_uid_card
        from wallet.emv_card import emv_card

        op = self.operator
        self.bus_company = op.post("/v1/merchants", {"name": "City Bus Company", "currency": city.CURRENCY})
        for route in city.ROUTES:
            t = op.post("/v1/terminals", {"merchant_id": self.bus_company["id"], "name": f"bus {route.id} validator"})
            self.terminals[route.id] = (t["key_id"], bytes.fromhex(t["secret"]))
        self.biller = op.post("/v1/billers", {"name": "City Water", "city": "Shanghai", "currency": city.CURRENCY})
        self.shop_merchant = op.post("/v1/merchants", {"name": "Corner Market", "currency": city.CURRENCY})
        op.post(f"/v1/merchants/{self.shop_merchant['id']}/qr-profile", {"city": "Shanghai", "mcc": "5411"})
        till = op.post("/v1/terminals", {"merchant_id": self.shop_merchant["id"], "name": "till 1"})
        self.till = (till["key_id"], bytes.fromhex(till["secret"]))
        for path, key, types in (("/water", self.biller["api_key"], ["bill.paid"]),
                                 ("/shop", self.shop_merchant["api_key"], ["payment.succeeded"])):
            endpoint = Gateway(self.url, key).post("/v1/webhook_endpoints", {
                "url": self.receiver.base_url + path, "event_types": types})
            self.receiver.secrets[path] = endpoint["secret"]
        keys = op.get("/v1/issuer/keys")["data"]
        self.issuer_public = bytes.fromhex(next(k for k in keys if k["status"] == "active")["public_key"])
        for rider in self.plan.riders:
            if rider.card == "stranger":
                self.cards[rider.id] = plain_uid_card(rider.uid, name="a visitor's phone")
                continue
            customer = op.post("/v1/customers", {"name": rider.name, "external_ref": rider.id})
            wallet = op.post("/v1/wallets", {"customer_id": customer["id"], "currency": city.CURRENCY})
            self.wallets[rider.id] = (wallet["id"], wallet["credential"])
            op.post("/v1/topups", {"wallet_id": wallet["id"], "amount": WALLET_TOPUP, "currency": city.CURRENCY})
            if rider.card == "purse":
                self.cards[rider.id] = self._purse(rider, wallet["id"], wallet["credential"])
            elif rider.card == "emv":
                self.cards[rider.id] = emv_card(rider.uid, pan=rider.pan)
            else:
                self.cards[rider.id] = plain_uid_card(rider.uid, name=f"transit card of {rider.id}")
            if rider.card in ("emv", "uid"):
                self.link_card(rider.id)
            if rider.locked:
                op.post(f"/v1/wallets/{wallet['id']}/lock", {"reason": "phone reported stolen"})
            if rider.lost:
                op.post("/v1/issuer/deny-list", {"entry": pan_token(self.token_key, rider.pan), "kind": "token",
                                                 "reason": "bank card reported lost"})

    def link_card(self, rider_id: str) -> None:
        """The rider links the bank or transit card to the wallet: the app asks for a link code and
        the bus company's link desk sends the card's token with it (POST /v1/card-links/{code}/tap,
        signed with a validator's key). The demo made the card, so it knows the token a reader
        computes from it (protocol.tokens, the operator's token key); reading cards is the buses' part."""
        from protocol.tokens import pan_token, uid_token
        from protocol.uplink import Client, GatewayError

        rider = self.plan.rider(rider_id)
        token = pan_token(self.token_key, rider.pan) if rider.card == "emv" else uid_token(self.token_key, rider.uid)
        wallet_id, credential = self.wallets[rider_id]
        code = Gateway(self.url, credential).post(f"/v1/wallets/{wallet_id}/card-links", {})["code"]
        key_id, secret = self.terminals[city.ROUTES[0].id]
        try:
            Client(self.url, key_id, secret).post(f"/v1/card-links/{code}/tap", {"token": token},
                                                  idempotency_key=f"link-{wallet_id}")
        except GatewayError as e:
            raise DemoError(f"the card of {rider_id} could not be linked: {e}") from None

    def _purse(self, rider: city.Rider, wallet_id: str, credential: str):
        """A phone's purse: its key certified by the gateway's issuer, value loaded through purse-loads."""
        import secrets

        from protocol import ed25519
        from wallet.purse import new_purse, purse_card
        from wallet.state import MemoryStore

        wallet = Gateway(self.url, credential)
        seed = secrets.token_bytes(32)
        made = wallet.post(f"/v1/wallets/{wallet_id}/card", {"public_key": ed25519.public_key(seed).hex()})
        store = MemoryStore(new_purse(seed, bytes.fromhex(made["card_id"]), bytes.fromhex(made["certificate"]),
                                      self.issuer_public, city.CURRENCY, 0))
        card = purse_card(store, rider.uid, name=f"purse of {rider.id}")
        self.purses[rider.id] = (seed, bytes.fromhex(made["certificate"]))
        self.stores[rider.id] = (store, made["card_id"])
        self.cards[rider.id] = card
        self.load_purse(rider.id, rider.load)
        return card

    def load_purse(self, rider_id: str, amount: int) -> None:
        """The wallet app loads value onto its purse: the gateway moves it from the wallet to the
        card's float and answers the issuer's TOP-UP, which the app applies to its own card."""
        from protocol.purse import select_command, topup_command
        from protocol.apdu import parse_response

        wallet_id, credential = self.wallets[rider_id]
        store, card_id = self.stores[rider_id]
        card = self.cards[rider_id]
        load = Gateway(self.url, credential).post(f"/v1/wallets/{wallet_id}/purse-loads", {
            "card_id": card_id, "amount": amount, "currency": city.CURRENCY, "counter": store.state.counter})
        card.power_on()
        card.process(select_command())
        sw = parse_response(card.process(topup_command(bytes.fromhex(load["authorisation"])))).sw
        card.power_off()
        if sw != 0x9000:
            raise DemoError(f"the purse of {rider_id} refused its load (SW {sw:04X})")

    def buses(self, daemon) -> dict[str, Bus]:
        from wallet.pcscd import free_ports

        for room in ("validators", "logs"):  # logs too: against a gateway of its own the demo starts none
            (self.data_dir / room).mkdir(parents=True, exist_ok=True)
        nfc_port = free_ports(1)[0]
        found = {}
        for route in city.ROUTES:
            key_id, secret = self.terminals[route.id]
            if route.reader.startswith("pcsc"):
                slot = daemon.readers[int(route.reader[-1])]
                reader, transport, port = f"pcsc:{slot.pcsc_name}", "vpcd", slot.port
            else:
                reader, transport, port = f"udp:127.0.0.1:{nfc_port}", "nfc", nfc_port
            found[route.id] = Bus(BusConfig(
                f"bus {route.id}", route.id, route.stops[0][0], reader, transport, port,
                self.data_dir / "validators" / f"bus-{route.id}.journal", self.data_dir / "logs" / f"bus-{route.id}.log",
                self.url, write_secret(self.data_dir / "keys" / f"bus-{route.id}.key", f"{key_id}:{secret.hex()}"),
                write_secret(self.data_dir / "keys" / "token.key", self.token_key.hex())))
        return found

    # -- bills and shop --

    def _app(self, rider_id: str):
        from wallet.app import Profile, WalletApp

        wallet_id, credential = self.wallets[rider_id]
        seed, certificate = self.purses.get(rider_id, (None, None))
        profile = Profile(self.url, wallet_id, credential, self.data_dir / "wallets" / f"{rider_id}.json",
                          seed, certificate)
        return WalletApp.from_profile(profile)

    def bills(self) -> None:
        biller = Gateway(self.url, self.biller["api_key"])
        due = self.plan.day + timedelta(days=14)
        batch = biller.post("/v1/bill-batches", {"bills": [
            {"bill_number": b.number, "consumer_number": b.consumer_number, "period": self.plan.period,
             "amount_due": b.amount_due, "currency": city.CURRENCY, "due_date": due.isoformat()}
            for b in self.plan.bills]})
        if batch["rejected"]:
            raise DemoError(f"the gateway refused {batch['rejected']} bill(s): {batch['errors'][:1]}")
        self.issued = {b["bill_number"]: b for b in batch["bills"]}
        images = self.data_dir / "bills"
        images.mkdir(parents=True, exist_ok=True)
        for b in self.plan.bills:
            bill = self.issued[b.number]
            png = images / f"{b.number}.png"  # the bill as printed and posted to the household
            png.write_bytes(stack.fetch(f"{self.url}/v1/bills/{bill['id']}/qr.png", self.biller["api_key"]))
            if b.paid:
                app = self._app(b.rider)
                app.pay(app.read(png))

    def open_shop(self):
        """The corner shop's till, started as its own process (tapstack.demo.shop); ready() before selling."""
        from tapstack.demo.shop import Shop

        return Shop(self.url, *self.till, self.token_key, city.CURRENCY, self.data_dir,
                    self.data_dir / "logs" / "till-1.log")

    def shop(self, shop, last_rides: dict) -> None:
        """The corner shop's sales at its till, during the day, then its close: what it journalled is
        uploaded. A shopper paying by purse tap shops after the last ride of the day (one card is
        never in two fields at once); `last_rides` holds each rider's event of that ride."""
        shop.ready()
        for n, sale in enumerate(self.plan.purchases, 1):
            if sale.method == "tap":
                ride = last_rides.get(sale.rider)
                while ride is not None and not ride.wait(0.2):
                    shop.check_open()
                self.load_purse(sale.rider, sale.amount)  # the shopper tops the purse up in the app first
            shop.sell(n, sale.amount, sale.method, self._app(sale.rider), self.cards[sale.rider])
        shop.close_day()
        self.sales = shop.sales

    # -- close of day --

    def summary(self, presented: list[Presented], buses: dict[str, Bus], tapping: float, gateway_dir: Path,
                database: str | None = None) -> Summary:
        from gateway.core.dashboard import day_bounds

        plan, op = self.plan, self.operator
        taps = [t for bus in buses.values() for t in bus.decisions]  # each journalled decision
        offline = buses[city.OFFLINE_ROUTE].journalled(*plan.outage)
        results = sum((Counter(bus.uploaded) for bus in buses.values()), Counter())
        since, until = day_bounds(plan.day, city.ZONE)
        # Close of day: the bank and transit card trips are priced and charged to the linked wallets.
        op.post("/v1/fare-charges/runs", {"day": plan.day.isoformat()})
        token_revenue = op.get("/v1/fare-charges/revenue", day=plan.day.isoformat())["data"]
        ridership = op.get("/v1/taps/ridership", **{"from": since, "to": until})["data"]
        routes = []
        for r in city.ROUTES:
            rows = [x for x in ridership if x["route"] == r.id]
            routes.append(RouteFigures(r.id, r.name, READERS[r.reader], sum(x["taps"] for x in rows),
                                       sum(x["accepted"] for x in rows), sum(x["token_taps"] for x in rows),
                                       sum(x["purse_revenue"] or 0 for x in rows), city.CURRENCY,
                                       sum(x["token_revenue"] for x in token_revenue if x["route"] == r.id)))
        biller = Gateway(self.url, self.biller["api_key"])
        paid = biller.get("/v1/bill-payments", period=plan.period)
        paid_total = next((t for t in paid["totals"] if t["currency"] == city.CURRENCY), {"count": 0, "amount": 0})
        bills = _all(biller, "/v1/bills", biller_id=self.biller["id"], period=plan.period)
        shopkeeper = Gateway(self.url, self.shop_merchant["api_key"])
        shop = _all(shopkeeper, "/v1/payments")
        # Purse sales clear like fares, into the shop's revenue: its sale revenue says how much.
        shop_purse = shopkeeper.get("/v1/sales/revenue", **{"from": since, "to": int(utc_now().timestamp()) + 1})
        shop_purse_revenue = sum(x["revenue"] for x in shop_purse["data"])
        ledger = ledger_check(gateway_dir, database)
        pcsc_routes = {r.id for r in city.ROUTES if r.reader.startswith("pcsc")}
        return Summary(
            seed=plan.seed, day=plan.day.isoformat(),
            riders=dict(Counter(r.card for r in plan.riders)),
            presentations=len(presented), missed=sum(1 for p in presented if p.decision is None),
            taps=len(taps), accepted=sum(1 for t in taps if t["accepted"]),
            denied=dict(sorted(Counter(t["reason"] for t in taps if not t["accepted"]).items())),
            recovered=sum(1 for t in taps if t["reason"] == "recovered"),
            offline_journalled=offline,
            uploaded={k: results.get(k, 0) for k in ("accepted", "duplicate", "rejected", "unsent")},
            routes=tuple(routes), gateway_taps=sum(r.taps for r in routes),
            bills_issued=len(bills), bills_paid=paid_total["count"], bills_paid_amount=paid_total["amount"],
            bills_open=sum(1 for b in bills if b["status"] in ("open", "partially_paid")),
            shop_payments=dict(self.sales), shop_amount=sum(p["amount"] for p in shop) + shop_purse_revenue,
            webhooks=self.receiver.by_type(), webhooks_bad_signatures=self.receiver.bad_signatures,
            ledger_ok=bool(ledger["ok"]),
            ledger_totals={cur: {"accounts": t["accounts"], "debits_posted": t["debits_posted"],
                                 "credits_posted": t["credits_posted"],
                                 "net": t["credits_posted"] - t["debits_posted"]}
                           for cur, t in sorted(ledger["totals"].items())},
            pcsc_taps=sum(1 for p in presented if p.route in pcsc_routes), pcsc_seconds=tapping)


def _all(api, path: str, **params) -> list[dict]:
    """Every item of a paginated list."""
    items, after = [], None
    while True:
        page = api.get(path, limit=100, after=after, **params)
        items += page["data"]
        if not page.get("has_more"):
            return items
        after = page.get("next_cursor") or page["data"][-1]["id"]


def ledger_check(gateway_dir: Path, database: str | None = None) -> dict:
    """`tapstack gateway check --json`: the gateway's own proof that the books balance."""
    done = subprocess.run(stack.tapstack_command("gateway", "check", *stack.gateway_args(gateway_dir, database), "--json"),
                          capture_output=True, text=True, timeout=60)
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise DemoError(f"tapstack gateway check failed: {(done.stderr or done.stdout).strip()[:300]}") from None


def _token_key() -> bytes:
    """The bus operator's token key, shared by its validators so EMV and UID taps join into trips."""
    import secrets

    return secrets.token_bytes(32)
