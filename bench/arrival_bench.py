"""Card arrival benchmark: present -> session, per transport, against same-run baselines.

Card arrival is what a validator waits for between taps: from the moment the card side
presents a card to the moment the reader hands back a connected session. Each transport
(in-process mock, the real pcscd with the card on vsmartcard-vpcd, nfcpy's udp driver) is
opened through the test kit's Stage, exactly as the emulated-reader tests open it, and the
card is presented N times in two rhythms:

    back-to-back   presented as soon as the reader has seen the field empty (what the
                   tests, the tear matrix and the demo's buses do)
    random pause   presented after a pause drawn uniformly from [0, --pause) seconds (a
                   rider stepping up at any moment)

Each presentation then makes --exchanges APDU round trips (a SELECT of an absent
application, 6A82) and the card is taken away; removal (remove -> reader sees the field
empty) is timed too, since a validator waits for it before the next card. Last, N taps are
torn at their first command (the card processes it and leaves before answering): the time
from sending it to the reader's CardRemoved.

Baselines from the same run: a bare loopback UDP and TCP round trip (the floor of any
message between card and reader on this machine) and the mock's arrival (no transport).

    python bench/arrival_bench.py [-n 30] [--exchanges 3] [--pause 0.5] [--transport nfcpy-udp ...]
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.apdu import select_by_name  # noqa: E402
from tapstack.testing.fields import TRANSPORTS, Stage  # noqa: E402
from terminal.readers.base import CardRemoved  # noqa: E402
from wallet.card import plain_uid_card  # noqa: E402

PROBE = select_by_name(bytes.fromhex("F000000000DEAD")).to_bytes()  # no such applet: 6A82


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def summary(values: list[float]) -> dict:
    values = sorted(values)
    return {"p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
            "max": values[-1], "n": len(values)}


# --- baselines ----------------------------------------------------------------------------

def udp_round_trips(n: int) -> list[float]:
    """Seconds per loopback UDP echo: the floor of an nfcpy udp frame and its answer."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))

    def echo():
        for _ in range(n):
            data, addr = server.recvfrom(64)
            server.sendto(data, addr)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.sendto(b"106A 26", server.getsockname())
        client.recvfrom(64)
        times.append(time.perf_counter() - t0)
    thread.join()
    server.close()
    client.close()
    return times


def tcp_round_trips(n: int) -> list[float]:
    """Seconds per loopback TCP echo (NODELAY): the floor of a vpcd message and its answer."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server, _ = listener.accept()
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def echo():
        for _ in range(n):
            server.sendall(server.recv(64))

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.sendall(b"\x00\x01\x04")
        client.recv(64)
        times.append(time.perf_counter() - t0)
    thread.join()
    for s in (client, server, listener):
        s.close()
    return times


# --- one transport ------------------------------------------------------------------------

def measure(stage: Stage, kind: str, n: int, exchanges: int, pause: float, rng: random.Random) -> dict:
    """{rhythm: {"arrival": [...], "removal": [...], "exchange": [...]}} in seconds."""
    card = plain_uid_card(bytes.fromhex("04C0FFEE123456"))
    field = stage.open(kind)
    out = {}
    try:
        field.tap(card, timeout=10)  # warm up: first activation, imports, pcscd's first power-up
        field.take_away(timeout=10)
        for rhythm in ("back-to-back", "random pause"):
            arrival, removal, exchange = [], [], []
            for _ in range(n):
                if rhythm == "random pause":
                    time.sleep(rng.uniform(0, pause))
                t0 = time.perf_counter()
                field.present(card)
                session = field.reader.wait_for_card(10)
                arrival.append(time.perf_counter() - t0)
                if session is None:
                    raise SystemExit(f"{kind}: no card seen within 10 s")
                for _ in range(exchanges):
                    t1 = time.perf_counter()
                    answer = session.transmit(PROBE)
                    exchange.append(time.perf_counter() - t1)
                    if answer != b"\x6A\x82":
                        raise SystemExit(f"{kind}: probe answered {answer.hex()}")
                t2 = time.perf_counter()
                field.remove()
                if not field.reader.wait_for_removal(10):
                    raise SystemExit(f"{kind}: the card still seen 10 s after it was taken away")
                removal.append(time.perf_counter() - t2)
            out[rhythm] = {"arrival": arrival, "removal": removal, "exchange": exchange}
        torn = []
        for _ in range(n):  # a card pulled away mid-tap: how long the reader takes to say so
            session = field.tap(card, timeout=10)
            field.tear_after(1)
            t0 = time.perf_counter()
            try:
                session.transmit(PROBE)
                raise SystemExit(f"{kind}: a torn card answered")
            except CardRemoved:
                torn.append(time.perf_counter() - t0)
            field.take_away(timeout=10)
        out["torn"] = torn
    finally:
        field.close()
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--presentations", type=int, default=30, help="presentations per rhythm (default 30)")
    parser.add_argument("--exchanges", type=int, default=3, help="APDU round trips per tap (default 3)")
    parser.add_argument("--pause", type=float, default=0.5, help="random pause is uniform in [0, PAUSE) s")
    parser.add_argument("--transport", action="append", choices=TRANSPORTS, help="repeatable; default all")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{args.presentations} presentations per rhythm, {args.exchanges} exchanges per tap")

    udp, tcp = summary(udp_round_trips(2000)), summary(tcp_round_trips(2000))
    print(f"baseline: loopback UDP round trip p50 {udp['p50'] * 1e6:.0f} us, TCP p50 {tcp['p50'] * 1e6:.0f} us\n")

    rows = []
    with Stage() as stage:
        for kind in args.transport or TRANSPORTS:
            rows.append((kind, measure(stage, kind, args.presentations, args.exchanges, args.pause, rng)))

    mock = next((r["back-to-back"]["arrival"] for k, r in rows if k == "mock"), None)
    mock_p50 = statistics.median(mock) if mock else None
    header = (f"{'transport':<11} {'rhythm':<13} {'arrive p50':>10} {'p90':>9} {'p99':>9} {'max':>9} "
              f"{'removal p50':>11} {'APDU p50':>9} {'tap cycle':>9} {'/RTT':>9} {'/mock':>8}   (ms)")
    print(header)
    print("-" * len(header))
    for kind, result in rows:
        for rhythm, r in result.items():
            if rhythm == "torn":
                continue
            a, rm, x = summary(r["arrival"]), summary(r["removal"]), summary(r["exchange"])
            cycle = a["p50"] + rm["p50"] + args.exchanges * x["p50"]
            floor = udp["p50"] if kind == "nfcpy-udp" else tcp["p50"]
            vs_mock = f"{a['p50'] / mock_p50:7.0f}x" if mock_p50 else "       -"
            print(f"{kind:<11} {rhythm:<13} {ms(a['p50']):>10} {ms(a['p90'])} {ms(a['p99'])} {ms(a['max'])} "
                  f"{ms(rm['p50']):>11} {ms(x['p50'])} {ms(cycle)} {a['p50'] / floor:8.0f}x {vs_mock}")
    print("\ncard torn away at a command: command sent -> CardRemoved (ms)")
    for kind, result in rows:
        t = summary(result["torn"])
        print(f"  {kind:<11} p50 {ms(t['p50'])}   p90 {ms(t['p90'])}   max {ms(t['max'])}")
    print("\ntap cycle = arrival p50 + removal p50 + exchanges x APDU p50 (one card after another on one reader);\n"
          "/RTT: arrival p50 over the loopback round trip of the transport's own socket kind (TCP for pcscd)")
    load = os.getloadavg()
    print(f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
