"""The card loop the bus validator and the shop till share, and what keeps it serving.

    serve(desk, reader, stop)    wait for a card, let the desk decide it, go on when it left;
                                 between cards, the desk's own work (commands, frames, refresh)

A machine on a bus runs unattended all day, so nothing a reader, a card, a QR frame, the
journal or the gateway does ends this loop. A reader that goes away (unplugged, pcscd
restarted, an nfcpy device closed) is reported and asked again until it is back; an
unexpected error is logged with its trace, the panel says "out of service" for that tap,
and the loop goes on. It ends only when `stop` is set (a signal) or the desk is finished
(--max-taps: right after the last decision, without waiting for the card to leave).

`Service` is what the panel says about the machine itself: out of service while a part it
cannot serve without (the reader, the journal) is failing, said once when it starts and
once when it ends. (The gateway is not such a part: without it the machine works offline,
and its status line says so.)
`ClockWatch` notices the wall clock jumping (an NTP correction, a box without a real-time
clock setting its time at boot) by comparing it with the monotonic clock.
"""
from __future__ import annotations

import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from terminal.display import age
from terminal.journal import ForeignJournal, Journal, JournalError
from terminal.readers.base import CardRemoved, ReaderError

log = logging.getLogger("terminal")

RETRY_READER = 1.0  # seconds between two looks at a reader that is not there
CARD_WAIT = 0.25  # seconds of one wait for a card, between the desk's other work
REMOVAL_WAIT = 0.25
JUMP = timedelta(seconds=5)  # a wall clock moving this much more or less than the monotonic one jumped


class Service:
    """What keeps the machine from taking taps now, by part ("reader", "journal")."""

    def __init__(self, out: Callable[[str], None] = print):
        self.out = out
        self.problems: dict[str, str] = {}

    @property
    def in_service(self) -> bool:
        return not self.problems

    def report(self, part: str, problem: str | None) -> bool:
        """Record what is wrong with part (None: nothing any more); says so when it changes."""
        if self.problems.get(part) == problem:
            return False
        if problem is None:
            del self.problems[part]
            still = f"; still out of service: {', '.join(self.problems)}" if self.problems else ""
            self.out(f"IN SERVICE      {part} works again{still}")
        else:
            self.problems[part] = problem
            self.out(f"OUT OF SERVICE  {part}: {problem}")
        return True


class ClockWatch:
    """Notices the wall clock jumping against the monotonic clock."""

    def __init__(self, clock: Callable[[], datetime], monotonic: Callable[[], float] = time.monotonic,
                 jump: timedelta = JUMP):
        self.clock, self.monotonic, self.jump = clock, monotonic, jump
        self._wall, self._mono = clock(), monotonic()

    def check(self) -> timedelta | None:
        """How far the wall clock jumped since the last check (None: it did not)."""
        wall, mono = self.clock(), self.monotonic()
        drift = (wall - self._wall) - timedelta(seconds=mono - self._mono)
        self._wall, self._mono = wall, mono
        return drift if abs(drift) >= self.jump else None


class Desk(Protocol):
    """What the loop drives: the bus validator (terminal.bus.Validator) or the till (terminal.till.Till)."""
    service: Service
    reader: object

    def between_cards(self, stop: threading.Event) -> None:
        """Commands, frames, refresh, timers: whatever the desk does while no card is there."""

    def handle_card(self, session) -> object:
        """Decide the card, journal the decision, tell the rider."""

    def finished(self) -> bool:
        """True when the desk has done what it was started for (--max-taps, a --sales script)."""

    def clock_jumped(self, by: timedelta) -> None:
        """The wall clock moved by `by` at once: reschedule what was timed by it."""


def serve(desk: Desk, reader, stop: threading.Event, *, watch: ClockWatch | None = None) -> None:
    """Run the desk until stop is set or it is finished."""
    while not stop.is_set() and not desk.finished():
        if watch is not None:
            guard(desk, "the clock", _check_clock, desk, watch)
        guard(desk, "between cards", desk.between_cards, stop)
        if stop.is_set() or desk.finished():
            break
        session = next_card(reader, desk.service, stop)
        if session is None:
            continue
        try:
            if guard(desk, "the tap", desk.handle_card, session) is _FAILED:
                _signal(reader, "error")
        finally:
            try:
                session.close()
            except Exception:  # a session of a card or reader already gone
                log.debug("closing the session failed", exc_info=True)
        if desk.finished():
            break  # --max-taps: the last decision is shown; the card may stay where it is
        wait_until_removed(reader, stop)


_FAILED = object()


def guard(desk: Desk, what: str, fn, *args):
    """fn(*args); an exception is logged with its trace and shown as out of service, never raised."""
    try:
        return fn(*args)
    except Exception as e:
        log.exception("%s failed", what)
        desk.service.out(f"OUT OF SERVICE  {what}: {type(e).__name__}: {e} (logged; the machine goes on)")
        return _FAILED


def next_card(reader, service: Service, stop: threading.Event):
    """The card in the reader's field within CARD_WAIT seconds, or None; never raises. A reader
    that is not there is reported (once) and asked again after RETRY_READER seconds; back, it
    is said so. A card gone while it was being connected is no card."""
    try:
        session = reader.wait_for_card(CARD_WAIT)
    except CardRemoved:
        return None
    except Exception as e:  # ReaderError; anything else from a driver is logged with its trace
        if not isinstance(e, ReaderError):
            log.exception("waiting for a card failed")
        service.report("reader", str(e) if isinstance(e, ReaderError) else f"{type(e).__name__}: {e}")
        stop.wait(RETRY_READER)
        return None
    service.report("reader", None)
    return session


def wait_until_removed(reader, stop: threading.Event) -> None:
    """One tap per presentation: wait for the field to be empty (or the reader to be gone)."""
    while not stop.is_set():
        try:
            if reader.wait_for_removal(REMOVAL_WAIT):
                return
        except Exception as e:  # the reader is gone, or failing: the next wait for a card says so
            if not isinstance(e, (ReaderError, CardRemoved)):
                log.exception("waiting for the card to leave failed")
            return


def _check_clock(desk: Desk, watch: ClockWatch) -> None:
    jump = watch.check()
    if jump is None:
        return
    way = "forward" if jump > timedelta(0) else "back"
    span = timedelta(seconds=round(abs(jump).total_seconds()))  # 1:59:59.98 is 2 h, not 1 h
    desk.service.out(f"WARNING         clock: jumped {way} {age(span)} (now {watch.clock():%Y-%m-%d %H:%M:%S} "
                     "UTC); taps carry the new time")
    desk.clock_jumped(jump)


def _signal(reader, outcome: str) -> None:
    try:
        reader.signal(outcome)
    except Exception:  # the LED is a courtesy
        log.debug("signal failed", exc_info=True)


# --- starting a program ----------------------------------------------------------------------

def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def read_commands(commands: queue.Queue) -> None:
    """Each non-blank line of stdin onto `commands`, for the desk to take between cards
    (a driver's "stop S", a cashier's "sale 12.50"); run on a daemon thread."""
    for line in sys.stdin:
        if line.strip():
            commands.put(line)


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM: the only ways, with --max-taps, that a terminal ends."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def log_to_stderr() -> None:
    """Warnings and errors of the terminal, with their traces, on stderr (journalctl under systemd)."""
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.WARNING)


@dataclass
class Opened:
    """What a terminal program opens before its loop: the stop event, its service, reader and
    journal (None when a signal came before the journal could be opened)."""
    stop: threading.Event
    service: Service
    reader: object
    journal: Journal | None


def open_terminal(reader_spec: str, journal_path: Path, terminal_id: bytes,
                  out: Callable[[str], None]) -> Opened:
    """Traces to stderr, signals to `stop`, the reader (it may still be absent: the loop
    waits), the journal once it opens. ReaderError for a reader spec that cannot be; a
    ForeignJournal for another terminal's journal."""
    from terminal.readers import open_reader

    log_to_stderr()
    stop, service = stop_on_signals(), Service(out)
    reader = open_reader(reader_spec)
    journal = open_journal(journal_path, terminal_id, service, stop)
    if journal is None:
        reader.close()
    return Opened(stop, service, reader, journal)


def open_journal(path: Path, terminal_id: bytes, service: Service, stop: threading.Event,
                 retry: float = 2.0) -> Journal | None:
    """The journal, once it can be opened: a file system still read-only or full at boot is
    waited for (out of service, asked again every `retry` seconds); None if stopped first.
    ForeignJournal (another terminal's file) is a setting to fix, raised at once."""
    while True:
        try:
            journal = Journal(path, terminal_id)
        except ForeignJournal:
            raise
        except JournalError as e:
            service.report("journal", str(e))
            if stop.wait(retry):
                return None
            continue
        service.report("journal", None)
        return journal
