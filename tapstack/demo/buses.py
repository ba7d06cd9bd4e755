"""A bus of the demo: `tapstack terminal validator` run as its own process, the way an operator
runs it, on a real reader stack, driven through its input on the day's simulated clock.

Each `Bus` starts the card side of its reader (vsmartcard-vpcd into the real pcscd, or
nfcpy's udp emulation), its link to the gateway (`Network`, a TCP proxy the demo can cut)
and the validator with `--simulated-clock --machine-lines` (docs/validator.md#driven-by-a-program).
A tap is what happens on a bus: the demo sets the validator's clock to the tap's time
(`clock TIME`) and its stop (`route R stop S`), waits for each line's `OK`, presents the
rider's card, reads the validator's `DECISION` line, and takes the card away. At the end
of the day `quit` makes the validator upload its journal and say what the gateway answered
(its `UPLOADED` line). The demo never opens a validator's journal.
"""
from __future__ import annotations

import json
import queue
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

from protocol.purse import CLA, INS_DEBIT
from tapstack.demo.city import DOUBLE_TAP_SECONDS, RETAP_SECONDS
from tapstack.demo.stack import Console, DemoError, tapstack_command

START_WAIT = 30.0  # seconds for a validator to open its reader and journal
ANSWER_WAIT = 15.0  # seconds for a validator to take an input line (it may be refreshing its data)
DECISION_WAIT = 10.0  # seconds from presenting a card to its decision (arrival, read, journal)
QUIT_WAIT = 60.0  # seconds for a validator to upload its journal and exit


class Network:
    """The bus's mobile data link: a TCP proxy on loopback between its validator and the
    gateway. Cut, it resets every new connection and the open ones: the gateway is unreachable."""

    def __init__(self, gateway: str):
        target = urlsplit(gateway)
        self._target = (target.hostname, target.port or (443 if target.scheme == "https" else 80))
        self._up = threading.Event()
        self._up.set()
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.url = f"{target.scheme}://127.0.0.1:{self._server.getsockname()[1]}{target.path}".rstrip("/")
        threading.Thread(target=self._accept, name="network", daemon=True).start()

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def set(self, up: bool) -> None:
        if up:
            self._up.set()
            return
        self._up.clear()
        with self._lock:
            for s in self._open:
                _reset(s)

    def close(self) -> None:
        self._stop.set()
        self.set(False)
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                near, _ = self._server.accept()
            except OSError:
                continue
            if not self._up.is_set():
                _reset(near)
                continue
            try:
                far = socket.create_connection(self._target, timeout=10)
            except OSError:
                _reset(near)
                continue
            with self._lock:
                self._open |= {near, far}
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open -= {src, dst}
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def _reset(s: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): the other end sees the link fail, not an answer."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    except OSError:
        pass


class TearingCard:
    """A card that leaves the field right after committing its next DEBIT, before the answer
    goes out: the rider pulled it away mid-tap. Everything else is the wrapped card's."""

    def __init__(self, card, transport):
        self._card, self._transport = card, transport

    def __getattr__(self, name):
        return getattr(self._card, name)

    def process(self, raw: bytes) -> bytes:
        if bytes(raw[:2]) == bytes((CLA, INS_DEBIT)):
            self._transport.tear_after(1)  # this command is processed; its answer is lost
        return self._card.process(raw)


@dataclass(frozen=True)
class Presented:
    """One presentation of a card at a validator: its DECISION (None: the reader never saw it)."""
    rider: str
    route: str
    at: datetime
    decision: dict | None  # the tap as uploaded (protocol.uplink's TapRecord JSON), tap_id, message
    seconds: float = 0.0  # the whole presentation: clock and stop taken, present, decision, remove


@dataclass(frozen=True)
class BusConfig:
    name: str  # "bus 12"
    route: str
    first_stop: str
    reader: str  # the validator's --reader
    transport: str  # vpcd | nfc
    card_port: int  # where the card side connects (vpcd slot port) or listens (nfc udp)
    journal: Path
    log: Path
    gateway: str
    key_file: Path  # KEY_ID:SECRET, for --terminal-key @FILE
    token_key_file: Path


class Bus:
    def __init__(self, config: BusConfig):
        self.config = config
        self.now = datetime(2020, 1, 1, tzinfo=timezone.utc)  # the validator's clock, as last set
        self.finished_at = 0.0  # time.monotonic() when the bus took its day's last tap
        self.decisions: list[dict] = []  # every DECISION the validator printed
        self.uploaded: dict[str, int] = {}  # what the gateway answered for its journal (at the close)
        self.network: Network | None = None
        self.validator: Console | None = None
        self._transport = None
        self._place: tuple[str, str] | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.validator.pid

    # -- from the demo's thread ------------------------------------------------------------

    def start(self) -> None:
        """The card side, the link and the validator (the day waits for it to ask for the clock)."""
        from wallet.transports.nfc_udp import NfcUdpCard
        from wallet.transports.vpcd import VpcdCard

        c = self.config
        card_side = VpcdCard if c.transport == "vpcd" else NfcUdpCard
        self._transport = card_side(None, c.card_port).start()
        self.network = Network(c.gateway)
        self.validator = Console(c.name, tapstack_command(
            "terminal", "validator", "--reader", c.reader, "--gateway", self.network.url,
            "--terminal-key", f"@{c.key_file}", "--token-key", f"@{c.token_key_file}", "--journal", str(c.journal),
            "--route", c.route, "--stop", c.first_stop, "--refresh-every", "3600",
            "--simulated-clock", "--machine-lines"), c.log)
        self._place = (c.route, c.first_stop)

    def ride(self, service_start: datetime, taps: list[tuple], outage: tuple[datetime, datetime] | None,
             results: queue.Queue) -> None:
        """Take the day's taps: [(Tap, card, after, done)] in time order. `after` is the event of the
        same rider's previous tap (on any bus), waited for first, so a card is in one field at a time
        and its transactions happen in the order of their times; `done` is set once the tap is over.
        During `outage` the bus's network is cut. The validator's clock starts at `service_start`,
        when it downloads its reference data, then hourly. Each Presented goes to results; then the
        bus puts None (or the exception that stopped it)."""
        def day():
            try:
                self._day(service_start, taps, outage, results)
            except BaseException as e:  # hand it to the demo's thread, which stops the demo
                results.put(e)
            results.put(None)

        self._thread = threading.Thread(target=day, name=self.config.name, daemon=True)
        self._thread.start()

    def quit(self) -> None:
        """End the day: `quit`, and the validator uploads what its journal holds, then exits (closed())."""
        self._join()
        self.network.set(True)
        self.validator.type("quit")

    def closed(self) -> dict[str, int]:
        """What the gateway answered for the validator's whole journal (accepted, duplicate, rejected,
        unsent), from the UPLOADED line it says before it exits."""
        line = self.validator.expect("UPLOADED", timeout=QUIT_WAIT)
        code = self.validator.finish(QUIT_WAIT)
        if code != 0:
            raise self.validator.stopped()
        self.uploaded = uploaded(line)
        return self.uploaded

    def stop(self) -> None:
        """End the bus: a day in progress stops after the tap in hand (Ctrl-C, an error elsewhere);
        the validator by its process group."""
        self._join()
        if self.validator is not None:
            self.validator.stop()
        if self._transport is not None:
            self._transport.stop()
        if self.network is not None:
            self.network.close()

    def journalled(self, since: datetime, until: datetime) -> int:
        """The taps the validator journalled with times in [since, until)."""
        return sum(1 for d in self.decisions if since.timestamp() <= d["at"] < until.timestamp())

    def _join(self) -> None:
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(15)

    # -- the bus's own thread --------------------------------------------------------------

    def _day(self, start: datetime, taps: list, outage, results: queue.Queue) -> None:
        def online(at: datetime) -> bool:
            return outage is None or not outage[0] <= at < outage[1]

        self.validator.expect("WAITING", timeout=START_WAIT)  # its reader and journal are open
        self.network.set(online(start))
        self._set(start)  # at the depot, before the first stop: keys, deny-list, fare rules
        self.validator.expect("validator ", timeout=ANSWER_WAIT)
        self._set(start)  # answered from the card loop: the first download is over (the network may go)
        for tap, card, after, done in taps:
            try:
                while after is not None and not after.wait(0.2):
                    if self._cancel.is_set():
                        break
                if self._cancel.is_set():
                    break
                if tap.action == "tear":
                    results.put(self._present(tap, tap.at, TearingCard(card, self._transport), online))
                    results.put(self._present(tap, tap.at + timedelta(seconds=RETAP_SECONDS), card, online))
                elif tap.action == "double":
                    results.put(self._present(tap, tap.at, card, online))
                    results.put(self._present(tap, tap.at + timedelta(seconds=DOUBLE_TAP_SECONDS), card, online))
                else:
                    results.put(self._present(tap, tap.at, card, online))
            finally:
                done.set()
        self.finished_at = time.monotonic()

    def _set(self, at: datetime, place: tuple[str, str] | None = None) -> None:
        """The validator's clock (and stop, when it changed), each line waited for until it is in effect."""
        lines = [f"clock {at.isoformat()}"]
        if place is not None and place != self._place:
            lines.append(f"route {place[0]} stop {place[1]}")
        self.now = at
        for line in lines:
            self.validator.type(line)
        for line in lines:
            answer = self.validator.expect("OK ", "ERR ", timeout=ANSWER_WAIT)
            if answer != f"OK {line}":
                raise DemoError(f"{self.config.name} did not take {line!r}: {answer}")
        self._place = place or self._place

    def _present(self, tap, at: datetime, card, online) -> Presented:
        started = time.perf_counter()
        self.network.set(online(at))
        self._set(at, (tap.route, tap.stop))
        self._transport.present(card)
        try:
            line = self.validator.expect("DECISION ", timeout=DECISION_WAIT)
        except DemoError:
            if not self.validator.running():
                raise
            return Presented(tap.rider, tap.route, at, None)  # the reader never saw the card
        finally:
            self._transport.remove()
        decision = json.loads(line.removeprefix("DECISION "))
        if decision["tap_id"] is not None:
            self.decisions.append(decision)
        return Presented(tap.rider, tap.route, at, decision, time.perf_counter() - started)


def uploaded(line: str) -> dict[str, int]:
    """A validator's UPLOADED line as counts: 'UPLOADED  53 taps journalled: 53 accepted, 0 duplicate,
    0 rejected; 0 left to upload' -> {accepted: 53, duplicate: 0, rejected: 0, unsent: 0}."""
    words = line.replace(",", " ").replace(";", " ").split()
    try:
        counts = {name: int(words[words.index(name) - 1]) for name in ("accepted", "duplicate", "rejected")}
        counts["unsent"] = int(words[words.index("left") - 1])
    except (ValueError, IndexError):
        raise DemoError(f"a validator's close was not understood: {line}") from None
    return counts
