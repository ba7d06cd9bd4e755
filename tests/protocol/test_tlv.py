"""BER-TLV: tags, lengths, nesting, padding, errors with offsets, DOLs, round trips."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import tlv
from protocol.tlv import DolEntry, Tlv, TlvError


def test_parses_a_ppse_fci_into_a_tree():
    raw = bytes.fromhex("6F1E840E325041592E5359532E4444463031A50CBF0C0961074F05A000000003")
    (fci,) = tlv.parse(raw)
    assert fci.tag == 0x6F and fci.constructed
    name, prop = fci.value
    assert name == Tlv(0x84, b"2PAY.SYS.DDF01")
    assert prop.value[0].tag == 0xBF0C
    assert tlv.find(fci, 0x4F) == Tlv(0x4F, bytes.fromhex("A000000003"))
    assert tlv.find_value((fci,), 0x4F) == bytes.fromhex("A000000003")
    assert tlv.find(fci, 0x50) is None
    assert tlv.build((fci,)) == raw


@pytest.mark.parametrize("raw, tag", [
    ("5A00", 0x5A),
    ("9F3800", 0x9F38),
    ("BF0C00", 0xBF0C),
    ("DF810100", 0xDF8101),  # three-byte tag: continuation bit on the second byte
    ("1FFF810100", 0x1FFF8101),
])
def test_multi_byte_tags(raw, tag):
    (obj,) = tlv.parse(bytes.fromhex(raw))
    assert obj.tag == tag
    assert obj.to_bytes() == bytes.fromhex(raw)


@pytest.mark.parametrize("length, encoded", [
    (0, "00"), (0x7F, "7F"), (0x80, "8180"), (0xFF, "81FF"), (0x100, "820100"),
    (0xFFFF, "82FFFF"), (0x10000, "83010000"),
])
def test_length_forms(length, encoded):
    assert tlv.encode_length(length) == bytes.fromhex(encoded)
    raw = b"\x04" + bytes.fromhex(encoded) + bytes(length)
    assert tlv.parse(raw) == (Tlv(0x04, bytes(length)),)


def test_non_minimal_long_length_is_accepted():
    assert tlv.parse(bytes.fromhex("5A8102AABB")) == (Tlv(0x5A, b"\xaa\xbb"),)


def test_padding_between_and_around_objects_is_skipped():
    raw = bytes.fromhex("00FF5A01AA0000FF9F0201BB00")
    assert tlv.parse(raw) == (Tlv(0x5A, b"\xaa"), Tlv(0x9F02, b"\xbb"))
    # padding inside a constructed object too
    assert tlv.parse(bytes.fromhex("70050000500100")) == (Tlv(0x70, (Tlv(0x50, b"\x00"),)),)


@pytest.mark.parametrize("raw, words", [
    ("5A", "length missing at offset 1"),
    ("5A05AABB", "runs 3 bytes past the end"),
    ("9F", "tag at offset 0 is truncated"),
    ("5A01AA9F", "tag at offset 3 is truncated"),
    ("5A80", "indefinite length (80) at offset 1"),
    ("5A84000000010A", "length form 84 at offset 1"),
    ("5A8201", "length field at offset 1 is truncated"),
    ("1F81818181010A", "longer than 4 bytes"),
    ("700300", "tag 70 at offset 0: length 3 runs 2 bytes past the end"),
])
def test_errors_say_what_and_where(raw, words):
    with pytest.raises(TlvError) as info:
        tlv.parse(bytes.fromhex(raw))
    assert words in str(info.value)


def test_child_cannot_run_past_its_parent():
    with pytest.raises(TlvError, match="offset 2"):
        tlv.parse(bytes.fromhex("7003" "5A05AA" "BBCCDD"))


def test_deep_nesting_is_refused_not_a_recursion_error():
    raw = b""
    for _ in range(40):
        raw = b"\x70" + tlv.encode_length(len(raw)) + raw
    with pytest.raises(TlvError, match="nesting"):
        tlv.parse(raw)


def test_parse_one():
    assert tlv.parse_one(bytes.fromhex("830100"), 0x83).value == b"\x00"
    with pytest.raises(TlvError, match="expected tag 83, found 5A"):
        tlv.parse_one(bytes.fromhex("5A0100"), 0x83)
    with pytest.raises(TlvError, match="found 2"):
        tlv.parse_one(bytes.fromhex("830100830100"))


@pytest.mark.parametrize("tag", [0, -1, 0x00AA, 0xFF, 0x1F, 0x9F, 0x9F80, 0x5A01, 0x1F8181818101])
def test_invalid_tags_are_refused_by_the_builder(tag):
    with pytest.raises(ValueError):
        Tlv(tag, b"")


def test_value_type_follows_the_constructed_bit():
    with pytest.raises(ValueError):
        Tlv(0x70, b"\x00")
    with pytest.raises(ValueError):
        Tlv(0x5A, ())
    assert tlv.tlv(0x70, [Tlv(0x5A, b"\x01")]) == Tlv(0x70, (Tlv(0x5A, b"\x01"),))


def test_repr_hides_card_numbers_and_names():
    pan = bytes.fromhex("4242424242424242")
    text = repr(Tlv(0x70, (Tlv(0x5A, pan), Tlv(0x5F20, b"DOE/JANE"), Tlv(0x9F12, b"VISA"))))
    assert "4242" not in text and "\\x42" not in text and "BBBB" not in text and "DOE" not in text
    assert "8 bytes hidden" in text and "VISA" in text


def test_dol():
    raw = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")
    dol = tlv.parse_dol(raw)
    assert dol[0] == DolEntry(0x9F66, 4) and dol[-1] == DolEntry(0x9F37, 4)
    assert [e.tag for e in dol] == [0x9F66, 0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37]
    assert tlv.dol_length(dol) == 33
    assert tlv.build_dol(dol) == raw
    assert tlv.parse_dol(b"") == ()


@pytest.mark.parametrize("raw", ["9F", "9F66", "9F6680", "0004", "9F6684"])
def test_bad_dols(raw):
    with pytest.raises(TlvError):
        tlv.parse_dol(bytes.fromhex(raw))


# --- properties -------------------------------------------------------------------

def _tags(constructed: bool):
    """Valid tags of 1 to 3 bytes with the constructed bit as asked."""
    flag = 0x20 if constructed else 0
    one = st.integers(0, 0xFF).filter(lambda b: b & 0x1F != 0x1F and b & 0x20 == flag and b not in (0, 0xFF))
    first = st.sampled_from([c | flag for c in (0x1F, 0x5F, 0x9F, 0xDF)]).filter(lambda b: b != 0xFF)
    two = st.tuples(first, st.integers(0, 0x7F)).map(lambda t: t[0] << 8 | t[1])
    three = st.tuples(first, st.integers(0x80, 0xFF), st.integers(0, 0x7F)).map(
        lambda t: t[0] << 16 | t[1] << 8 | t[2])
    return st.one_of(one, two, three)


primitive = st.builds(Tlv, _tags(False), st.binary(max_size=300))
trees = st.recursive(
    primitive,
    lambda children: st.builds(Tlv, _tags(True), st.lists(children, max_size=4).map(tuple)),
    max_leaves=12,
)


@settings(deadline=None)
@given(st.lists(trees, max_size=4).map(tuple))
def test_parse_inverts_build(objects):
    assert tlv.parse(tlv.build(objects)) == objects


@settings(deadline=None)
@given(st.lists(trees, max_size=3).map(tuple), st.lists(st.sampled_from([b"\x00", b"\xff"]), max_size=3))
def test_leading_and_trailing_padding_change_nothing(objects, pad):
    padding = b"".join(pad)
    assert tlv.parse(padding + tlv.build(objects) + padding) == objects


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_nothing_but_tlv_error(raw):
    try:
        objects = tlv.parse(raw)
    except TlvError:
        return
    # whatever parses re-encodes to something that parses the same
    assert tlv.parse(tlv.build(objects)) == objects


@settings(deadline=None)
@given(st.binary(max_size=60))
def test_random_dols_raise_nothing_but_tlv_error(raw):
    try:
        dol = tlv.parse_dol(raw)
    except TlvError:
        return
    assert tlv.parse_dol(tlv.build_dol(dol)) == dol
