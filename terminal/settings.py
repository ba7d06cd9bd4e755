"""The settings of `tapstack terminal validator` and `tapstack terminal till`, and their checks.

terminal/commands.py makes them from the command line (with `secret_text`, `hex_arg` and
`default_terminal_id`); terminal/bus.py and terminal/till.py check them again when they
start, so a program made in code fails the same way. A check's ValueError is one line for
the operator.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from protocol.purse import CURRENCY_CODES, ID_SIZE
from terminal.card import REPEAT_WINDOW
from terminal.stops import check_name

DIRECTIONS = ("on", "off")


@dataclass
class Settings:
    """The bus validator's (terminal/bus.py)."""
    route: str | None = None
    stop: str | None = None
    reader: str = "pcsc"
    gateway: str | None = None
    key_id: str | None = None
    secret: bytes | None = None
    token_key: bytes = b""
    journal: Path = Path("validator-journal.db")
    stop_feed: Path | None = None
    fare_rules: Path | None = None  # a local rules file, used until the gateway's are downloaded
    fare: int | None = None  # a flat fare when there are no fare rules at all
    currency: str = "CNY"
    terminal_id: bytes = b""
    issuer_keys: tuple[bytes, ...] = ()  # issuer public keys trusted before (or besides) any download
    qr_frame: Path | None = None
    qr_dir: Path | None = None
    refresh_every: float = 60.0
    repeat_window: timedelta = REPEAT_WINDOW
    max_taps: int | None = None  # stop after this many taps (tests, demos)
    direction: str = "on"  # on: an entry validator; off: an exit validator recording tap-offs
    simulated_clock: bool = False  # the clock is set by `clock TIME` lines on input (replays, simulations)
    machine_lines: bool = False  # OK/ERR per input command, DECISION {json} per decision, for a driver program


def check_settings(s: Settings) -> None:
    """ValueError with one line for the operator when the settings cannot work."""
    if s.direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
    for what, value in (("route (--route)", s.route), ("stop (--stop)", s.stop)):
        if value is not None:
            check_name(what, value)
    _check_terminal(s)
    if len(s.token_key) < 16:
        raise ValueError("the token key (--token-key) is at least 16 bytes: every validator of an operator "
                         "uses the same one, so EMV and UID taps join into trips")


@dataclass
class TillSettings:
    """The shop till's (terminal/till.py)."""
    reader: str = "pcsc"
    gateway: str | None = None
    key_id: str | None = None
    secret: bytes | None = None
    token_key: bytes = b""  # empty: a key of this run (card tokens are refused at a till anyway)
    journal: Path = Path("till-journal.db")
    currency: str = "CNY"
    terminal_id: bytes = b""
    issuer_keys: tuple[bytes, ...] = ()
    qr_frame: Path | None = None
    qr_dir: Path | None = None
    qr_out: Path = Path("checkout-qr.png")  # where a checkout's code is saved as PNG
    sales: Path | None = None  # scripted commands, one a line, each run once no sale is open
    checkout_seconds: int = 300
    poll_every: float = 1.0
    refresh_every: float = 60.0
    retries: int = 3  # tries of one online call before the till says the gateway is unreachable
    merchant_key: str | None = None  # sk_...: refunds under the merchant's key; none: under the terminal key


def check_till_settings(s: TillSettings) -> None:
    """ValueError with one line for the operator when the settings cannot work."""
    _check_terminal(s)
    if s.token_key and len(s.token_key) < 16:
        raise ValueError("the token key (--token-key) is at least 16 bytes")
    if not 10 <= s.checkout_seconds <= 3600:
        raise ValueError("a checkout lasts 10 to 3600 seconds")
    if s.retries < 1:
        raise ValueError("retries is at least 1")
    if s.merchant_key and not s.merchant_key.startswith("sk_"):
        raise ValueError("--merchant-key is the merchant's API key, sk_...")


def _check_terminal(s: Settings | TillSettings) -> None:
    """What every terminal program needs: its id, a currency, a key to go with a gateway,
    issuer keys that can be."""
    if len(s.terminal_id) != ID_SIZE:
        raise ValueError("the terminal id is 8 bytes")
    if s.currency not in CURRENCY_CODES:
        raise ValueError(f"unsupported currency {s.currency}")
    if s.gateway and not (s.key_id and s.secret):
        raise ValueError("--gateway needs --terminal-key KEY_ID:SECRET")
    if any(len(k) != 32 for k in s.issuer_keys):
        raise ValueError("an issuer key is 32 bytes (64 hex digits)")


# --- command-line values ---------------------------------------------------------------------

def default_terminal_id(key_id: str | None) -> bytes:
    """8 bytes for receipts: from the terminal key id, so each validator has its own; printable
    (8 hex characters), so a card's receipt log shows which validator took the fare."""
    return hashlib.sha256((key_id or "unregistered").encode()).hexdigest()[:ID_SIZE].encode("ascii")


def secret_text(value: str) -> str:
    """A secret given inline, or @FILE to read it from a file (keeps it out of `ps`)."""
    if value.startswith("@"):
        return Path(value[1:]).read_text(encoding="utf-8").strip()
    return value


def hex_arg(text: str, name: str) -> bytes:
    """`text` as bytes, or ValueError naming the option `name` when it is not hex."""
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{name} must be hex digits") from None
