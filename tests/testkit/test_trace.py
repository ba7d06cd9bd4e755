"""terminal/trace.py: recording a session, masking card numbers and purse signatures, the file format."""
from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.purse import RECEIPT_BODY_SIZE, debit_command, parse_fci, select_command
from protocol.emv import luhn_valid
from terminal.readers.base import CardRemoved
from terminal.readers.mock import MockReader
from terminal.tap import tap
from terminal.trace import (TraceError, TraceRecorder, mask_pan, parse_trace, read_trace, redact_card_data,
                            redact_exchange, write_trace)
from tapstack.testing.kit import CardKit
from wallet.emv_card import card_records

PAN = "5555555555554444"  # a published test number, not the emulator's default
kit = CardKit()


@pytest.mark.parametrize("pan", ["4242424242424242", "5555555555554444", "378282246310005", "6011111111111117",
                                 "4000056655665556123"])
def test_masked_pan_keeps_bin_and_last_four_and_passes_luhn(pan):
    masked = mask_pan(pan)
    assert len(masked) == len(pan) and masked != pan
    assert masked[:6] == pan[:6] and masked[-4:] == pan[-4:] and luhn_valid(masked)
    assert set(masked[6:-5]) == {"0"}  # all hidden digits zero but the one that fixes the Luhn sum


def test_emv_records_lose_the_pan_name_and_track2_discretionary_data():
    records = card_records(PAN, "3012", "DOE/JANE")
    track, card = records[(1, 1)], records[(2, 1)]
    masked, tags = redact_card_data(track)
    assert tags == ["57", "5F20"] and len(masked) == len(track)
    assert bytes.fromhex(PAN) not in masked and b"DOE" not in masked and b"JANE" not in masked
    assert mask_pan(PAN) + "D3012201" in masked.hex().upper()  # expiry and service code stay
    assert masked.hex().upper().split("D3012201")[1].startswith("0000000000")  # discretionary data zeroed
    masked_card, tags = redact_card_data(card)
    assert tags == ["5A"] and bytes.fromhex(PAN) not in masked_card
    assert bytes.fromhex(mask_pan(PAN)) in masked_card


def test_data_that_is_not_tlv_passes_unchanged():
    assert redact_card_data(b"\x01\x02\x03") == (b"\x01\x02\x03", [])


def test_purse_certificate_and_receipt_signatures_are_zeroed_only_when_asked():
    demo = kit.purse(balance=500)
    reader = MockReader(demo.card)
    session = reader.wait_for_card(1)
    fci = session.transmit(select_command())
    debit = debit_command(200, "CNY", b"BUS00012", b"\x01" * 8, 1_800_000_000)
    receipt = session.transmit(debit)
    assert redact_exchange(select_command(), fci) == (select_command(), fci, [])
    _, zeroed_fci, marks = redact_exchange(select_command(), fci, purse=True)
    cert = parse_fci(zeroed_fci[:-2]).certificate
    assert marks == ["certificate"] and cert[13:45] == bytes(32) and cert[49:] == bytes(64)
    assert cert[5:13] == demo.card_id  # who the card is stays readable
    _, zeroed, marks = redact_exchange(debit, receipt, purse=True)
    assert marks == ["receipt_signature"] and zeroed[:RECEIPT_BODY_SIZE] == receipt[:RECEIPT_BODY_SIZE]
    assert zeroed[RECEIPT_BODY_SIZE:-2] == bytes(64) and zeroed[-2:] == b"\x90\x00"


def test_a_recorded_emv_tap_never_holds_the_card_number():
    reader = MockReader(kit.emv(pan=PAN))
    out = io.StringIO()
    recorder = TraceRecorder(reader.wait_for_card(1), out, reader="mock")
    outcome, _ = tap(recorder, kit.context())
    assert outcome.token == kit.pan_token(PAN)  # the terminal saw the real card
    text = out.getvalue()
    assert PAN not in text and PAN not in text.replace("F", "") and mask_pan(PAN) in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["trace"] == "tapstack-apdu" and lines[0]["redaction"] == ["pan"]
    assert [x["seq"] for x in lines[1:]] == list(range(1, outcome.apdus + 1))
    assert any(x.get("redacted") == ["57", "5F20"] for x in lines[1:])


def test_a_tear_is_recorded_without_answer_and_the_error_passes_through():
    demo = kit.purse(balance=500)
    reader = MockReader(demo.card)
    recorder = TraceRecorder(reader.wait_for_card(1), None)
    reader.tear_after(2)
    recorder.transmit(select_command())
    with pytest.raises(CardRemoved):
        recorder.transmit(debit_command(200, "CNY", b"BUS00012", b"\x01" * 8, 1_800_000_000))
    last = recorder.exchanges[-1]
    assert last.response is None and last.error == "card_removed" and demo.balance == 300


def test_the_uid_is_asked_for_only_when_wanted():
    class Session:
        asked = 0
        atr = b"\x3B\x00"

        @property
        def uid(self):
            Session.asked += 1
            return b"\x04\x01\x02\x03\x04\x05\x06"

        def transmit(self, apdu):
            return b"\x90\x00"

    out = io.StringIO()
    recorder = TraceRecorder(Session(), out)
    recorder.transmit(b"\x00\xA4\x04\x00")
    assert Session.asked == 0
    assert recorder.uid == bytes.fromhex("04010203040506") and recorder.uid and Session.asked == 1
    session, = parse_trace(out.getvalue().splitlines())
    assert session.uid == bytes.fromhex("04010203040506") and len(session.exchanges) == 1


def test_write_and_read_round_trip(tmp_path):
    reader = MockReader(kit.uid("04C0FFEE123456"))
    recorder = TraceRecorder(reader.wait_for_card(1), None, uid=bytes.fromhex("04C0FFEE123456"))
    recorder.transmit(bytes.fromhex("FFCA000000"))
    path = tmp_path / "t.jsonl"
    with open(path, "w") as f:
        write_trace([recorder.trace, recorder.trace], f)
    sessions = read_trace(path)
    assert len(sessions) == 2 and sessions[1].uid == bytes.fromhex("04C0FFEE123456")
    assert sessions[0].exchanges[0].command == bytes.fromhex("FFCA000000")
    assert sessions[0].exchanges[0].response == bytes.fromhex("04C0FFEE1234569000")


@pytest.mark.parametrize("lines, message", [
    (['{"session": 1, "seq": 1, "command": "00A40400", "response": "9000"}'], "t.jsonl:1: an exchange before"),
    (['{"trace": "tapstack-apdu", "version": 1}', "not json"], "t.jsonl:2: not JSON"),
    (['{"trace": "tapstack-apdu", "version": 9}'], "t.jsonl:1: not a tapstack-apdu trace of version 1"),
    (['{"trace": "tapstack-apdu", "version": 1}', '{"command": "00ZZ", "response": "9000"}'], "t.jsonl:2: 'command' is not hex"),
    (['{"trace": "tapstack-apdu", "version": 1}', '{"command": "00A40400", "response": "90"}'], "t.jsonl:2: a response APDU"),
    (['{"trace": "tapstack-apdu", "version": 1}', '{"command": "00A4"}'], "t.jsonl:2: an exchange needs"),
    ([], "t.jsonl: no session"),
])
def test_bad_trace_lines_are_named_by_file_and_line(lines, message):
    with pytest.raises(TraceError) as e:
        parse_trace(lines, "t.jsonl")
    assert str(e.value).startswith(message)


@given(st.text("0123456789", min_size=11, max_size=18), st.text("ABCDEFGHIJ /", min_size=5, max_size=26))
@settings(max_examples=200, deadline=None)
def test_no_card_number_survives_redaction_whatever_its_length(partial, holder):
    from protocol.emv import luhn_check_digit

    pan = partial + luhn_check_digit(partial)
    for record in card_records(pan, "3012", holder).values():
        masked, tags = redact_card_data(record)
        assert len(masked) == len(record) and tags
        assert bytes.fromhex(pan + "F" * (len(pan) % 2)) not in masked or pan == mask_pan(pan)
        assert pan not in masked.hex().upper() or pan == mask_pan(pan)
        assert holder.encode() not in masked or set(holder) <= set("/ ")


def test_masking_touches_only_the_sensitive_objects_themselves():
    from protocol.tlv import Tlv

    track2 = bytes.fromhex("5555555555554444D30122")
    data = Tlv(0x70, (Tlv(0x50, b"AB CARD"), Tlv(0x5F20, b"AB"), Tlv(0x9F6B, track2))).to_bytes()
    masked, tags = redact_card_data(b"\x00" + data + b"\xFF")  # padding around the objects
    assert tags == ["5F20", "9F6B"]
    assert b"AB CARD" in masked and b"\x5F\x20\x02XX" in masked
    assert mask_pan("5555555555554444") + "D30122" in masked.hex().upper()
