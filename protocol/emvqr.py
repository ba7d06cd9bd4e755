"""EMVCo merchant-presented QR codes (EMV QRCPS Merchant-Presented Mode v1.1).

A payload is a string of fields, each an id (2 digits), a length (2 digits, counting
characters, not bytes) and a value; ids 26-51, 62, 64 and 80-99 are templates whose
value is itself a string of fields. The payload format indicator (00 "01") comes first,
the CRC (63, 4 upper-case hex digits) last. The CRC is CRC-16/CCITT-FALSE over the UTF-8
bytes of everything before its own value, the literal "6304" included.

Read liberally, write strictly. `parse` reads the codes found in the wild: national
profiles bend the specification (Thailand's PromptPay leaves out the merchant category
code, name and city; Cambodian codes carry a 16-character city; local scripts turn up
in ans fields). Each bend is kept as a `Deviation` in `MerchantQr.warnings`, naming the
field, and the value is read as far as it can be. `parse` refuses, with `QrFormatError`
naming the field, what is wrong and the character offset, only what cannot be read:
a broken structure (an id or length that is not two digits, a field running past its
end, a duplicate id, a template that does not split into fields, no CRC last), a wrong
CRC, a format indicator other than "01", and an amount that is not a number (paying a
guessed amount would be worse than paying nothing). `parse(payload, strict=True)` also
refuses the first deviation; `encode` writes a `MerchantQr` and checks its own output
that way, so tapstack never writes a code that bends a rule.

`bill_code`, `merchant_code` and `checkout_code` build tapstack's three kinds of code;
`read_tapstack` reads one back and applies tapstack's rules (a static code carries no
amount, a dynamic one carries an amount and an expiry that has not passed). `Names`
says what a merchant's name and city become in fields 59, 60 and the language template
64 when they are written in a local script; `scheme` names the national scheme of a
code from elsewhere.

Amounts are integer minor units of the currency; the text form ("23.72") is converted
exactly, digit by digit, never through a float.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone

from protocol import currency as iso4217

GUID = "org.tapstack"  # tapstack's globally unique id (reverse domain), in 26 and 80
MERCHANT_ACCOUNT_ID = "26"  # where tapstack writes its merchant account template
TAPSTACK_TEMPLATE_ID = "80"  # where tapstack writes its unreserved template (expiry)
MAX_PAYLOAD = 512  # characters, per the specification

# Sub-fields of the additional data template (62).
BILL_NUMBER, MOBILE_NUMBER, STORE_LABEL, LOYALTY_NUMBER = "01", "02", "03", "04"
REFERENCE_LABEL, CUSTOMER_LABEL, TERMINAL_LABEL, PURPOSE = "05", "06", "07", "08"
CONSUMER_DATA_REQUEST = "09"

# The currencies a code may carry: ISO 4217 numeric code ("156") -> (alphabetic code,
# minor-unit exponent), every currency of protocol/currency.py whose numeric code reads
# back as itself (not ANG, whose number XCG now carries).
CURRENCIES: dict[str, tuple[str, int]] = {
    f"{c.numeric:03d}": (c.alpha, c.exponent) for c in iso4217.CURRENCIES.values()
    if iso4217.alpha(c.numeric) == c.alpha
}
_NUMERIC_BY_ALPHA = {alpha: num for num, (alpha, _) in CURRENCIES.items()}

FIELD_NAMES = {
    "00": "payload format indicator", "01": "point of initiation method",
    "52": "merchant category code", "53": "transaction currency", "54": "transaction amount",
    "55": "tip or convenience indicator", "56": "convenience fee fixed",
    "57": "convenience fee percentage", "58": "country code", "59": "merchant name",
    "60": "merchant city", "61": "postal code", "62": "additional data",
    "63": "CRC", "64": "merchant information language template",
    "62/01": "bill number", "62/02": "mobile number", "62/03": "store label",
    "62/04": "loyalty number", "62/05": "reference label", "62/06": "customer label",
    "62/07": "terminal label", "62/08": "purpose of transaction",
    "62/09": "additional consumer data request",
    "64/00": "language preference", "64/01": "alternate merchant name",
    "64/02": "alternate merchant city",
}

_DIGITS = re.compile(r"[0-9]+")
_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]*))?")
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")


def _where(field_id: str | None, offset: int | None) -> str:
    if field_id is None:
        where = "payload"
    else:
        name = FIELD_NAMES.get(field_id) or _range_name(field_id)
        where = f"field {field_id}" + (f" ({name})" if name else "")
    return where + (f" at offset {offset}" if offset is not None else "")


class QrFormatError(ValueError):
    """A payload breaks a rule: field_id names the field ("54", "62/05"), offset is the
    character offset in the payload where the field starts (None when not tied to one)."""

    def __init__(self, field_id: str | None, message: str, offset: int | None = None):
        self.field_id, self.message, self.offset = field_id, message, offset
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{_where(self.field_id, self.offset)}: {self.message}"


class CodeExpired(QrFormatError):
    """A tapstack dynamic code whose expiry (80/01), `expires_at`, has passed."""

    def __init__(self, field_id: str | None, message: str, offset: int | None = None, *,
                 expires_at: datetime | None = None):
        super().__init__(field_id, message, offset)
        self.expires_at = expires_at


@dataclass(frozen=True)
class Deviation:
    """A rule a payload bends but that does not stop it being read; str() as QrFormatError's."""
    field_id: str | None
    message: str
    offset: int | None = None

    def __str__(self) -> str:
        return f"{_where(self.field_id, self.offset)}: {self.message}"


def _range_name(field_id: str) -> str:
    top = field_id.split("/")[0]
    if not top.isdigit():
        return ""
    n = int(top)
    if 2 <= n <= 51:
        return "merchant account information"
    if 80 <= n <= 99:
        return "unreserved template"
    return ""


@dataclass(frozen=True)
class MerchantQr:
    """A parsed merchant-presented payload. Templates are dicts of sub-field id -> value.

    A field the payload left out is None (or empty); `warnings` lists every rule the
    payload bends, in the order found (empty for a code that keeps them all)."""
    merchant_accounts: dict[str, str | dict[str, str]]  # 02-25 primitive, 26-51 template
    mcc: str | None
    currency: str | None  # ISO 4217 numeric, "156" for CNY
    country: str | None
    name: str | None
    city: str | None
    amount: int | None = None  # minor units of currency
    dynamic: bool | None = None  # point of initiation: 12 dynamic, 11 static, None absent
    postal_code: str | None = None
    additional: dict[str, str] = field(default_factory=dict)  # 62
    language: dict[str, str] | None = None  # 64
    unreserved: dict[str, dict[str, str]] = field(default_factory=dict)  # 80-99
    other: dict[str, str] = field(default_factory=dict)  # 55-57 tip fields, RFU ids
    warnings: tuple[Deviation, ...] = ()

    @property
    def currency_code(self) -> str | None:
        """The alphabetic code ("CNY"), None for a missing or unknown currency."""
        return CURRENCIES.get(self.currency or "", (None, 0))[0]

    @property
    def bill_number(self) -> str | None:
        return self.additional.get(BILL_NUMBER)

    @property
    def reference_label(self) -> str | None:
        return self.additional.get(REFERENCE_LABEL)

    @property
    def terminal_label(self) -> str | None:
        return self.additional.get(TERMINAL_LABEL)

    @property
    def local_name(self) -> str | None:
        """The merchant's name in the local script (64/01), when the code carries one."""
        return (self.language or {}).get("01")

    @property
    def local_city(self) -> str | None:
        return (self.language or {}).get("02")


# ---------------------------------------------------------------------------- CRC

def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


def with_crc(body: str) -> str:
    """Append field 63 to body (every field but the CRC): body + "6304" + 4 hex digits."""
    text = body + "6304"
    return text + f"{crc16(text.encode('utf-8')):04X}"


# ---------------------------------------------------------------------- splitting

def _split(text: str, base: int, parent: str = "") -> list[tuple[str, str, int]]:
    """Split text into (id, value, offset) fields; offsets are absolute in the payload."""
    fields: list[tuple[str, str, int]] = []
    seen: set[str] = set()
    where = f"template {parent}" if parent else "payload"
    i = 0
    while i < len(text):
        at = base + i
        fid, length = text[i:i + 2], text[i + 2:i + 4]
        label = f"{parent}/{fid}" if parent else fid
        if len(fid) < 2 or not _DIGITS.fullmatch(fid):
            raise QrFormatError(parent or None,
                                f"field id {fid!r} is not two digits" if len(fid) == 2
                                else f"truncated field: {len(text) - i} character(s) left at the end of the {where}", at)
        if len(length) < 2:
            raise QrFormatError(label, f"truncated field: no room for the 2-digit length at the end of the {where}", at)
        if not _DIGITS.fullmatch(length):
            raise QrFormatError(label, f"length {length!r} is not two digits", at)
        n = int(length)
        if n == 0:
            raise QrFormatError(label, "length 00: a value has at least one character", at)
        if i + 4 + n > len(text):
            raise QrFormatError(label, f"length {n} runs past the end of the {where} "
                                       f"({len(text) - i - 4} character(s) left)", at)
        if fid in seen:
            raise QrFormatError(label, "duplicate id", at)
        seen.add(fid)
        fields.append((fid, text[i + 4:i + 4 + n], at))
        i += 4 + n
    return fields


def _template(parent: str, value: str, at: int) -> dict[str, str]:
    return {fid: val for fid, val, _ in _split(value, at + 4, parent)}


# ------------------------------------------------------------------------ amounts

def amount_text(minor: int, currency: str) -> str:
    """Write minor units the way field 54 does: 2372 CNY -> "23.72", 999 JPY -> "999"."""
    alpha = _currency(currency)[0]
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise QrFormatError("54", f"amount must be an integer of minor units, got {minor!r}")
    if minor <= 0:
        raise QrFormatError("54", f"amount must be greater than zero, got {minor}")
    digits = iso4217.decimal_text(minor, alpha)
    if len(digits) > 13:
        raise QrFormatError("54", f"amount {digits} is longer than 13 characters")
    return digits


def parse_amount(text: str, currency: str, at: int | None = None) -> int:
    """Read field 54 into minor units: "23.72" CNY -> 2372; exact, never through float."""
    alpha, exponent = _currency(currency)
    if len(text) > 13:
        raise QrFormatError("54", f"amount {text!r} is longer than 13 characters", at)
    match = _AMOUNT.fullmatch(text)
    if not match:
        raise QrFormatError("54", f"amount {text!r} is not digits with an optional '.' decimal point", at)
    whole, fraction = match.group(1), match.group(2)
    if fraction is not None and not fraction:
        raise QrFormatError("54", f"amount {text!r} has a decimal point with no digits after it", at)
    fraction = fraction or ""
    if len(fraction) > exponent:
        raise QrFormatError("54", f"amount {text!r} has {len(fraction)} decimal(s); {alpha} allows {exponent}", at)
    minor = int(whole) * 10 ** exponent + int(fraction.ljust(exponent, "0") or "0")
    if minor == 0:
        raise QrFormatError("54", f"amount {text!r} is zero", at)
    return minor


def _currency(currency: str) -> tuple[str, int]:
    numeric = _NUMERIC_BY_ALPHA.get(currency, currency)
    if numeric not in CURRENCIES:
        raise QrFormatError("53", f"unknown currency {currency!r} (ISO 4217 numeric expected, 156 for CNY)")
    return CURRENCIES[numeric]


def currency_numeric(currency: str) -> str:
    """"CNY" or "156" -> "156"; unknown currencies raise QrFormatError naming field 53."""
    numeric = _NUMERIC_BY_ALPHA.get(currency, currency)
    _currency(numeric)
    return numeric


# ------------------------------------------------------------------------ parsing

class _Reading:
    """The deviations found while reading one payload, in the order found."""

    def __init__(self):
        self.found: list[Deviation] = []

    def bend(self, field_id: str | None, message: str, at: int | None = None) -> None:
        self.found.append(Deviation(field_id, message, at))

    def length(self, fid: str, value: str, limit: int, at: int | None, exact: bool = False) -> None:
        if exact and len(value) != limit:
            self.bend(fid, f"must be {limit} characters, got {len(value)}", at)
        elif len(value) > limit:
            self.bend(fid, f"at most {limit} characters, got {len(value)}", at)

    def ans(self, fid: str, value: str, at: int | None) -> None:
        """EMV's common character set (space to '~'); only 64/01 and 64/02 may hold other scripts."""
        char = next((c for c in value if not " " <= c <= "~"), None)
        if char is not None:
            self.bend(fid, f"character {char!r} (U+{ord(char):04X}) is outside the EMV common "
                           "character set; other scripts go in the language template 64", at)

    def amount(self, text: str, currency: str | None, at: int) -> int | None:
        """Field 54 in minor units, or None (with a deviation) when it cannot count as one;
        QrFormatError for text that is not a number at all."""
        if currency not in CURRENCIES:
            self.bend("54", f"amount {text!r} cannot be read without a known currency (53)", at)
            return None
        alpha, exponent = CURRENCIES[currency]
        if len(text) > 13:
            self.bend("54", f"amount {text!r} is longer than 13 characters", at)
        match = _AMOUNT.fullmatch(text)
        if not match:
            raise QrFormatError("54", f"amount {text!r} is not digits with an optional '.' decimal point", at)
        whole, fraction = match.group(1), match.group(2)
        if fraction is not None and not fraction:
            self.bend("54", f"amount {text!r} has a decimal point with no digits after it", at)
        fraction = fraction or ""
        if len(fraction) > exponent:
            if fraction[exponent:].strip("0"):
                raise QrFormatError("54", f"amount {text!r} has {len(fraction)} decimal(s); {alpha} allows "
                                          f"{exponent}, and it is not a whole number of minor units", at)
            self.bend("54", f"amount {text!r} has {len(fraction)} decimal(s); {alpha} allows {exponent}", at)
            fraction = fraction[:exponent]
        minor = int(whole) * 10 ** exponent + int(fraction.ljust(exponent, "0") or "0")
        if minor == 0:
            self.bend("54", f"amount {text!r} is zero: read as no amount, for the payer to enter", at)
            return None
        return minor


def parse(payload: str, *, strict: bool = False) -> MerchantQr:
    """Read a merchant-presented payload liberally: deviations are kept in `warnings`;
    QrFormatError only for what cannot be read (see the module docstring). With strict,
    the first deviation is a QrFormatError too."""
    if not isinstance(payload, str):
        raise QrFormatError(None, f"a payload is text, got {type(payload).__name__}")
    if not payload:
        raise QrFormatError(None, "empty payload")
    reading = _Reading()
    if len(payload) > MAX_PAYLOAD:
        reading.bend(None, f"{len(payload)} characters; a payload has at most {MAX_PAYLOAD}")
    if not payload.startswith("00"):
        raise QrFormatError("00", "a payload starts with the payload format indicator '000201', "
                                  f"found {payload[:6]!r}", 0)
    # The CRC first when it is where it belongs: a damaged payload then reads as a CRC
    # mismatch rather than as whichever length the damage happened to hit.
    if len(payload) >= 8 and payload[-8:-4] == "6304":
        found = payload[-4:]
        expected = f"{crc16(payload[:-4].encode('utf-8')):04X}"
        if not _HEX4.fullmatch(found):
            raise QrFormatError("63", f"CRC {found!r} is not 4 hex digits", len(payload) - 8)
        if found.upper() != expected:
            raise QrFormatError("63", f"wrong CRC: expected {expected}, found {found}", len(payload) - 8)
    fields = _split(payload, 0)
    first_value = fields[0][1]  # its id is "00": the payload starts with "00"
    if first_value != "01":
        raise QrFormatError("00", f"payload format indicator must be '01', found {first_value!r}", 0)
    last_id, last_value, last_at = fields[-1]
    if last_id != "63":
        if any(fid == "63" for fid, _, _ in fields):
            raise QrFormatError("63", "the CRC must be the last field", last_at)
        raise QrFormatError("63", "missing: a payload ends with the CRC field 63", len(payload))
    if len(last_value) != 4:
        raise QrFormatError("63", f"the CRC is 4 characters, length is {len(last_value)}", last_at)

    values = {fid: (val, at) for fid, val, at in fields}
    for fid in ("52", "53", "58", "59", "60"):
        if fid not in values:
            reading.bend(fid, "missing: mandatory field")

    accounts: dict[str, str | dict[str, str]] = {}
    additional: dict[str, str] = {}
    language: dict[str, str] | None = None
    unreserved: dict[str, dict[str, str]] = {}
    other: dict[str, str] = {}
    dynamic = None
    postal = None
    for fid, val, at in fields[1:-1]:
        n = int(fid)
        if fid == "01":
            if val in ("11", "12"):
                dynamic = val == "12"
            else:
                reading.bend("01", f"must be '11' (static) or '12' (dynamic), found {val!r}", at)
        elif 2 <= n <= 25:
            reading.ans(fid, val, at)
            accounts[fid] = val
        elif 26 <= n <= 51:
            accounts[fid] = _guid_template(reading, fid, val, at, "a merchant account template", guid_limit=32)
        elif fid == "61":
            reading.ans(fid, val, at)
            reading.length(fid, val, 10, at)
            postal = val
        elif fid == "62":
            additional = _template(fid, val, at)
            for sid, sval in additional.items():
                reading.ans(f"62/{sid}", sval, at)
                if 1 <= int(sid) <= 9:
                    reading.length(f"62/{sid}", sval, 25, at)
        elif fid == "64":
            language = _template(fid, val, at)
            for sid in ("00", "01"):
                if sid not in language:
                    reading.bend(f"64/{sid}", "missing: mandatory in the language template", at)
            if "00" in language:
                reading.length("64/00", language["00"], 2, at, exact=True)
                reading.ans("64/00", language["00"], at)
            if "01" in language:
                reading.length("64/01", language["01"], 25, at)
            if "02" in language:
                reading.length("64/02", language["02"], 15, at)
        elif 80 <= n <= 99:
            unreserved[fid] = _guid_template(reading, fid, val, at, "an unreserved template")
        else:
            reading.ans(fid, val, at)
            if fid not in ("52", "53", "54", "58", "59", "60"):
                other[fid] = val  # tip fields 55-57 and ids reserved for future use

    if not accounts:
        reading.bend("26", "missing: at least one merchant account information field (02-51)")

    mcc = currency = country = name = city = None
    if "52" in values:
        mcc, at = values["52"]
        if not (len(mcc) == 4 and _DIGITS.fullmatch(mcc)):
            reading.bend("52", f"must be 4 digits, found {mcc!r}", at)
    if "53" in values:
        currency, at = values["53"]
        if not (len(currency) == 3 and _DIGITS.fullmatch(currency)):
            reading.bend("53", f"must be a 3-digit ISO 4217 numeric code, found {currency!r}", at)
        elif currency not in CURRENCIES:
            reading.bend("53", f"unknown currency {currency!r}", at)
    amount = None
    if "54" in values:
        text, at = values["54"]
        amount = reading.amount(text, currency, at)
    _check_tip(reading, values)
    if "58" in values:
        country, at = values["58"]
        if not re.fullmatch(r"[A-Z]{2}", country):
            reading.bend("58", f"must be a 2-letter ISO 3166-1 code in capitals, found {country!r}", at)
    if "59" in values:
        name, at = values["59"]
        reading.length("59", name, 25, at)
    if "60" in values:
        city, at = values["60"]
        reading.length("60", city, 15, at)
    if strict and reading.found:
        first = reading.found[0]
        raise QrFormatError(first.field_id, first.message, first.offset)
    return MerchantQr(merchant_accounts=accounts, mcc=mcc, currency=currency, country=country,
                      name=name, city=city, amount=amount, dynamic=dynamic, postal_code=postal,
                      additional=additional, language=language, unreserved=unreserved, other=other,
                      warnings=tuple(reading.found))


def _guid_template(reading: _Reading, fid: str, value: str, at: int, what: str,
                   guid_limit: int | None = None) -> dict[str, str]:
    """A template that starts with a globally unique id (00): merchant account or unreserved."""
    sub = _template(fid, value, at)
    if "00" not in sub:
        reading.bend(fid, f"missing: {what} starts with its globally unique id (sub-field 00)", at)
    elif guid_limit is not None:
        reading.length(f"{fid}/00", sub["00"], guid_limit, at)
    for sid, sval in sub.items():
        reading.ans(f"{fid}/{sid}", sval, at)
    return sub


def _check_tip(reading: _Reading, values: dict[str, tuple[str, int]]) -> None:
    if "55" not in values:
        for fid in ("56", "57"):
            if fid in values:
                reading.bend(fid, "present without the tip or convenience indicator 55", values[fid][1])
        return
    indicator, at = values["55"]
    if indicator not in ("01", "02", "03"):
        reading.bend("55", f"must be '01', '02' or '03', found {indicator!r}", at)
    needed = {"02": "56", "03": "57"}.get(indicator)
    if needed and needed not in values:
        reading.bend(needed, f"missing: required when 55 is {indicator!r}", at)


# ----------------------------------------------------------------------- encoding

def _tlv(fid: str, value: str, label: str | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise QrFormatError(label or fid, f"needs a non-empty text value, got {value!r}; leave the field out instead")
    if len(value) > 99:
        raise QrFormatError(label or fid, f"value of {len(value)} characters; a field holds at most 99")
    return f"{fid}{len(value):02d}{value}"


def _tlv_template(fid: str, sub: dict[str, str]) -> str:
    return _tlv(fid, "".join(_tlv(sid, v, f"{fid}/{sid}") for sid, v in sorted(sub.items())))


def encode(qr: MerchantQr) -> str:
    """Write qr as a payload (fields in ascending id order, CRC last) and check it by a
    strict parse: tapstack writes no code that bends a rule."""
    parts: list[tuple[str, str]] = [("00", _tlv("00", "01"))]
    if qr.dynamic is not None:
        parts.append(("01", _tlv("01", "12" if qr.dynamic else "11")))
    for fid, val in qr.merchant_accounts.items():
        parts.append((fid, _tlv_template(fid, val) if isinstance(val, dict) else _tlv(fid, val)))
    for fid, val in (("52", qr.mcc), ("53", qr.currency), ("58", qr.country), ("59", qr.name), ("60", qr.city)):
        if val is not None:  # a mandatory field left out is refused by the strict parse below
            parts.append((fid, _tlv(fid, val)))
    if qr.amount is not None:
        parts.append(("54", _tlv("54", amount_text(qr.amount, qr.currency))))
    if qr.postal_code is not None:
        parts.append(("61", _tlv("61", qr.postal_code)))
    if qr.additional:
        parts.append(("62", _tlv_template("62", qr.additional)))
    if qr.language is not None:
        parts.append(("64", _tlv_template("64", qr.language)))
    for fid, sub in qr.unreserved.items():
        parts.append((fid, _tlv_template(fid, sub)))
    for fid, val in qr.other.items():
        parts.append((fid, _tlv(fid, val)))
    ids = [fid for fid, _ in parts]
    if len(set(ids)) != len(ids):
        raise QrFormatError(next(f for f in ids if ids.count(f) > 1), "duplicate id")
    payload = with_crc("".join(text for _, text in sorted(parts)))
    parse(payload, strict=True)
    return payload


# ------------------------------------------------------- names in local scripts

LOCAL_LANGUAGE = "ZH"  # the pilot's: a name in a local script with no language stated is Chinese
_LANGUAGE = re.compile(r"[A-Za-z]{2}")


def is_ans(text: str) -> bool:
    """Whether text is in EMV's common character set (space to '~')."""
    return all(" " <= c <= "~" for c in text)


def to_ans(text: str) -> str:
    """text in EMV's common character set as far as it goes: accents dropped ("Café" ->
    "Cafe"), other characters dropped, runs of spaces made one. May be empty."""
    kept = "".join(c for c in unicodedata.normalize("NFKD", text) if " " <= c <= "~")
    return " ".join(kept.split())


@dataclass(frozen=True)
class Names:
    """What a merchant's codes show of its name and city: fields 59 and 60 in EMV's
    character set, and the language template 64 when either is written in another script."""
    name: str  # 59, at most 25 characters
    city: str  # 60, at most 15
    local_name: str | None = None  # 64/01, at most 25
    local_city: str | None = None  # 64/02, at most 15
    language: str = LOCAL_LANGUAGE  # 64/00

    def code_args(self) -> dict:
        """The keyword arguments of bill_code, merchant_code and checkout_code."""
        return {"merchant_name": self.name, "merchant_city": self.city, "local_name": self.local_name,
                "local_city": self.local_city, "language": self.language}


def _shown(text: str, latin: str | None, fallback: str, limit: int) -> str:
    if is_ans(text):
        return text[:limit]
    if latin:
        return latin[:limit]
    reduced = to_ans(text)
    return (reduced if any(c.isalnum() for c in reduced) else fallback)[:limit]


def names(name: str, city: str, *, name_latin: str | None = None, city_latin: str | None = None,
          language: str | None = None, fallback_name: str, fallback_city: str) -> Names:
    """The names a code shows, from a name and a city in any script.

    A name in EMV's character set goes in 59 as it is. A name in another script goes in
    64/01, and 59 carries the transliteration the operator gave (`name_latin`), else the
    name with accents and other characters dropped if a letter or digit is left ("Café
    Lumière" -> "Cafe Lumiere"), else `fallback_name` (the gateway gives the merchant's
    id). The city likewise: 60, 64/02, `city_latin`, `fallback_city` (the gateway gives
    the country code). Texts are cut to the field's length (59 and 64/01: 25, 60 and
    64/02: 15). 64/00 is `language`, by default LOCAL_LANGUAGE.
    """
    local = not (is_ans(name) and is_ans(city))
    return Names(name=_shown(name, name_latin, fallback_name, 25), city=_shown(city, city_latin, fallback_city, 15),
                 local_name=name[:25] if local else None,
                 local_city=city[:15] if local and not is_ans(city) else None,
                 language=(language or LOCAL_LANGUAGE).upper())


def check_language(value) -> str:
    """A language preference for 64/00: two letters of ISO 639-1, written upper case."""
    if not isinstance(value, str) or not _LANGUAGE.fullmatch(value):
        raise QrFormatError("64/00", f"a language is two letters of ISO 639-1 (zh, th, km), got {value!r}")
    return value.upper()


# ---------------------------------------------------------- schemes in the wild

# Merchant account ids 02-25 are allocated to payment networks (EMV QRCPS MPM v1.1, 4.6.1).
NETWORKS = {**dict.fromkeys(("02", "03"), "Visa"), **dict.fromkeys(("04", "05"), "Mastercard"),
            **dict.fromkeys(("09", "10"), "Discover"), **dict.fromkeys(("11", "12"), "American Express"),
            **dict.fromkeys(("13", "14"), "JCB"), **dict.fromkeys(("15", "16"), "UnionPay")}
PROMPTPAY_AID = "A000000677"  # Thai QR Payment Standard (Bank of Thailand): PromptPay's application id


def scheme(qr: MerchantQr) -> str | None:
    """The payment scheme a code belongs to, in words ("PromptPay (Thailand)"), as far as
    its merchant accounts tell; None when they name none tapstack knows."""
    ids = [v.get("00", "") for v in qr.merchant_accounts.values() if isinstance(v, dict)]
    if GUID in ids:
        return "tapstack"
    if any(i.upper().startswith(PROMPTPAY_AID) for i in ids):
        return "PromptPay (Thailand)"
    if qr.country == "KH" and any("@" in i for i in ids):  # a Bakong account id, name@bank
        return "KHQR (Cambodia)"
    networks = [NETWORKS[fid] for fid in sorted(qr.merchant_accounts) if fid in NETWORKS]
    return networks[0] if networks else None


# ----------------------------------------------------------- tapstack's own codes

def _expiry_text(expires_at: datetime) -> str:
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware (UTC)")
    return expires_at.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S")


def _tapstack_template(expires_at: datetime) -> dict[str, dict[str, str]]:
    return {TAPSTACK_TEMPLATE_ID: {"00": GUID, "01": _expiry_text(expires_at)}}


def _language(local_name: str | None, local_city: str | None, language: str) -> dict[str, str] | None:
    """Template 64: the name (and city) in the local script, e.g. Chinese, beside the ans ones."""
    if local_name is None:
        if local_city is not None:
            raise QrFormatError("64/01", "missing: a local city needs the local name too")
        return None
    return {"00": language, "01": local_name, **({"02": local_city} if local_city else {})}


def bill_code(*, biller_id: str, bill_number: str, reference: str, amount: int, currency: str,
              merchant_name: str, merchant_city: str, expires_at: datetime,
              mcc: str = "4900", country: str = "CN", local_name: str | None = None,
              local_city: str | None = None, language: str = "ZH") -> str:
    """A utility bill: dynamic, amount fixed, 62/01 bill number, 62/05 reference, expiry.

    merchant_name and merchant_city are in EMV's character set (Latin letters, digits,
    punctuation); local_name and local_city carry them in the local script (template 64).
    """
    return encode(MerchantQr(
        merchant_accounts={MERCHANT_ACCOUNT_ID: {"00": GUID, "01": biller_id}},
        mcc=mcc, currency=currency_numeric(currency), country=country, name=merchant_name,
        city=merchant_city, amount=amount, dynamic=True,
        additional={BILL_NUMBER: bill_number, REFERENCE_LABEL: reference},
        language=_language(local_name, local_city, language),
        unreserved=_tapstack_template(expires_at)))


def merchant_code(*, merchant_id: str, merchant_name: str, merchant_city: str, mcc: str,
                  currency: str = "CNY", country: str = "CN", store_label: str | None = None,
                  local_name: str | None = None, local_city: str | None = None,
                  language: str = "ZH") -> str:
    """A shop's static code, printed once and shown for every sale: no amount, no expiry."""
    return encode(MerchantQr(
        merchant_accounts={MERCHANT_ACCOUNT_ID: {"00": GUID, "01": merchant_id}},
        mcc=mcc, currency=currency_numeric(currency), country=country, name=merchant_name,
        city=merchant_city, dynamic=False,
        additional={STORE_LABEL: store_label} if store_label else {},
        language=_language(local_name, local_city, language)))


def checkout_code(*, merchant_id: str, terminal_label: str, amount: int, currency: str,
                  merchant_name: str, merchant_city: str, mcc: str, expires_at: datetime,
                  reference: str | None = None, country: str = "CN", local_name: str | None = None,
                  local_city: str | None = None, language: str = "ZH") -> str:
    """A till's code for one sale: dynamic, amount fixed, 62/07 terminal label, expiry."""
    additional = {TERMINAL_LABEL: terminal_label}
    if reference:
        additional[REFERENCE_LABEL] = reference
    return encode(MerchantQr(
        merchant_accounts={MERCHANT_ACCOUNT_ID: {"00": GUID, "01": merchant_id}},
        mcc=mcc, currency=currency_numeric(currency), country=country, name=merchant_name,
        city=merchant_city, amount=amount, dynamic=True, additional=additional,
        language=_language(local_name, local_city, language),
        unreserved=_tapstack_template(expires_at)))


@dataclass(frozen=True)
class TapstackCode:
    """What a tapstack wallet needs from a code: which kind, whom to pay, how much."""
    kind: str  # "bill", "checkout" or "merchant"
    merchant_id: str  # the biller or merchant id in tapstack's merchant account template
    currency: str  # ISO 4217 alphabetic, "CNY"
    amount: int | None  # minor units; None for a static merchant code
    expires_at: datetime | None
    bill_number: str | None
    reference: str | None
    terminal_label: str | None
    qr: MerchantQr


def read_tapstack(qr: MerchantQr, now: datetime) -> TapstackCode:
    """Apply tapstack's rules to a parsed code at time now; raise QrFormatError/CodeExpired."""
    account = next((v for v in qr.merchant_accounts.values()
                    if isinstance(v, dict) and v.get("00") == GUID), None)
    if account is None:
        raise QrFormatError(MERCHANT_ACCOUNT_ID, f"no tapstack merchant account (globally unique id {GUID})")
    if "01" not in account:
        raise QrFormatError(f"{MERCHANT_ACCOUNT_ID}/01", "missing: the biller or merchant id")
    if qr.currency_code is None:
        raise QrFormatError("53", "missing or unknown currency: a tapstack code names the currency it is paid in")
    tid, template = next(((fid, sub) for fid, sub in qr.unreserved.items() if sub.get("00") == GUID),
                         (TAPSTACK_TEMPLATE_ID, None))
    expires_at = None
    if template is not None and "01" in template:
        try:
            expires_at = datetime.strptime(template["01"], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
        except ValueError:
            raise QrFormatError(f"{tid}/01", f"expiry {template['01']!r} is not YYYYMMDDhhmmss") from None
    if qr.dynamic is None:
        raise QrFormatError("01", "missing: a tapstack code says whether it is static or dynamic")
    if not qr.dynamic:
        if qr.amount is not None:
            raise QrFormatError("54", "a static merchant code must not carry an amount; "
                                      "a code for one sale is dynamic (01 = '12')")
        kind = "merchant"
    else:
        if qr.amount is None:
            raise QrFormatError("54", "missing: a dynamic tapstack code carries the amount")
        if expires_at is None:
            raise QrFormatError(f"{tid}/01", "missing: a dynamic tapstack code carries an expiry")
        if now > expires_at:
            raise CodeExpired(f"{tid}/01", f"code expired at {expires_at:%Y-%m-%d %H:%M:%S} UTC",
                              expires_at=expires_at)
        if qr.bill_number:
            kind = "bill"
        elif qr.terminal_label:
            kind = "checkout"
        else:
            raise QrFormatError("62", "a dynamic tapstack code carries a bill number (62/01) "
                                      "or a terminal label (62/07)")
    return TapstackCode(kind=kind, merchant_id=account["01"], currency=qr.currency_code,
                        amount=qr.amount, expires_at=expires_at, bill_number=qr.bill_number,
                        reference=qr.reference_label, terminal_label=qr.terminal_label, qr=qr)
