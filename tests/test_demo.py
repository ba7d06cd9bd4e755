"""`tapstack demo`: the city's plan, the preflight refusals, and short runs end to end through
the real gateway, pcscd + vpcd and nfcpy udp, checked against the gateway's own API."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from tapstack.demo import city, demo_command
from tapstack.demo.run import Options, run
from tapstack.demo.stack import Console, DemoError, acquire_lock, check_port, release_lock
from wallet import pcscd

DAY = date(2026, 11, 26)
SEED, RIDERS = 2, 8  # a day with torn and double taps and taps on bus 9 while it is offline
OTHER_PCSCD_WAIT = 180  # seconds to wait for a pcscd another suite started to go away


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_no_pcscd() -> None:
    """One pcscd serves the machine: wait for one that another suite started to stop."""
    deadline = time.monotonic() + OTHER_PCSCD_WAIT
    while (pid := pcscd.running_pcscd()) is not None:
        if time.monotonic() > deadline:
            pytest.fail(f"another pcscd (pid {pid}) kept running for {OTHER_PCSCD_WAIT} s", pytrace=False)
        time.sleep(0.5)


# --- the plan -------------------------------------------------------------------------------

def test_the_plan_is_a_function_of_the_seed():
    assert city.plan_day(7, 30, DAY) == city.plan_day(7, 30, DAY)
    assert city.plan_day(7, 30, DAY) != city.plan_day(8, 30, DAY)


@pytest.mark.parametrize("seed", range(6))
def test_a_card_is_never_in_two_fields_at_once_and_buses_run_06_to_22(seed):
    plan = city.plan_day(seed, 40, DAY)
    per_hour = Counter((t.rider, t.hour) for t in plan.taps)
    assert max(per_hour.values()) == 1
    assert all(city.FIRST_HOUR <= t.hour < city.LAST_HOUR for t in plan.taps)
    assert [t.at for t in plan.taps] == sorted(t.at for t in plan.taps)
    riders = {r.id: r for r in plan.riders}
    for t in plan.taps:
        if t.action != "tap":  # tears and double taps are purse taps on the PC/SC routes
            assert riders[t.rider].card == "purse" and t.route in ("12", "9")
    assert not any(riders[b.rider].locked for b in plan.bills)  # a locked wallet cannot pay


def test_bank_card_numbers_are_luhn_valid_test_numbers():
    for rider in city.plan_day(3, 60, DAY).riders:
        if rider.pan:
            digits = [int(d) for d in reversed(rider.pan)]
            total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
            assert total % 10 == 0 and rider.pan.startswith("400000")


def test_the_demo_day_is_the_last_whose_buses_have_stopped():
    assert city.demo_day(datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)) == date(2026, 11, 26)  # 11:00 local
    assert city.demo_day(datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc)) == date(2026, 11, 27)  # 22:30


# --- preflight ------------------------------------------------------------------------------

def test_a_second_demo_is_refused_while_one_runs(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "demo.pid").write_text(f"{holder.pid}\n")
        result = CliRunner().invoke(demo_command, ["--data", str(tmp_path), "--port", str(free_port())])
        assert result.exit_code == 1
        assert (f"a demo is already running (pid {holder.pid}): stop it with kill {holder.pid} or wait"
                in result.output)
        assert (tmp_path / "demo.pid").read_text().strip() == str(holder.pid)  # the running demo keeps its lock
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_and_released(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "demo.pid").write_text(f"{gone.pid}\n")
    lock = acquire_lock(tmp_path)
    assert lock.read_text().strip() == str(os.getpid())
    release_lock(lock)
    assert not lock.exists()


def test_a_port_in_use_is_refused_and_nothing_is_left(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(demo_command, ["--data", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port} is in use: pass --port" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "demo.pid").exists()


# --- the terminals' processes ---------------------------------------------------------------

FAKE_TILL = """
import sys
print("till ready", flush=True)
for line in sys.stdin:
    if line.strip() == "die":
        print("OUT OF SERVICE  journal: disk full", flush=True)
        sys.exit(3)
    print("SALE " + line.strip(), flush=True)
"""


def test_a_terminal_is_operated_on_its_input_and_one_that_dies_is_named_with_its_last_lines(tmp_path):
    log = tmp_path / "till-1.log"
    till = Console("till 1", [sys.executable, "-c", FAKE_TILL], log)
    try:
        till.expect("till ", timeout=20)
        till.type("12.50 demo-1")
        till.type("9.00 demo-2")
        assert till.expect("SALE", containing="demo-2", timeout=20) == "SALE 9.00 demo-2"  # demo-1 passed by
        till.type("die")
        with pytest.raises(DemoError, match=r"till 1 stopped \(exit status 3\); the last lines of .*till-1.log: "
                                            r".*OUT OF SERVICE  journal: disk full"):
            till.expect("APPROVED", timeout=20)
        with pytest.raises(DemoError, match="till 1 stopped"):
            till.type("9.00 demo-3")
    finally:
        till.stop()
    assert log.read_text().splitlines() == ["till ready", "SALE 12.50 demo-1", "SALE 9.00 demo-2",
                                            "OUT OF SERVICE  journal: disk full"]


def alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def test_stopping_a_terminal_stops_what_it_started_too(tmp_path):
    program = ("import subprocess, sys, time\n"
               "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
               "print(f'child {child.pid}', flush=True)\n"
               "time.sleep(120)\n")
    terminal = Console("bus 9", [sys.executable, "-c", program], tmp_path / "bus-9.log")
    try:
        child = int(terminal.expect("child ", timeout=20).split()[1])
        with pytest.raises(DemoError, match=r"bus 9 did not answer within 0 s"):
            terminal.expect("ACCEPTED", timeout=0.2)
    finally:
        terminal.stop()
    assert not terminal.running()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)


# --- end to end -----------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def machine_pcscd_free(tapstack_stage):
    """The demo starts the machine's one pcscd itself: the one this test session's Stage holds
    (for the reader tests before this module) is stopped first; the next test needing it starts it."""
    tapstack_stage.close()


def run_when_pcscd_is_free(options: Options, attempts: int = 5):
    """run(options), again when another suite's pcscd started between our check and the demo's."""
    for attempt in range(attempts):
        wait_for_no_pcscd()
        try:
            return run(options, echo=lambda line: None)
        except DemoError as e:
            if "pcscd" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(1)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same short day twice (seed SEED, RIDERS riders), each on its own data dir and port."""
    runs = []
    for n in (1, 2):
        data = tmp_path_factory.mktemp(f"demo{n}")
        port = free_port()
        summary = run_when_pcscd_is_free(Options(seed=SEED, riders=RIDERS, data_dir=data, port=port))
        runs.append((summary, data, port))
    return runs


def gateway_api(data: Path):
    """The finished demo's gateway, read through its own API (in process, over the same data dir)."""
    from gateway.http.app import create_app
    from gateway.http.auth import operator_key
    from gateway.config import Config

    config = Config(data / "gateway")
    client = create_app(config).test_client()
    headers = {"Authorization": f"Bearer {operator_key(config)}"}
    return lambda path: client.get(path, headers=headers).get_json()


def test_the_same_seed_gives_the_same_day(two_runs):
    (first, _, _), (second, _, _) = two_runs
    assert first.counts() == second.counts()
    assert first.taps > 0 and first.pcsc_taps > 0


def test_the_summary_is_what_the_gateway_holds(two_runs):
    summary, data, port = two_runs[0]
    plan = city.plan_day(SEED, RIDERS, date.fromisoformat(summary.day))
    api = gateway_api(data)
    from gateway.core.dashboard import day_bounds

    since, until = day_bounds(plan.day, city.ZONE)
    ridership = api(f"/v1/taps/ridership?from={since}&to={until}")["data"]
    for figures in summary.routes:
        rows = [r for r in ridership if r["route"] == figures.route]
        assert figures.taps == sum(r["taps"] for r in rows)
        assert figures.accepted == sum(r["accepted"] for r in rows)
        assert figures.revenue == sum(r["purse_revenue"] for r in rows)
    # every decision the validators journalled reached the gateway, none refused
    assert summary.gateway_taps == summary.taps
    assert summary.uploaded == {"accepted": summary.taps, "duplicate": 0, "rejected": 0, "unsent": 0}
    assert summary.missed == 0
    # what the plan made happen: a retry per torn tap and per double tap, each card kind seen
    extra = sum(1 for t in plan.taps if t.action != "tap")
    assert summary.taps == len(plan.taps) + extra == summary.presentations
    assert summary.recovered == sum(1 for t in plan.taps if t.action == "tear")
    assert summary.denied.get("card_removed", 0) == summary.recovered
    assert summary.denied.get("already_tapped", 0) == sum(1 for t in plan.taps if t.action == "double")
    assert summary.denied.get("random_uid") == 1  # the visitor's phone
    offline = [t for t in plan.taps if t.route == city.OFFLINE_ROUTE and plan.outage[0] <= t.at < plan.outage[1]]
    assert summary.offline_journalled == len(offline) + sum(1 for t in offline if t.action != "tap") > 0
    refused = {r.id for r in plan.riders if r.locked or r.lost}
    assert summary.denied.get("deny_listed", 0) == sum(1 for t in plan.taps if t.rider in refused)
    # bills: issued, paid by scanning, as the biller's reconciliation says
    assert summary.bills_issued == len(plan.bills)
    assert summary.bills_paid == sum(1 for b in plan.bills if b.paid)
    assert summary.bills_paid_amount == sum(b.amount_due for b in plan.bills if b.paid)
    # the shop and the webhooks that told the merchants
    assert sum(summary.shop_payments.values()) == len(plan.purchases)
    assert summary.shop_amount == sum(p.amount for p in plan.purchases)
    assert summary.shop_payments == dict(Counter(p.method for p in plan.purchases))
    assert "tap" in summary.shop_payments  # a purse paid at the till's reader
    # purse sales clear like fares and send no payment event
    assert summary.webhooks == {"bill.paid": summary.bills_paid,
                                "payment.succeeded": sum(1 for p in plan.purchases if p.method != "tap")}
    assert summary.webhooks_bad_signatures == 0
    # the books
    assert summary.ledger_ok
    assert all(t["net"] == 0 for t in summary.ledger_totals.values())
    # the till ran as `tapstack terminal till`: its panel is in its log
    till_log = (data / "logs" / "till-1.log").read_text().splitlines()
    assert till_log[0].startswith("till ")
    assert sum(1 for line in till_log if line.startswith("APPROVED")) == len(plan.purchases)
    # everything the demo started is gone: the gateway's port is free again, the till stopped, the lock released
    check_port(port)
    assert processes_naming(str(data)) == []
    assert not (data / "demo.pid").exists()


def processes_naming(text: str) -> list[int]:
    """The pids of the live processes whose command line holds `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and alive(int(entry.name)):
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def recorded_pcscd(data: Path) -> int | None:
    """The pid of the pcscd a demo started, as its lock file records it."""
    for line in (data / "demo.pid").read_text().splitlines():
        if line.startswith("child ") and "tapstack-pcscd" in line:
            return int(line.split()[1])
    return None


def start_demo_until_its_day(data: Path, port: int, attempts: int = 5):
    """A `tapstack demo` process that has reached its day (everything started), and our pcscd's pid."""
    for _ in range(attempts):
        wait_for_no_pcscd()
        demo = subprocess.Popen([sys.executable, "-m", "tapstack", "demo", "--riders", "30", "--data", str(data),
                                 "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=Path(__file__).resolve().parent.parent,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        seen = []
        for line in demo.stdout:
            seen.append(line)
            if "the day of" in line:  # pcscd, the gateway, the buses and the till are all running now
                return demo, recorded_pcscd(data)
        demo.wait(30)
        if "pcscd" not in "".join(seen):  # not a race with another suite's pcscd: a failure
            pytest.fail("the demo never reached its day:\n" + "".join(seen), pytrace=False)
    pytest.fail("another pcscd kept starting before the demo's", pytrace=False)


def test_ctrl_c_stops_everything_it_started(tmp_path):
    port = free_port()
    demo, ours = start_demo_until_its_day(tmp_path, port)
    try:
        assert ours is not None
        demo.send_signal(signal.SIGINT)
        rest = demo.communicate(timeout=60)[0]
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130, rest
    assert "Traceback" not in rest
    assert "everything it started has been stopped" in rest
    with pytest.raises(ProcessLookupError):
        os.kill(ours, 0)
    assert processes_naming(str(tmp_path)) == []  # the till and the gateway too
    check_port(port)
    assert not (tmp_path / "demo.pid").exists()


def test_what_a_killed_demo_left_running_is_stopped_by_the_next(tmp_path):
    port = free_port()
    demo, ours = start_demo_until_its_day(tmp_path, port)
    demo.kill()  # SIGKILL: no teardown at all
    demo.communicate(timeout=30)
    assert ours is not None
    os.kill(ours, 0)  # its pcscd, gateway and till live on
    assert processes_naming(str(tmp_path / "validators" / "till-1.journal"))
    with pytest.raises(DemoError, match="in use"):
        check_port(port)
    lock = acquire_lock(tmp_path)  # what the next demo does first
    try:
        with pytest.raises(ProcessLookupError):
            os.kill(ours, 0)
        check_port(port)
        assert processes_naming(str(tmp_path)) == []
    finally:
        release_lock(lock)


def test_a_missing_package_is_named_with_the_way_to_install_it(tmp_path, monkeypatch):
    from tapstack.demo import stack

    monkeypatch.setattr(stack.pcscd, "VPCD_DRIVER", tmp_path / "no-libifdvpcd.so")
    result = CliRunner().invoke(demo_command, ["--data", str(tmp_path / "d"), "--port", str(free_port())])
    assert result.exit_code == 1
    assert "the virtual reader driver" in result.output and "is not installed: run make setup" in result.output
    monkeypatch.setattr(stack.shutil, "which", lambda name: None)
    monkeypatch.setattr(stack, "PCSCD_PATHS", (str(tmp_path / "no-pcscd"),))
    result = CliRunner().invoke(demo_command, ["--data", str(tmp_path / "d"), "--port", str(free_port())])
    assert result.exit_code == 1 and "pcscd is not installed: run make setup" in result.output
    assert not (tmp_path / "d" / "demo.pid").exists()


def test_a_directory_that_is_not_a_demos_is_never_emptied(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    result = CliRunner().invoke(demo_command, ["--data", str(tmp_path), "--port", str(free_port())])
    assert result.exit_code == 1
    assert "is not empty and not a demo's data directory" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_a_stray_pcscd_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(pcscd, "running_pcscd", lambda: 4242)
    with pytest.raises(DemoError, match=r"another pcscd \(pid 4242\) holds /run/pcscd/pcscd.comm: stop it"):
        run(Options(data_dir=tmp_path, port=free_port()))
    assert not (tmp_path / "demo.pid").exists()
