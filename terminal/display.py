"""What the rider and the driver see: one panel per tap, in plain text.

    ACCEPTED  Paid 2.00 CNY   balance 8.00 CNY
    route R1  stop S3   online   0 to upload

The status line ends with "OUT OF SERVICE: journal" while a part the validator cannot
take taps without is failing (terminal.loop.Service says what is wrong when it starts).

`panel` is pure (a decision and the validator's status in, lines out); the shell prints
it, and a small screen driver could draw the same lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from protocol.currency import is_known
from protocol.currency import money as currency_money


def money(amount: int, currency: str | None) -> str:
    """150, "CNY" -> "1.50 CNY" (display only; never parsed back)."""
    if currency and is_known(currency):
        return currency_money(amount, currency)
    return f"{amount} minor units"


def age(delta: timedelta) -> str:
    """A short age: 45 s, 12 min, 5 h, 3 d."""
    seconds = max(0, int(delta.total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


@dataclass(frozen=True)
class Status:
    """The validator's state as the driver needs it."""
    route: str | None
    stop: str | None
    online: bool
    data_age: timedelta | None  # since the deny-list, fare rules and keys were last refreshed; None: never
    unsent: int | None  # None: the journal cannot be read
    out_of_service: tuple[str, ...] = ()  # the parts failing: reader, journal


def panel(decision, status: Status) -> list[str]:
    """Two lines: the outcome for the rider, then the validator's state."""
    head = "ACCEPTED" if decision.accepted else "REFUSED "
    words = [decision.message]
    if decision.amount is not None:
        words[0] = f"{decision.message} {money(decision.amount, decision.currency)}"
    if decision.balance_after is not None:
        words.append(f"balance {money(decision.balance_after, decision.currency)}")
    return [f"{head}  {'   '.join(words)}", status_line(status)]


def status_line(status: Status) -> str:
    where = f"route {status.route or '-'}  stop {status.stop or '-'}"
    if status.data_age is None:
        link = "no reference data yet" if not status.online else "online"
    elif status.online:
        link = "online"
    else:
        link = f"OFFLINE, data {age(status.data_age)} old"
    upload = f"{status.unsent} to upload" if status.unsent is not None else "journal unreadable"
    line = f"{where}   {link}   {upload}"
    return f"{line}   OUT OF SERVICE: {', '.join(status.out_of_service)}" if status.out_of_service else line
