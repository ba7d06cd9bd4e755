"""The card loop validator and till share (terminal.loop): nothing ends it but a signal or the
desk being finished; what keeps the machine out of service is said once, and when it is back."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

from terminal.loop import ClockWatch, Service, serve
from terminal.readers.base import ReaderUnavailable
from terminal.readers.mock import MockReader
from wallet.card import plain_uid_card

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


class Desk:
    """A desk counting what the loop asks of it; `fail` makes handle_card raise for the first n taps."""

    def __init__(self, reader, stop, taps=3, fail=0, fail_between=0):
        self.reader, self.stop, self.want, self.fail, self.fail_between = reader, stop, taps, fail, fail_between
        self.lines, self.taps, self.between, self.jumps = [], 0, 0, []
        self.service = Service(self.lines.append)

    def between_cards(self, stop):
        self.between += 1
        if self.fail_between:
            self.fail_between -= 1
            raise RuntimeError("a frame that breaks the scanner")
        if self.reader.card is not None and not self.reader.presented and self.taps < self.want:
            self.reader.present()  # the next rider

    def handle_card(self, session):
        session.transmit(bytes.fromhex("00A404000AF0746170737461636B0100"))
        self.reader.remove()  # the rider walks on, whatever the machine made of the tap
        if self.fail:
            self.fail -= 1
            raise KeyError("a bug in the decision")
        self.taps += 1

    def finished(self):
        return self.taps >= self.want

    def clock_jumped(self, by):
        self.jumps.append(by)


def run(desk, stop, **kw):
    thread = threading.Thread(target=serve, args=(desk, desk.reader, stop), kwargs=kw, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the loop did not end"


def test_an_unexpected_error_is_logged_shown_and_the_loop_goes_on(caplog):
    reader, stop = MockReader(plain_uid_card(bytes.fromhex("04112233445566"))), threading.Event()
    desk = Desk(reader, stop, taps=2, fail=2, fail_between=1)
    with caplog.at_level(logging.ERROR, logger="terminal"):
        run(desk, stop)
    assert desk.taps == 2  # both failing taps were followed by good ones
    assert reader.signals == ["error", "error"]  # the rider saw the machine fail
    assert sum("OUT OF SERVICE  the tap: KeyError" in line for line in desk.lines) == 2
    assert any("OUT OF SERVICE  between cards: RuntimeError" in line for line in desk.lines)
    traces = [r for r in caplog.records if r.exc_info]
    assert len(traces) == 3 and {r.exc_info[0] for r in traces} == {KeyError, RuntimeError}


def test_the_loop_ends_right_after_the_last_decision_with_the_card_still_there():
    reader, stop = MockReader(plain_uid_card(bytes.fromhex("04112233445566"))), threading.Event()
    desk = Desk(reader, stop, taps=1)
    desk.handle_card = lambda session: setattr(desk, "taps", desk.taps + 1)  # the card stays in the field
    run(desk, stop)
    assert desk.taps == 1 and reader.presented


class Flaky(MockReader):
    """A reader gone for its first `absent` waits (pcscd restarting), then a driver bug, then fine."""

    def __init__(self, card, absent):
        super().__init__(card)
        self.absent = absent

    def wait_for_card(self, timeout=None):
        if self.absent:
            self.absent -= 1
            if self.absent == 0:
                raise OSError("a driver error nobody mapped")
            raise ReaderUnavailable("cannot reach pcscd")
        return super().wait_for_card(timeout)


def test_a_reader_that_goes_away_is_said_once_and_its_return_too(monkeypatch, caplog):
    monkeypatch.setattr("terminal.loop.RETRY_READER", 0.01)
    reader, stop = Flaky(plain_uid_card(bytes.fromhex("04112233445566")), absent=4), threading.Event()
    desk = Desk(reader, stop, taps=1)
    run(desk, stop)
    assert desk.lines == ["OUT OF SERVICE  reader: cannot reach pcscd",
                          "OUT OF SERVICE  reader: OSError: a driver error nobody mapped",
                          "IN SERVICE      reader works again"]
    assert desk.taps == 1 and desk.service.in_service


def test_a_signal_ends_the_loop_without_a_card():
    reader, stop = MockReader(), threading.Event()
    desk = Desk(reader, stop, taps=1)
    threading.Timer(0.3, stop.set).start()
    run(desk, stop)
    assert desk.taps == 0 and desk.between >= 1


def test_service_reports_changes_only():
    lines = []
    service = Service(lines.append)
    assert service.report("journal", "disk full") and not service.report("journal", "disk full")
    service.report("reader", "unplugged")
    service.report("journal", None)
    service.report("reader", None)
    assert not service.report("reader", None)
    assert lines == ["OUT OF SERVICE  journal: disk full", "OUT OF SERVICE  reader: unplugged",
                     "IN SERVICE      journal works again; still out of service: reader",
                     "IN SERVICE      reader works again"]


def test_the_clock_watch_sees_jumps_not_time_passing():
    wall, mono = [NOW], [100.0]
    watch = ClockWatch(lambda: wall[0], lambda: mono[0])
    wall[0] += timedelta(seconds=30)
    mono[0] += 30.0
    assert watch.check() is None  # time passing
    wall[0] -= timedelta(hours=2)
    mono[0] += 1.0
    assert watch.check() == -timedelta(hours=2, seconds=1)
    wall[0] += timedelta(seconds=2)
    mono[0] += 0.0
    assert watch.check() is None  # under 5 s of drift: not a jump
