"""The validator program: the shell around terminal.validator and terminal.tap.

One loop on the main thread waits for a card, decides the tap, writes it to the journal
(fsynced), and only then signals the reader and shows the panel. Between cards it takes
stop/route commands from stdin, follows the stop feed file, reads QR ticket frames and
refreshes the reference data (issuer keys, deny-list delta, fare rules) when online. The
uploader runs on its own thread with its own journal connection.

Modes: `bus` is this loop. `pos` runs terminal/till.py (docs/till.md).

Direction: a bus validator at the entry door records tap-ons (`on`, the default); one at
the exit door records tap-offs (`off`). A tap-off debits no purse: on zone and distance
routes the purse paid at tap-on the fare to the end of the route from its boarding stop
(docs/fares.md). It is journalled and uploaded with "direction": "off", so the gateway can
end account-based trips (bank and UID cards) there and price them exactly.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from protocol import certs, fares
from protocol import purse as p
from protocol.apdu import MalformedAPDU, parse_response
from protocol.uplink import Client, GatewayError, GatewayRefused, reference
from terminal import display, validator
from terminal.journal import Journal, JournalError
from terminal.loop import ClockWatch, Service, serve
from terminal.readers.base import CardRemoved, ReaderError
from terminal.tap import MAX_PENDING, PendingDebit, TapContext, tap
from terminal.uploader import Uploader

log = logging.getLogger("terminal")

MODES = ("bus", "pos")
DIRECTIONS = ("on", "off")
CONCESSION = "adult"  # a card-based purse carries no concession class yet: the adult fare


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Settings:
    mode: str = "bus"
    route: str | None = None
    stop: str | None = None
    reader: str = "pcsc"
    gateway: str | None = None
    key_id: str | None = None
    secret: bytes | None = None
    token_key: bytes = b""
    journal: Path = Path("validator-journal.db")
    stop_feed: Path | None = None
    fare_rules: Path | None = None  # a local rules file, used until the gateway's are downloaded
    fare: int | None = None  # a flat fare when there are no fare rules at all
    currency: str = "CNY"
    terminal_id: bytes = b""
    issuer_keys: tuple[bytes, ...] = ()  # issuer public keys trusted before (or besides) any download
    qr_frame: Path | None = None
    qr_dir: Path | None = None
    refresh_every: float = 60.0
    repeat_window: timedelta = validator.REPEAT_WINDOW
    max_taps: int | None = None  # stop after this many taps (tests, demos)
    direction: str = "on"  # on: an entry validator; off: an exit validator recording tap-offs


def default_terminal_id(key_id: str | None) -> bytes:
    """8 bytes for receipts: from the terminal key id, so each validator has its own; printable
    (8 hex characters), so a card's receipt log shows which validator took the fare."""
    return hashlib.sha256((key_id or "unregistered").encode()).hexdigest()[:p.ID_SIZE].encode("ascii")


def check_settings(s: Settings) -> None:
    """ValueError with one line for the operator when the settings cannot work."""
    if s.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if s.mode == "pos":
        raise ValueError("--mode pos runs terminal/till.py (docs/till.md), not this validator loop")
    if s.direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
    if len(s.terminal_id) != p.ID_SIZE:
        raise ValueError("the terminal id is 8 bytes")
    if len(s.token_key) < 16:
        raise ValueError("the token key (--token-key) is at least 16 bytes: every validator of an operator "
                         "uses the same one, so EMV and UID taps join into trips")
    if s.gateway and not (s.key_id and s.secret):
        raise ValueError("--gateway needs --terminal-key KEY_ID:SECRET")
    if s.currency not in p.CURRENCY_CODES:
        raise ValueError(f"unsupported currency {s.currency}")
    if any(len(k) != 32 for k in s.issuer_keys):
        raise ValueError("an issuer key is 32 bytes (64 hex digits)")


# --- reference data ----------------------------------------------------------------------

@dataclass
class Reference:
    """What the validator decides with, cached in the journal between runs."""
    issuer_keys: dict[bytes, bytes] = field(default_factory=dict)
    deny: frozenset[str] = frozenset()
    deny_version: int = 0
    rules: fares.FareRules | None = None
    refreshed_at: datetime | None = None

    @property
    def rules_version(self) -> int | None:
        return self.rules.version if self.rules is not None else None


def load_reference(journal: Journal, fallback_rules: Path | None) -> Reference:
    ref = Reference()
    keys = journal.load("issuer_keys")
    if keys:
        ref.issuer_keys = {bytes.fromhex(k): bytes.fromhex(v) for k, v in keys[0].items()}
    deny = journal.load("deny_list")
    if deny:
        ref.deny, ref.deny_version = frozenset(deny[0]["entries"]), int(deny[0]["version"])
    rules = journal.load("fare_rules")
    if rules:
        ref.rules = reference.fare_rules(rules[0])
    elif fallback_rules is not None:
        ref.rules = reference.fare_rules(json.loads(Path(fallback_rules).read_text(encoding="utf-8")))
    refreshed = journal.load("refreshed_at")
    if refreshed:
        ref.refreshed_at = datetime.fromtimestamp(refreshed[0], timezone.utc)
    return ref


def refresh_reference(ref: Reference, client: Client, journal: Journal | None, now: datetime
                      ) -> tuple[Reference, JournalError | None]:
    """Download keys, the deny-list delta and fare rules; cache each in the journal. The new
    reference data, and the JournalError that kept it from being cached (it is used anyway).
    Raises GatewayError when the gateway cannot be reached (the old data stays)."""
    issuer_keys = reference.issuer_keys(client.get(reference.KEYS_PATH))
    deny, version = reference.apply_deny_delta(ref.deny, ref.deny_version,
                                               client.get(reference.deny_list_path(ref.deny_version)))
    rules, rules_doc = ref.rules, None
    try:
        rules_doc = client.get(reference.FARE_RULES_PATH)
        rules = reference.fare_rules(rules_doc)
    except GatewayRefused as e:
        if e.status != 404:
            raise
    except ValueError:  # rules that do not parse: keep the last good ones
        rules_doc = None
    try:
        if journal is None:
            raise JournalError("the journal is not open")
        journal.save("issuer_keys", {k.hex(): v.hex() for k, v in issuer_keys.items()}, now)
        journal.save("deny_list", {"version": version, "entries": sorted(deny)}, now)
        if rules_doc is not None:
            journal.save("fare_rules", rules_doc, now)
        journal.save("refreshed_at", int(now.timestamp()), now)
        uncached = None
    except JournalError as e:
        uncached = e
    return Reference(issuer_keys, deny, version, rules, now), uncached


class Refresher:
    """Downloads the reference data on a thread of its own, every refresh_every seconds or when
    poked (the first download is the loop's own, before its first card), so that a gateway
    that does not answer (a dead zone that swallows packets: each try waits out its timeout)
    never keeps a rider waiting. The card loop takes each result between cards
    (Validator.take_refreshed). The thread has its own journal connection."""

    def __init__(self, v: "Validator"):
        self.v = v
        self.results: queue.Queue = queue.Queue()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="refresher", daemon=True)

    def start(self) -> Refresher:
        self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        journal = None
        try:
            while True:
                self._wake.wait(self.v.s.refresh_every)
                self._wake.clear()
                if self._stop.is_set():
                    return
                try:
                    journal = journal or Journal(self.v.s.journal, self.v.s.terminal_id)
                except JournalError:
                    journal = None  # downloaded all the same; caching it is said to have failed
                self.results.put(self.v.download(journal))
        finally:
            if journal is not None:
                journal.close()


# --- direction ---------------------------------------------------------------------------

TAP_OFF = "tap_off"
TAP_OFF_MESSAGE = "Goodbye"


def purse_tap_off(fci: p.Fci, *, now: datetime, place: validator.Place,
                  rules_version: int | None) -> validator.Decision:
    """A purse card at an exit validator: recorded, never debited (it paid at tap-on)."""
    return validator.Decision(now, "purse", True, TAP_OFF, TAP_OFF_MESSAGE, place.route, place.stop, rules_version,
                              currency=fci.currency, balance_after=fci.balance, card_id=fci.card_id.hex(),
                              detail="tap-off: the fare was paid at tap-on", direction="off")


# --- the shell ---------------------------------------------------------------------------

def unrecorded(decision: validator.Decision, error: JournalError) -> validator.Decision:
    """What the rider is shown for a tap the journal could not take: refused, out of service."""
    return replace(validator.refusal("journal_unavailable", now=decision.at,
                                     place=validator.Place(decision.route, decision.stop) if decision.route else None,
                                     card_id=decision.card_id,
                                     detail=f"not journalled ({error}): {decision.reason}"),
                   direction=decision.direction)


def paid_debit(decision: validator.Decision) -> PendingDebit | None:
    """The debit behind an accepted purse decision, as a pending debit: a payment the journal
    could not take is recovered (GET RECEIPT, never charged again) at the card's next tap."""
    if not (decision.accepted and decision.kind == "purse" and decision.receipt):
        return None
    r = p.parse_receipt(bytes.fromhex(decision.receipt))
    return PendingDebit(r.card_id, r.counter - 1, r.nonce, r.amount, r.currency, r.time)


class Validator:
    """The bus validator: the desk terminal.loop.serve drives (between_cards, handle_card)."""
    JOURNAL_PROBE = 2.0  # seconds between two tries of a journal that failed

    def __init__(self, settings: Settings, reader, journal: Journal, *, client: Client | None = None,
                 clock: Callable[[], datetime] = utc_now, out: Callable[[str], None] = print,
                 service: Service | None = None):
        check_settings(settings)
        self.s, self.reader, self.journal, self.client = settings, reader, journal, client
        self.clock, self.out = clock, out
        self.service = service or Service(out)
        self.ref = load_reference(journal, settings.fare_rules)
        self._provisioned = {certs.key_id(k): k for k in settings.issuer_keys}
        self.ref.issuer_keys = {**self.ref.issuer_keys, **self._provisioned}
        self.pending = journal.pending_debits()
        self.recent: dict[str, datetime] = journal.accepted_since(clock() - settings.repeat_window)
        self.qr_seen: dict = {}
        self.online = False
        saved = journal.load("place")
        self.place = (validator.Place(settings.route, settings.stop) if settings.route and settings.stop
                      else validator.Place(**saved[0]) if saved else None)
        self.feed: list[validator.StopChange] = []
        self._watched: dict[Path, float] = {}
        self.taps = 0
        self._journal_error: JournalError | None = None
        self.uploader: Uploader | None = None
        self.commands: queue.Queue | None = None
        self._next_refresh: datetime | None = None  # None: now
        self.refresher: Refresher | None = None  # the background download, while run() runs
        self._next_probe = 0.0

    # -- deciding -----------------------------------------------------------------------

    def fare(self) -> tuple[int | None, str, int | None]:
        """(fare, currency, rules version) at the current place; fare None when there is none."""
        if self.place is None:
            return None, self.s.currency, None
        if self.ref.rules is not None:
            try:
                fare = fares.price_boarding(self.ref.rules, self.place.route, self.place.stop, None, CONCESSION)
            except fares.FareError:
                return None, self.ref.rules.currency, self.ref.rules_version
            return fare.amount, fare.currency, fare.rules_version
        return self.s.fare, self.s.currency, None

    def decide_card(self, session) -> validator.Decision:
        """Read and decide the card in the field (no journalling, no signalling)."""
        now = self.clock()
        if self.place is None:
            return validator.refusal("no_place", now=now, place=None)
        if "journal" in self.service.problems and not self.journal_works():
            return validator.refusal("journal_unavailable", now=now, place=self.place,
                                     detail=f"the journal cannot be written: {self.service.problems['journal']}")
        amount, currency, version = self.fare()
        try:
            first = bytes(session.transmit(p.select_command()))
        except CardRemoved:
            return validator.refusal("card_removed", now=now, place=self.place)
        except ReaderError as e:
            return validator.refusal("reader_error", now=now, place=self.place, detail=str(e))
        fci = _purse_fci(first)
        nonce = None
        if fci is not None:
            card_id = fci.card_id.hex()
            if validator.already_tapped(self.recent, card_id, now, self.s.repeat_window):
                return validator.repeat_refusal(card_id, "purse", now, self.place, version)
            if self.s.direction == "off":
                return purse_tap_off(fci, now=now, place=self.place, rules_version=version)
            if not amount:  # no fare here: never debit a purse with a guess
                return validator.refusal("no_fare", now=now, place=self.place, kind="purse", card_id=card_id)
            if not any(d.card_id == fci.card_id for d in self.pending):
                # Write-ahead: the debit this tap may send, so that a validator dying between the
                # card's answer and the journal write finds the receipt again (GET RECEIPT) when
                # the card comes back, instead of leaving a gap in the card's counters.
                nonce = os.urandom(p.NONCE_SIZE)
                intent = PendingDebit(fci.card_id, fci.counter, nonce, amount, currency, p.unix_seconds(now))
                try:
                    self.journal.save_intent((intent,) + self.pending[:MAX_PENDING - 1], now)
                except JournalError as e:  # nothing was debited: refuse before the DEBIT
                    self.service.report("journal", str(e))
                    return validator.refusal("journal_unavailable", now=now, place=self.place, card_id=card_id,
                                             detail=f"the journal cannot be written: {e}")
        # Without a fare only token cards get this far; EMV reading wants some amount for its GPO.
        ctx = TapContext(amount or 1, currency, self.s.terminal_id, self.ref.issuer_keys, self.s.token_key, now,
                         deny=self.ref.deny, nonce=nonce)
        outcome, self.pending = tap(session, ctx, self.pending, selected=first)
        return validator.decide(outcome, now=now, place=self.place, rules_version=version, recent=self.recent,
                                window=self.s.repeat_window)

    def decide_qr(self, text: str) -> validator.Decision:
        from protocol import signed_qr

        now = self.clock()
        try:
            code = signed_qr.verify(text, self.ref.issuer_keys, now)
            if not isinstance(code, signed_qr.Ticket):
                raise signed_qr.SignedQrError("a pay code is for a till, not a bus")
            if code.route and self.place and code.route != self.place.route:
                raise signed_qr.SignedQrError(f"the ticket is for route {code.route}")
            if code.card_id.hex() in self.ref.deny:
                return validator.refusal("deny_listed", now=now, place=self.place, kind="qr",
                                         card_id=code.card_id.hex())
            self.qr_seen = signed_qr.refuse_replay(code, self.qr_seen, now)
        except signed_qr.Replayed as e:
            return validator.refusal("qr_replayed", now=now, place=self.place, kind="qr", detail=str(e))
        except signed_qr.SignedQrError as e:
            return validator.refusal("bad_qr", now=now, place=self.place, kind="qr", detail=str(e))
        return validator.Decision(now, "qr", True, "qr_ticket", validator.MESSAGES["qr_ticket"],
                                  self.place.route if self.place else None, self.place.stop if self.place else None,
                                  card_id=code.card_id.hex(), detail=f"ticket {code.ticket_id.hex()}")

    def conclude(self, decision: validator.Decision) -> validator.Decision:
        """Journal (durably), then tell: reader signal and panel. The decision shown: refused,
        out of service, when the journal could not take it."""
        if decision.direction != self.s.direction:  # every tap at an exit validator is a tap-off
            decision = replace(decision, direction=self.s.direction)
        tap_id = self.record(decision)
        if tap_id is None:
            decision = unrecorded(decision, self._journal_error)
        else:
            self.recent = validator.remember(self.recent, decision, self.s.repeat_window)
        self.taps += 1
        try:
            self.reader.signal(decision.signal)
        except Exception:  # the LED is a courtesy: the decision stands and is journalled
            pass
        for line in display.panel(decision, self.status()):
            self.out(line)
        if self.uploader is not None and tap_id is not None:
            self.uploader.poke()
        return decision

    def record(self, decision: validator.Decision, entry=None) -> str | None:
        """Write decision (as `entry`, a record of protocol.uplink, when given: a till's sale)
        and the pending debits durably; its journal id, or None when the journal cannot be
        written. A purse that paid keeps its debit pending then, so its next tap completes it
        (GET RECEIPT) instead of charging it again."""
        try:
            tap_id = self.journal.record(entry or decision, self.pending)
        except JournalError as e:
            self._journal_error = e
            self.service.report("journal", str(e))
            debit = paid_debit(decision)
            if debit is not None and not any(d.card_id == debit.card_id for d in self.pending):
                self.pending = ((debit,) + self.pending)[:MAX_PENDING]
            return None
        self.service.report("journal", None)
        return tap_id

    def journal_works(self) -> bool:
        """Try the journal again (at most every JOURNAL_PROBE seconds); True once it writes."""
        if time.monotonic() < self._next_probe:
            return False
        self._next_probe = time.monotonic() + self.JOURNAL_PROBE
        try:
            self.journal.probe(self.clock())
        except JournalError as e:
            self.service.report("journal", str(e))
            return False
        self.service.report("journal", None)
        return True

    def handle_card(self, session) -> validator.Decision:
        return self.conclude(self.decide_card(session))

    def status(self) -> display.Status:
        age = self.clock() - self.ref.refreshed_at if self.ref.refreshed_at else None
        try:
            unsent = self.journal.counts()["unsent"]
        except JournalError:
            unsent = None
        return display.Status(self.place.route if self.place else None, self.place.stop if self.place else None,
                              self.online, age, unsent, tuple(self.service.problems))

    # -- the place ----------------------------------------------------------------------

    def set_place(self, place: validator.Place, why: str) -> None:
        if place != self.place:
            self.place = place
            self.out(f"{why}: route {place.route} stop {place.stop}")
            try:
                self.journal.save("place", {"route": place.route, "stop": place.stop}, self.clock())
            except JournalError as e:  # the place holds in memory; a restart asks for it again
                self.service.report("journal", str(e))

    def command(self, line: str) -> None:
        try:
            self.set_place(validator.parse_command(line, self.place), "command")
        except ValueError as e:
            self.out(str(e))

    def follow_feed(self) -> None:
        path = self.s.stop_feed
        if path is not None and self._changed(path):
            try:
                self.feed = read_stop_feed(path)
            except (OSError, ValueError) as e:
                self.out(f"stop feed {path}: {e}")
        place = validator.place_at(self.feed, self.clock()) if self.feed else None
        if place is not None:
            self.set_place(place, "stop feed")

    def reread_feed(self) -> None:
        if self.s.stop_feed is not None:
            self._watched.pop(self.s.stop_feed, None)

    def _changed(self, path: Path) -> bool:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return False
        if self._watched.get(path) == mtime:
            return False
        self._watched[path] = mtime
        return True

    # -- QR frames ----------------------------------------------------------------------

    def qr_frames(self) -> list[Path]:
        frames = []
        if self.s.qr_frame is not None and self._changed(self.s.qr_frame):
            frames.append(self.s.qr_frame)
        if self.s.qr_dir is not None and self.s.qr_dir.is_dir():
            for path in sorted(self.s.qr_dir.iterdir()):
                if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".pgm", ".bmp") and self._changed(path):
                    frames.append(path)
        return frames

    def handle_frame(self, path: Path) -> validator.Decision | None:
        text = read_qr_text(path)
        if text is None:
            return None  # a frame without a code: nobody is showing one
        return self.conclude(self.decide_qr(text))

    # -- online -------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Download the reference data now (this thread waits for the gateway); True if online."""
        if self.client is None:
            return False
        return self.take_refreshed(self.download(self.journal))

    def download(self, journal: Journal | None):
        """A refresh's result: (Reference, JournalError or None), or the exception that ended it."""
        try:
            return refresh_reference(self.ref, self.client, journal, self.clock())
        except (GatewayError, ValueError, KeyError, TypeError) as e:
            return e
        except Exception as e:  # whatever else: logged with its trace, the old data stays
            log.exception("refreshing the reference data failed")
            return e

    def take_refreshed(self, result) -> bool:
        """Use a refresh's result (Validator.download); True if online."""
        if isinstance(result, Exception):
            if self.online:
                self.out(f"gateway unreachable, working offline: {result}")
            self.online = False
            return False
        self.ref, uncached = result
        self.ref.issuer_keys = {**self.ref.issuer_keys, **self._provisioned}
        if uncached is not None:  # used now, not cached for a restart
            self.service.report("journal", str(uncached))
        self.online = True
        return True

    # -- the loop -----------------------------------------------------------------------

    def between_cards(self, stop: threading.Event) -> None:
        while self.commands is not None and not self.commands.empty():
            self.command(self.commands.get_nowait())
        self.follow_feed()
        for frame in self.qr_frames():
            if self.finished():
                break
            self.handle_frame(frame)
        self.keep_refreshed()
        if "journal" in self.service.problems:
            self.journal_works()

    def keep_refreshed(self) -> None:
        """Take what the background refresher downloaded; without one, refresh when due."""
        if self.refresher is not None:
            while not self.refresher.results.empty():
                self.take_refreshed(self.refresher.results.get_nowait())
        elif self._next_refresh is None or self.clock() >= self._next_refresh:
            self.refresh()
            self._next_refresh = self.clock() + timedelta(seconds=self.s.refresh_every)

    def finished(self) -> bool:
        return self.s.max_taps is not None and self.taps >= self.s.max_taps

    def clock_jumped(self, by: timedelta) -> None:
        """Times remembered by the old clock move with it: a card accepted a moment ago stays a
        repeat; the next refresh is now."""
        self.recent = {k: t + by for k, t in self.recent.items()}
        self._next_refresh = None
        if self.refresher is not None:
            self.refresher.poke()

    def run(self, stop: threading.Event, commands: queue.Queue | None = None, *,
            watch: ClockWatch | None = None) -> None:
        """The card loop; with a gateway, the reference data are downloaded in the background."""
        self.commands = commands
        if self.client is not None and self.refresher is None:
            self.refresh()  # once before the first card; then in the background
            self.refresher = Refresher(self).start()
        try:
            serve(self, self.reader, stop, watch=watch)
        finally:
            if self.refresher is not None:
                self.refresher.stop()
                self.refresher = None


def _purse_fci(answer: bytes) -> p.Fci | None:
    try:
        response = parse_response(answer)
        return p.parse_fci(response.data) if response.sw == 0x9000 else None
    except (MalformedAPDU, p.PurseError, ValueError):
        return None


def read_stop_feed(path: Path) -> list[validator.StopChange]:
    """A JSON list of {"at", "route", "stop"} or a CSV with a header at,route,stop; times ISO 8601 UTC."""
    text = Path(path).read_text(encoding="utf-8")
    rows = json.loads(text) if text.lstrip().startswith("[") else list(csv.DictReader(text.splitlines()))
    changes = []
    for n, row in enumerate(rows, 1):
        try:
            at = datetime.fromisoformat(str(row["at"]).replace("Z", "+00:00"))
            at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
            changes.append(validator.StopChange(at, validator.Place(str(row["route"]), str(row["stop"]))))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"entry {n}: needs at (ISO 8601), route and stop ({e})") from None
    return changes


def read_qr_text(path: Path) -> str | None:
    """The text of the first QR code in an image file, None when there is none."""
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            found = zxingcpp.read_barcodes(image.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)
    except (OSError, UnidentifiedImageError):
        return None
    return found[0].text if found else None


def run(settings: Settings, *, out: Callable[[str], None] = print) -> int:
    """`tapstack terminal validator`: open the reader and journal, start the uploader, loop until stopped."""
    from terminal.loop import open_terminal

    check_settings(settings)
    opened = open_terminal(settings.reader, settings.journal, settings.terminal_id, out)
    stop, reader, journal = opened.stop, opened.reader, opened.journal
    if journal is None:  # stopped before the journal could be opened
        return 0
    client = (Client(settings.gateway, settings.key_id, settings.secret)
              if settings.gateway else None)
    v = Validator(settings, reader, journal, client=client, out=out, service=opened.service)
    commands: queue.Queue = queue.Queue()
    if hasattr(signal, "SIGUSR1"):  # re-read the stop feed now (QR frames already read stay read)
        signal.signal(signal.SIGUSR1, lambda *_: v.reread_feed())
    threading.Thread(target=_read_commands, args=(commands,), daemon=True).start()  # "stop S" lines
    if client is not None:
        v.uploader = Uploader(settings.journal, settings.terminal_id, client, utc_now, on_error=out)
        v.uploader.start()
    out(f"validator {settings.terminal_id.hex()} on {reader.name}; {display.status_line(v.status())}")
    try:
        v.run(stop, commands, watch=ClockWatch(utc_now))
    finally:
        if v.uploader is not None:
            v.uploader.stop()
        reader.close()
        journal.close()
    return 0


def _read_commands(commands: queue.Queue) -> None:
    for line in sys.stdin:
        if line.strip():
            commands.put(line)


# --- command-line values (terminal/commands.py) --------------------------------------------

def secret_text(value: str) -> str:
    """A secret given inline, or @FILE to read it from a file (keeps it out of `ps`)."""
    if value.startswith("@"):
        return Path(value[1:]).read_text(encoding="utf-8").strip()
    return value


def hex_arg(text: str, name: str) -> bytes:
    """`text` as bytes, or ValueError naming the option `name` when it is not hex."""
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{name} must be hex digits") from None
