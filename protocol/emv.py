"""EMV contactless reading, piece by piece: the commands a terminal sends and the answers it parses.

Pure: commands are built from values, answers parsed into frozen dataclasses; the
unpredictable number and the date are passed in. The flow (EMV Book B, Book 3):

    SELECT 2PAY.SYS.DDF01 (PPSE)  -> directory entries (AID, label, priority)
    SELECT the application        -> its FCI: label, PDOL
    GET PROCESSING OPTIONS        -> AIP and AFL (the records to read)
    READ RECORD per AFL entry     -> records: PAN (5A) or track 2 equivalent (57), expiry

Every parse error is an `EmvError` whose reason never contains a card number.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date
from typing import Iterable, Mapping

from protocol import tlv
from protocol.apdu import CommandAPDU, select_by_name
from protocol.tlv import DolEntry, Tlv, TlvError

PPSE = b"2PAY.SYS.DDF01"

# Tags of the reading flow (EMV Book 3 Annex A).
FCI_TEMPLATE = 0x6F
DF_NAME = 0x84
FCI_PROPRIETARY = 0xA5
FCI_ISSUER_DISCRETIONARY = 0xBF0C
DIRECTORY_ENTRY = 0x61
ADF_NAME = 0x4F
APPLICATION_LABEL = 0x50
PRIORITY = 0x87
PDOL = 0x9F38
LANGUAGE = 0x5F2D
CODE_TABLE = 0x9F11
PREFERRED_NAME = 0x9F12
COMMAND_TEMPLATE = 0x83
GPO_FORMAT_1 = 0x80
GPO_FORMAT_2 = 0x77
AIP = 0x82
AFL = 0x94
RECORD_TEMPLATE = 0x70
PAN = 0x5A
TRACK2 = 0x57
EXPIRY = 0x5F24
PAN_SEQUENCE = 0x5F34
CARDHOLDER_NAME = 0x5F20

# Terminal data (EMV Book 3 Annex A; 9F66 from the Visa contactless specification).
TTQ = 0x9F66
AMOUNT = 0x9F02
AMOUNT_OTHER = 0x9F03
COUNTRY = 0x9F1A
CURRENCY = 0x5F2A
TRANSACTION_DATE = 0x9A
TRANSACTION_TYPE = 0x9C
UNPREDICTABLE_NUMBER = 0x9F37
TERMINAL_TYPE = 0x9F35
TVR = 0x95

# Format of the terminal-side tags that are not binary: it decides how fill_dol pads
# and truncates (EMV Book 3 5.4). n: numeric BCD, cn: compressed numeric.
NUMERIC = frozenset({AMOUNT, AMOUNT_OTHER, COUNTRY, CURRENCY, TRANSACTION_DATE, TRANSACTION_TYPE,
                     TERMINAL_TYPE, 0x9F21, 0x5F36, 0x9F41, 0x9F15, 0x9F01, 0x9F3C, 0x9F3D, 0x5F28})
COMPRESSED_NUMERIC = frozenset({PAN, 0x9F20})


class EmvError(ValueError):
    """The card's answer breaks the EMV reading flow. The reason never holds a PAN."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _parse(data: bytes, what: str) -> tuple[Tlv, ...]:
    try:
        return tlv.parse(data)
    except TlvError as e:
        raise EmvError(f"{what} is not valid BER-TLV: {e}") from None


def _text(raw: bytes | None) -> str | None:
    """An a/an/ans label as text; bytes outside printable ISO 8859-1 become '?'."""
    if raw is None:
        return None
    return "".join(c if c.isprintable() else "?" for c in raw.decode("latin-1")).strip() or None


def numeric(value: int, size: int) -> bytes:
    """value as EMV format n (BCD, right-justified, leading zeros) in size bytes."""
    digits = str(value)
    if value < 0 or len(digits) > 2 * size:
        raise ValueError(f"{value} does not fit in {size} bytes of BCD")
    return bytes.fromhex(digits.rjust(2 * size, "0"))


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of ISO/IEC 7812-1 over a string of digits."""
    if not digits or not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit that makes partial + digit pass the Luhn check."""
    return next(d for d in "0123456789" if luhn_valid(partial + d))


# --- PPSE --------------------------------------------------------------------------

@dataclass(frozen=True)
class DirectoryEntry:
    aid: bytes
    label: str | None = None
    priority: int | None = None  # 1 highest .. 15 lowest; None when absent or 0 (no priority)


def select_ppse() -> CommandAPDU:
    """SELECT 2PAY.SYS.DDF01: 00 A4 04 00 0E 32 50 41 59 2E 53 59 53 2E 44 44 46 30 31 00."""
    return select_by_name(PPSE)


def _priority(raw: bytes | None) -> int | None:
    if not raw or len(raw) != 1:
        return None
    return (raw[0] & 0x0F) or None


def parse_ppse_fci(data: bytes) -> tuple[DirectoryEntry, ...]:
    """The directory entries of a PPSE FCI (6F > A5 > BF0C > 61...), in card order.

    Entries whose ADF name (4F) is missing or not 5 to 16 bytes are skipped (Book B 3.3.2).
    """
    objects = _parse(data, "PPSE answer")
    fci = tlv.find(objects, FCI_TEMPLATE)
    if fci is None or not fci.constructed:
        raise EmvError("PPSE answer has no FCI template (6F)")
    discretionary = tlv.find(fci, FCI_ISSUER_DISCRETIONARY)
    if discretionary is None:
        return ()
    entries = []
    for entry in discretionary.value:
        if entry.tag != DIRECTORY_ENTRY:
            continue
        aid = tlv.find_value(entry.value, ADF_NAME)
        if aid is None or not 5 <= len(aid) <= 16:
            continue
        entries.append(DirectoryEntry(aid, _text(tlv.find_value(entry.value, APPLICATION_LABEL)),
                                      _priority(tlv.find_value(entry.value, PRIORITY))))
    return tuple(entries)


def choose_applications(entries: Iterable[DirectoryEntry],
                        supported: Iterable[bytes] | None = None) -> tuple[DirectoryEntry, ...]:
    """Candidates in the order to try them: priority 1 first, no priority last, ties in card order.

    supported: the AIDs the terminal accepts (an entry matches when it starts with one);
    None accepts every AID.
    """
    prefixes = None if supported is None else tuple(bytes(a) for a in supported)
    kept = [e for e in entries if prefixes is None or any(e.aid.startswith(p) for p in prefixes)]
    return tuple(sorted(kept, key=lambda e: e.priority or 16))  # sorted() is stable


# --- the application ---------------------------------------------------------------

@dataclass(frozen=True)
class ApplicationFci:
    df_name: bytes
    label: str | None = None
    preferred_name: str | None = None
    priority: int | None = None
    pdol: tuple[DolEntry, ...] = ()
    language: str | None = None


def select_application(aid: bytes) -> CommandAPDU:
    return select_by_name(aid)


def parse_application_fci(data: bytes) -> ApplicationFci:
    """The FCI of a selected application: 6F > 84 DF name, A5 > 50, 87, 9F38 PDOL, 5F2D, 9F12."""
    objects = _parse(data, "application FCI")
    fci = tlv.find(objects, FCI_TEMPLATE)
    if fci is None or not fci.constructed:
        raise EmvError("application answer has no FCI template (6F)")
    name = tlv.find_value(fci.value, DF_NAME)
    if name is None or not 5 <= len(name) <= 16:
        raise EmvError("application FCI has no DF name (84) of 5 to 16 bytes")
    prop = next((o for o in fci.value if o.tag == FCI_PROPRIETARY and o.constructed), None)
    if prop is None:
        raise EmvError("application FCI has no proprietary template (A5)")
    pdol_raw = tlv.find_value(prop, PDOL)
    try:
        pdol = tlv.parse_dol(pdol_raw) if pdol_raw else ()
    except TlvError as e:
        raise EmvError(f"PDOL (9F38) is malformed: {e}") from None
    return ApplicationFci(
        df_name=name,
        label=_text(tlv.find_value(prop, APPLICATION_LABEL)),
        preferred_name=_text(tlv.find_value(prop, PREFERRED_NAME)),
        priority=_priority(tlv.find_value(prop, PRIORITY)),
        pdol=pdol,
        language=_text(tlv.find_value(prop, LANGUAGE)),
    )


# --- GET PROCESSING OPTIONS -------------------------------------------------------

@dataclass(frozen=True)
class TerminalData:
    """What a tapstack terminal tells the card in the PDOL. Money in minor units."""

    transaction_date: date
    unpredictable_number: bytes
    amount: int = 0
    amount_other: int = 0
    country: int = 156  # ISO 3166-1 numeric, China
    currency: int = 156  # ISO 4217 numeric, CNY
    transaction_type: int = 0x00  # purchase
    # Visa TTQ: qVSDC and contact chip supported, online PIN and signature supported,
    # consumer device CVM supported.
    ttq: bytes = bytes.fromhex("36004000")
    terminal_type: int = 22  # attended, offline with online capability (n2)

    def __post_init__(self):
        if len(self.unpredictable_number) != 4:
            raise ValueError("the unpredictable number is 4 bytes")

    def values(self) -> dict[int, bytes]:
        d = self.transaction_date
        return {
            TTQ: bytes(self.ttq),
            AMOUNT: numeric(self.amount, 6),
            AMOUNT_OTHER: numeric(self.amount_other, 6),
            COUNTRY: numeric(self.country, 2),
            CURRENCY: numeric(self.currency, 2),
            TRANSACTION_DATE: numeric((d.year % 100) * 10000 + d.month * 100 + d.day, 3),
            TRANSACTION_TYPE: numeric(self.transaction_type, 1),
            UNPREDICTABLE_NUMBER: bytes(self.unpredictable_number),
            TERMINAL_TYPE: numeric(self.terminal_type, 1),
        }


def fill_dol(dol: Iterable[DolEntry], values: Mapping[int, bytes]) -> bytes:
    """The data a DOL asks for, per EMV Book 3 5.4.

    Unknown or constructed tags give zeros. Too long: numeric (n) loses its leftmost
    bytes, anything else its rightmost. Too short: n is padded with leading zeros,
    cn with trailing FF, anything else with trailing zeros.
    """
    out = bytearray()
    for entry in dol:
        value = values.get(entry.tag)
        n = entry.length
        if value is None or tlv.is_constructed(entry.tag):
            out += bytes(n)
        elif len(value) >= n:
            out += value[len(value) - n:] if entry.tag in NUMERIC else value[:n]
        elif entry.tag in NUMERIC:
            out += bytes(n - len(value)) + value
        elif entry.tag in COMPRESSED_NUMERIC:
            out += value + b"\xff" * (n - len(value))
        else:
            out += value + bytes(n - len(value))
    return bytes(out)


# 83 81 LL data must fit a short APDU's 255 data bytes (EMV Book 3 uses short APDUs only).
MAX_PDOL_DATA = 252


def get_processing_options(pdol_data: bytes = b"") -> CommandAPDU:
    """GET PROCESSING OPTIONS: 80 A8 00 00 Lc 83 len pdol-data 00.

    Raises EmvError when a card's PDOL asks for more data than a short APDU carries.
    """
    if len(pdol_data) > MAX_PDOL_DATA:
        raise EmvError(f"the card's PDOL asks for {len(pdol_data)} bytes; a GPO carries at most {MAX_PDOL_DATA}")
    return CommandAPDU(0x80, 0xA8, 0x00, 0x00, tlv.Tlv(COMMAND_TEMPLATE, bytes(pdol_data)).to_bytes(), le=256)


@dataclass(frozen=True)
class AflEntry:
    sfi: int
    first: int
    last: int
    offline_auth: int  # how many records from `first` take part in offline data authentication

    def records(self) -> range:
        return range(self.first, self.last + 1)


def parse_afl(raw: bytes) -> tuple[AflEntry, ...]:
    """The Application File Locator: 4-byte entries, checked as EMV Book 3 10.2 asks."""
    if len(raw) % 4:
        raise EmvError(f"AFL of {len(raw)} bytes is not a multiple of 4")
    entries = []
    for i in range(0, len(raw), 4):
        sfi, first, last, count = raw[i] >> 3, raw[i + 1], raw[i + 2], raw[i + 3]
        if not 1 <= sfi <= 30 or first == 0 or last < first or count > last - first + 1:
            raise EmvError(f"AFL entry {i // 4} ({raw[i:i + 4].hex().upper()}) is invalid")
        entries.append(AflEntry(sfi, first, last, count))
    return tuple(entries)


@dataclass(frozen=True)
class ProcessingOptions:
    aip: bytes
    afl: tuple[AflEntry, ...]
    data: tuple[Tlv, ...] = field(default=(), repr=False)  # format 2: everything in the 77 template


def parse_gpo_response(data: bytes) -> ProcessingOptions:
    """A GPO answer in format 1 (80: AIP then AFL) or format 2 (77 with 82 AIP, 94 AFL)."""
    objects = _parse(data, "GPO answer")
    if not objects:
        raise EmvError("GPO answer is empty")
    first = objects[0]
    if first.tag == GPO_FORMAT_1:
        if len(first.value) < 2:
            raise EmvError("GPO format 1 answer is shorter than the AIP")
        return ProcessingOptions(first.value[:2], parse_afl(first.value[2:]))
    if first.tag == GPO_FORMAT_2:
        aip = tlv.find_value(first.value, AIP)
        if aip is None or len(aip) != 2:
            raise EmvError("GPO format 2 answer has no 2-byte AIP (82)")
        return ProcessingOptions(aip, parse_afl(tlv.find_value(first.value, AFL) or b""), first.value)
    raise EmvError(f"GPO answer starts with tag {first.tag:X}, not 80 or 77")


# --- READ RECORD --------------------------------------------------------------------

def read_record(sfi: int, record: int) -> CommandAPDU:
    """READ RECORD: 00 B2 record (SFI << 3 | 4) 00."""
    if not 1 <= sfi <= 30 or not 1 <= record <= 255:
        raise ValueError("SFI is 1..30 and record 1..255")
    return CommandAPDU(0x00, 0xB2, record, (sfi << 3) | 0x04, le=256)


def parse_record(data: bytes) -> tuple[Tlv, ...]:
    """The data objects of an EMV record (SFI 1 to 10): one record template, 70."""
    objects = _parse(data, "record")
    if len(objects) != 1 or objects[0].tag != RECORD_TEMPLATE:
        raise EmvError("record is not one record template (70)")
    return objects[0].value


def _hex_digits(raw: bytes) -> str:
    return raw.hex().upper().rstrip("F")


def pan_from(objects: Iterable[Tlv]) -> str | None:
    """The card number in these data objects: from 5A, else from the track 2 equivalent 57.

    None when neither is there; EmvError if the one found is not a PAN of 12 to 19
    digits passing the Luhn check. The PAN goes straight to a token: see protocol.tokens.
    """
    objects = tuple(objects)
    raw = tlv.find_value(objects, PAN)
    if raw is not None:
        digits, source = _hex_digits(raw), "PAN (5A)"
    else:
        raw = tlv.find_value(objects, TRACK2)
        if raw is None:
            return None
        digits, source = _hex_digits(raw).partition("D")[0], "track 2 equivalent (57)"
    if not digits.isdigit():
        raise EmvError(f"{source} holds non-numeric digits")
    if not 12 <= len(digits) <= 19:
        raise EmvError(f"{source} holds {len(digits)} digits, not 12 to 19")
    if not luhn_valid(digits):
        raise EmvError(f"{source} fails the Luhn check")
    return digits


def _yymm(digits: str) -> str | None:
    return digits if len(digits) == 4 and digits.isdigit() and 1 <= int(digits[2:]) <= 12 else None


def expiry_from(objects: Iterable[Tlv]) -> str | None:
    """Expiry as YYMM from 5F24 (YYMMDD), else from the track 2 equivalent; None if absent or malformed."""
    objects = tuple(objects)
    raw = tlv.find_value(objects, EXPIRY)
    if raw is not None and len(raw) == 3:
        return _yymm(raw.hex()[:4])
    raw = tlv.find_value(objects, TRACK2)
    if raw is not None:
        head, sep, tail = raw.hex().upper().partition("D")
        return _yymm(tail[:4]) if sep else None
    return None


# --- what a card stores --------------------------------------------------------------

def expiration_date(yymm: str) -> bytes:
    """5F24 for an expiry YYMM: YYMMDD on the last day of the month."""
    if _yymm(yymm) is None:
        raise ValueError("expiry is YYMM")
    last_day = calendar.monthrange(2000 + int(yymm[:2]), int(yymm[2:]))[1]
    return bytes.fromhex(f"{yymm}{last_day:02d}")


def track2_equivalent(pan: str, yymm: str, service_code: str = "201", discretionary: str = "") -> bytes:
    """57: PAN, separator D, expiry YYMM, service code, discretionary data, F-padded to whole bytes."""
    digits = pan + "D" + yymm + service_code + discretionary
    if _yymm(yymm) is None or not (pan + service_code + discretionary).isdigit() or len(service_code) != 3:
        raise ValueError("track 2 takes digits, an expiry YYMM and a 3-digit service code")
    if len(digits) % 2:
        digits += "F"
    if len(digits) > 38:
        raise ValueError("track 2 equivalent is at most 19 bytes")
    return bytes.fromhex(digits)
