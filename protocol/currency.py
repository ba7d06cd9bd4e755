"""ISO 4217 currencies: alphabetic code, numeric code and minor-unit exponent, in one table.

Source: ISO 4217, list one (current currency and funds codes), as published by its
maintenance agency. Every code there with a minor unit is here, funds codes included;
precious metals, SDR, the testing code and XXX are left out (they have no minor unit,
so no integer amount of them makes sense). ANG stays beside XCG, which replaced it in
2025 under the same numeric code 532, so that books kept in ANG still read.

Pure. Amounts in tapstack are integers of minor units; `exponent` says how many
decimals the major unit has (CNY 2, JPY 0, KWD 3). `decimal_text` writes an amount in
the major unit and `parse_decimal` reads one back, both exactly. Codes are case-sensitive: "cny" is
not a currency.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


class UnknownCurrency(ValueError):
    """A code that is not an ISO 4217 currency with a minor unit."""


@dataclass(frozen=True)
class Currency:
    alpha: str  # "CNY"
    numeric: int  # 156; written with 3 digits ("036") where text is needed
    exponent: int  # decimals of the major unit


# alpha -> (numeric, exponent)
_TABLE = {
    "AED": (784, 2), "AFN": (971, 2), "ALL": (8, 2), "AMD": (51, 2), "ANG": (532, 2), "AOA": (973, 2),
    "ARS": (32, 2), "AUD": (36, 2), "AWG": (533, 2), "AZN": (944, 2), "BAM": (977, 2), "BBD": (52, 2),
    "BDT": (50, 2), "BGN": (975, 2), "BHD": (48, 3), "BIF": (108, 0), "BMD": (60, 2), "BND": (96, 2),
    "BOB": (68, 2), "BOV": (984, 2), "BRL": (986, 2), "BSD": (44, 2), "BTN": (64, 2), "BWP": (72, 2),
    "BYN": (933, 2), "BZD": (84, 2), "CAD": (124, 2), "CDF": (976, 2), "CHE": (947, 2), "CHF": (756, 2),
    "CHW": (948, 2), "CLF": (990, 4), "CLP": (152, 0), "CNY": (156, 2), "COP": (170, 2), "COU": (970, 2),
    "CRC": (188, 2), "CUP": (192, 2), "CVE": (132, 2), "CZK": (203, 2), "DJF": (262, 0), "DKK": (208, 2),
    "DOP": (214, 2), "DZD": (12, 2), "EGP": (818, 2), "ERN": (232, 2), "ETB": (230, 2), "EUR": (978, 2),
    "FJD": (242, 2), "FKP": (238, 2), "GBP": (826, 2), "GEL": (981, 2), "GHS": (936, 2), "GIP": (292, 2),
    "GMD": (270, 2), "GNF": (324, 0), "GTQ": (320, 2), "GYD": (328, 2), "HKD": (344, 2), "HNL": (340, 2),
    "HTG": (332, 2), "HUF": (348, 2), "IDR": (360, 2), "ILS": (376, 2), "INR": (356, 2), "IQD": (368, 3),
    "IRR": (364, 2), "ISK": (352, 0), "JMD": (388, 2), "JOD": (400, 3), "JPY": (392, 0), "KES": (404, 2),
    "KGS": (417, 2), "KHR": (116, 2), "KMF": (174, 0), "KPW": (408, 2), "KRW": (410, 0), "KWD": (414, 3),
    "KYD": (136, 2), "KZT": (398, 2), "LAK": (418, 2), "LBP": (422, 2), "LKR": (144, 2), "LRD": (430, 2),
    "LSL": (426, 2), "LYD": (434, 3), "MAD": (504, 2), "MDL": (498, 2), "MGA": (969, 2), "MKD": (807, 2),
    "MMK": (104, 2), "MNT": (496, 2), "MOP": (446, 2), "MRU": (929, 2), "MUR": (480, 2), "MVR": (462, 2),
    "MWK": (454, 2), "MXN": (484, 2), "MXV": (979, 2), "MYR": (458, 2), "MZN": (943, 2), "NAD": (516, 2),
    "NGN": (566, 2), "NIO": (558, 2), "NOK": (578, 2), "NPR": (524, 2), "NZD": (554, 2), "OMR": (512, 3),
    "PAB": (590, 2), "PEN": (604, 2), "PGK": (598, 2), "PHP": (608, 2), "PKR": (586, 2), "PLN": (985, 2),
    "PYG": (600, 0), "QAR": (634, 2), "RON": (946, 2), "RSD": (941, 2), "RUB": (643, 2), "RWF": (646, 0),
    "SAR": (682, 2), "SBD": (90, 2), "SCR": (690, 2), "SDG": (938, 2), "SEK": (752, 2), "SGD": (702, 2),
    "SHP": (654, 2), "SLE": (925, 2), "SOS": (706, 2), "SRD": (968, 2), "SSP": (728, 2), "STN": (930, 2),
    "SVC": (222, 2), "SYP": (760, 2), "SZL": (748, 2), "THB": (764, 2), "TJS": (972, 2), "TMT": (934, 2),
    "TND": (788, 3), "TOP": (776, 2), "TRY": (949, 2), "TTD": (780, 2), "TWD": (901, 2), "TZS": (834, 2),
    "UAH": (980, 2), "UGX": (800, 0), "USD": (840, 2), "USN": (997, 2), "UYI": (940, 0), "UYU": (858, 2),
    "UYW": (927, 4), "UZS": (860, 2), "VED": (926, 2), "VES": (928, 2), "VND": (704, 0), "VUV": (548, 0),
    "WST": (882, 2), "XAF": (950, 0), "XCD": (951, 2), "XCG": (532, 2), "XOF": (952, 0), "XPF": (953, 0),
    "YER": (886, 2), "ZAR": (710, 2), "ZMW": (967, 2), "ZWG": (924, 2),
}
CURRENCIES: dict[str, Currency] = {a: Currency(a, n, e) for a, (n, e) in _TABLE.items()}

# One numeric code, one currency: a withdrawn code gives its number to its successor.
_SUCCEEDED = {"ANG": "XCG"}
_BY_NUMERIC: dict[int, Currency] = {c.numeric: c for c in CURRENCIES.values() if c.alpha not in _SUCCEEDED}


def is_known(alpha: object) -> bool:
    """True for an ISO 4217 alphabetic code of a currency with a minor unit: is_known("CNY")."""
    return isinstance(alpha, str) and alpha in CURRENCIES


def get(alpha: str) -> Currency:
    """The Currency of an alphabetic code; UnknownCurrency otherwise."""
    if not is_known(alpha):
        raise UnknownCurrency(f"{alpha!r} is not an ISO 4217 currency code with a minor unit")
    return CURRENCIES[alpha]


def exponent(alpha: str) -> int:
    """Decimals of the major unit: exponent("CNY") == 2, exponent("JPY") == 0."""
    return get(alpha).exponent


def numeric(alpha: str) -> int:
    """The ISO 4217 numeric code: numeric("CNY") == 156."""
    return get(alpha).numeric


def alpha(numeric_code: int) -> str:
    """The alphabetic code of a numeric one: alpha(156) == "CNY"; UnknownCurrency otherwise."""
    if isinstance(numeric_code, int) and not isinstance(numeric_code, bool) and numeric_code in _BY_NUMERIC:
        return _BY_NUMERIC[numeric_code].alpha
    raise UnknownCurrency(f"{numeric_code!r} is not the ISO 4217 numeric code of a currency with a minor unit")


def money(minor: int, alpha_code: str) -> str:
    """An amount as people read it: money(1250, "CNY") == "12.50 CNY" (exact; never parsed back).
    UnknownCurrency for a code that is not ISO 4217, rather than guessing its decimals."""
    return f"{decimal_text(minor, alpha_code)} {alpha_code}"


def decimal_text(minor: int, alpha_code: str) -> str:
    """An amount of minor units written in the major unit, exactly, never through a float:
    decimal_text(2372, "CNY") == "23.72", decimal_text(-5, "CNY") == "-0.05", decimal_text(999, "JPY") == "999"."""
    places = exponent(alpha_code)
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"an amount is an integer of minor units, got {minor!r}")
    sign, value = ("-" if minor < 0 else ""), abs(minor)
    if places == 0:
        return f"{sign}{value}"
    units, rest = divmod(value, 10**places)
    return f"{sign}{units}.{rest:0{places}d}"


class AmountError(ValueError):
    """Text that is not an exact amount of a currency. str() is one line naming the text,
    the currency and what is wrong; `reason` is the last part alone."""

    def __init__(self, text: object, alpha_code: str, reason: str):
        shown = repr(text[:20]) + "..." if isinstance(text, str) and len(text) > 20 else repr(text)
        super().__init__(f"{shown} is not an amount in {alpha_code}: {reason}")
        self.text, self.currency, self.reason = text, alpha_code, reason


# ASCII digits only ("\d" would also take Arabic-Indic and full-width digits).
_DECIMAL = re.compile(r"([+-]?)([0-9]*)(?:(\.)([0-9]*))?", re.ASCII)
LARGEST_AMOUNT = 2**63 - 1  # minor units: what a signed 64-bit column (SQLite, PostgreSQL bigint) holds


def parse_decimal(text: str, alpha_code: str, *, signed: bool = False) -> int:
    """An amount written in the major unit into minor units, exactly, never through a float:
    parse_decimal("12.5", "CNY") == 1250, parse_decimal("12.50", "CNY") == 1250,
    parse_decimal("999", "JPY") == 999, parse_decimal("-0.05", "CNY", signed=True) == -5.

    Accepted: ASCII digits, then optionally "." and at most the currency's exponent of
    decimals (none for JPY). Refused, each with an AmountError saying why: thousands
    separators ("1,234.50": a comma is the decimal mark in much of the world, so it is
    never guessed at), spaces (callers strip what a person typed), a sign unless `signed`
    ("-" or "+"), "12." and ".5", exponents, more than LARGEST_AMOUNT minor units.
    Zero is an amount here; callers that need a positive one say so themselves.
    UnknownCurrency for a code that is not in the table.
    """
    places = exponent(alpha_code)
    if not isinstance(text, str):
        raise AmountError(text, alpha_code, "an amount is text such as \"12.50\"")
    if not text:
        raise AmountError(text, alpha_code, "it is empty; digits with an optional '.' decimal point expected")
    if len(text) > 40:  # far past LARGEST_AMOUNT; refused before any arithmetic
        raise AmountError(text, alpha_code, "too long")
    match = _DECIMAL.fullmatch(text)
    if match is None:
        if "," in text:
            raise AmountError(text, alpha_code, "write digits with '.' as the decimal point "
                              "and no thousands separators (e.g. 1234.50)")
        raise AmountError(text, alpha_code, "digits with an optional '.' decimal point expected")
    sign, whole, point, fraction = match.groups()
    if sign and not signed:
        raise AmountError(text, alpha_code, "digits with no sign expected")
    if not whole:
        raise AmountError(text, alpha_code, "a digit is needed before the decimal point (e.g. 0.5)"
                          if point else "it has no digits")
    if point and not fraction:
        raise AmountError(text, alpha_code, "a decimal point with no digits after it")
    fraction = fraction or ""
    if len(fraction) > places:
        allowed = "no decimals" if places == 0 else f"at most {places} decimal{'s' if places > 1 else ''}"
        raise AmountError(text, alpha_code, f"{len(fraction)} decimal{'s' if len(fraction) > 1 else ''}; "
                          f"{alpha_code} allows {allowed}")
    minor = int(whole) * 10**places + int(fraction.ljust(places, "0") or "0")
    if minor > LARGEST_AMOUNT:
        raise AmountError(text, alpha_code,
                          f"larger than the largest amount, {decimal_text(LARGEST_AMOUNT, alpha_code)}")
    return -minor if sign == "-" else minor
