"""EMVCo merchant-presented QR: the specification's example, the CRC, field rules, tapstack's codes."""
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from protocol import emvqr
from protocol.emvqr import CodeExpired, MerchantQr, QrFormatError

# EMV QRCPS Merchant-Presented Mode v1.1 (EMVCo, November 2020), Appendix A: the example
# payload, with Chinese in the language template (lengths count characters) and CRC A13A.
SPEC_EXAMPLE = (
    "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678"
    "520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京"
    "540523.7253031565502016233030412340603***0708A60086670902ME"
    "91320016A0112233449988770708123456786304A13A"
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(minutes=15)

# tapstack's own vectors, also printed in docs/qr-formats.md.
BILL = ("00020101021226300012org.tapstack0110WATER-00425204490053031565406128.505802CN"
        "5912Harbin Water6006Harbin6230011320261100123450509ACCT88213"
        "80340012org.tapstack011420261231160000" "63043DE9")

MERCHANT = ("00020101021126260012org.tapstack0106SHOP-75204541153031565802CN5911Daily Fresh"
            "6008Hangzhou62130309West Lake6304D96B")
CHECKOUT = ("00020101021226260012org.tapstack0106SHOP-7520454115303156540545.905802CN"
            "5911Daily Fresh6008Hangzhou62230508S-0009810707TILL-03"
            "80340012org.tapstack011420261127121500" "6304EF8E")
DOC = Path(__file__).resolve().parents[2] / "docs" / "qr-formats.md"

# Codes from national schemes, as published (each source is named in docs/qr-formats.md).
WILD = {
    # Thailand, PromptPay to a phone number, static; no 52, 59 or 60 (dtinth/promptpay-qr).
    "promptpay": "00020101021129370016A000000677010111011300668012345675802TH530376463046197",
    # The same with an amount, 4.22 THB: dynamic.
    "promptpay-amount": "00020101021229370016A000000677010111011300660000000005802TH530376454044.226304E469",
    # Cambodia, a UnionPay account, city "Banteay Meanchey" of 16 characters, fields out of
    # ascending order (sokmesakhiev/emv_qr_code_processor).
    "khqr-city": ("00020101021252044131153137210116372101160123456789ABCDE6016Banteay Meanchey"
                  "5913Kuntheas Shop5802KH540510.005303840621201081234567863041FF2"),
    # Cambodia, KHQR to a Bakong account with a language template (perfectpanel/bakong-khqr-php).
    "khqr-language": ("00020101021130470009khqr@aclb0111855124649170215ACLEDA Bank Plc5204599953038405802KH"
                      "5907BUN MAO6010Phnom Penh6102126213020901050033164310002KM0107BUN MAO0210Phnom Penh"
                      "6304E313"),
}


def bill(**changes):
    args = dict(biller_id="WATER-0042", bill_number="2026110012345", reference="ACCT88213",
                amount=12850, currency="CNY", merchant_name="Harbin Water", merchant_city="Harbin",
                expires_at=datetime(2026, 12, 31, 16, 0, tzinfo=timezone.utc))
    return emvqr.bill_code(**{**args, **changes})


def refresh_crc(payload: str) -> str:
    """Recompute the CRC of a deliberately broken payload so the break itself is what fails."""
    return emvqr.with_crc(payload[:-8])


def test_spec_example_parses_to_its_fields():
    qr = emvqr.parse(SPEC_EXAMPLE)
    assert qr.dynamic is True
    assert qr.merchant_accounts == {"29": {"00": "D15600000000", "05": "A93FO3230Q"},
                                    "31": {"00": "D15600000001", "03": "12345678"}}
    assert (qr.mcc, qr.currency, qr.currency_code, qr.amount) == ("4111", "156", "CNY", 2372)
    assert (qr.country, qr.name, qr.city) == ("CN", "BEST TRANSPORT", "BEIJING")
    assert qr.language == {"00": "ZH", "01": "最佳运输", "02": "北京"}
    assert qr.additional == {"03": "1234", "06": "***", "07": "A6008667", "09": "ME"}
    assert qr.unreserved == {"91": {"00": "A011223344998877", "07": "12345678"}}
    assert qr.other == {"55": "01"}


def test_spec_example_crc_is_over_utf8_bytes_including_6304():
    assert emvqr.crc16(SPEC_EXAMPLE[:-4].encode("utf-8")) == 0xA13A
    assert emvqr.with_crc(SPEC_EXAMPLE[:-8]) == SPEC_EXAMPLE
    # Over the characters as UTF-16 (or without "6304") the CRC differs: the bytes matter.
    assert emvqr.crc16(SPEC_EXAMPLE[:-4].encode("utf-16-be")) != 0xA13A
    assert emvqr.crc16(SPEC_EXAMPLE[:-8].encode("utf-8")) != 0xA13A


def test_crc_check_value_of_the_ccitt_false_catalogue():
    assert emvqr.crc16(b"123456789") == 0x29B1
    assert emvqr.crc16(b"") == 0xFFFF


def test_spec_example_reencodes_to_an_equal_value():
    qr = emvqr.parse(SPEC_EXAMPLE)
    again = emvqr.encode(qr)
    assert again != SPEC_EXAMPLE  # ascending ids, so 54 moves before 64
    assert emvqr.parse(again) == qr


def test_lower_case_crc_is_accepted_upper_case_is_written():
    assert emvqr.parse(SPEC_EXAMPLE[:-4] + "a13a") == emvqr.parse(SPEC_EXAMPLE)
    assert bill()[-4:] == bill()[-4:].upper()


def test_tapstack_vectors_are_stable():
    assert bill() == BILL
    assert emvqr.merchant_code(merchant_id="SHOP-7", merchant_name="Daily Fresh", merchant_city="Hangzhou",
                               mcc="5411", store_label="West Lake") == MERCHANT
    assert emvqr.checkout_code(merchant_id="SHOP-7", terminal_label="TILL-03", amount=4590, currency="CNY",
                               merchant_name="Daily Fresh", merchant_city="Hangzhou", mcc="5411",
                               expires_at=NOW + timedelta(minutes=15), reference="S-000981") == CHECKOUT


def test_docs_carry_the_vectors_and_the_messages_they_show():
    doc = DOC.read_text(encoding="utf-8")
    for vector in (SPEC_EXAMPLE, BILL, MERCHANT, CHECKOUT, *WILD.values()):
        assert f"    {vector}\n" in doc
    refused = [SPEC_EXAMPLE[:-1] + "B",
               refresh_crc(BILL.replace("0509ACCT88213", "0509ACCT882130101X").replace("6230", "6235")),
               "000201520441", "TS:W50-NDJBEF10", refresh_crc(BILL.replace("5406128.50", "540612.855"))]
    for payload in refused:
        with pytest.raises(QrFormatError) as err:
            emvqr.parse(payload)
        assert f"    {err.value}\n" in doc
    bent = refresh_crc(BILL.replace("5406128.50", "540612.850"))
    with pytest.raises(QrFormatError) as err:
        emvqr.parse(bent, strict=True)
    assert f"    {err.value}\n" in doc and str(emvqr.parse(bent).warnings[0]) == str(err.value)
    for name in ("promptpay", "khqr-city"):
        for warning in emvqr.parse(WILD[name]).warnings:
            assert f"    {warning}\n" in doc
    registers = [f"{emvqr.crc16(b'0002016304'[:n]):04X}" for n in range(1, 11)]
    assert "| register after it | " + " | ".join(registers) + " |" in doc
    assert emvqr.with_crc("000201") == "0002016304AAE6" and "`6304AAE6`" in doc


@pytest.mark.parametrize("payload, field_id, words", [
    (SPEC_EXAMPLE[:-1] + "B", "63", "expected A13A, found A13B"),
    (SPEC_EXAMPLE[:-4] + "A1G3", "63", "not 4 hex digits"),
    (SPEC_EXAMPLE[:-8], "63", "missing"),
    ("", None, "empty"),
    ("0002010", None, "truncated"),
    ("000201520", "52", "truncated"),
    ("00020152x4", "52", "not two digits"),
    ("000201A20411", None, "not two digits"),
    ("0002015204111", "52", "runs past the end"),
    ("0002015200", "52", "length 00"),
    (emvqr.with_crc("000202"), "00", "must be '01'"),
    (emvqr.with_crc("010212000201"), "00", "starts with the payload format indicator '000201'"),
    ("TS:ABCDEF", "00", "found 'TS:ABC'"),
])
def test_structural_errors_name_the_field(payload, field_id, words):
    with pytest.raises(QrFormatError) as err:
        emvqr.parse(payload)
    assert err.value.field_id == field_id
    assert words in str(err.value)


def test_a_payload_longer_than_512_characters_is_read_with_a_warning():
    extra = "".join(f"{n}990095" + "A" * 95 for n in (81, 82, 83, 84))  # unreserved templates, 103 characters each
    long = emvqr.with_crc(BILL[:-8] + extra)
    assert len(long) > emvqr.MAX_PAYLOAD
    qr = emvqr.parse(long)
    assert qr.bill_number == "2026110012345" and qr.unreserved["83"] == {"00": "A" * 95}
    assert [(w.field_id, w.message) for w in qr.warnings] == [(None, f"{len(long)} characters; a payload has at most 512")]


def swap(payload: str, old: str, new: str) -> str:
    assert old in payload
    return refresh_crc(payload.replace(old, new, 1))


@pytest.mark.parametrize("old, new, field_id, words", [
    ("52044900", "520449A0", "52", "4 digits"),
    ("52044900", "", "52", "missing"),
    ("5303156", "5303999", "53", "unknown currency"),
    ("5303156", "5303CNY", "53", "3-digit"),
    ("5406128.50", "540612.850", "54", "3 decimal(s); CNY allows 2"),
    ("5406128.50", "54060000.0", "54", "zero"),
    ("5406128.50", "5404128.", "54", "no digits after"),
    ("5802CN", "5802cn", "58", "2-letter"),
    ("6006Harbin", "6016HarbinHarbinHarb", "60", "at most 15"),
    ("5912Harbin Water", "", "59", "missing"),
    ("010212", "010213", "01", "'11' (static) or '12' (dynamic)"),
    ("0012org.tapstack", "0212org.tapstack", "26", "globally unique id"),
    ("80340012org.tapstack", "80340212org.tapstack", "80", "globally unique id"),
    ("0509ACCT88213", "0509ACCT8821é", "62/05", "outside the EMV common character set"),
])
def test_bent_rules_are_warnings_read_liberally_and_errors_read_strictly(old, new, field_id, words):
    assert old in BILL
    payload = refresh_crc(BILL.replace(old, new, 1))
    qr = emvqr.parse(payload)
    assert [w.field_id for w in qr.warnings] == [field_id] or field_id == "53"  # 53 also leaves 54 unread
    assert words in str(qr.warnings[0]) and qr.warnings[0].field_id == field_id
    assert qr.bill_number == "2026110012345"  # everything else is still read
    with pytest.raises(QrFormatError) as err:
        emvqr.parse(payload, strict=True)
    assert err.value.field_id == field_id, str(err.value)
    assert str(err.value) == str(qr.warnings[0])


@pytest.mark.parametrize("old, new, field_id, words", [
    ("5406128.50", "5406128.5x", "54", "not digits"),
    ("5406128.50", "540612.855", "54", "not a whole number of minor units"),
    ("5802CN", "5802CN5802CN", "58", "duplicate id"),
    ("0509ACCT88213", "0519ACCT88213", "62/05", "runs past the end of the template 62"),
    ("6230011320261100123450509ACCT88213", "6235011320261100123450509ACCT882130101X", "62/01", "duplicate id"),
    ("0509ACCT88213", "05X9ACCT88213", "62/05", "length 'X9' is not two digits"),
    ("0509ACCT88213", "X509ACCT88213", "62", "field id 'X5' is not two digits"),
])
def test_broken_structure_and_unreadable_amounts_are_refused_however_read(old, new, field_id, words):
    assert old in BILL
    payload = refresh_crc(BILL.replace(old, new, 1))
    for strict in (False, True):
        with pytest.raises(QrFormatError) as err:
            emvqr.parse(payload, strict=strict)
        assert err.value.field_id == field_id, str(err.value)
        assert words in str(err.value)


def test_liberal_amounts_keep_their_exact_value():
    assert emvqr.parse(refresh_crc(BILL.replace("5406128.50", "540712.8500"))).amount == 1285
    assert emvqr.parse(refresh_crc(BILL.replace("5406128.50", "54060000.0"))).amount is None
    unknown = emvqr.parse(refresh_crc(BILL.replace("5303156", "5303999")))
    assert (unknown.amount, unknown.currency, unknown.currency_code) == (None, "999", None)
    assert [w.field_id for w in unknown.warnings] == ["53", "54"]


@pytest.mark.parametrize("old, new, amount", [("5406128.50", "5406128500", 12850000),
                                              ("5406128.50", "54041285", 128500)])
def test_amounts_without_decimals_are_whole_units(old, new, amount):
    assert emvqr.parse(refresh_crc(BILL.replace(old, new))).amount == amount


def test_errors_carry_the_offset_of_the_field():
    payload = refresh_crc(BILL.replace("5802CN", "5802CN5802CN"))
    with pytest.raises(QrFormatError) as err:
        emvqr.parse(payload)
    assert err.value.offset == BILL.index("5802CN") + 6
    assert str(err.value).startswith(f"field 58 (country code) at offset {err.value.offset}: duplicate id")


def test_crc_not_last_is_refused():
    body = BILL[:-8]
    moved = emvqr.with_crc(body)[-8:]
    payload = BILL[:6] + moved + BILL[6:-8] + "6304" + BILL[-4:]
    with pytest.raises(QrFormatError) as err:
        emvqr.parse(payload)
    assert err.value.field_id == "63"


def test_language_template_lengths_count_characters():
    qr = emvqr.parse(SPEC_EXAMPLE)
    assert "0104最佳运输" in SPEC_EXAMPLE and len(qr.language["01"]) == 4
    assert len("最佳运输".encode()) == 12


def test_static_tip_and_convenience_fields():
    qr = emvqr.parse(BILL)
    with_fee = emvqr.encode(MerchantQr(**{**qr.__dict__, "other": {"55": "02", "56": "1.00"}}))
    assert emvqr.parse(with_fee).other == {"55": "02", "56": "1.00"}
    with pytest.raises(QrFormatError) as err:
        emvqr.encode(MerchantQr(**{**qr.__dict__, "other": {"55": "02"}}))
    assert err.value.field_id == "56"
    with pytest.raises(QrFormatError) as err:
        emvqr.encode(MerchantQr(**{**qr.__dict__, "other": {"55": "04"}}))
    assert err.value.field_id == "55"


@pytest.mark.parametrize("text, currency, minor", [
    ("23.72", "156", 2372), ("0.01", "CNY", 1), ("128", "CNY", 12800), ("128.5", "CNY", 12850),
    ("999", "JPY", 999), ("1.234", "BHD", 1234), ("9999999999.99", "CNY", 999999999999),
    ("0.10", "USD", 10),
])
def test_amounts_convert_exactly(text, currency, minor):
    assert emvqr.parse_amount(text, currency) == minor


@pytest.mark.parametrize("text, currency, words", [
    ("1.5", "JPY", "JPY allows 0"), ("1.", "CNY", "no digits after"), (".5", "CNY", "not digits"),
    ("1e3", "CNY", "not digits"), ("-1.00", "CNY", "not digits"), ("1,00", "CNY", "not digits"),
    ("12345678901.23", "CNY", "longer than 13"), ("0.00", "CNY", "zero"), ("1.00", "XXX", "unknown currency"),
    ("١٢", "CNY", "not digits"),  # Arabic-Indic digits are digits to str.isdigit, not to EMVCo
])
def test_malformed_amounts(text, currency, words):
    with pytest.raises(QrFormatError, match=words):
        emvqr.parse_amount(text, currency)


@given(st.integers(1, 10 ** 12 - 1), st.sampled_from(sorted(emvqr.CURRENCIES)))
def test_amount_text_round_trips(minor, currency):
    text = emvqr.amount_text(minor, currency)
    assert len(text) <= 13
    assert emvqr.parse_amount(text, currency) == minor


def test_amount_text_writes_the_currency_exponent():
    assert emvqr.amount_text(2372, "CNY") == "23.72"
    assert emvqr.amount_text(5, "CNY") == "0.05"
    assert emvqr.amount_text(999, "JPY") == "999"
    with pytest.raises(QrFormatError, match="greater than zero"):
        emvqr.amount_text(0, "CNY")
    with pytest.raises(QrFormatError, match="integer"):
        emvqr.amount_text(12.5, "CNY")


def test_bill_code_reads_back_as_a_bill():
    code = emvqr.read_tapstack(emvqr.parse(bill()), NOW)
    assert (code.kind, code.merchant_id, code.amount, code.currency) == ("bill", "WATER-0042", 12850, "CNY")
    assert (code.bill_number, code.reference) == ("2026110012345", "ACCT88213")
    assert code.expires_at == datetime(2026, 12, 31, 16, 0, tzinfo=timezone.utc)


def test_checkout_code_reads_back_as_a_checkout():
    payload = emvqr.checkout_code(merchant_id="SHOP-7", terminal_label="TILL-03", amount=4590,
                                  currency="CNY", merchant_name="Daily Fresh", merchant_city="Hangzhou",
                                  mcc="5411", expires_at=LATER, reference="S-000981")
    code = emvqr.read_tapstack(emvqr.parse(payload), NOW)
    assert (code.kind, code.terminal_label, code.amount, code.reference) == ("checkout", "TILL-03", 4590, "S-000981")
    with pytest.raises(CodeExpired, match="expired") as err:
        emvqr.read_tapstack(emvqr.parse(payload), LATER + timedelta(seconds=1))
    assert err.value.field_id == "80/01"


def test_merchant_code_is_static_without_amount():
    payload = emvqr.merchant_code(merchant_id="SHOP-7", merchant_name="Daily Fresh",
                                  merchant_city="Hangzhou", mcc="5411", store_label="West Lake")
    qr = emvqr.parse(payload)
    assert "010211" in payload and qr.amount is None and qr.additional == {"03": "West Lake"}
    code = emvqr.read_tapstack(qr, NOW)
    assert (code.kind, code.amount, code.expires_at) == ("merchant", None, None)


def test_static_code_with_an_amount_is_refused_by_tapstack_rules():
    qr = emvqr.parse(emvqr.merchant_code(merchant_id="SHOP-7", merchant_name="Daily Fresh",
                                         merchant_city="Hangzhou", mcc="5411"))
    priced = emvqr.parse(emvqr.encode(MerchantQr(**{**qr.__dict__, "amount": 100})))  # legal EMVCo
    with pytest.raises(QrFormatError, match="static merchant code must not carry an amount") as err:
        emvqr.read_tapstack(priced, NOW)
    assert err.value.field_id == "54"


def test_foreign_code_is_not_a_tapstack_code():
    with pytest.raises(QrFormatError, match="no tapstack merchant account"):
        emvqr.read_tapstack(emvqr.parse(SPEC_EXAMPLE), NOW)


def test_other_scripts_only_in_the_language_template():
    payload = bill(local_name="哈尔滨供水", local_city="哈尔滨")
    qr = emvqr.parse(payload)
    assert qr.language == {"00": "ZH", "01": "哈尔滨供水", "02": "哈尔滨"}
    assert "64220002ZH0105哈尔滨供水0203哈尔滨" in payload  # lengths in characters
    with pytest.raises(QrFormatError, match="outside the EMV common character set") as err:
        bill(merchant_name="哈尔滨供水")
    assert err.value.field_id == "59"
    with pytest.raises(QrFormatError) as err:
        emvqr.parse(refresh_crc(BILL.replace("0509ACCT88213", "0509ACCT8821é")), strict=True)
    assert err.value.field_id == "62/05"
    with pytest.raises(QrFormatError, match="needs the local name"):
        bill(local_city="哈尔滨")


def test_builders_refuse_bad_values_naming_the_field():
    with pytest.raises(QrFormatError) as err:
        bill(merchant_name="A name much longer than twenty-five")
    assert err.value.field_id == "59"
    with pytest.raises(QrFormatError) as err:
        bill(currency="XYZ")
    assert err.value.field_id == "53"
    with pytest.raises(QrFormatError) as err:
        bill(bill_number="")
    assert err.value.field_id == "62/01"
    with pytest.raises(ValueError, match="timezone-aware"):
        bill(expires_at=datetime(2026, 12, 31))


# ---------------------------------------------------------------- generated values

ANS = st.text(st.characters(codec="ascii", min_codepoint=0x20, max_codepoint=0x7E), min_size=1)
NAMES = st.text(st.characters(categories=("L", "N", "Zs"), exclude_characters="\x85"), min_size=1)


@st.composite
def merchant_qrs(draw):
    currency = draw(st.sampled_from(sorted(emvqr.CURRENCIES)))
    dynamic = draw(st.sampled_from([None, True, False]))
    accounts = {"26": {"00": emvqr.GUID, "01": draw(ANS.filter(lambda s: len(s) <= 40))}}
    if draw(st.booleans()):
        accounts["02"] = draw(st.from_regex(r"[0-9]{16}", fullmatch=True))
    additional = draw(st.dictionaries(st.sampled_from(["01", "02", "03", "04", "05", "06", "07", "08"]),
                                      ANS.filter(lambda s: len(s) <= 20), max_size=4))
    return MerchantQr(
        merchant_accounts=accounts,
        mcc=draw(st.from_regex(r"[0-9]{4}", fullmatch=True)), currency=currency,
        country=draw(st.from_regex(r"[A-Z]{2}", fullmatch=True)),
        name=draw(ANS.filter(lambda s: len(s) <= 25)), city=draw(ANS.filter(lambda s: len(s) <= 15)),
        amount=draw(st.none() | st.integers(1, 10 ** 10)), dynamic=dynamic,
        postal_code=draw(st.none() | st.from_regex(r"[0-9]{6}", fullmatch=True)),
        additional=additional,
        language=draw(st.none() | st.builds(lambda n: {"00": "ZH", "01": n}, NAMES.filter(lambda s: len(s) <= 25))),
        unreserved=draw(st.sampled_from([{}, {"80": {"00": emvqr.GUID, "01": "20270101000000"}}])),
    )


@settings(max_examples=200)
@given(merchant_qrs())
def test_encode_parse_round_trip(qr):
    payload = emvqr.encode(qr)
    assert payload.startswith("000201") and payload[-8:-4] == "6304"
    assert emvqr.parse(payload) == qr


@settings(max_examples=200)
@given(merchant_qrs(), st.data())
def test_any_single_byte_change_is_caught(qr, data):
    # CRC-16 detects every error burst of 16 bits or fewer, so changing one ASCII
    # character for another is always caught, by the CRC or by a field rule.
    payload = emvqr.encode(qr)
    i = data.draw(st.sampled_from([k for k, c in enumerate(payload) if c.isascii()]))
    new = data.draw(st.sampled_from("0123456789AZaz. ").filter(lambda c: c != payload[i]))
    with pytest.raises(QrFormatError):
        emvqr.parse(payload[:i] + new + payload[i + 1:])


# ---------------------------------------------------------------- codes in the wild

def test_promptpay_codes_without_category_name_or_city_are_read_with_warnings():
    qr = emvqr.parse(WILD["promptpay"])
    assert emvqr.scheme(qr) == "PromptPay (Thailand)"
    assert qr.merchant_accounts == {"29": {"00": "A000000677010111", "01": "0066801234567"}}
    assert (qr.dynamic, qr.currency_code, qr.country, qr.amount) == (False, "THB", "TH", None)
    assert (qr.mcc, qr.name, qr.city) == (None, None, None)
    assert [str(w) for w in qr.warnings] == [
        "field 52 (merchant category code): missing: mandatory field",
        "field 59 (merchant name): missing: mandatory field",
        "field 60 (merchant city): missing: mandatory field"]
    paid = emvqr.parse(WILD["promptpay-amount"])
    assert (paid.dynamic, paid.amount, paid.currency_code) == (True, 422, "THB")
    with pytest.raises(QrFormatError, match="missing: mandatory field") as err:
        emvqr.parse(WILD["promptpay"], strict=True)
    assert err.value.field_id == "52"


def test_a_cambodian_code_with_a_16_character_city_is_read_with_one_warning():
    qr = emvqr.parse(WILD["khqr-city"])
    assert (qr.city, qr.name, qr.amount, qr.currency_code, qr.mcc) == ("Banteay Meanchey", "Kuntheas Shop", 1000,
                                                                      "USD", "4131")
    assert qr.merchant_accounts == {"15": "37210116372101160123456789ABCDE"} and emvqr.scheme(qr) == "UnionPay"
    assert qr.bill_number == "12345678"
    assert [str(w) for w in qr.warnings] == [
        "field 60 (merchant city) at offset 55: at most 15 characters, got 16"]


def test_a_khqr_code_with_a_language_template_keeps_every_rule():
    qr = emvqr.parse(WILD["khqr-language"])
    assert qr.warnings == () and emvqr.scheme(qr) == "KHQR (Cambodia)"
    assert qr.language == {"00": "KM", "01": "BUN MAO", "02": "Phnom Penh"}
    assert (qr.local_name, qr.postal_code, qr.additional) == ("BUN MAO", "12", {"02": "010500331"})


def test_codes_from_elsewhere_are_not_tapstack_codes():
    for payload in WILD.values():
        with pytest.raises(QrFormatError, match="no tapstack merchant account"):
            emvqr.read_tapstack(emvqr.parse(payload), NOW)
    assert emvqr.scheme(emvqr.parse(BILL)) == "tapstack"
    assert emvqr.scheme(emvqr.parse(SPEC_EXAMPLE)) is None  # its accounts are the specification's examples


def test_a_tapstack_code_needs_a_known_currency():
    with pytest.raises(QrFormatError, match="unknown currency") as err:
        emvqr.read_tapstack(emvqr.parse(refresh_crc(BILL.replace("5303156", "5303999"))), NOW)
    assert err.value.field_id == "53"


def test_the_encoder_stays_strict():
    qr = emvqr.parse(WILD["khqr-city"])
    with pytest.raises(QrFormatError, match="at most 15 characters") as err:
        emvqr.encode(qr)
    assert err.value.field_id == "60"
    with pytest.raises(QrFormatError, match="missing: mandatory field") as err:
        emvqr.encode(emvqr.parse(WILD["promptpay"]))
    assert err.value.field_id == "52"
    fixed = emvqr.encode(MerchantQr(**{**qr.__dict__, "city": "Banteay Mean", "warnings": ()}))
    assert emvqr.parse(fixed, strict=True).city == "Banteay Mean"


# ---------------------------------------------------------------- names in local scripts

def test_a_chinese_name_goes_in_the_language_template_beside_its_transliteration():
    names = emvqr.names("杭州水务集团", "杭州", name_latin="Hangzhou Water", city_latin="Hangzhou",
                        fallback_name="mer_1", fallback_city="CN")
    assert names == emvqr.Names("Hangzhou Water", "Hangzhou", "杭州水务集团", "杭州", "ZH")
    payload = bill(**names.code_args())
    qr = emvqr.parse(payload, strict=True)
    assert (qr.name, qr.city, qr.local_name, qr.local_city) == ("Hangzhou Water", "Hangzhou", "杭州水务集团", "杭州")
    assert "64220002ZH0106杭州水务集团0202杭州" in payload


def test_without_a_transliteration_the_stated_fallbacks_are_used():
    assert emvqr.names("杭州水务", "杭州", fallback_name="mer_0a1b", fallback_city="CN") == \
        emvqr.Names("mer_0a1b", "CN", "杭州水务", "杭州", "ZH")
    # accents are dropped rather than the whole name
    assert emvqr.names("Café Lumière", "Besançon", fallback_name="x", fallback_city="FR", language="fr") == \
        emvqr.Names("Cafe Lumiere", "Besancon", "Café Lumière", "Besançon", "FR")
    # a name all in EMV's characters needs no template; a local city alone brings the name along
    assert emvqr.names("City Water", "Hangzhou", fallback_name="x", fallback_city="CN") == \
        emvqr.Names("City Water", "Hangzhou")
    assert emvqr.names("City Water", "杭州", fallback_name="x", fallback_city="CN") == \
        emvqr.Names("City Water", "CN", "City Water", "杭州", "ZH")
    long = emvqr.names("水" * 30, "州" * 20, fallback_name="mer_" + "f" * 24, fallback_city="CN")
    assert (len(long.name), len(long.local_name), len(long.local_city)) == (25, 25, 15)
    emvqr.parse(bill(**long.code_args()), strict=True)


def test_language_preferences_are_two_letters():
    assert emvqr.check_language("zh") == "ZH" and emvqr.check_language("KM") == "KM"
    for bad in ("zho", "z", "中文", None, "z1"):
        with pytest.raises(QrFormatError) as err:
            emvqr.check_language(bad)
        assert err.value.field_id == "64/00"
