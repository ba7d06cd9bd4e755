"""`tapstack demo`: the pilot end to end, through the real stacks, in one command.

    run(Options(seed=1, riders=60, data_dir=Path(".tapstack/demo"), port=8000))

The shell around tapstack.demo.city's plan. In order:
1. preflight (tapstack.demo.stack): the pid lock, the data dir, the port, the packages,
   no other pcscd;
2. start: the gateway (`tapstack gateway serve`, which delivers webhooks too) on a fresh
   data dir, a local webhook receiver, pcscd with the virtual reader's two slots;
3. enrol through the API (tapstack.demo.world): the bus company and its three
   validators, the water company, the corner shop and its till, every rider's wallet
   and card (purse cards certified by the gateway's issuer and loaded through
   purse-loads), the operator's locks;
4. the day: three buses (tapstack.demo.buses: `tapstack terminal validator` processes on
   the day's simulated clock) take their taps in parallel, two through pcscd + vpcd and
   one through nfcpy's udp emulation, each in simulated time order; bus 9 loses its
   network for four hours and journals. Meanwhile the corner shop's till (`tapstack terminal till`, a process of its
   own, tapstack.demo.shop) sells by purse tap, pay code and checkout code; then the bills
   are paid by scanning their QR images;
5. close: journals uploaded, webhooks delivered, the figures read back from the
   gateway's API and its ledger check, the summary printed.
Everything started is stopped on the way out, on error and on Ctrl-C alike.
"""
from __future__ import annotations

import contextlib
import json
import queue
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from tapstack.demo import city, stack
from tapstack.demo.buses import Bus, Presented
from tapstack.demo.receiver import WebhookReceiver
from tapstack.demo.stack import DemoError
from tapstack.demo.summary import Summary, lines
from tapstack.demo.world import World

WEBHOOK_WAIT = 20.0  # seconds to wait for the last webhooks at close


@dataclass(frozen=True)
class Options:
    seed: int = 1
    riders: int = 60
    data_dir: Path = Path(".tapstack/demo")
    port: int = 8000
    serve: bool = False
    database: str | None = None  # an empty PostgreSQL database (default: SQLite in the data dir)
    gateway: str | None = None   # a running gateway on `database` (nodes behind a balancer), not one of ours


class Progress:
    """One line per phase; the day's running count rewritten in place on a terminal."""

    def __init__(self, echo: Callable[[str], None], tty: bool):
        self.echo, self.tty = echo, tty
        self.started = time.monotonic()
        self._open = False

    def phase(self, text: str) -> None:
        self._close()
        self.echo(f"[{time.monotonic() - self.started:5.1f}s] {text}")

    def count(self, text: str, checkpoint: bool = False) -> None:
        """The running count: rewritten in place on a terminal, else printed at checkpoints only."""
        if self.tty:
            sys.stdout.write("\r\x1b[K        " + text)
            sys.stdout.flush()
            self._open = True
        elif checkpoint:
            self.echo("        " + text)

    def _close(self) -> None:
        if self._open:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._open = False


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def fresh_data_dir(data_dir: Path) -> None:
    """Empty the demo's data dir (stack.check_data_dir made sure it is one), except its lock file
    and marker: every run starts a new city."""
    for entry in data_dir.iterdir():
        if entry.name in ("demo.pid", stack.MARKER):
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


# --- the run ---------------------------------------------------------------------------------

def run(options: Options, echo: Callable[[str], None] = print, tty: bool = False) -> Summary:
    """The whole demo; the summary. DemoError (one line) when it cannot run; Ctrl-C stops it cleanly."""
    data_dir = options.data_dir.resolve()
    lock = stack.preflight(data_dir, options.port)
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` tears down like Ctrl-C
    cleanup = contextlib.ExitStack()
    try:
        try:
            return _run(options, data_dir, lock, cleanup, Progress(echo, tty), echo)
        finally:
            with _uninterrupted():  # a second Ctrl-C must not leave half the stack running
                cleanup.close()
    except (DemoError, KeyboardInterrupt):
        raise
    except Exception as e:  # a bug or a broken stack: one line for the person, the details in a file
        log = data_dir / "logs" / "demo-error.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc())
        raise DemoError(f"the demo failed: {type(e).__name__}: {e} (details in {log})") from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
        stack.release_lock(lock)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _uninterrupted():
    """Ignore Ctrl-C and SIGTERM while tearing down (main thread only: signals live there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _run(options: Options, data_dir: Path, lock: Path, cleanup: contextlib.ExitStack, progress: Progress,
         echo) -> Summary:
    from gateway.http.auth import operator_key
    from gateway.config import load as load_config
    from wallet import pcscd

    fresh_data_dir(data_dir)
    now = utc_now()
    plan = city.plan_day(options.seed, options.riders, city.demo_day(now))
    gateway_dir = data_dir / "gateway"
    config = load_config(gateway_dir, options.database)
    cleanup.callback(config.close)
    rules_file = data_dir / "fare_rules.json"
    rules_file.write_text(json.dumps(city.fare_rules(), indent=2) + "\n")
    url = options.gateway or f"http://127.0.0.1:{options.port}"
    timings: dict[str, float] = {}
    mark = time.monotonic()

    gateway = None
    if options.gateway:
        progress.phase(f"using the gateway at {url} (database {config.database})")
    else:
        progress.phase(f"starting the gateway on {url} (data in {gateway_dir}, database {config.database})")
        if options.database:
            stack.migrate_gateway(gateway_dir, options.database)
        gateway = stack.start_gateway(gateway_dir, options.port, data_dir / "logs" / "gateway.log",
                                      database=options.database)
        cleanup.callback(gateway.stop)
        stack.record_child(lock, gateway.pid, str(gateway_dir))
    stack.publish_fares(gateway_dir, rules_file, options.database)
    receiver = WebhookReceiver().start()
    cleanup.callback(receiver.stop)
    progress.phase("starting pcscd with the virtual reader (2 slots) and nfcpy's udp emulation")
    try:
        daemon = pcscd.start(n_readers=2, reuse=False)
    except pcscd.PcscdError as e:
        raise DemoError(str(e)) from None
    cleanup.callback(daemon.stop)
    stack.record_child(lock, daemon.pid, str(daemon.config_dir))
    timings["start"] = time.monotonic() - mark

    mark = time.monotonic()
    progress.phase(f"enrolling the city: {len(plan.riders) - 1} riders' wallets and cards, 3 buses, "
                   "the water company, the corner shop")
    world = World(url, operator_key(config), plan, receiver, data_dir)
    world.enrol()
    locked = [r.id for r in plan.riders if r.locked]
    lost = [r.id for r in plan.riders if r.lost]
    progress.phase(f"operator: locked {len(locked)} wallet(s) (stolen phone), deny-listed {len(lost)} lost bank card(s)")
    timings["enrol"] = time.monotonic() - mark

    buses = world.buses(daemon)
    for bus in buses.values():
        cleanup.callback(bus.stop)
        bus.start()  # `tapstack terminal validator`, which waits for the day's clock
        stack.record_child(lock, bus.pid, str(bus.config.journal))

    shop = world.open_shop()  # `tapstack terminal till`, open while the buses run
    cleanup.callback(shop.close)
    stack.record_child(lock, shop.pid, str(shop.journal))

    mark = time.monotonic()
    progress.phase(f"the day of {plan.day} (Asia/Shanghai), 06:00-22:00 simulated: {len(plan.taps)} planned taps; "
                   f"the corner shop's till (`tapstack terminal till`, reader on nfcpy udp) takes "
                   f"{len(plan.purchases)} sales by purse tap, pay code and checkout QR")
    presented = ride_the_day(plan, buses, world.cards, progress, beside=lambda rides: world.shop(shop, rides))
    # The PC/SC phase: from the first tap until the last PC/SC bus has taken its last one.
    tapping = max(b.finished_at for b in buses.values() if b.config.transport == "vpcd") - mark
    timings["day"], timings["pcsc_tapping"] = time.monotonic() - mark, tapping

    mark = time.monotonic()
    progress.phase(f"water bills: {len(plan.bills)} issued, paid by wallets scanning the QR images")
    world.bills()
    timings["bills"] = time.monotonic() - mark

    mark = time.monotonic()
    progress.phase("close of day: journals uploaded and cleared, webhooks delivered, ledger checked")
    for bus in buses.values():
        bus.quit()  # each validator uploads its journal, says what the gateway answered and exits
    for bus in buses.values():
        bus.closed()
    expected_hooks = sum(1 for b in plan.bills if b.paid) + sum(1 for s in plan.purchases if s.method != "tap")
    if not receiver.wait_for(expected_hooks, WEBHOOK_WAIT):
        progress.phase(f"warning: {receiver.received()} of {expected_hooks} webhooks arrived within "
                       f"{WEBHOOK_WAIT:.0f} s (see the gateway's log)")
    summary = world.summary(presented, buses, tapping, gateway_dir, options.database)
    timings["close"] = time.monotonic() - mark
    summary = Summary(**{**summary.__dict__, "timings": timings, "data_dir": str(data_dir), "gateway_url": url,
                         "database": config.database if options.database else "",
                         "external": bool(options.gateway)})
    progress.phase(f"done in {time.monotonic() - progress.started:.1f} s")
    echo("")
    for line in lines(summary, serving=options.serve):
        echo(line)
    if options.serve and gateway is not None:
        daemon.stop()
        try:
            while gateway.running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            echo("stopping the gateway")
    return summary


def ride_the_day(plan: city.DayPlan, buses: dict[str, Bus], cards: dict, progress: Progress,
                 beside: Callable[[dict[str, threading.Event]], None] | None = None) -> list[Presented]:
    """The buses take the day's taps in parallel, each in time order; a rider's tap waits for
    that rider's previous one wherever it was (one card is never in two fields at once).
    `beside(last_rides)` runs on its own thread meanwhile (the shop), given each rider's
    event of the last ride; the day ends when it has ended too, and its error ends the day."""
    results: queue.Queue = queue.Queue()
    last_done: dict[str, threading.Event] = {}
    days: dict[str, list] = {route: [] for route in buses}
    for tap in plan.taps:  # in time order
        done = threading.Event()
        days[tap.route].append((tap, cards[tap.rider], last_done.get(tap.rider), done))
        last_done[tap.rider] = done
    service_start = city.local_time(plan.day, city.FIRST_HOUR)
    for route, bus in buses.items():
        bus.ride(service_start, days[route], plan.outage if route == city.OFFLINE_ROUTE else None, results)
    if beside is not None:
        threading.Thread(target=_beside, args=(beside, dict(last_done), results), name="beside the day",
                         daemon=True).start()
    offline_bus = buses[city.OFFLINE_ROUTE]
    presented: list[Presented] = []
    running, was_up, checkpoint = len(buses), True, 10
    beside_running = beside is not None
    day_start = city.local_time(plan.day, city.FIRST_HOUR)
    while running or beside_running:
        try:
            found = results.get(timeout=1.0)
        except queue.Empty:
            found = False
        if isinstance(found, BaseException):
            raise found
        if found is BESIDE_DONE:
            beside_running = False
            continue
        if found is None:
            running -= 1
        elif found:
            presented.append(found)
        if offline_bus.network.up != was_up:
            was_up = offline_bus.network.up
            cut, back = (t.astimezone(city.ZONE) for t in plan.outage)
            progress.phase(
                f"{back:%H:%M} bus {city.OFFLINE_ROUTE} is back online: the {offline_bus.journalled(*plan.outage)} "
                "tap(s) waiting in its journal are uploaded" if was_up else
                f"{cut:%H:%M} bus {city.OFFLINE_ROUTE} has lost its network until {back:%H:%M}: "
                "it goes on deciding taps and journals them")
        if found or (not running and found is None):
            decided = [p for p in presented if p.decision is not None]
            accepted = sum(1 for p in decided if p.decision["accepted"])
            # The city's clock: the simulated time of the bus furthest behind that is still running.
            clocks = [b.now for b in buses.values() if not b.finished_at and b.now >= day_start]
            clock = min(clocks).astimezone(city.ZONE) if clocks else None
            due = not running or (clock is not None and clock.hour >= checkpoint)
            if due and clock is not None:
                checkpoint = clock.hour // 4 * 4 + 6  # lines at 10:00, 14:00, 18:00 when not on a terminal
            when = "day over" if not running else f"{clock:%H:%M}" if clock else ""
            progress.count(f"{when:>8}  taps {len(decided)}  accepted {accepted}  denied {len(decided) - accepted}"
                           + (f"  missed {len(presented) - len(decided)}" if len(presented) > len(decided) else ""),
                           checkpoint=due)
    return presented


BESIDE_DONE = object()


def _beside(work: Callable, last_rides: dict[str, threading.Event], results: queue.Queue) -> None:
    try:
        work(last_rides)
    except BaseException as e:  # handed to the demo's thread, which stops the demo
        results.put(e)
    else:
        results.put(BESIDE_DONE)
