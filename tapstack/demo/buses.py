"""A bus of the demo: the real validator program (terminal.run.Validator) on a real reader stack.

Each `Bus` runs in its own thread (SQLite connections and reader contexts stay in the
thread that opened them) and takes the day's taps in time order. A tap is what
happens on a bus: the rider's card is presented on the card-side transport (vsmartcard-vpcd
into the real pcscd, or nfcpy's udp emulation), the validator waits for it through
open_reader, reads and decides, journals and signals, and the card is taken away.

The validator's clock is the simulated time of the tap. Its gateway client goes through
a `Network` the demo can cut, to show the offline journal at work.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from protocol import purse as p
from tapstack.demo.city import DOUBLE_TAP_SECONDS, RETAP_SECONDS, ZONE
from terminal import validator as decisions
from protocol.uplink import Client, urllib_send
from terminal.journal import Journal
from terminal.readers import open_reader
from terminal.run import Settings, Validator, default_terminal_id
from terminal.uploader import Uploader, upload_all

ARRIVAL_TIMEOUT = 5.0  # seconds for the reader to see a presented card
REMOVAL_TIMEOUT = 5.0


class Network:
    """The bus's mobile data link: up or cut (the gateway client then cannot connect)."""

    def __init__(self):
        self._up = threading.Event()
        self._up.set()

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def set(self, up: bool) -> None:
        self._up.set() if up else self._up.clear()

    def wrap(self, send):
        def guarded(method, url, headers, body):
            if not self._up.is_set():
                raise OSError("network unreachable (no mobile data)")
            return send(method, url, headers, body)
        return guarded


class TearingCard:
    """A card that leaves the field right after committing its next DEBIT, before the answer
    goes out: the rider pulled it away mid-tap. Everything else is the wrapped card's."""

    def __init__(self, card, transport):
        self._card, self._transport = card, transport

    def __getattr__(self, name):
        return getattr(self._card, name)

    def process(self, raw: bytes) -> bytes:
        if bytes(raw[:2]) == bytes((p.CLA, p.INS_DEBIT)):
            self._transport.tear_after(1)  # this command is processed; its answer is lost
        return self._card.process(raw)


@dataclass(frozen=True)
class Presented:
    """One presentation of a card at a validator: its decision (None: the reader never saw it)."""
    rider: str
    route: str
    at: datetime
    decision: decisions.Decision | None
    arrival: float  # seconds from present to session
    seconds: float = 0.0  # the whole presentation: present, read and decide, remove, field empty


@dataclass(frozen=True)
class BusConfig:
    name: str  # "bus 12"
    route: str
    first_stop: str
    reader: str  # open_reader spec
    transport: str  # vpcd | nfc
    card_port: int  # where the card side connects (vpcd slot port) or listens (nfc udp)
    journal: Path
    log: Path
    gateway: str
    key_id: str
    secret: bytes
    token_key: bytes


class Bus:
    def __init__(self, config: BusConfig):
        self.config = config
        self.network = Network()
        self.now = datetime(2020, 1, 1, tzinfo=timezone.utc)  # set to each tap's simulated time
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.finished_at = 0.0  # time.monotonic() when the bus took its day's last tap
        self._cancel = threading.Event()
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=config.name, daemon=True)
        self.terminal_id = default_terminal_id(config.key_id)

    # -- from the demo's thread ------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        self._thread.start()
        if not self.started.wait(timeout) or self.error is not None:
            raise RuntimeError(f"{self.config.name} did not start: {self.error or 'timed out'}")

    def ride(self, service_start: datetime, taps: list[tuple], outage: tuple[datetime, datetime] | None,
             results: queue.Queue) -> None:
        """Take the day's taps: [(Tap, card, after, done)] in time order. `after` is the event of the
        same rider's previous tap (on any bus), waited for first, so a card is in one field at a time
        and its transactions happen in the order of their times; `done` is set once the tap is over.
        During `outage` the bus's network is cut. The bus downloads its reference data when its
        service starts, then hourly. Each Presented goes to results; then the bus puts None."""
        self._jobs.put((service_start, taps, outage, results))

    def stop(self) -> None:
        """End the bus: a day in progress stops after the tap in hand (Ctrl-C, an error elsewhere)."""
        self._cancel.set()
        self._jobs.put(None)
        self._thread.join(15)

    def unsent(self) -> int:
        """Taps in the bus's journal that the gateway has not answered yet."""
        journal = Journal(self.config.journal, self.terminal_id)
        try:
            return journal.counts()["unsent"]
        finally:
            journal.close()

    def flush(self) -> list[dict]:
        """Upload what the journal still holds (the bus stopped, its network back); its taps."""
        c = self.config
        journal = Journal(c.journal, self.terminal_id)
        try:
            upload_all(journal, Client(c.gateway, c.key_id, c.secret), _utc_now)
            return journal.taps()
        finally:
            journal.close()

    # -- the bus's own thread --------------------------------------------------------------

    def _run(self) -> None:
        c = self.config
        log = transport = reader = journal = uploader = None
        try:
            log = open(c.log, "a", encoding="utf-8")
            if c.transport == "vpcd":
                from wallet.transports.vpcd import VpcdCard
                transport = VpcdCard(None, c.card_port).start()
            else:
                from wallet.transports.nfc_udp import NfcUdpCard
                transport = NfcUdpCard(None, c.card_port).start()
            reader = open_reader(c.reader)
            settings = Settings(route=c.route, stop=c.first_stop, reader=c.reader, gateway=c.gateway,
                                key_id=c.key_id, secret=c.secret, token_key=c.token_key, journal=c.journal,
                                terminal_id=self.terminal_id, refresh_every=3600.0)
            journal = Journal(c.journal, self.terminal_id)
            client = Client(c.gateway, c.key_id, c.secret, send=self.network.wrap(urllib_send(5.0)))
            out = lambda line: log.write(f"{self.now.astimezone(ZONE):%H:%M:%S} {line}\n")  # noqa: E731  city time
            v = Validator(settings, reader, journal, client=client, clock=lambda: self.now, out=out)
            uploader = Uploader(c.journal, self.terminal_id, client, _utc_now, idle=0.5, on_error=out)
            v.uploader = uploader
            uploader.start()
            self.started.set()
            while (job := self._jobs.get()) is not None:
                start, taps, outage, results = job
                try:
                    self._day(v, transport, reader, start, taps, outage, results)
                except BaseException as e:  # hand it to the demo's thread, which stops the demo
                    results.put(e)
                results.put(None)
        except BaseException as e:
            self.error = e
            self.started.set()
        finally:
            if uploader is not None:
                uploader.stop(5)
            if transport is not None:
                transport.stop()
            if reader is not None:
                reader.close()
            if journal is not None:
                journal.close()
            if log is not None:
                log.close()

    def _day(self, v: Validator, transport, reader, start: datetime, taps: list, outage,
             results: queue.Queue) -> None:
        def online(at: datetime) -> bool:
            return outage is None or not outage[0] <= at < outage[1]

        self.now = start
        self.network.set(online(start))
        v.refresh()  # at the depot, before the first stop: keys, deny-list, fare rules
        next_refresh = start + timedelta(hours=1)
        for tap, card, after, done in taps:
            try:
                while after is not None and not after.wait(0.2):
                    if self._cancel.is_set():
                        break
                if self._cancel.is_set():
                    break
                self.now = tap.at
                self.network.set(online(tap.at))
                if tap.at >= next_refresh:
                    v.refresh()  # keys, deny-list delta, fare rules, hourly: fails quietly while cut off
                    next_refresh = tap.at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
                v.set_place(decisions.Place(tap.route, tap.stop), "stop")
                if tap.action == "tear":
                    results.put(self._present(v, transport, reader, tap, tap.at, TearingCard(card, transport)))
                    again = tap.at + timedelta(seconds=RETAP_SECONDS)
                    results.put(self._present(v, transport, reader, tap, again, card))
                elif tap.action == "double":
                    results.put(self._present(v, transport, reader, tap, tap.at, card))
                    again = tap.at + timedelta(seconds=DOUBLE_TAP_SECONDS)
                    results.put(self._present(v, transport, reader, tap, again, card))
                else:
                    results.put(self._present(v, transport, reader, tap, tap.at, card))
            finally:
                done.set()
        self.finished_at = time.monotonic()

    def _present(self, v: Validator, transport, reader, tap, at: datetime, card) -> Presented:
        self.now = at
        started = time.perf_counter()
        transport.present(card)
        try:
            session = reader.wait_for_card(ARRIVAL_TIMEOUT)
            arrival = time.perf_counter() - started
            if session is None:
                return Presented(tap.rider, tap.route, at, None, arrival)
            try:
                decision = v.handle_card(session)
            finally:
                session.close()
        finally:
            transport.remove()
        reader.wait_for_removal(REMOVAL_TIMEOUT)
        return Presented(tap.rider, tap.route, at, decision, arrival, time.perf_counter() - started)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)
