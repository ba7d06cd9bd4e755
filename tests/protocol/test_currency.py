"""The ISO 4217 table: codes, exponents, look-ups both ways, refusals."""
import json
from collections import Counter
from pathlib import Path

import pytest

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
