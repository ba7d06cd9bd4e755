"""ISO 14443-4 block handling of the nfcpy udp card: the pure state machine, then over the air."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.apdu import CommandAPDU, parse_response
from wallet.transports.nfc_udp import ATS, IsoDepTarget, NfcUdpCard, leave_field, sdd_res_for

ECHO_AID = bytes.fromhex("F0746170737461636B01")
SELECT_ECHO = CommandAPDU(0x00, 0xA4, 0x04, 0x00, ECHO_AID, le=256).to_bytes()


# --- the state machine ----------------------------------------------------------------

def test_i_blocks_toggle_the_block_number():
    link = IsoDepTarget.from_rats(bytes.fromhex("E080"))
    assert link.receive(b"\x02" + b"\x00\xA4\x04\x00") == ("apdu", b"\x00\xA4\x04\x00")
    assert link.answer(b"\x90\x00") == b"\x02\x90\x00"  # block number 0, as the reader's
    assert link.receive(b"\x03" + b"\xFF\xCA\x00\x00\x00") == ("apdu", b"\xFF\xCA\x00\x00\x00")
    assert link.answer(b"\x6A\x82") == b"\x03\x6A\x82"


def test_command_chaining_is_acknowledged_and_joined():
    link = IsoDepTarget()
    assert link.receive(b"\x12" + b"A" * 10) == ("send", b"\xA2")  # R(ACK) with block number 0
    assert link.receive(b"\x13" + b"B" * 10) == ("send", b"\xA3")
    assert link.receive(b"\x02" + b"C") == ("apdu", b"A" * 10 + b"B" * 10 + b"C")


def test_response_chaining_follows_the_readers_acks():
    link = IsoDepTarget(fsd=16)  # 13 bytes of INF per block
    link.receive(b"\x02\x00\x01\x00\x00")
    first = link.answer(bytes(range(30)))
    assert first == b"\x12" + bytes(range(13))
    assert link.receive(b"\xA3") == ("send", b"\x13" + bytes(range(13, 26)))
    assert link.receive(b"\xA2") == ("send", b"\x02" + bytes(range(26, 30)))


def test_lost_blocks_are_sent_again_and_unknown_naks_acked():
    link = IsoDepTarget()
    assert link.receive(b"\xB2") == ("send", b"\xA3")  # rule 12: NAK for a block we never saw
    link.receive(b"\x02\x00\xB0\x00\x00")
    sent = link.answer(b"\x90\x00")
    assert link.receive(b"\xB2") == ("send", sent)  # rule 11: the reader missed our answer
    assert link.receive(b"\xA2") == ("send", sent)


def test_deselect_and_wtx_and_silence():
    link = IsoDepTarget()
    assert link.receive(b"\xC2") == ("deselect", b"\xC2")
    assert link.wtx_request(5) == b"\xF2\x05"
    assert link.receive(b"\xF2\x05") == ("wtx", b"")
    assert link.receive(b"\xD0\x11\x00") == ("ignore", b"")  # PPS: not supported, stay silent
    assert link.receive(b"") == ("ignore", b"")


def test_cid_is_stripped_and_echoed():
    link = IsoDepTarget()
    assert link.receive(b"\x0A\x01" + b"\x00\xA4") == ("apdu", b"\x00\xA4")
    assert link.answer(b"\x90\x00") == b"\x0A\x01\x90\x00"


def test_ats_announces_fsc_256_and_fwi():
    assert ATS[0] == len(ATS) and ATS[1] & 0x0F == 8 and ATS[1] & 0x70 == 0x70


def test_uid_for_anticollision():
    assert sdd_res_for(bytes.fromhex("04A1B2C3D4E5F6")) == bytes.fromhex("04A1B2C3D4E5F6")
    odd = sdd_res_for(b"\x01\x02\x03\x04\x05")
    assert len(odd) == 4 and odd[0] == 0x08


# --- over nfcpy's udp driver ----------------------------------------------------------

@pytest.fixture
def udp(nfc_udp_port, echo_card):
    from terminal.readers.nfc import NfcReader

    card_side = NfcUdpCard(echo_card, nfc_udp_port).start()
    reader = NfcReader(f"udp:127.0.0.1:{nfc_udp_port}")
    yield card_side, reader
    card_side.stop()
    reader.close()


@pytest.mark.nfcpy_udp
def test_chaining_both_ways_over_udp(udp):
    card_side, reader = udp
    session = reader.wait_for_card(5)
    assert session.uid == bytes.fromhex("04112233445566")
    assert parse_response(session.transmit(SELECT_ECHO)).ok
    data = bytes(range(255))  # 260-byte APDU: two I-blocks from the reader
    echoed = parse_response(session.transmit(CommandAPDU(0x00, 0x02, 0, 0, data, le=256).to_bytes()))
    assert echoed.ok and echoed.data == data  # 257 bytes back: two I-blocks from the card
    full = parse_response(session.transmit(CommandAPDU(0x00, 0x01, 0, 0, le=256).to_bytes()))
    assert full.ok and full.data == bytes(range(256))
    assert parse_response(session.transmit(bytes.fromhex("0003000000"))).data == bytes(range(40)) * 10


@pytest.mark.nfcpy_udp
def test_slow_card_asks_for_waiting_time_extensions(udp):
    card_side, reader = udp
    session = reader.wait_for_card(5)
    card_side.slow(0.4)  # about 5 frame waiting times: nfcpy alone would give up
    assert parse_response(session.transmit(SELECT_ECHO)).ok
    assert card_side.wtx_sent >= 1


@pytest.mark.nfcpy_udp
def test_deselect_then_the_card_can_be_activated_again(udp):
    card_side, reader = udp
    session = reader.wait_for_card(5)
    answer = reader.clf.exchange(bytearray(b"\xC2"), 0.5)
    assert bytes(answer) == b"\xC2"
    assert wait_for(lambda: card_side.deselects == 1)
    session.close()
    session = reader.wait_for_card(5)
    assert parse_response(session.transmit(SELECT_ECHO)).ok


@pytest.mark.nfcpy_udp
def test_reader_nak_gets_the_lost_answer_again(udp):
    card_side, reader = udp
    reader.wait_for_card(5)
    first = bytes(reader.clf.exchange(bytearray(b"\x02") + SELECT_ECHO, 0.5))
    again = bytes(reader.clf.exchange(bytearray(b"\xB2"), 0.5))  # "I did not get block 0"
    assert first[0] == 0x02 and first[-2:] == b"\x90\x00" and again == first


def wait_for(predicate, timeout: float = 2.0) -> bool:
    from wallet.transports import wait_until

    return wait_until(predicate, timeout)


# --- any APDU, any frame size ---------------------------------------------------------

@given(command=st.binary(min_size=4, max_size=700), response=st.binary(min_size=2, max_size=700),
       fsd_index=st.integers(0, 8), fsc=st.sampled_from([16, 32, 64, 128, 256]), first_pni=st.integers(0, 1),
       exchanges_before=st.integers(0, 3))
def test_any_apdu_survives_chaining_both_ways(command, response, fsd_index, fsc, first_pni, exchanges_before):
    """A reader that follows ISO 14443-4 (like nfcpy's IsoDepInitiator) gets every byte across."""
    link = IsoDepTarget.from_rats(bytes((0xE0, fsd_index << 4)))
    pni = 0
    for _ in range(exchanges_before):  # earlier exchanges leave the block numbers anywhere
        assert link.receive(bytes((0x02 | pni,)) + b"\x00\xB0\x00\x00")[0] == "apdu"
        assert link.answer(b"\x90\x00")[0] & 1 == pni
        pni ^= 1
    miu = fsc - 3
    chunks = [command[i:i + miu] for i in range(0, len(command), miu)]
    for i, chunk in enumerate(chunks):
        more = i < len(chunks) - 1
        action, frame = link.receive(bytes((0x02 | (0x10 if more else 0) | pni,)) + chunk)
        if more:
            assert (action, frame) == ("send", bytes((0xA2 | pni,)))
        else:
            assert (action, frame) == ("apdu", command)
        pni ^= 1
    frame = link.answer(response)
    received = b""
    while True:
        assert len(frame) <= link.fsd - 2 and frame[0] & 0xEE == 0x02 and frame[0] & 1 == pni ^ 1
        received += frame[1:]
        if not frame[0] & 0x10:
            break
        action, frame = link.receive(bytes((0xA2 | pni,)))
        assert action == "send"
        pni ^= 1
    assert received == response


def udp_sockets(port: int) -> set[str]:
    """Local addresses of this machine's UDP sockets on port, from /proc/net/udp (hex a.b.c.d)."""
    found = set()
    for line in open("/proc/net/udp").read().splitlines()[1:]:
        address, _, hex_port = line.split()[1].partition(":")
        if int(hex_port, 16) == port:
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found


@pytest.mark.nfcpy_udp
def test_card_and_reader_listen_and_send_on_loopback_only(udp, nfc_udp_port):
    """nfcpy's udp driver binds its listening card to 0.0.0.0 and leaves the reader's socket
    open to any sender; tapstack's card listens on its host and its reader on 127.0.0.1."""
    card_side, reader = udp
    session = reader.wait_for_card(5)
    assert parse_response(session.transmit(SELECT_ECHO)).ok
    assert udp_sockets(nfc_udp_port) == {"127.0.0.1"}  # the card
    assert reader.clf.device.socket.getsockname()[0] == "127.0.0.1"  # the reader


@pytest.mark.nfcpy_udp
def test_the_reader_takes_frames_only_from_its_card(udp):
    """The loopback reader's socket is connected to the card: a datagram from any other
    local socket (here a forged RFOFF, which would end the session) never reaches it."""
    import socket

    card_side, reader = udp
    session = reader.wait_for_card(5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.sendto(b"RFOFF", reader.clf.device.socket.getsockname())
    assert parse_response(session.transmit(SELECT_ECHO)).ok


def test_a_card_leaving_says_rfoff_from_its_own_address(nfc_udp_port):
    """What a card that leaves the field sends its reader: the RFOFF nfcpy takes as a broken
    link, from the card's address (the only one a loopback reader hears)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as reader:
        reader.bind(("127.0.0.1", 0))
        reader.settimeout(2)
        leave_field("127.0.0.1", nfc_udp_port, reader.getsockname())
        assert reader.recvfrom(64) == (b"RFOFF", ("127.0.0.1", nfc_udp_port))
