"""A bus of the demo: the real validator program (terminal.run.Validator) on a real reader stack.

Each `Bus` runs in its own thread (SQLite connections and reader contexts stay in the
thread that opened them) and takes one simulated hour of taps at a time. A tap is what
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
from terminal import validator as decisions
from terminal.gateway_client import GatewayClient, urllib_send
from terminal.journal import Journal
from terminal.readers import open_reader
from terminal.run import Settings, Validator, default_terminal_id
from terminal.uploader import Uploader

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
        self._jobs: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=config.name, daemon=True)
        self.terminal_id = default_terminal_id(config.key_id)

    # -- from the demo's thread ------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        self._thread.start()
        if not self.started.wait(timeout) or self.error is not None:
            raise RuntimeError(f"{self.config.name} did not start: {self.error or 'timed out'}")

    def ride(self, hour_start: datetime, taps: list[tuple], online: bool) -> None:
        """Queue one hour: [(Tap, card)], run with the network up or cut. Collect with results()."""
        self._jobs.put((hour_start, taps, online))

    def results(self, timeout: float = 300.0) -> list[Presented]:
        found = self._results.get(timeout=timeout)
        if isinstance(found, BaseException):
            raise found
        return found

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(15)

    # -- the bus's own thread --------------------------------------------------------------

    def _run(self) -> None:
        c = self.config
        log = open(c.log, "a", encoding="utf-8")
        transport = reader = journal = uploader = None
        try:
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
            client = GatewayClient(c.gateway, c.key_id, c.secret, send=self.network.wrap(urllib_send(5.0)))
            out = lambda line: log.write(f"{self.now:%H:%M:%S}Z {line}\n")  # noqa: E731
            v = Validator(settings, reader, journal, client=client, clock=lambda: self.now, out=out)
            uploader = Uploader(c.journal, self.terminal_id, client, _utc_now, idle=0.5, on_error=out)
            v.uploader = uploader
            uploader.start()
            self.started.set()
            while (job := self._jobs.get()) is not None:
                try:
                    self._results.put(self._hour(v, transport, reader, *job))
                except BaseException as e:  # hand it to the demo's thread, which stops the demo
                    self._results.put(e)
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
            log.close()

    def _hour(self, v: Validator, transport, reader, hour_start: datetime, taps: list, online: bool) -> list:
        self.network.set(online)
        self.now = hour_start
        v.refresh()  # keys, deny-list delta, fare rules: fails quietly when the network is cut
        done = []
        for tap, card in taps:
            v.set_place(decisions.Place(tap.route, tap.stop), "stop")
            if tap.action == "tear":
                done.append(self._present(v, transport, reader, tap.rider, tap.route, tap.at,
                                          TearingCard(card, transport)))
                again = tap.at + timedelta(seconds=5)
                done.append(self._present(v, transport, reader, tap.rider, tap.route, again, card))
            elif tap.action == "double":
                done.append(self._present(v, transport, reader, tap.rider, tap.route, tap.at, card))
                again = tap.at + timedelta(seconds=20)
                done.append(self._present(v, transport, reader, tap.rider, tap.route, again, card))
            else:
                done.append(self._present(v, transport, reader, tap.rider, tap.route, tap.at, card))
        return done

    def _present(self, v: Validator, transport, reader, rider: str, route: str, at: datetime, card) -> Presented:
        self.now = at
        started = time.perf_counter()
        transport.present(card)
        try:
            session = reader.wait_for_card(ARRIVAL_TIMEOUT)
            arrival = time.perf_counter() - started
            if session is None:
                return Presented(rider, route, at, None, arrival)
            try:
                decision = v.handle_card(session)
            finally:
                session.close()
        finally:
            transport.remove()
        reader.wait_for_removal(REMOVAL_TIMEOUT)
        return Presented(rider, route, at, decision, arrival)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)
