"""The emulated EMV card: its answer to every command of the reading flow, and to bad ones."""
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import emv, tlv
from protocol.apdu import CommandAPDU, parse_response
from wallet.emv_card import TEST_PAN, VISA_CREDIT_AID, emv_applets, emv_card

UID = bytes.fromhex("04A1B2C3D4E5F6")
TERMINAL = emv.TerminalData(date(2026, 11, 27), bytes.fromhex("CAFEBABE"))


def send(card, command) -> tuple[bytes, int]:
    raw = command.to_bytes() if isinstance(command, CommandAPDU) else bytes.fromhex(command)
    answer = parse_response(card.process(raw))
    return answer.data, answer.sw


@pytest.fixture
def card():
    c = emv_card(UID)
    c.power_on()
    return c


def _pdol_data(card) -> bytes:
    data, sw = send(card, emv.select_application(VISA_CREDIT_AID))
    assert sw == 0x9000
    return emv.fill_dol(emv.parse_application_fci(data).pdol, TERMINAL.values())


@pytest.fixture
def initiated(card):
    data, sw = send(card, emv.get_processing_options(_pdol_data(card)))
    assert sw == 0x9000
    return card


def test_test_pan_is_luhn_valid():
    assert emv.luhn_valid(TEST_PAN)


def test_ppse_lists_the_application(card):
    data, sw = send(card, emv.select_ppse())
    assert sw == 0x9000
    (fci,) = tlv.parse(data)
    assert [o.tag for o in fci.value] == [0x84, 0xA5]
    assert tlv.find_value(fci, 0x84) == b"2PAY.SYS.DDF01"
    assert emv.parse_ppse_fci(data) == (emv.DirectoryEntry(VISA_CREDIT_AID, "TAPSTACK VISA", 1),)


def test_application_fci_carries_label_and_a_33_byte_pdol(card):
    data, sw = send(card, emv.select_application(VISA_CREDIT_AID))
    assert sw == 0x9000
    fci = emv.parse_application_fci(data)
    assert fci.df_name == VISA_CREDIT_AID and fci.label == "TAPSTACK VISA"
    assert [e.tag for e in fci.pdol] == [0x9F66, 0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37]
    assert tlv.dol_length(fci.pdol) == 33


def test_partial_aid_selects_the_application(card):
    data, sw = send(card, emv.select_application(VISA_CREDIT_AID[:5]))
    assert sw == 0x9000 and emv.parse_application_fci(data).df_name == VISA_CREDIT_AID


def test_gpo_answers_format_2(card):
    data, sw = send(card, emv.get_processing_options(_pdol_data(card)))
    assert sw == 0x9000 and data[0] == 0x77
    options = emv.parse_gpo_response(data)
    assert options.aip == b"\x00\x00"
    assert options.afl == (emv.AflEntry(1, 1, 1, 0), emv.AflEntry(2, 1, 1, 0))


@pytest.mark.parametrize("build, sw", [
    (lambda d: emv.get_processing_options(d[:-1]), 0x6700),  # one byte short
    (lambda d: emv.get_processing_options(d + b"\x00"), 0x6700),  # one byte long
    (lambda d: emv.get_processing_options(b""), 0x6700),
    (lambda d: CommandAPDU(0x80, 0xA8, 0, 0, bytes.fromhex("8350") + d, le=256), 0x6700),  # 83 runs past
    (lambda d: CommandAPDU(0x80, 0xA8, 0, 0, b"\x5a\x21" + d, le=256), 0x6A80),  # not an 83 template
    (lambda d: CommandAPDU(0x80, 0xA8, 0, 0, le=256), 0x6A80),  # no data at all
    (lambda d: CommandAPDU(0x80, 0xA8, 1, 0, emv.get_processing_options(d).data, le=256), 0x6A86),
    (lambda d: CommandAPDU(0x00, 0xA8, 0, 0, emv.get_processing_options(d).data, le=256), 0x6E00),
])
def test_bad_gpo(card, build, sw):
    assert send(card, build(_pdol_data(card)))[1] == sw
    # a refused GPO changes nothing: the right one still works
    assert send(card, emv.get_processing_options(_pdol_data(card)))[1] == 0x9000


def test_gpo_only_once_and_only_after_select(card):
    assert send(card, emv.get_processing_options(bytes(33)))[1] == 0x6E00  # nothing selected: CLA 80 unknown
    send(card, emv.select_ppse())
    assert send(card, emv.get_processing_options(bytes(33)))[1] == 0x6D00  # the PPSE has no GPO
    pdol = _pdol_data(card)
    assert send(card, emv.get_processing_options(pdol))[1] == 0x9000
    assert send(card, emv.get_processing_options(pdol))[1] == 0x6985


def test_records(initiated):
    data, sw = send(initiated, emv.read_record(1, 1))
    assert sw == 0x9000
    track = emv.parse_record(data)
    assert [o.tag for o in track] == [0x57, 0x5F20]
    assert emv.pan_from(track) == TEST_PAN and emv.expiry_from(track) == "3012"
    assert tlv.find_value(track, 0x57).hex().upper() == "4242424242424242D30122010000000000"
    assert tlv.find_value(track, 0x5F20) == b"TEST/CARDHOLDER"

    data, sw = send(initiated, emv.read_record(2, 1))
    assert sw == 0x9000
    card_data = emv.parse_record(data)
    assert [o.tag for o in card_data] == [0x5A, 0x5F24, 0x5F34]
    assert emv.pan_from(card_data) == TEST_PAN
    assert tlv.find_value(card_data, 0x5F24) == bytes.fromhex("301231")
    assert tlv.find_value(card_data, 0x5F34) == b"\x01"


@pytest.mark.parametrize("command, sw", [
    ("00B2020C00", 0x6A83),  # SFI 1 has one record
    ("00B2012C00", 0x6A82),  # no SFI 5
    ("00B2010800", 0x6A86),  # P2 low bits not 100
    ("00B2000C00", 0x6A86),  # record 0
    ("80B2010C00", 0x6E00),
    ("80CA9F3600", 0x6A88),  # GET DATA ATC: not kept
    ("80AE800000", 0x6D00),  # GENERATE AC: no cryptograms here
    ("00B2", 0x6700),  # not an APDU
    ("00B2010C0500", 0x6700),  # Lc says 5, one byte follows
])
def test_bad_and_unknown_commands(initiated, command, sw):
    assert send(initiated, command)[1] == sw


def test_records_need_gpo_first(card):
    assert send(card, emv.read_record(1, 1))[1] == 0x6D00  # the card runtime: no application chosen
    send(card, emv.select_application(VISA_CREDIT_AID))
    assert send(card, emv.read_record(1, 1))[1] == 0x6985
    send(card, emv.select_ppse())
    assert send(card, emv.read_record(1, 1))[1] == 0x6A83  # the PPSE has no records


def test_reselect_and_power_cycle_start_a_new_transaction(initiated):
    assert send(initiated, emv.read_record(1, 1))[1] == 0x9000
    send(initiated, emv.select_application(VISA_CREDIT_AID))
    assert send(initiated, emv.read_record(1, 1))[1] == 0x6985
    assert send(initiated, emv.get_processing_options(_pdol_data(initiated)))[1] == 0x9000
    initiated.power_on()
    assert send(initiated, emv.read_record(1, 1))[1] == 0x6D00


def test_select_next_occurrence_and_bad_p2(card):
    assert send(card, CommandAPDU(0x00, 0xA4, 0x04, 0x02, VISA_CREDIT_AID, le=256))[1] == 0x6A82
    assert send(card, CommandAPDU(0x00, 0xA4, 0x04, 0x0C, VISA_CREDIT_AID))[1] == 0x6A86
    assert send(card, emv.select_application(bytes.fromhex("A0000000041010")))[1] == 0x6A82


def test_other_numbers_and_odd_lengths():
    amex = "378282246310005"
    c = emv_card(UID, pan=amex, expiry="2702", label="AMEX", name="DOE/JANE")
    c.power_on()
    send(c, emv.select_ppse())
    data, _ = send(c, emv.select_application(VISA_CREDIT_AID))
    send(c, emv.get_processing_options(emv.fill_dol(emv.parse_application_fci(data).pdol, TERMINAL.values())))
    for sfi in (1, 2):
        objects = emv.parse_record(send(c, emv.read_record(sfi, 1))[0])
        assert emv.pan_from(objects) == amex and emv.expiry_from(objects) == "2702"


@pytest.mark.parametrize("kwargs", [
    {"pan": "4242424242424241"}, {"pan": "4242"}, {"pan": "42424242424242x2"},
    {"expiry": "3013"}, {"expiry": "12"}, {"label": ""}, {"label": "A" * 17}, {"name": "X"},
    {"aid": b"\xa0\x00"},
])
def test_factory_refuses_bad_profiles(kwargs):
    with pytest.raises(ValueError) as info:
        emv_applets(**kwargs)
    assert "4242" not in str(info.value)


def test_applets_can_share_a_card_with_others():
    applets = emv_applets()
    assert [a.aid for a in applets] == [b"2PAY.SYS.DDF01", VISA_CREDIT_AID]


commands = st.builds(
    CommandAPDU,
    st.sampled_from([0x00, 0x80, 0x84, 0xFF]) | st.integers(0, 0xFF),
    st.sampled_from([0xA4, 0xA8, 0xB2, 0xCA, 0xAE]) | st.integers(0, 0xFF),
    st.integers(0, 0xFF), st.integers(0, 0xFF),
    st.binary(max_size=40) | st.sampled_from([b"2PAY.SYS.DDF01", VISA_CREDIT_AID, b"\x83\x21" + bytes(33)]),
    st.none() | st.integers(1, 256),
).map(CommandAPDU.to_bytes)


@settings(max_examples=400, deadline=None)
@given(st.lists(commands | st.binary(max_size=40), max_size=8))
def test_any_bytes_get_a_status_word_and_no_fault(sequence):
    c = emv_card(UID)
    c.power_on()
    for raw in sequence:
        answer = c.process(raw)
        assert isinstance(answer, bytes) and len(answer) >= 2
        # 6F00 is what the card runtime answers when an applet raises
        assert answer[-2] in (0x90, 0x67, 0x69, 0x6A, 0x6D, 0x6E), answer.hex()
