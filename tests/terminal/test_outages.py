"""Readers and services that come and go, on the real stacks: the validator and the till keep
running, say on their panel what is wrong, refuse taps they cannot journal, and resume by
themselves.

- `tapstack terminal validator` as its own process, its reader the real pcscd with the card on
  vsmartcard-vpcd, its journal on a small file system of its own (a tmpfs mounted in a
  private mount namespace), its gateway the real `tapstack gateway serve` behind a link
  the test can cut: the disk fills up and is freed, pcscd stops, comes back without the
  reader, comes back with it, the gateway is unreachable and back; then SIGTERM.
- `--max-taps N` ends right after the Nth decision, the card still on the reader.
- The validator loop over nfcpy udp whose device is closed under it; over pcscd+vpcd with
  the wall clock jumping back and forth.
- The till over pcscd+vpcd: a journal that refuses writes, pcscd restarted, no gateway.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from protocol.uplink import Client
from tapstack.demo.buses import Network
from terminal.bus import Validator
from terminal.journal import Journal, JournalError
from terminal.loop import ClockWatch
from terminal.settings import Settings
from wallet import pcscd as pcscd_harness
from wallet.testcards import DEMO_TOKEN_KEY, demo_issuer_keys, demo_purse_card

ROOT = Path(__file__).resolve().parents[2]
ISSUER_KEY = next(iter(demo_issuer_keys().values())).hex()


# --- helpers ----------------------------------------------------------------------------------

class Panel:
    """What a terminal program prints, line by line, as it comes (stdout and stderr)."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.lines, self.errors = process, [], []
        self._seen = threading.Condition()
        for stream, into in ((process.stdout, self.lines), (process.stderr, self.errors)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()

    def _read(self, stream, into):
        for line in stream:
            with self._seen:
                into.append(line.rstrip("\n"))
                self._seen.notify_all()

    def wait_for(self, text: str, after: int = 0, timeout: float = 20.0) -> int:
        """The index of the first line from `after` on that holds text; fails after timeout."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                found = next((i for i in range(after, len(self.lines)) if text in self.lines[i]), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None and not self._seen.wait(0.2):
                    pytest.fail(f"no line with {text!r} after line {after} within {timeout:g} s:\n"
                                + "\n".join(self.lines + self.errors), pytrace=False)
                self._seen.wait(min(left, 0.5))

    def since(self, n: int) -> list[str]:
        return self.lines[n:]


def restart_pcscd(daemon: pcscd_harness.Pcscd, name: str = pcscd_harness.DEFAULT_NAME, *,
                  stopped_for: float = 0.0) -> None:
    """Stop the Stage's pcscd (by pid) and start one on the same port whose vpcd reader is
    called `name`; the Stage's Pcscd object then holds the new one (and stops it at the end)."""
    port = daemon.readers[0].base_port
    daemon.stop()
    time.sleep(stopped_for)
    deadline = time.monotonic() + 60
    while True:
        try:
            again = pcscd_harness.start(2, name=name, port=port, reuse=False)
            break
        except pcscd_harness.PcscdError:  # another test run's pcscd on this machine: wait for it
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    daemon.process, daemon.pid, daemon.config_dir, daemon.log_path = (again.process, again.pid, again.config_dir,
                                                                       again.log_path)


def register_terminal(gateway) -> str:
    """A merchant and its terminal on the gateway; the terminal key KEY_ID:SECRET."""
    def post(path, body, key):
        request = urllib.request.Request(f"{gateway.url}{path}", data=json.dumps(body).encode(), method="POST",
                                         headers={**gateway.headers, "Content-Type": "application/json",
                                                  "Idempotency-Key": key})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    merchant = post("/v1/merchants", {"name": "Bus company"}, f"outage-merchant-{os.getpid()}")
    terminal = post("/v1/terminals", {"merchant_id": merchant["id"], "name": "bus 7"}, f"outage-bus-{os.getpid()}")
    return f"{terminal['key_id']}:{terminal['secret']}"


def terminal_run(*args: str, private_disk: tuple[Path, int] | None = None, read_only: bool = False
                 ) -> subprocess.Popen:
    """`tapstack terminal validator ARGS` as its own process; with private_disk (mount point, KiB),
    on a tmpfs of that size (read-only if asked) mounted in a mount namespace of its own."""
    argv = [sys.executable, "-m", "tapstack", "terminal", "validator", *args]
    if private_disk is not None:
        mount, size = private_disk
        options = f"size={size}k" + (",ro" if read_only else "")
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                f'mount -t tmpfs -o {options} tapstack-journal "$0" && exec "$@"', str(mount), *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def fill(path: Path) -> None:
    """Write zeros to path until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)


def stop(process: subprocess.Popen) -> int:
    process.terminate()
    try:
        return process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.fixture
def pcscd_field(tapstack_stage):
    from tapstack.testing.fields import StageError

    try:
        field = tapstack_stage.open("pcscd+vpcd")
    except StageError as error:
        pytest.fail(str(error), pytrace=False)
    yield field
    field.close()


# --- `terminal validator` as a process ----------------------------------------------------------------

@pytest.mark.pcscd
def test_max_taps_ends_right_after_the_last_decision(pcscd_field, tmp_path):
    demo = demo_purse_card(balance=1000)
    pcscd_field.present(demo.card)  # and it stays there
    process = terminal_run("--reader", f"pcsc:{pcscd_field.reader.name}", "--route", "R1", "--stop", "S1",
                           "--fare", "200", "--issuer-key", ISSUER_KEY, "--token-key", DEMO_TOKEN_KEY.hex(),
                           "--journal", str(tmp_path / "j.db"), "--max-taps", "1")
    panel = Panel(process)
    try:
        panel.wait_for("ACCEPTED  Paid 2.00 CNY")
        decided = time.monotonic()
        assert process.wait(10) == 0
        assert time.monotonic() - decided < 3.0  # it did not wait for the card to leave
    finally:
        stop(process)
    assert pcscd_field.card_side.presented and demo.balance == 800
    assert "Traceback" not in "\n".join(panel.errors)


@pytest.mark.pcscd
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="mounting the journal's own small file system needs root (CI runs as root)")
def test_the_validator_rides_out_a_full_disk_pcscd_a_vanished_reader_and_the_gateway(
        pcscd_field, tapstack_stage, tapstack_gateway, tmp_path):
    daemon = tapstack_stage.pcscd()
    reader_name = pcscd_field.reader.name
    riders = [demo_purse_card(balance=1000, card_id=bytes.fromhex(f"54415000000007{n:02x}")) for n in range(3)]
    link = Network(tapstack_gateway.url)  # the bus's mobile data, which the test cuts
    link.set(False)  # the bus leaves the depot without a network
    disk = tmp_path / "disk"
    disk.mkdir()
    process = terminal_run(
        "--reader", f"pcsc:{reader_name}", "--route", "R1", "--stop", "S1", "--fare", "200",
        "--issuer-key", ISSUER_KEY, "--token-key", DEMO_TOKEN_KEY.hex(), "--journal", str(disk / "j.db"),
        "--gateway", link.url, "--terminal-key", register_terminal(tapstack_gateway),
        "--refresh-every", "1", private_disk=(disk, 4096))
    panel = Panel(process)

    def tap(rider, expect: str, at: int) -> int:
        pcscd_field.present(rider.card)
        line = panel.wait_for(expect, at)
        pcscd_field.take_away()
        return line

    def uploaded(rows: int) -> list[str]:
        """The gateway's answers in the journal, once `rows` taps are all answered for."""
        deadline = time.monotonic() + 30
        while True:
            # SQLite would resolve /proc/PID/root to our own root: read a copy of the files.
            for suffix in ("", "-wal"):
                shutil.copyfile(disk_of / f"j.db{suffix}", tmp_path / f"copy.db{suffix}")
            with contextlib.closing(sqlite3.connect(tmp_path / "copy.db")) as db:
                results = [r for (r,) in db.execute("SELECT result FROM taps ORDER BY seq")]
            if len(results) == rows and None not in results or time.monotonic() > deadline:
                return results
            time.sleep(0.25)

    try:
        seen = panel.wait_for("validator ")
        disk_of = Path(f"/proc/{process.pid}/root") / str(disk).lstrip("/")  # its disk, seen from here
        first, second, third = riders

        # No network: the tap is taken offline; the network comes back and it is uploaded by itself.
        seen = tap(first, "ACCEPTED  Paid 2.00 CNY", seen)
        assert "no reference data yet   1 to upload" in panel.lines[seen + 1]
        link.set(True)
        assert uploaded(1) == ["accepted"]  # it reached the gateway

        # The disk fills up: the tap is refused before any debit, and the panel says why.
        fill(disk_of / "filler")
        seen = tap(second, "REFUSED   Out of service: tap not taken", seen)
        assert "OUT OF SERVICE: journal" in panel.lines[seen + 1] and second.balance == 1000
        assert any("OUT OF SERVICE  journal:" in line and "full" in line for line in panel.lines)
        (disk_of / "filler").unlink()
        seen = panel.wait_for("IN SERVICE      journal works again", seen)
        seen = tap(second, "ACCEPTED  Paid 2.00 CNY", seen)
        assert "online" in panel.lines[seen + 1]

        # pcscd stops; comes back without our reader (as if unplugged); comes back with it.
        restart_pcscd(daemon, "tapstack spare", stopped_for=1.5)
        seen = panel.wait_for("OUT OF SERVICE  reader:", seen)
        seen = panel.wait_for(f"no PC/SC reader matching '{reader_name}'", seen)
        restart_pcscd(daemon)
        seen = panel.wait_for("IN SERVICE      reader works again", seen)
        seen = tap(third, "ACCEPTED  Paid 2.00 CNY", seen)
        assert uploaded(3) == ["accepted"] * 3
        assert process.poll() is None  # it never stopped
    finally:
        code = stop(process)
        link.close()
    assert code == 0 and [r.balance for r in riders] == [800, 800, 800]
    assert "Traceback" not in "\n".join(panel.errors), "\n".join(panel.errors)


@pytest.mark.pcscd
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nsenter"),
                    reason="mounting the journal's own small file system needs root (CI runs as root)")
def test_a_journal_on_a_read_only_file_system_is_waited_for(pcscd_field, tmp_path):
    """The box boots with its data partition read-only (a failed check): the validator comes up,
    says so, takes no tap, and serves as soon as the partition is writable again."""
    demo = demo_purse_card(balance=1000)
    disk = tmp_path / "disk"
    disk.mkdir()
    process = terminal_run("--reader", f"pcsc:{pcscd_field.reader.name}", "--route", "R1", "--stop", "S1",
                           "--fare", "200", "--issuer-key", ISSUER_KEY, "--token-key", DEMO_TOKEN_KEY.hex(),
                           "--journal", str(disk / "j.db"), "--max-taps", "1", private_disk=(disk, 4096),
                           read_only=True)
    panel = Panel(process)
    try:
        seen = panel.wait_for("OUT OF SERVICE  journal:")
        assert "j.db: read-only file system" in panel.lines[seen]
        pcscd_field.present(demo.card)  # nobody reads it: no journal, no tap
        time.sleep(1.0)
        assert demo.balance == 1000 and not any("ACCEPTED" in line for line in panel.lines)
        subprocess.run(["nsenter", "-t", str(process.pid), "-m", "mount", "-o", "remount,rw", str(disk)], check=True)
        seen = panel.wait_for("IN SERVICE      journal works again", seen)
        panel.wait_for("ACCEPTED  Paid 2.00 CNY", seen)
        assert process.wait(10) == 0  # --max-taps 1
    finally:
        stop(process)
    assert demo.balance == 800 and "Traceback" not in "\n".join(panel.errors)


# --- the loop in-process, on a real reader stack -----------------------------------------------

def validator_on(reader, tmp_path, clock, lines, **settings) -> Validator:
    s = Settings(route="R1", stop="S1", fare=200, token_key=DEMO_TOKEN_KEY, terminal_id=b"BUS-0042",
                 journal=tmp_path / "j.db", issuer_keys=tuple(demo_issuer_keys().values()), **settings)
    return Validator(s, reader, Journal(s.journal, s.terminal_id), clock=clock, out=lines.append)


class Running:
    """A desk made and run on a thread of its own (its journal is that thread's), stopped at exit."""

    def __init__(self, make, **run):
        self.stop, self.ready, self.desk = threading.Event(), threading.Event(), None
        self.thread = threading.Thread(target=self._run, args=(make, run), daemon=True)

    def _run(self, make, run):
        self.desk = make()
        self.ready.set()
        try:
            self.desk.run(self.stop, **run)
        finally:
            self.desk.journal.close()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self.desk

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def leave(field) -> None:
    """The card leaves the field; the desk's own loop sees it go. (The test does not look through
    the desk's reader: one reader, one user.) A second is more than a poll of pcscd or nfcpy."""
    field.remove()
    time.sleep(1.0)


def eventually(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_line(lines: list[str], text: str, after: int = 0, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = next((i for i in range(after, len(lines)) if text in lines[i]), None)
        if found is not None:
            return found
        time.sleep(0.02)
    pytest.fail(f"no line with {text!r} after line {after}:\n" + "\n".join(lines), pytrace=False)


@pytest.mark.nfcpy_udp
def test_an_nfcpy_device_closed_under_the_validator_is_reopened(tapstack_stage, tmp_path):
    field = tapstack_stage.open("nfcpy-udp")
    lines: list[str] = []
    demo = demo_purse_card(balance=1000)
    try:
        with Running(lambda: validator_on(field.reader, tmp_path, lambda: datetime.now(timezone.utc), lines,
                                          repeat_window=timedelta(0))):
            field.present(demo.card)
            seen = wait_line(lines, "ACCEPTED  Paid 2.00 CNY")
            leave(field)
            field.reader.clf.close()  # the device goes away (as a USB reader unplugged: ENODEV)
            seen = wait_line(lines, "OUT OF SERVICE  reader:", seen)
            seen = wait_line(lines, "IN SERVICE      reader works again", seen)
            field.present(demo.card)
            wait_line(lines, "ACCEPTED  Paid 2.00 CNY", seen)
            leave(field)
    finally:
        field.close()
    taps = [t["reason"] for t in Journal(tmp_path / "j.db", b"BUS-0042").taps()]
    assert (demo.balance, taps) == (600, ["paid", "paid"]), "\n".join(lines)  # one debit per presentation


@pytest.mark.pcscd
def test_the_wall_clock_jumping_keeps_the_validator_serving(pcscd_field, tmp_path):
    offset = [timedelta(0)]
    clock = lambda: datetime.now(timezone.utc) + offset[0]  # noqa: E731
    refreshes = []

    def gateway_down(method, url, headers, body):
        refreshes.append(time.monotonic())
        raise ConnectionRefusedError("no network")

    lines: list[str] = []
    demo = demo_purse_card(balance=1000)
    other = demo_purse_card(balance=1000, card_id=bytes.fromhex("5441500000000099"))

    def make():
        v = validator_on(pcscd_field.reader, tmp_path, clock, lines, refresh_every=3600)
        v.sync.client = Client("http://127.0.0.1:9", "tk_x", b"s" * 32, send=gateway_down, clock=clock)
        return v

    with Running(make, watch=ClockWatch(clock)):
        pcscd_field.present(demo.card)
        seen = wait_line(lines, "ACCEPTED  Paid 2.00 CNY")
        leave(pcscd_field)
        assert len(refreshes) == 1  # in the background, at the start; the next one is an hour away
        offset[0] = -timedelta(hours=2)  # NTP sets the clock back two hours
        seen = wait_line(lines, "WARNING         clock: jumped back 2 h", seen)
        pcscd_field.present(demo.card)  # a second later: still a repeat for the moved clock
        seen = wait_line(lines, "REFUSED   Already tapped", seen)
        leave(pcscd_field)
        assert eventually(lambda: len(refreshes) == 2)  # timed by the old clock: it is due at once
        offset[0] = timedelta(days=3)  # and three days forward
        seen = wait_line(lines, "WARNING         clock: jumped forward 3 d", seen)
        pcscd_field.present(demo.card)  # a few seconds after it paid: still a repeat
        seen = wait_line(lines, "REFUSED   Already tapped", seen)
        leave(pcscd_field)
        pcscd_field.present(other.card)
        seen = wait_line(lines, "ACCEPTED  Paid 2.00 CNY", seen)
        leave(pcscd_field)
        assert eventually(lambda: len(refreshes) == 3)
    rows = Journal(tmp_path / "j.db", b"BUS-0042").taps()
    assert [r["reason"] for r in rows] == ["paid", "already_tapped", "already_tapped", "paid"]
    assert (demo.balance, other.balance) == (800, 800)
    assert rows[3]["at"] - rows[0]["at"] > 3 * 86400 - 60  # each tap carries the time of its clock


def read_only(journal: Journal):
    """A journal whose every write fails as on a read-only file system. (The till's journal is
    its thread's: SQLite's connection cannot be reached from the test's thread.)"""
    @contextlib.contextmanager
    def refused():
        raise JournalError(f"{journal.path}: attempt to write a readonly database")
        yield

    return refused


@pytest.mark.pcscd
def test_the_till_rides_out_a_failing_journal_pcscd_restarted_and_no_gateway(pcscd_field, tapstack_stage, tmp_path):
    from terminal.settings import TillSettings
    from terminal.till import Till

    lines: list[str] = []
    demo = demo_purse_card(balance=5000)
    settings = TillSettings(reader=f"pcsc:{pcscd_field.reader.name}", gateway="http://127.0.0.1:9", key_id="tk_x",
                            secret=b"s" * 32, token_key=DEMO_TOKEN_KEY, journal=tmp_path / "till.db",
                            terminal_id=b"TILL-042", issuer_keys=tuple(demo_issuer_keys().values()),
                            qr_out=tmp_path / "qr.png", retries=1)
    client = Client(settings.gateway, "tk_x", b"s" * 32)
    commands: queue.Queue = queue.Queue()

    def make():
        return Till(settings, pcscd_field.reader, Journal(settings.journal, settings.terminal_id), client=client,
                    out=lines.append, pause=lambda _: None)

    with Running(make, commands=commands) as till:
        commands.put("sale 12.50")
        seen = wait_line(lines, "SALE      12.50 CNY")
        commands.put("code pc_" + "a" * 24)  # a pay code needs the gateway: unreachable, the sale stays open
        seen = wait_line(lines, "DECLINED", seen)
        till.journal._tx = read_only(till.journal)  # the file system turns read-only
        pcscd_field.present(demo.card)
        seen = wait_line(lines, "OUT OF SERVICE  journal:", seen)
        leave(pcscd_field)
        assert demo.balance == 5000 and till.sale.is_open
        del till.journal._tx  # and writable again
        seen = wait_line(lines, "IN SERVICE      journal works again", seen)
        restart_pcscd(tapstack_stage.pcscd(), stopped_for=1.5)
        seen = wait_line(lines, "OUT OF SERVICE  reader:", seen)
        seen = wait_line(lines, "IN SERVICE      reader works again", seen)
        pcscd_field.present(demo.card)
        seen = wait_line(lines, "APPROVED  Paid from the card 12.50 CNY", seen)
        leave(pcscd_field)
    assert demo.balance == 3750 and not till.sale.is_open
    assert [t["reason"] for t in Journal(tmp_path / "till.db", b"TILL-042").taps()] == ["paid"]


def test_a_gateway_that_swallows_packets_never_keeps_a_rider_waiting(tmp_path):
    """Refreshing the reference data runs beside the card loop: a request that hangs until its
    timeout (a dead zone) delays no tap."""
    from terminal.readers.mock import MockReader

    calls = []

    def dead_zone(method, url, headers, body):
        calls.append(time.monotonic())
        time.sleep(2.0)  # the connect timeout
        raise TimeoutError("timed out")

    lines: list[str] = []
    reader = MockReader()
    demo = demo_purse_card(balance=1000)

    def make():
        v = validator_on(reader, tmp_path, lambda: datetime.now(timezone.utc), lines, refresh_every=1)
        v.sync.client = Client("http://192.0.2.1:8000", "tk_x", b"s" * 32, send=dead_zone)
        return v

    with Running(make) as v:
        assert eventually(lambda: len(calls) == 2, 10)  # past the first, at start: one in the background hangs ...
        start = time.monotonic()
        reader.present(demo.card)  # ... while a rider taps
        wait_line(lines, "ACCEPTED  Paid 2.00 CNY")
        assert time.monotonic() - start < 1.0
        reader.remove()
    assert not v.online and demo.balance == 800
