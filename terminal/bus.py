"""The bus validator: `tapstack terminal validator`, the desk terminal.loop.serve drives.

For each card the validator sets out its terms (place, fare, reference data, the repeat
memory), lets terminal.card decide, has the decision journalled (terminal/writeahead.py:
fsynced, the debit written ahead) and only then signals the reader and shows the panel
(terminal/display.py). Between cards it takes route/stop commands from stdin, follows the
stop feed (terminal/stops.py), reads QR ticket frames (terminal/frames.py) and takes the
reference data downloaded in the background (terminal/sync.py). The uploader runs on its
own thread with its own journal connection.

Direction: a validator at the entry door records tap-ons (`on`, the default); one at the
exit door records tap-offs (`off`). A tap-off debits no purse: on zone and distance routes
the purse paid at tap-on the fare to the end of the route from its boarding stop
(docs/fares.md). It is journalled and uploaded with "direction": "off", so the gateway can
end account-based trips (bank and UID cards) there and price them exactly.

Driven by a program (replays, simulations: docs/validator.md#driven-by-a-program): with
--simulated-clock the validator's clock is what `clock TIME` lines on its input say, and
nothing is decided before the first; with --machine-lines each input line is answered
`OK LINE` or `ERR LINE: why` once it is in effect, and each decision is also a
`DECISION {json}` line (the TapRecord's JSON, the journal's tap id and the rider's message).
"""
from __future__ import annotations

import json
import queue
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from protocol import fares
from protocol.uplink import Client, GatewayError
from terminal import card, display
from terminal.frames import Frames, read_qr_text
from terminal.journal import Journal, JournalError
from terminal.loop import ClockWatch, Service, read_commands, serve, utc_now
from terminal.settings import Settings, check_settings
from terminal.stops import StopFeed, parse_command
from terminal.sync import Sync
from terminal.uploader import Uploader, upload_all
from terminal.writeahead import WriteAhead

CONCESSION = "adult"  # a card-based purse carries no concession class yet: the adult fare
CLOCK_USAGE = "clock TIME, ISO 8601 with an offset (2026-11-26T07:00:00+08:00)"


class SimulatedClock:
    """The validator's clock under --simulated-clock: the time the last `clock TIME` line set."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def parse_clock(line: str) -> datetime:
    """The time of a `clock TIME` line; ValueError saying what a good one is."""
    words = line.split()
    try:
        if len(words) != 2 or words[0] != "clock":
            raise ValueError
        at = datetime.fromisoformat(words[1])
    except ValueError:
        raise ValueError(f"not a clock line: {line.strip()!r} (use: {CLOCK_USAGE})") from None
    if at.tzinfo is None:
        raise ValueError(f"the clock's time needs its offset (use: {CLOCK_USAGE})")
    return at


def boarding_fare(rules: fares.FareRules | None, place: card.Place | None, flat: int | None,
                  currency: str) -> tuple[int | None, str, int | None]:
    """(fare, currency, rules version) of a boarding at place; fare None when there is none."""
    if place is None:
        return None, currency, None
    if rules is not None:
        try:
            fare = fares.price_boarding(rules, place.route, place.stop, None, CONCESSION)
        except fares.FareError:
            return None, rules.currency, rules.version
        return fare.amount, fare.currency, fare.rules_version
    return flat, currency, None


class Validator:
    """The bus desk: between_cards, handle_card, finished, clock_jumped (terminal.loop.Desk)."""

    def __init__(self, settings: Settings, reader, journal: Journal, *, client: Client | None = None,
                 clock: Callable[[], datetime] = utc_now, out: Callable[[str], None] = print,
                 service: Service | None = None):
        check_settings(settings)
        self.s, self.reader, self.journal = settings, reader, journal
        self.clock, self.out = clock, out
        self.service = service or Service(out)
        self.sync = Sync(journal, client=client, every=settings.refresh_every, clock=clock, out=out,
                         service=self.service, issuer_keys=settings.issuer_keys, rules_file=settings.fare_rules,
                         background=not isinstance(clock, SimulatedClock))
        self.write_ahead = WriteAhead(journal, self.service, clock)
        self.recent: dict[str, datetime] = journal.accepted_since(clock() - settings.repeat_window)
        self.qr_seen: dict = {}
        saved = journal.load("place")
        self.place = (card.Place(settings.route, settings.stop) if settings.route and settings.stop
                      else card.Place(**saved[0]) if saved else None)
        self.feed = StopFeed(settings.stop_feed) if settings.stop_feed is not None else None
        self.frames = Frames(settings.qr_frame, settings.qr_dir)
        self.taps = 0
        self.uploader: Uploader | None = None
        self.commands: queue.Queue | None = None

    @property
    def client(self) -> Client | None:
        """The gateway the reference data come from (None: offline only)."""
        return self.sync.client

    @property
    def ref(self):
        """The reference data (issuer keys, deny-list, fare rules) decided with now."""
        return self.sync.ref

    @property
    def online(self) -> bool:
        return self.sync.online

    @property
    def pending(self):
        """The unfinished purse debits (tear recovery), as journalled."""
        return self.write_ahead.pending

    # -- deciding -----------------------------------------------------------------------

    def fare(self) -> tuple[int | None, str, int | None]:
        return boarding_fare(self.ref.rules, self.place, self.s.fare, self.s.currency)

    def terms(self) -> card.Terms:
        now = self.clock()
        amount, currency, version = self.fare()
        return card.Terms(now, self.place, amount, currency, version, self.s.terminal_id, self.s.token_key,
                          self.ref.issuer_keys, self.ref.deny, self.write_ahead.pending, self.recent,
                          self.s.repeat_window, self.s.direction,
                          journal_down=self.write_ahead.down() if self.place is not None else None)

    def handle_card(self, session) -> card.Decision:
        """Decide the card in the field, journal the decision, then tell."""
        return self.conclude(self.write_ahead.decide(session, self.terms()))

    def decide_qr(self, text: str) -> card.Intent:
        decision, self.qr_seen = card.qr(text, now=self.clock(), place=self.place, issuer_keys=self.ref.issuer_keys,
                                         deny=self.ref.deny, seen=self.qr_seen)
        return card.Intent(decision, self.write_ahead.pending)

    def conclude(self, intent: card.Intent) -> card.Decision:
        """Journal (durably), then tell: reader signal and panel. The decision shown: refused,
        out of service, when the journal could not take it."""
        if intent.decision.direction != self.s.direction:  # every tap at an exit validator is a tap-off
            intent = replace(intent, decision=replace(intent.decision, direction=self.s.direction))
        tap_id, intent = self.write_ahead.write(intent)
        decision = intent.decision
        if tap_id is not None:
            self.recent = card.remember(self.recent, decision, self.s.repeat_window)
        self.taps += 1
        try:
            self.reader.signal(decision.signal)
        except Exception:  # the LED is a courtesy: the decision stands and is journalled
            pass
        for line in display.panel(decision, self.status()):
            self.out(line)
        if self.s.machine_lines:
            self.out("DECISION " + json.dumps({**decision.to_json(), "tap_id": tap_id, "message": decision.message}))
        if self.uploader is not None and tap_id is not None:
            self.uploader.poke()
        return decision

    def status(self) -> display.Status:
        age = self.clock() - self.ref.refreshed_at if self.ref.refreshed_at else None
        try:
            unsent = self.journal.counts()["unsent"]
        except JournalError:
            unsent = None
        return display.Status(self.place.route if self.place else None, self.place.stop if self.place else None,
                              self.online, age, unsent, tuple(self.service.problems))

    # -- the place ----------------------------------------------------------------------

    def set_place(self, place: card.Place, why: str) -> None:
        if place != self.place:
            self.place = place
            self.out(f"{why}: route {place.route} stop {place.stop}")
            try:
                self.journal.save("place", {"route": place.route, "stop": place.stop}, self.clock())
            except JournalError as e:  # the place holds in memory; a restart asks for it again
                self.service.report("journal", str(e))

    def command(self, line: str, stop: threading.Event | None = None) -> None:
        """One input line: a place ("stop S", "route R stop S"), `clock TIME` (--simulated-clock)
        or `quit`; with --machine-lines answered OK once in effect, ERR when refused."""
        verb = line.split()[0] if line.split() else ""
        try:
            if verb == "clock":
                if not isinstance(self.clock, SimulatedClock):
                    raise ValueError("a clock line sets a simulated clock: start the validator with --simulated-clock")
                self.clock.now = parse_clock(line)
            elif verb == "quit":
                if stop is not None:
                    stop.set()
            else:
                self.set_place(parse_command(line, self.place), "command")
        except ValueError as e:
            self.out(str(e))
            self.answer(f"ERR {line.strip()}: {e}")
        else:
            self.answer(f"OK {line.strip()}")

    def answer(self, line: str) -> None:
        """A line for the program driving the validator (--machine-lines)."""
        if self.s.machine_lines:
            self.out(line)

    def follow_feed(self) -> None:
        place = self.feed.place(self.clock(), self.out) if self.feed is not None else None
        if place is not None:
            self.set_place(place, "stop feed")

    def reread_feed(self) -> None:
        if self.feed is not None:
            self.feed.reread()

    # -- QR frames ----------------------------------------------------------------------

    def handle_frame(self, path: Path) -> card.Decision | None:
        text = read_qr_text(path)
        if text is None:
            return None  # a frame without a code: nobody is showing one
        return self.conclude(self.decide_qr(text))

    # -- the loop -----------------------------------------------------------------------

    def refresh(self) -> bool:
        """Download the reference data now (this thread waits for the gateway); True if online."""
        return self.sync.refresh()

    def between_cards(self, stop: threading.Event) -> None:
        while self.commands is not None and not self.commands.empty() and not stop.is_set():
            self.command(self.commands.get_nowait(), stop)
        self.follow_feed()
        for frame in self.frames.new():
            if self.finished():
                break
            self.handle_frame(frame)
        self.sync.keep_fresh()
        if "journal" in self.service.problems:
            self.write_ahead.works()

    def finished(self) -> bool:
        return self.s.max_taps is not None and self.taps >= self.s.max_taps

    def clock_jumped(self, by: timedelta) -> None:
        """Times remembered by the old clock move with it: a card accepted a moment ago stays a
        repeat; the next refresh is now."""
        self.recent = {k: t + by for k, t in self.recent.items()}
        self.sync.clock_jumped()

    def run(self, stop: threading.Event, commands: queue.Queue | None = None, *,
            watch: ClockWatch | None = None) -> None:
        """The card loop; with a gateway, the reference data are downloaded in the background."""
        self.commands = commands
        with self.sync.running():
            serve(self, self.reader, stop, watch=watch)


def run(settings: Settings, *, out: Callable[[str], None] = print) -> int:
    """`tapstack terminal validator`: open the reader and journal, start the uploader, loop until
    stopped; then upload what is journalled and say what is left."""
    from terminal.loop import open_terminal

    check_settings(settings)
    opened = open_terminal(settings.reader, settings.journal, settings.terminal_id, out)
    stop, reader, journal = opened.stop, opened.reader, opened.journal
    if journal is None:  # stopped before the journal could be opened
        return 0
    client = (Client(settings.gateway, settings.key_id, settings.secret)
              if settings.gateway else None)
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=_read_commands, args=(commands, settings.simulated_clock), daemon=True).start()
    clock = utc_now
    if settings.simulated_clock:
        clock = first_clock(commands, stop, out, settings.machine_lines)
        if clock is None:
            reader.close()
            journal.close()
            return 0
    v = Validator(settings, reader, journal, client=client, clock=clock, out=out, service=opened.service)
    if hasattr(signal, "SIGUSR1"):  # re-read the stop feed now (QR frames already read stay read)
        signal.signal(signal.SIGUSR1, lambda *_: v.reread_feed())
    if client is not None:
        v.uploader = Uploader(settings.journal, settings.terminal_id, client, utc_now, on_error=out)
        v.uploader.start()
    out(f"validator {settings.terminal_id.hex()} on {reader.name}; {display.status_line(v.status())}")
    try:  # a simulated clock jumps by design: no clock watch then
        v.run(stop, commands, watch=None if settings.simulated_clock else ClockWatch(utc_now))
    finally:
        if v.uploader is not None:
            v.uploader.stop()
            out(upload_at_exit(journal, client))
        reader.close()
        journal.close()
    return 0


def _read_commands(commands: queue.Queue, quit_at_end: bool) -> None:
    """stdin's lines onto `commands` ("stop S" and, driven, "clock TIME"). A driven validator
    (--simulated-clock) quits at the end of its input: its clock cannot move any more."""
    read_commands(commands)
    if quit_at_end:
        commands.put("quit")


def first_clock(commands: queue.Queue, stop: threading.Event, out: Callable[[str], None],
                answer: bool) -> SimulatedClock | None:
    """Under --simulated-clock, wait for the first `clock TIME` line: no tap is stamped with a
    time the simulation did not set. Other lines wait for the validator; None: stopped first."""
    out(f"WAITING         for the clock: no card is decided before a line '{CLOCK_USAGE}' on input")
    held = []
    while not stop.is_set():
        try:
            line = commands.get(timeout=0.25)
        except queue.Empty:
            continue
        verb = line.split()[0]
        if verb == "quit":
            if answer:
                out("OK quit")
            return None
        if verb != "clock":
            held.append(line)
            continue
        try:
            clock = SimulatedClock(parse_clock(line))
        except ValueError as e:
            out(str(e))
            if answer:
                out(f"ERR {line.strip()}: {e}")
            continue
        if answer:
            out(f"OK {line.strip()}")
        for line in held + [commands.get_nowait() for _ in range(commands.qsize())]:
            commands.put(line)
        return clock
    return None


def upload_at_exit(journal: Journal, client: Client) -> str:
    """Upload what the journal still holds; one line: what the gateway answered for the whole
    journal and what is left (the gateway did not answer: left for the next start)."""
    why = ""
    try:
        upload_all(journal, client, utc_now)
    except (GatewayError, JournalError) as e:
        why = f" (gateway unreachable: {e})"
    try:
        results = Counter((t["result"] or "unsent").partition(":")[0] for t in journal.taps())
    except JournalError as e:
        return f"UPLOADED        unknown: the journal cannot be read ({e})"
    return (f"UPLOADED        {sum(results.values())} taps journalled: {results['accepted']} accepted, "
            f"{results['duplicate']} duplicate, {results['rejected']} rejected; "
            f"{results['unsent']} left to upload{why}")
