"""Tap benchmark: a full purse tap through each transport, against a one-APDU round trip.

A tap is what a validator does with a card already in its field: terminal.tap.tap, i.e.
SELECT the purse, verify its certificate, DEBIT, verify the signed receipt. Each transport
(in-process mock, the real pcscd with the card on vsmartcard-vpcd, nfcpy's udp driver)
runs the taps interleaved with a baseline: one SELECT of an absent application (6A82), the
cheapest exchange the card itself answers, measured the same way through the same reader.

    python bench/tap_bench.py [--taps 1000] [--transport mock --transport pcscd+vpcd ...]

Targets (the validator's budget): through pcscd+vpcd p50 <= 5 ms, p99 <= 15 ms, <= 4 APDUs.
Card arrival (present -> session) is not part of a tap; --arrivals N measures it apart:
pcscd polls a vpcd slot, nfcpy polls with SENS_REQ, so it is the reader's polling, not ours.

It also counts, for each card kind, the exchanges the card answers in one tap at the bus
validator (terminal.bus.Validator) on each transport, and checks them against the table the
docs and the tear matrix state (tapstack.testing.tears.EXCHANGES): a purse tap is SELECT +
DEBIT everywhere; a UID is read only for the cards whose decision needs it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.apdu import select_by_name  # noqa: E402
from terminal.tap import TapContext, tap  # noqa: E402
from wallet.testcards import demo_purse_card  # noqa: E402

TRANSPORTS = ("mock", "pcscd+vpcd", "nfcpy-udp")
BASELINE = select_by_name(bytes.fromhex("F000000000DEAD")).to_bytes()  # no such applet: 6A82
TARGET_P50_MS, TARGET_P99_MS, TARGET_APDUS = 5.0, 15.0, 4


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def open_transport(kind: str, stack: ExitStack, card):
    """(reader, card side): a Reader with the card in its field; the stack cleans up."""
    if kind == "mock":
        from terminal.readers.mock import MockReader

        reader = MockReader(card)
        return reader, reader
    if kind == "pcscd+vpcd":
        from terminal.readers.pcsc import PcscReader
        from wallet import pcscd
        from wallet.transports.vpcd import VpcdCard

        daemon = stack.enter_context(pcscd.start(1))
        card_side = stack.enter_context(VpcdCard(card, daemon.readers[0].port))
        reader = PcscReader(daemon.readers[0].pcsc_name)
        stack.callback(reader.close)
        return reader, card_side
    if kind == "nfcpy-udp":
        from terminal.readers.nfc import NfcReader
        from wallet.pcscd import free_ports
        from wallet.transports.nfc_udp import NfcUdpCard

        port = free_ports(1)[0]
        card_side = stack.enter_context(NfcUdpCard(card, port))
        reader = NfcReader(f"udp:127.0.0.1:{port}")
        stack.callback(reader.close)
        return reader, card_side
    raise ValueError(kind)


def measure(kind: str, taps: int, arrivals: int, warmup: int = 20) -> dict:
    demo = demo_purse_card(balance=100_000)
    ctx = TapContext(fare=1, currency="CNY", terminal_id=b"BENCH001", issuer_keys=demo.issuer_keys,
                     token_key=demo.token_key, now=datetime.now(timezone.utc))
    tap_ms, base_ms, apdus = [], [], []
    with ExitStack() as stack:
        reader, card_side = open_transport(kind, stack, demo.card)
        arrival_ms = []
        for _ in range(arrivals):
            card_side.remove()
            if not reader.wait_for_removal(10):
                raise SystemExit(f"{kind}: the reader still sees a card that was taken away")
            t0 = time.perf_counter()
            card_side.present()
            if reader.wait_for_card(10) is None:
                raise SystemExit(f"{kind}: the card did not show up in the reader")
            arrival_ms.append((time.perf_counter() - t0) * 1000)
        session = reader.wait_for_card(10)
        if session is None:
            raise SystemExit(f"{kind}: the card did not show up in the reader")
        for i in range(warmup + taps):
            t0 = time.perf_counter()
            response = session.transmit(BASELINE)
            t1 = time.perf_counter()
            outcome, _ = tap(session, ctx)
            t2 = time.perf_counter()
            if response[-2:] != b"\x6A\x82" or outcome.reason != "paid":
                raise SystemExit(f"{kind}: tap {i} went wrong: baseline {response.hex()}, tap {outcome.reason} "
                                 f"({outcome.detail})")
            if i >= warmup:
                base_ms.append((t1 - t0) * 1000)
                tap_ms.append((t2 - t1) * 1000)
                apdus.append(outcome.apdus)
    tap_ms.sort()
    base_ms.sort()
    return {
        "transport": kind, "taps": taps, "apdus": statistics.mean(apdus), "max_apdus": max(apdus),
        "p50": percentile(tap_ms, 50), "p90": percentile(tap_ms, 90), "p99": percentile(tap_ms, 99),
        "base_p50": percentile(base_ms, 50), "base_p99": percentile(base_ms, 99),
        "arrival_p50": statistics.median(arrival_ms) if arrival_ms else None,
        "arrival_max": max(arrival_ms) if arrival_ms else None,
    }


def exchanges_by_kind(transports) -> dict[str, dict[str, int]]:
    """{kind: {transport: exchanges the card answered}} for one validator tap of each kind."""
    from tapstack.testing.fields import Stage
    from tapstack.testing.tears import KINDS, exchanges_of

    counted: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    with Stage() as stage:
        for kind_of_transport in transports:
            with stage.open(kind_of_transport) as field:
                for kind in KINDS:
                    counted[kind][kind_of_transport] = exchanges_of(kind, field)[0]
    return counted


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taps", type=int, default=1000, help="taps per transport (default 1000)")
    parser.add_argument("--transport", action="append", choices=TRANSPORTS,
                        help="transport to measure (repeatable; default all)")
    parser.add_argument("--arrivals", type=int, default=10,
                        help="card arrivals (present -> session) to time per transport (default 10; 0: none)")
    args = parser.parse_args(argv)
    rows = [measure(kind, args.taps, args.arrivals) for kind in (args.transport or TRANSPORTS)]

    print(f"full purse tap (SELECT + DEBIT + offline verification), {args.taps} taps per transport")
    print("baseline: one-APDU round trip (SELECT of an absent AID) through the same reader, same run\n")
    header = (f"{'transport':<12} {'APDUs/tap':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
              f"{'1-APDU p50':>11} {'1-APDU p99':>11} {'tap/1-APDU':>11}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['transport']:<12} {r['apdus']:>9.1f} {r['p50']:>8.3f} {r['p90']:>8.3f} {r['p99']:>8.3f} "
              f"{r['base_p50']:>11.3f} {r['base_p99']:>11.3f} {r['p50'] / r['base_p50']:>10.1f}x")
    if args.arrivals:
        print(f"\ncard arrival, present -> session ({args.arrivals} per transport; the reader's polling):")
        for r in rows:
            print(f"  {r['transport']:<12} median {r['arrival_p50']:8.1f} ms   max {r['arrival_max']:8.1f} ms")
    from tapstack.testing.tears import EXCHANGES

    transports = args.transport or TRANSPORTS
    counted = exchanges_by_kind(transports)
    print("\nexchanges the card answers in one validator tap (purse: SELECT + DEBIT; UID only when needed):")
    print(f"  {'card':<8}" + "".join(f"{t:>12}" for t in transports))
    for kind, by_transport in counted.items():
        print(f"  {kind:<8}" + "".join(f"{by_transport[t]:>12}" for t in transports))
    failed = any(counted[k][t] != EXCHANGES[k][t] for k in counted for t in transports)
    print(f"  as documented (docs/validator.md, tapstack.testing.tears.EXCHANGES): {'no: FAILED' if failed else 'yes'}")
    for r in rows:
        if r["transport"] == "pcscd+vpcd":
            ok = r["p50"] <= TARGET_P50_MS and r["p99"] <= TARGET_P99_MS and r["max_apdus"] <= TARGET_APDUS
            failed |= not ok
            print(f"\npcscd+vpcd target p50 <= {TARGET_P50_MS:g} ms, p99 <= {TARGET_P99_MS:g} ms, "
                  f"<= {TARGET_APDUS} APDUs: {'met' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
