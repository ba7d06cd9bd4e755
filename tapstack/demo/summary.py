"""The demo's closing report: the figures of the day as a plain value, and the lines printed.

`Summary` holds what the demo measured and what the gateway answered afterwards;
`Summary.counts()` is the part that depends on the seed alone (the same seed gives the
same counts, whatever the machine's speed); `lines(summary)` is the text a person reads.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from protocol.currency import money


@dataclass(frozen=True)
class RouteFigures:
    route: str
    name: str
    validator: str  # the reader path: "PC/SC (pcscd + vpcd)" or "nfcpy (udp)"
    taps: int
    accepted: int
    token_taps: int
    revenue: int  # purse fares cleared, minor units
    currency: str
    token_revenue: int = 0  # bank and transit card trips charged to linked wallets, minor units


@dataclass(frozen=True)
class Summary:
    seed: int
    day: str  # the simulated local day, YYYY-MM-DD
    riders: dict[str, int]  # by card kind
    presentations: int  # cards presented at validators (a torn tap and its retry are two)
    missed: int  # presentations no reader saw
    taps: int  # decisions journalled by the validators
    accepted: int
    denied: dict[str, int]  # reason -> taps
    recovered: int  # torn taps completed at the next presentation
    offline_journalled: int  # taps the offline bus journalled while its network was cut
    uploaded: dict[str, int]  # accepted / duplicate / rejected, as the gateway answered the journals
    routes: tuple[RouteFigures, ...]
    gateway_taps: int  # taps the gateway stored (its ridership)
    bills_issued: int
    bills_paid: int
    bills_paid_amount: int
    bills_open: int
    shop_payments: dict[str, int]  # method -> payments
    shop_amount: int
    webhooks: dict[str, int]  # event type -> events received with a good signature
    webhooks_bad_signatures: int
    ledger_ok: bool
    ledger_totals: dict[str, dict]  # currency -> accounts, debits_posted, credits_posted, net
    currency: str = "CNY"
    pcsc_taps: int = 0  # presentations through the PC/SC path
    pcsc_seconds: float = 0.0  # wall time of the tapping phase
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    data_dir: str = ""
    gateway_url: str = ""
    database: str = ""  # the PostgreSQL URL (password hidden) when the gateway ran on one
    external: bool = False  # the gateway was given (--gateway), not started by the demo

    @property
    def pcsc_taps_per_second(self) -> float:
        return self.pcsc_taps / self.pcsc_seconds if self.pcsc_seconds else 0.0

    def counts(self) -> dict:
        """Every figure that follows from the seed (no timings, paths or addresses)."""
        d = asdict(self)
        for name in ("pcsc_seconds", "timings", "data_dir", "gateway_url", "database", "external", "day"):
            d.pop(name)
        return d


CARDS = {"purse": "with a purse wallet", "emv": "with a bank card", "uid": "with a transit card"}


def _reasons(denied: dict[str, int]) -> str:
    return ", ".join(f"{reason.replace('_', ' ')} {n}" for reason, n in sorted(denied.items(), key=lambda x: (-x[1], x[0])))


def lines(s: Summary, *, serving: bool = False) -> list[str]:
    c = s.currency
    where = f"--data {s.data_dir}/gateway" + (f" --database '{s.database}'" if s.database else "")
    out = [f"The day in the city ({s.day}, seed {s.seed})",
           f"  riders        {sum(n for k, n in s.riders.items() if k != 'stranger')}: "
           + ", ".join(f"{n} {CARDS[k]}" for k, n in s.riders.items() if k != "stranger")
           + (", and a visitor whose phone has no transit wallet" if s.riders.get("stranger") else ""),
           f"  taps          {s.taps} at the validators: {s.accepted} accepted, {s.taps - s.accepted} denied"
           + (f" ({_reasons(s.denied)})" if s.denied else ""),
           f"                {s.recovered} torn tap(s) completed on the next presentation; "
           f"{s.offline_journalled} journalled offline by the bus without network, uploaded when it came back"]
    if s.missed:
        out.append(f"                {s.missed} presentation(s) the reader never saw")
    up = s.uploaded
    out.append(f"  uploads       the gateway stored {s.gateway_taps}: {up.get('accepted', 0)} accepted, "
               f"{up.get('duplicate', 0)} duplicate, {up.get('rejected', 0)} rejected"
               + (f", {up['unsent']} NOT SENT" if up.get("unsent") else ""))
    out.append("  revenue       per route: purse fares cleared, then bank and transit card trips charged "
               "to the linked wallets:")
    for r in s.routes:
        out.append(f"    route {r.route:<3} {r.name:<28} {r.taps:>4} taps {r.accepted:>4} accepted "
                   f"{r.token_taps:>4} by token  {money(r.revenue, r.currency):>12} "
                   f"{money(r.token_revenue, r.currency):>12}   {r.validator}")
    out.append(f"  bills         {s.bills_issued} issued, {s.bills_paid} paid by scanning the QR code "
               f"({money(s.bills_paid_amount, c)}), {s.bills_open} open")
    methods = ", ".join(f"{n} by {m}" for m, n in sorted(s.shop_payments.items()))
    out.append(f"  shop          {sum(s.shop_payments.values())} payments at the till ({methods}), "
               f"{money(s.shop_amount, c)}")
    hooks = ", ".join(f"{n} {t}" for t, n in s.webhooks.items()) or "none"
    out.append(f"  webhooks      {sum(s.webhooks.values())} received and verified ({hooks}); "
               f"{s.webhooks_bad_signatures} bad signature(s)")
    totals = "; ".join(f"{cur}: {t['accounts']} accounts, {money(t['debits_posted'], cur)} moved, net {t['net']}"
                       for cur, t in s.ledger_totals.items())
    out.append(f"  ledger check  {'ok' if s.ledger_ok else 'FAILED'} ({totals})")
    out.append(f"  PC/SC path    {s.pcsc_taps} taps in {s.pcsc_seconds:.1f} s of tapping: "
               f"{s.pcsc_taps_per_second:.2f} taps/s (card arrival through pcscd dominates)")
    out.append("")
    if serving:
        out.append(f"The gateway stays up: open {s.gateway_url}/dashboard (operator key: "
                   f"tapstack gateway operator-key {where}). Ctrl-C stops it.")
    elif s.external:
        out.append(f"Look at the result: open {s.gateway_url}/dashboard and sign in with the key from "
                   f"tapstack gateway operator-key {where}")
    else:
        out.append(f"Look at the result: tapstack gateway serve {where} --port {s.gateway_url.rpartition(':')[2]}")
        out.append(f"  then open {s.gateway_url}/dashboard and sign in with the key from "
                   f"tapstack gateway operator-key {where}")
    return out
