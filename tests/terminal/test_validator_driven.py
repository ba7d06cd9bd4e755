"""`tapstack terminal validator` driven by a program, as a replay or a simulation drives it
(docs/validator.md#driven-by-a-program): its clock set by `clock TIME` lines, each input line
answered once in effect, each decision a DECISION line, the journal uploaded at exit.

One process on the real pcscd + vpcd and the real gateway behind a link the test cuts.
"""
from __future__ import annotations

import json
import queue
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from tapstack.demo.buses import Network
from tests.terminal.test_outages import ISSUER_KEY, ROOT, Panel, pcscd_field, register_terminal, stop  # noqa: F401
from wallet.testcards import DEMO_TOKEN_KEY, demo_purse_card

CITY = timezone(timedelta(hours=8))


def driven(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tapstack", "terminal", "validator", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)


def type_line(process: subprocess.Popen, line: str) -> None:
    process.stdin.write(line + "\n")
    process.stdin.flush()


@pytest.mark.pcscd
def test_a_driven_validator_decides_on_its_simulated_clock_and_uploads_at_exit(
        pcscd_field, tapstack_gateway, tmp_path):
    rider = demo_purse_card(balance=1000, card_id=bytes.fromhex("5441500000000d01"))
    link = Network(tapstack_gateway.url)  # the bus's mobile data, which the test cuts
    day = (datetime.now(CITY) - timedelta(days=1)).replace(hour=7, minute=0, second=0, microsecond=0)
    process = driven("--reader", f"pcsc:{pcscd_field.reader.name}", "--route", "R1", "--stop", "S1", "--fare", "200",
                     "--issuer-key", ISSUER_KEY, "--token-key", DEMO_TOKEN_KEY.hex(),
                     "--journal", str(tmp_path / "j.db"), "--gateway", link.url,
                     "--terminal-key", register_terminal(tapstack_gateway), "--refresh-every", "3600",
                     "--simulated-clock", "--machine-lines")
    panel = Panel(process)

    def command(line: str, answer: str = "OK") -> int:
        seen = len(panel.lines)
        type_line(process, line)
        return panel.wait_for(f"{answer} {line}", seen)

    def tap() -> dict:
        pcscd_field.present(rider.card)
        line = panel.wait_for("DECISION ", len(panel.lines))
        pcscd_field.take_away()
        return json.loads(panel.lines[line].removeprefix("DECISION "))

    try:
        panel.wait_for("WAITING         for the clock")
        pcscd_field.present(rider.card)  # nothing is decided before the first clock line
        type_line(process, "stop S1")  # held until the clock is set, then taken (it changes nothing)
        time.sleep(1.0)
        assert not any(line.startswith(("DECISION", "OK")) for line in panel.lines)
        pcscd_field.take_away()
        command(f"clock {day.isoformat()}")
        panel.wait_for("OK stop S1")
        panel.wait_for("validator ")

        first = tap()
        assert (first["accepted"], first["amount"], first["at"]) == (True, 200, int(day.timestamp()))
        assert first["message"] == "Paid" and first["tap_id"] and first["stop"] == "S1"
        # 30 simulated seconds later: within the repeat window, however long it took here.
        command(f"clock {(day + timedelta(seconds=30)).isoformat()}")
        assert tap()["reason"] == "already_tapped"
        # Three simulated hours on (the clock jumps by design: no clock warning), at the next stop.
        later = day + timedelta(hours=3)
        command(f"clock {later.isoformat()}")
        command("stop S2")
        third = tap()
        assert (third["accepted"], third["stop"], third["at"]) == (True, "S2", int(later.timestamp()))

        refused = command("clock 07:00", "ERR")
        assert "ISO 8601 with an offset" in panel.lines[refused]
        command("clock 2026-11-26T07:00:00", "ERR")  # no offset
        command("fly away", "ERR")

        link.set(False)
        command("quit")
        assert process.wait(30) == 0
    finally:
        code = stop(process)
        link.close()
    assert code == 0 and rider.balance == 600
    assert not any("jumped" in line for line in panel.lines)
    exit_line = next(line for line in panel.lines if line.startswith("UPLOADED"))
    assert exit_line.startswith("UPLOADED        3 taps journalled:")
    # The uploader may have sent them already; whatever it had not is left, and said so.
    left = int(exit_line.split("; ")[1].split()[0])
    assert left == 0 or "gateway unreachable" in exit_line
    assert "Traceback" not in "\n".join(panel.errors), "\n".join(panel.errors)


def test_without_a_simulated_clock_a_clock_line_is_refused_and_quit_ends_it(tmp_path):
    process = driven("--reader", "mock", "--route", "R1", "--stop", "S1", "--fare", "200",
                     "--token-key", DEMO_TOKEN_KEY.hex(), "--journal", str(tmp_path / "j.db"), "--machine-lines")
    panel = Panel(process)
    try:
        panel.wait_for("validator ")
        type_line(process, "clock 2026-11-26T07:00:00+08:00")
        refused = panel.wait_for("ERR clock 2026-11-26T07:00:00+08:00: ")
        assert "--simulated-clock" in panel.lines[refused]
        type_line(process, "stop S1")
        panel.wait_for("OK stop S1")  # answered though nothing changed
        type_line(process, "quit")
        panel.wait_for("OK quit")
        assert process.wait(15) == 0
    finally:
        stop(process)
    assert "Traceback" not in "\n".join(panel.errors)


def test_on_a_simulated_clock_the_stop_feed_and_the_refresh_follow_the_clock_lines(tmp_path):
    """In process: the feed's place and the next download are timed by the clock lines, not
    by the wall clock; a line that is not a clock line is refused without moving it."""
    import threading

    from protocol.uplink import Client
    from terminal.bus import SimulatedClock, Validator
    from terminal.journal import Journal
    from terminal.readers.mock import MockReader
    from terminal.settings import Settings

    tries = []

    def unreachable(method, url, headers, body):
        tries.append(url)
        raise OSError("no network")

    start = datetime(2026, 11, 26, 6, 0, tzinfo=CITY)
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps([{"at": "2026-11-26T07:00:00+08:00", "route": "9", "stop": "harbour"}]))
    settings = Settings(route="9", stop="depot", fare=300, token_key=DEMO_TOKEN_KEY, terminal_id=b"BUS-0009",
                        journal=tmp_path / "j.db", stop_feed=feed, gateway="http://gateway.invalid",
                        key_id="tk_9", secret=b"s" * 16, refresh_every=3600, simulated_clock=True,
                        machine_lines=True)
    journal = Journal(settings.journal, settings.terminal_id)
    lines: list[str] = []
    v = Validator(settings, MockReader(), journal, client=Client(settings.gateway, "tk_9", b"s" * 16, send=unreachable),
                  clock=SimulatedClock(start), out=lines.append)
    stop = threading.Event()
    try:
        with v.sync.running():  # the first download, at 06:00
            assert v.sync.refresher is None and len(tries) == 1
            v.commands = queue.Queue()
            for line in ("clock 2026-11-26T06:59:59+08:00", "clock 06:59", "clock 2026-11-26T07:00:00+08:00"):
                v.commands.put(line)
                v.between_cards(stop)
                if line == "clock 2026-11-26T06:59:59+08:00":
                    assert v.place.stop == "depot" and len(tries) == 1  # not yet due, not yet there
            assert v.clock() == datetime(2026, 11, 26, 7, 0, tzinfo=CITY)
            assert v.place.stop == "harbour" and len(tries) == 2  # an hour of the simulated clock
            assert lines.count("OK clock 2026-11-26T07:00:00+08:00") == 1 and any(
                line.startswith("ERR clock 06:59: ") for line in lines)
    finally:
        journal.close()
