"""tapstack.testing.expect: the patterns, TLV paths, captures and variables of the generic reader steps."""
from __future__ import annotations

import pytest

from protocol.apdu import ResponseAPDU
from tapstack.testing.expect import (AnswerCheck, PatternError, capture, check_answer, find_tlv, hex_bytes,
                                     hex_pattern, pattern_of, substitute, tlv_path)

FCI = bytes.fromhex("6F1A8409F04245414E4C454146A50D500B4265616E2026204C656166")


@pytest.mark.parametrize("pattern, value, matches", [
    ("9000", "9000", True), ("61xx", "6110", True), ("61XX", "61FF", True), ("61xx", "6A82", False),
    ("63Cx", "63C2", True), ("63C?", "63D2", False), ("6F * 9000", "6F019000", True), ("6F*", "6F", True),
    ("6F*9000", "6F9000", True), ("00 A4 04 00", "00A40400", True), ("00A4", "00A40400", False),
])
def test_hex_patterns(pattern, value, matches):
    assert hex_pattern(pattern).matches(bytes.fromhex(value)) is matches


@pytest.mark.parametrize("text, words", [
    ("", "empty pattern"), ("90G0", "'G' is neither hex"), ("900", "odd number of hex digits"),
    ("9*0", "'*' must stand for whole bytes"),
])
def test_a_bad_pattern_says_why(text, words):
    with pytest.raises(PatternError, match=words):
        hex_pattern(text)


def test_hex_says_odd_number_of_digits_and_which_character_is_wrong():
    assert hex_bytes("0A 0B") == b"\x0a\x0b"
    with pytest.raises(PatternError, match=r"odd number of hex digits \(3\)"):
        hex_bytes("0A0")
    with pytest.raises(PatternError, match="'Z' is not a hex digit"):
        hex_bytes("0Z")


def test_regex_and_numbers_written_without_quotes():
    assert pattern_of({"regex": "6f..84.*"}, "data").matches(FCI)  # the whole data, as Keyple's matches()
    assert not pattern_of({"regex": "6f..84"}, "data").matches(FCI)
    with pytest.raises(PatternError, match="not a regular expression"):
        pattern_of({"regex": "(("}, "data")

    class Number(int):
        text = "0102"  # as the kit's YAML loader keeps it: 0102 is not the number 102

    assert pattern_of(Number(102), "data").matches(b"\x01\x02")


def test_tlv_paths_find_values_at_any_depth_or_along_a_path():
    assert find_tlv(FCI, tlv_path("84")) == bytes.fromhex("F04245414E4C454146")
    assert find_tlv(FCI, tlv_path("6F/A5/50")) == b"Bean & Leaf"
    assert find_tlv(FCI, tlv_path("6F/50")) is None  # 50 is under A5, not 6F
    assert find_tlv(FCI, tlv_path("9F7F")) is None
    with pytest.raises(PatternError, match="a tag is 1 to 4 bytes"):
        tlv_path("6F/0102030405")


def test_check_answer_lists_what_is_wrong():
    answer = ResponseAPDU(FCI, 0x9000)
    assert check_answer(answer, AnswerCheck(), {}) == []
    check = AnswerCheck(sw=("61xx", "6A82"), data="6F1B*", tlv=(("84", "{aid}"), ("9F7F", "*"), ("50", None)),
                        default_sw=False)
    assert check_answer(answer, check, {"aid": "F04245414E4C454146"}) == [
        "sw: expected 61xx or 6A82, seen 9000 (success)",
        "data: expected 6F1B*, seen " + FCI.hex().upper(),
        "tlv 9F7F: expected *, the data holds no such object",
        "tlv 50: expected absent, seen 4265616E2026204C656166",
    ]
    default = check_answer(ResponseAPDU(b"", 0x6982), AnswerCheck(), {})
    assert default == ["sw: expected 9000 (expected unless the step says sw: ...), seen 6982 "
                       "(security status not satisfied)"]
    assert check_answer(ResponseAPDU(b"\x01", 0x9000), AnswerCheck(tlv=(("84", "*"),)), {})[0].startswith(
        "tlv 84: the data is not BER-TLV")


def test_captures_and_variables():
    answer = ResponseAPDU(FCI, 0x9000)
    assert capture(answer, "sw") == "9000"
    assert capture(answer, "data[2:4]") == "8409"
    assert capture(answer, "data[-2:]") == "6166"
    assert capture(answer, {"tlv": "84"}) == "F04245414E4C454146"
    assert capture(answer, {"regex": "84(..)"}) == "09"
    with pytest.raises(PatternError, match="holds no such object"):
        capture(answer, {"tlv": "9F7F"})
    with pytest.raises(PatternError, match="has nothing there"):
        capture(answer, "data[40:50]")
    assert substitute("80CA{a}00{b}", {"a": "9F", "b": "7F"}) == "80CA9F007F"
    with pytest.raises(KeyError):
        substitute("{missing}", {})
