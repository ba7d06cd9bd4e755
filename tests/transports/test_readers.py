"""Reader backends: the same behaviour on every transport, and each backend's error mapping."""
from __future__ import annotations

import pytest
from smartcard import scard

from protocol.apdu import CommandAPDU, parse_response
from terminal.readers import complete_response, open_reader
from terminal.readers.base import CardRemoved, ReaderError, ReaderUnavailable
from terminal.readers.mock import MockReader
from terminal.readers.pcsc import ACR122_SIGNALS, PcscReader, _check
from wallet.card import plain_uid_card

ECHO_AID = bytes.fromhex("F0746170737461636B01")
SELECT_ECHO = CommandAPDU(0x00, 0xA4, 0x04, 0x00, ECHO_AID, le=256).to_bytes()
ECHO = CommandAPDU(0x00, 0x02, 0, 0, b"fare").to_bytes()


# --- one behaviour on every transport ---------------------------------------------------

def test_select_uid_and_get_response(field, echo_card):
    session = field.tap(echo_card)
    assert session.uid == echo_card.uid
    assert parse_response(session.transmit(SELECT_ECHO)).ok
    collected = parse_response(session.transmit(bytes.fromhex("0003000000")))
    assert collected.ok and collected.data == bytes(range(40)) * 10
    assert session.transmit(bytes.fromhex("FFCA000000")) == echo_card.uid + b"\x90\x00"


def test_a_cancelled_tear_never_happens(field, echo_card):
    session = field.tap(echo_card)
    field.tear_after(1)
    field.card_side.cancel_tear()
    assert parse_response(session.transmit(SELECT_ECHO)).ok
    assert parse_response(session.transmit(ECHO)).data == b"fare"


def test_tear_is_card_removed_and_the_card_comes_back(field, echo_card):
    session = field.tap(echo_card)
    assert parse_response(session.transmit(SELECT_ECHO)).ok
    field.tear_after(1)
    with pytest.raises(CardRemoved):
        session.transmit(ECHO)
    assert field.reader.wait_for_removal(5)
    session = field.tap(echo_card)  # presented again: a fresh, powered-up card
    assert parse_response(session.transmit(SELECT_ECHO)).ok
    assert parse_response(session.transmit(ECHO)).data == b"fare"


def test_removal_ends_the_session(field, echo_card):
    session = field.tap(echo_card)
    session.transmit(SELECT_ECHO)
    field.take_away()
    with pytest.raises(CardRemoved):
        session.transmit(ECHO)
    assert field.reader.wait_for_card(0.3) is None


def test_plain_uid_card_answers_only_the_uid(field):
    card = plain_uid_card(bytes.fromhex("04C0FFEE123456"))
    session = field.tap(card)
    assert session.transmit(bytes.fromhex("FFCA000000")) == card.uid + b"\x90\x00"
    assert session.transmit(SELECT_ECHO)[-2:] == b"\x6A\x82"


# --- the mock ---------------------------------------------------------------------------

def test_mock_keeps_a_transcript_and_signals(echo_card):
    reader = MockReader(echo_card)
    session = reader.wait_for_card(0)
    reader.tear_after(2)
    session.transmit(SELECT_ECHO)
    with pytest.raises(CardRemoved):
        session.transmit(ECHO)
    assert [(e.command, e.response is None) for e in reader.transcript] == [(SELECT_ECHO, False), (ECHO, True)]
    assert not reader.presented
    reader.signal("deny")
    assert reader.signals == ["deny"]


def test_mock_session_of_an_earlier_presence_is_dead(echo_card):
    reader = MockReader(echo_card)
    old = reader.wait_for_card(0)
    reader.remove()
    reader.present()
    with pytest.raises(CardRemoved):
        old.transmit(SELECT_ECHO)
    assert parse_response(reader.wait_for_card(0).transmit(SELECT_ECHO)).ok


# --- open_reader ------------------------------------------------------------------------

def test_open_reader_specs():
    assert isinstance(open_reader("mock"), MockReader)
    pcsc = open_reader("pcsc:ACR122")
    assert isinstance(pcsc, PcscReader) and pcsc.wanted == "ACR122"
    assert open_reader("PCSC").wanted is None
    for bad in ("udp:host:notaport", "udp:1.2.3.4:70000", "serial:/dev/ttyS0", "mock:x", ""):
        with pytest.raises(ReaderError, match="udp|unknown reader"):
            open_reader(bad)


@pytest.mark.nfcpy_udp
def test_open_reader_udp(nfc_udp_port):
    reader = open_reader(f"udp::{nfc_udp_port}")
    try:
        assert reader.wait_for_card(0.2) is None  # no card side listening: nothing in the field
    finally:
        reader.close()


# --- PC/SC error mapping ------------------------------------------------------------------

@pytest.mark.parametrize("rc, error", [
    (scard.SCARD_W_REMOVED_CARD, CardRemoved),
    (scard.SCARD_E_NO_SMARTCARD, CardRemoved),
    (scard.SCARD_E_NOT_TRANSACTED, CardRemoved),
    (scard.SCARD_W_RESET_CARD, CardRemoved),
    (scard.SCARD_E_READER_UNAVAILABLE, ReaderUnavailable),
    (scard.SCARD_E_NO_SERVICE, ReaderUnavailable),
    (scard.SCARD_E_UNKNOWN_READER, ReaderUnavailable),
    (scard.SCARD_E_INVALID_PARAMETER, ReaderError),
])
def test_pcsc_errors_map_to_reader_exceptions(rc, error):
    with pytest.raises(error):
        _check(rc, "transmit")
    if error is ReaderError:
        with pytest.raises(ReaderError) as info:
            _check(rc, "transmit")
        assert not isinstance(info.value, ReaderUnavailable)


@pytest.mark.pcscd
def test_pcsc_reader_not_there_is_unavailable(pcscd_vpcd):
    reader = PcscReader("no such reader")
    with pytest.raises(ReaderUnavailable, match="no such reader"):
        reader.wait_for_card(0.3)
    reader.close()


def test_acr122_signals_are_led_buzzer_pseudo_apdus_and_others_stay_silent():
    sent = []

    class Session:
        _hcard = object()

        def _raw(self, apdu):
            sent.append(apdu)
            return b"\x90\x00"

    acr = PcscReader("ACS ACR122U PICC Interface 00 00")
    acr.session = Session()
    for outcome in ("accept", "deny", "error", "party"):
        acr.signal(outcome)
    assert sent == [ACR122_SIGNALS["accept"], ACR122_SIGNALS["deny"], ACR122_SIGNALS["error"]]
    assert all(c[:4] == b"\xFF\x00\x40" + c[3:4] and c[4] == 4 and len(c) == 9 for c in sent)
    other = PcscReader("Identiv uTrust 3700 F 00 00")
    other.session = Session()
    other.signal("accept")
    assert len(sent) == 3


def test_complete_response_follows_61xx_and_6cxx():
    answers = {
        bytes.fromhex("00B0000000"): bytes.fromhex("6C05"),
        bytes.fromhex("00B0000005"): bytes.fromhex("6102") + b"",
    }
    sent = []

    def send(apdu):
        sent.append(apdu)
        if apdu[1] == 0xC0:
            return b"xy\x90\x00"
        return answers[apdu]

    assert complete_response(send, bytes.fromhex("00B0000000")) == b"xy\x90\x00"
    assert sent == [bytes.fromhex("00B0000000"), bytes.fromhex("00B0000005"), bytes.fromhex("00C0000002")]

    def forever(apdu):
        return b"\x61\x01"

    assert complete_response(forever, bytes.fromhex("0003000000")) == b"\x61\x01"  # gives up, no hang
