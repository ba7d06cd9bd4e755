"""The ISO 4217 table: codes, exponents, look-ups both ways, refusals; amounts written and read."""
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import currency

ISO_CODES_JSON = Path("/usr/share/iso-codes/json/iso_4217.json")  # Debian's iso-codes package


@pytest.mark.parametrize("alpha, numeric, exponent", [
    ("CNY", 156, 2), ("HKD", 344, 2), ("EUR", 978, 2), ("AUD", 36, 2), ("ALL", 8, 2),
    ("JPY", 392, 0), ("KRW", 410, 0), ("VND", 704, 0), ("KWD", 414, 3), ("BHD", 48, 3), ("CLF", 990, 4),
])
def test_known_currencies(alpha, numeric, exponent):
    assert currency.is_known(alpha)
    assert (currency.numeric(alpha), currency.exponent(alpha)) == (numeric, exponent)
    assert currency.alpha(numeric) == alpha
    assert currency.get(alpha) == currency.Currency(alpha, numeric, exponent)


def test_exponents_other_than_two_are_the_standards():
    odd = {c.alpha: c.exponent for c in currency.CURRENCIES.values() if c.exponent != 2}
    assert odd == {
        **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0),
        **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
        **dict.fromkeys("CLF UYW".split(), 4),
    }


def test_every_numeric_code_reads_back_and_only_a_successor_shares_one():
    shared = [n for n, count in Counter(c.numeric for c in currency.CURRENCIES.values()).items() if count > 1]
    assert shared == [532]
    assert currency.alpha(532) == "XCG"  # ANG's successor
    assert currency.numeric("ANG") == 532 and currency.is_known("ANG")
    for c in currency.CURRENCIES.values():
        assert 1 <= c.numeric <= 999 and len(c.alpha) == 3 and c.alpha.isupper()
        if c.alpha != "ANG":
            assert currency.alpha(c.numeric) == c.alpha


@pytest.mark.skipif(not ISO_CODES_JSON.exists(), reason="Debian's iso-codes is not installed")
def test_numeric_codes_agree_with_debian_iso_codes():
    listed = {c["alpha_3"]: int(c["numeric"]) for c in json.loads(ISO_CODES_JSON.read_text())["4217"]}
    checked = [c for c in currency.CURRENCIES.values() if c.alpha in listed]
    assert len(checked) >= 160
    assert [c.alpha for c in checked if listed[c.alpha] != c.numeric] == []


@pytest.mark.parametrize("code", ["cny", "XAU", "XDR", "XTS", "XXX", "", "CNYY", None, 156])
def test_unknown_alphabetic_codes(code):
    assert not currency.is_known(code)
    for lookup in (currency.get, currency.exponent, currency.numeric):
        with pytest.raises(currency.UnknownCurrency, match="ISO 4217"):
            lookup(code)


@pytest.mark.parametrize("code", [999, 959, 0, 1000, -156, "156", True, None])
def test_unknown_numeric_codes(code):
    with pytest.raises(currency.UnknownCurrency, match="ISO 4217"):
        currency.alpha(code)


def test_unknown_currency_is_a_value_error():
    assert issubclass(currency.UnknownCurrency, ValueError)


@pytest.mark.parametrize("minor, alpha, text", [
    (2372, "CNY", "23.72"), (5, "CNY", "0.05"), (0, "CNY", "0.00"), (-5, "CNY", "-0.05"), (-123456, "EUR", "-1234.56"),
    (999, "JPY", "999"), (-7, "KRW", "-7"), (1005, "KWD", "1.005"), (12345, "CLF", "1.2345"),
    (10 ** 15 + 1, "CNY", "10000000000000.01"),
])
def test_decimal_text(minor, alpha, text):
    assert currency.decimal_text(minor, alpha) == text


def test_decimal_text_refuses_floats_and_unknown_codes():
    for bad in (12.5, True, "100"):
        with pytest.raises(TypeError):
            currency.decimal_text(bad, "CNY")
    with pytest.raises(currency.UnknownCurrency):
        currency.decimal_text(100, "XAU")


@pytest.mark.parametrize("text, alpha, minor", [
    ("12.5", "CNY", 1250), ("12.50", "CNY", 1250), ("12", "CNY", 1200), ("0.05", "CNY", 5), ("0", "CNY", 0),
    ("007.10", "CNY", 710), ("999", "JPY", 999), ("1.005", "KWD", 1005), ("1.2345", "CLF", 12345),
    ("1234.50", "ANG", 123450), ("92233720368547758.07", "CNY", 2**63 - 1),
])
def test_parse_decimal(text, alpha, minor):
    assert currency.parse_decimal(text, alpha) == minor


@pytest.mark.parametrize("text, alpha, why", [
    ("1,234.50", "CNY", "thousands separators"), ("12,50", "EUR", "thousands separators"),
    ("12.505", "CNY", "3 decimals; CNY allows at most 2 decimals"), ("1.5", "JPY", "JPY allows no decimals"),
    ("1.00005", "CLF", "CLF allows at most 4"), ("-1.00", "CNY", "no sign"), ("+1", "CNY", "no sign"),
    ("12.", "CNY", "no digits after"), (".5", "CNY", "before the decimal point"), ("", "CNY", "empty"),
    (" 12", "CNY", "optional '.' decimal point expected"), ("1e3", "CNY", "optional '.' decimal point expected"), ("12.5 CNY", "CNY", "optional '.' decimal point expected"),
    ("١٢", "CNY", "optional '.' decimal point expected"), ("１２", "CNY", "optional '.' decimal point expected"), ("-", "CNY", "no sign"),
    ("NaN", "CNY", "optional '.' decimal point expected"), ("92233720368547758.08", "CNY", "larger than the largest"),
    ("9" * 41, "CNY", "too long"), (12.5, "CNY", "text such as"),
])
def test_parse_decimal_says_what_is_wrong(text, alpha, why):
    with pytest.raises(currency.AmountError, match=re.escape(why)) as refused:
        currency.parse_decimal(text, alpha)
    assert str(refused.value).startswith(repr(text)[:10]) and f"is not an amount in {alpha}: " in str(refused.value)


def test_parse_decimal_takes_a_sign_only_when_asked():
    assert currency.parse_decimal("-0.05", "CNY", signed=True) == -5
    assert currency.parse_decimal("+3", "JPY", signed=True) == 3
    with pytest.raises(currency.AmountError, match="has no digits"):
        currency.parse_decimal("+", "CNY", signed=True)


def test_parse_decimal_refuses_unknown_currencies():
    with pytest.raises(currency.UnknownCurrency):
        currency.parse_decimal("1", "XAU")


@given(st.sampled_from(sorted(currency.CURRENCIES)), st.integers(-currency.LARGEST_AMOUNT, currency.LARGEST_AMOUNT))
def test_parse_decimal_reads_back_decimal_text(alpha, minor):
    assert currency.parse_decimal(currency.decimal_text(minor, alpha), alpha, signed=True) == minor
    if minor >= 0:
        assert currency.parse_decimal(currency.decimal_text(minor, alpha), alpha) == minor
