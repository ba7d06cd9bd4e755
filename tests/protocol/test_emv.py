"""The EMV reading pieces: commands byte for byte, answers parsed, Book 3 rules applied."""
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import emv, tlv
from protocol.emv import AflEntry, DirectoryEntry, EmvError
from protocol.tlv import DolEntry, Tlv

PAN = "4242424242424242"  # Stripe's public Visa test number
AMEX_PAN = "378282246310005"  # Stripe's public American Express test number: odd length


def _ppse(*entries: Tlv) -> bytes:
    return Tlv(0x6F, (Tlv(0x84, emv.PPSE), Tlv(0xA5, (Tlv(0xBF0C, entries),)))).to_bytes()


def _entry(aid: str, label: bytes | None = None, priority: int | None = None) -> Tlv:
    fields = [Tlv(0x4F, bytes.fromhex(aid))]
    if label is not None:
        fields.append(Tlv(0x50, label))
    if priority is not None:
        fields.append(Tlv(0x87, bytes((priority,))))
    return Tlv(0x61, tuple(fields))


def test_select_ppse_bytes():
    assert emv.select_ppse().to_bytes().hex().upper() == "00A404000E325041592E5359532E444446303100"


def test_ppse_directory_and_choice_by_priority():
    raw = _ppse(
        _entry("A0000000041010", b"MASTERCARD", 0x02),
        _entry("A0000003330101", b"UNIONPAY", 0x81),  # bit 8 (confirmation) is not priority
        _entry("A0000000031010", b"VISA"),
        Tlv(0x61, (Tlv(0x50, b"NO AID"),)),  # skipped: no 4F
        _entry("A000", b"SHORT"),  # skipped: an ADF name is 5 to 16 bytes
    )
    entries = emv.parse_ppse_fci(raw)
    assert entries == (
        DirectoryEntry(bytes.fromhex("A0000000041010"), "MASTERCARD", 2),
        DirectoryEntry(bytes.fromhex("A0000003330101"), "UNIONPAY", 1),
        DirectoryEntry(bytes.fromhex("A0000000031010"), "VISA", None),
    )
    assert [e.label for e in emv.choose_applications(entries)] == ["UNIONPAY", "MASTERCARD", "VISA"]
    assert [e.label for e in emv.choose_applications(entries, [bytes.fromhex("A000000003")])] == ["VISA"]
    assert emv.choose_applications(entries, []) == ()


def test_equal_priorities_keep_card_order():
    entries = emv.parse_ppse_fci(_ppse(_entry("A0000000031010", b"B", 0), _entry("A0000000041010", b"A")))
    assert [e.label for e in emv.choose_applications(entries)] == ["B", "A"]


def test_labels_are_text_whatever_the_card_sends():
    (entry,) = emv.parse_ppse_fci(_ppse(_entry("A0000000031010", b"VI\x00SA\xe9 ")))
    assert entry.label == "VI?SA\xe9"


def test_ppse_without_directory_has_no_entries():
    assert emv.parse_ppse_fci(Tlv(0x6F, (Tlv(0x84, emv.PPSE), Tlv(0xA5, ()))).to_bytes()) == ()


@pytest.mark.parametrize("raw, words", [
    ("5A0142", "no FCI template"),
    ("6F05840300", "not valid BER-TLV"),
    ("", "no FCI template"),
])
def test_bad_ppse_answers(raw, words):
    with pytest.raises(EmvError, match=words):
        emv.parse_ppse_fci(bytes.fromhex(raw))


def _app_fci(*prop: Tlv, name: str = "A0000000031010") -> bytes:
    return Tlv(0x6F, (Tlv(0x84, bytes.fromhex(name)), Tlv(0xA5, prop))).to_bytes()


def test_application_fci():
    pdol = bytes.fromhex("9F66049F02069F37045F2A02")
    fci = emv.parse_application_fci(_app_fci(Tlv(0x50, b"VISA CREDIT"), Tlv(0x87, b"\x01"),
                                             Tlv(0x9F38, pdol), Tlv(0x5F2D, b"zhen"),
                                             Tlv(0x9F12, b"MY BANK")))
    assert fci.df_name == bytes.fromhex("A0000000031010")
    assert (fci.label, fci.preferred_name, fci.priority, fci.language) == ("VISA CREDIT", "MY BANK", 1, "zhen")
    assert fci.pdol == (DolEntry(0x9F66, 4), DolEntry(0x9F02, 6), DolEntry(0x9F37, 4), DolEntry(0x5F2A, 2))
    assert emv.parse_application_fci(_app_fci()).pdol == ()


@pytest.mark.parametrize("raw, words", [
    (Tlv(0x6F, (Tlv(0xA5, ()),)).to_bytes(), "no DF name"),
    (Tlv(0x6F, (Tlv(0x84, bytes(7)),)).to_bytes(), "no proprietary template"),
    (_app_fci(Tlv(0x9F38, b"\x9f")), "PDOL"),
    (b"\x90\x00", "no FCI template"),
])
def test_bad_application_fci(raw, words):
    with pytest.raises(EmvError, match=words):
        emv.parse_application_fci(raw)


TERMINAL = emv.TerminalData(transaction_date=date(2026, 11, 27), unpredictable_number=bytes.fromhex("01020304"),
                            amount=250)


def test_terminal_values():
    v = TERMINAL.values()
    assert v[0x9F02] == bytes.fromhex("000000000250")  # 2.50 CNY in fen, n12
    assert v[0x9F03] == bytes(6)
    assert v[0x9F1A] == v[0x5F2A] == bytes.fromhex("0156")
    assert v[0x9A] == bytes.fromhex("261127")
    assert v[0x9C] == b"\x00"
    assert v[0x9F37] == bytes.fromhex("01020304")
    assert v[0x9F66] == bytes.fromhex("36004000")
    with pytest.raises(ValueError):
        emv.TerminalData(date(2026, 1, 1), b"\x01")


def test_fill_visa_pdol():
    dol = tlv.parse_dol(bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704"))
    assert emv.fill_dol(dol, TERMINAL.values()).hex().upper() == (
        "36004000" "000000000250" "000000000000" "0156" "0000000000" "0156" "261127" "00" "01020304")


def test_fill_dol_truncation_and_padding_follow_the_format():
    values = {0x9F02: bytes.fromhex("000000000250"), 0x9F66: bytes.fromhex("36004000"),
              0x5A: bytes.fromhex("42424242"), 0x9F4E: b"SHOP"}
    dol = [DolEntry(0x9F02, 2),  # n, shorter: leftmost bytes go
           DolEntry(0x9F02, 8),  # n, longer: leading zeros
           DolEntry(0x9F66, 2),  # b, shorter: rightmost bytes go
           DolEntry(0x9F66, 5),  # b, longer: trailing zeros
           DolEntry(0x5A, 6),  # cn, longer: trailing FF
           DolEntry(0x9F4E, 6),  # ans, longer: trailing zeros
           DolEntry(0x9F99, 3),  # unknown: zeros
           DolEntry(0xBF0C, 2),  # constructed: zeros
           DolEntry(0x9F37, 0)]
    assert emv.fill_dol(dol, values).hex().upper() == (
        "0250" "0000000000000250" "3600" "3600400000" "42424242FFFF" "53484F500000" "000000" "0000")


dol_entries = st.lists(st.builds(DolEntry, st.sampled_from(
    [0x9F66, 0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x5A, 0x9F4E, 0x9F99, 0xBF0C]),
    st.integers(0, 40)), max_size=12)


@settings(deadline=None)
@given(dol_entries, st.dictionaries(st.sampled_from([0x9F66, 0x9F02, 0x5A, 0x9F4E, 0x9F37]), st.binary(max_size=12)))
def test_fill_dol_gives_exactly_the_length_asked(dol, values):
    assert len(emv.fill_dol(dol, values)) == tlv.dol_length(dol)


def test_gpo_command():
    assert emv.get_processing_options(b"").to_bytes().hex().upper() == "80A8000002830000"
    data = bytes.fromhex("3600400000000000025000")
    assert emv.get_processing_options(data).to_bytes().hex().upper() == "80A800000D830B" + data.hex().upper() + "00"


def test_gpo_format_1():
    options = emv.parse_gpo_response(bytes.fromhex("800E1980" "08010100" "10010301" "18010200"))
    assert options.aip == bytes.fromhex("1980")
    assert options.afl == (AflEntry(1, 1, 1, 0), AflEntry(2, 1, 3, 1), AflEntry(3, 1, 2, 0))
    assert [(e.sfi, r) for e in options.afl for r in e.records()] == [(1, 1), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2)]


def test_gpo_format_2_keeps_its_data_objects():
    raw = Tlv(0x77, (Tlv(0x82, b"\x20\x00"), Tlv(0x94, bytes.fromhex("08010100")),
                     Tlv(0x57, bytes.fromhex("4242424242424242D3012201")))).to_bytes()
    options = emv.parse_gpo_response(raw)
    assert options.aip == b"\x20\x00" and options.afl == (AflEntry(1, 1, 1, 0),)
    assert emv.pan_from(options.data) == PAN
    assert "4242" not in repr(options)
    no_afl = emv.parse_gpo_response(Tlv(0x77, (Tlv(0x82, b"\x00\x00"),)).to_bytes())
    assert no_afl.afl == ()


@pytest.mark.parametrize("raw, words", [
    ("", "empty"),
    ("8001AA", "shorter than the AIP"),
    ("80050000080101", "not a multiple of 4"),
    ("8006" "0000080101", "not valid BER-TLV"),
    ("80060000" "00010100", "AFL entry 0 (00010100) is invalid"),  # SFI 0
    ("80060000" "F8010100", "invalid"),  # SFI 31
    ("80060000" "08000100", "invalid"),  # first record 0
    ("80060000" "08030200", "invalid"),  # last before first
    ("80060000" "08010203", "invalid"),  # more offline records than records
    ("7704" "94020000", "no 2-byte AIP"),
    ("9F2701AA", "starts with tag 9F27, not 80 or 77"),
])
def test_bad_gpo_answers(raw, words):
    with pytest.raises(EmvError, match=words.replace("(", r"\(").replace(")", r"\)")):
        emv.parse_gpo_response(bytes.fromhex(raw))


def test_read_record_command():
    assert emv.read_record(1, 1).to_bytes().hex().upper() == "00B2010C00"
    assert emv.read_record(2, 3).to_bytes().hex().upper() == "00B2031400"
    assert emv.read_record(30, 255).to_bytes().hex().upper() == "00B2FFF400"
    with pytest.raises(ValueError):
        emv.read_record(31, 1)


def test_records_and_pan_sources():
    five_a = Tlv(0x5A, bytes.fromhex("378282246310005F"))
    track2 = Tlv(0x57, emv.track2_equivalent(PAN, "2812"))
    record = Tlv(0x70, (five_a, Tlv(0x5F24, bytes.fromhex("291231")), track2)).to_bytes()
    objects = emv.parse_record(record)
    assert emv.pan_from(objects) == AMEX_PAN  # 5A first, F padding stripped
    assert emv.expiry_from(objects) == "2912"  # 5F24 first
    assert emv.pan_from([track2]) == PAN and emv.expiry_from([track2]) == "2812"
    assert emv.pan_from([Tlv(0x5F20, b"X/Y")]) is None and emv.expiry_from([]) is None


@pytest.mark.parametrize("obj, words", [
    (Tlv(0x5A, bytes.fromhex("4242424242424241")), "PAN \\(5A\\) fails the Luhn check"),
    (Tlv(0x5A, bytes.fromhex("42424A42")), "non-numeric"),
    (Tlv(0x5A, bytes.fromhex("4242")), "4 digits"),
    (Tlv(0x57, bytes.fromhex("4242424242424241D3012F")), "track 2 equivalent \\(57\\) fails the Luhn"),
])
def test_bad_pans_never_appear_in_the_error(obj, words):
    with pytest.raises(EmvError, match=words) as info:
        emv.pan_from([obj])
    assert "4242" not in str(info.value) and "4242" not in info.value.reason


@pytest.mark.parametrize("raw", ["5A0142", "70035A0142" "70035A0142", "7003"])
def test_bad_records(raw):
    with pytest.raises(EmvError):
        emv.parse_record(bytes.fromhex(raw))


def test_malformed_expiry_is_none():
    assert emv.expiry_from([Tlv(0x5F24, bytes.fromhex("301331"))]) is None
    assert emv.expiry_from([Tlv(0x57, bytes.fromhex("4242424242424242"))]) is None


def test_card_side_encodings():
    assert emv.track2_equivalent(PAN, "3012", "201", "0000000000").hex().upper() == \
        "4242424242424242D30122010000000000"
    assert emv.track2_equivalent(AMEX_PAN, "3012").hex().upper() == "378282246310005D3012201F"
    assert emv.expiration_date("2802") == bytes.fromhex("280229")  # 2028 is a leap year
    assert emv.expiration_date("2702") == bytes.fromhex("270228")
    with pytest.raises(ValueError):
        emv.expiration_date("2713")
    assert emv.numeric(156, 2) == bytes.fromhex("0156")
    with pytest.raises(ValueError):
        emv.numeric(10**12, 6)


def test_luhn_known_numbers():
    assert emv.luhn_valid(PAN) and emv.luhn_valid(AMEX_PAN) and emv.luhn_valid("79927398713")
    assert not emv.luhn_valid("79927398710") and not emv.luhn_valid("") and not emv.luhn_valid("42x2")


@settings(deadline=None)
@given(st.text("0123456789", min_size=11, max_size=18), st.data())
def test_luhn_catches_every_single_digit_error(partial, data):
    number = partial + emv.luhn_check_digit(partial)
    assert emv.luhn_valid(number)
    i = data.draw(st.integers(0, len(number) - 1))
    wrong = data.draw(st.sampled_from([d for d in "0123456789" if d != number[i]]))
    assert not emv.luhn_valid(number[:i] + wrong + number[i + 1:])


def test_a_pdol_asking_more_than_a_short_apdu_carries_is_an_emv_error():
    assert len(emv.get_processing_options(bytes(emv.MAX_PDOL_DATA)).to_bytes()) == 5 + 3 + emv.MAX_PDOL_DATA + 1
    with pytest.raises(emv.EmvError, match="PDOL asks for 253 bytes"):
        emv.get_processing_options(bytes(emv.MAX_PDOL_DATA + 1))
