"""Shared fixtures: the real pcscd with vpcd readers, nfcpy udp ports, and one Field per transport.

A Field is a reader plus the card side that feeds it, scripted the same way on every
transport (mock, pcscd+vpcd, nfcpy udp):

    def test_something(field):          # or reader_and_card: the same fixture
        session = field.tap(card)        # present the card, wait for the reader to connect
        session.transmit(apdu)
        field.tear_after(1)              # the next command is processed, its answer lost
        field.remove()

pcscd is started once per session with its own config dir and free ports, and stopped by
pid. CI installs pcscd and vsmartcard-vpcd: these tests fail, never skip, without them.
"""
from __future__ import annotations

import pytest

from protocol.apdu import SW_OK, SW_WRONG_LENGTH, respond

ECHO_AID = bytes.fromhex("F0746170737461636B01")  # F0 (proprietary RID) "tapstack" 01


class EchoApplet:
    """A test applet. INS 01: answer Le bytes (0..255, Le 00 = 256, extended up to 65535) of a
    counting pattern; INS 02: echo the data; INS 03: answer 61 LL then the bytes on GET RESPONSE;
    INS 04: 6C LL unless Le is LL."""

    aid = ECHO_AID

    def __init__(self):
        self.selected = 0
        self._rest = b""

    def select(self, command):
        self.selected += 1
        return respond(SW_OK, b"\x6F\x00")

    def process(self, command):
        ins = command.ins
        if ins == 0x01:
            n = command.le or 0
            return respond(SW_OK, bytes(i & 0xFF for i in range(n)))
        if ins == 0x02:
            return respond(SW_OK, command.data)
        if ins == 0x03:
            self._rest = bytes(range(40)) * 10  # 400 bytes: 256 + 144
            return respond(0x6100)
        if ins == 0xC0:  # GET RESPONSE
            if not self._rest:
                return respond(0x6985)
            n = command.le or 256
            chunk, self._rest = self._rest[:n], self._rest[n:]
            return respond(0x6100 | min(len(self._rest), 256) & 0xFF if self._rest else SW_OK, chunk)
        if ins == 0x04:
            if command.le != 0x10:
                return respond(0x6C10)
            return respond(SW_OK, bytes(range(16)))
        return respond(SW_WRONG_LENGTH)

    def deselect(self):
        self._rest = b""


@pytest.fixture
def echo_card():
    from wallet.card import VirtualCard

    return VirtualCard(bytes.fromhex("04112233445566"), [EchoApplet()], name="echo")


@pytest.fixture(scope="session")
def pcscd_vpcd():
    """The real pcscd with two vpcd readers on free ports (wallet.pcscd.Pcscd)."""
    from wallet import pcscd

    try:
        daemon = pcscd.start(n_readers=2, reuse=False)
    except pcscd.PcscdError as error:
        pytest.fail(f"pcscd with vsmartcard-vpcd could not start: {error}", pytrace=False)
    yield daemon
    daemon.stop()


@pytest.fixture
def nfc_udp_port():
    from wallet.pcscd import free_ports

    return free_ports(1)[0]


class Field:
    """One reader and the card side feeding it, scripted alike on every transport."""

    def __init__(self, kind: str, reader, card_side, transport=None):
        self.kind = kind
        self.reader = reader
        self.card_side = card_side  # MockReader, VpcdCard or NfcUdpCard
        self.transport = transport  # the card-side thread, None for the mock

    def present(self, card=None):
        self.card_side.present(card)

    def remove(self):
        self.card_side.remove()

    def tear_after(self, n: int):
        self.card_side.tear_after(n)

    def slow(self, delay: float):
        self.card_side.slow(delay)

    def tap(self, card=None, timeout: float = 5.0):
        """Present the card and return the reader's session; fail the test if none comes."""
        self.present(card)
        session = self.reader.wait_for_card(timeout)
        assert session is not None, f"{self.kind}: no card seen within {timeout} s"
        return session

    def take_away(self, timeout: float = 5.0):
        """Remove the card and wait until the reader sees its field empty."""
        self.remove()
        assert self.reader.wait_for_removal(timeout), f"{self.kind}: the card still seen after {timeout} s"

    def close(self):
        if self.transport is not None:
            self.transport.stop()
        if self.kind == "pcscd+vpcd":  # leave the slot empty for the next test
            self.reader.wait_for_removal(3)
        self.reader.close()


TRANSPORTS = [
    "mock",
    pytest.param("pcscd+vpcd", marks=pytest.mark.pcscd),
    pytest.param("nfcpy-udp", marks=pytest.mark.nfcpy_udp),
]


def open_field(kind: str, request) -> Field:
    if kind == "mock":
        from terminal.readers.mock import MockReader

        reader = MockReader()
        return Field(kind, reader, reader)
    if kind == "pcscd+vpcd":
        from terminal.readers.pcsc import PcscReader
        from wallet.transports.vpcd import VpcdCard

        daemon = request.getfixturevalue("pcscd_vpcd")
        vpcd_reader = daemon.readers[0]
        card_side = VpcdCard(None, vpcd_reader.port).start()
        reader = PcscReader(vpcd_reader.pcsc_name)
        assert reader.wait_for_removal(3), "the vpcd slot still holds a card from an earlier test"
        return Field(kind, reader, card_side, card_side)
    if kind == "nfcpy-udp":
        from terminal.readers.nfc import NfcReader
        from wallet.transports.nfc_udp import NfcUdpCard

        port = request.getfixturevalue("nfc_udp_port")
        card_side = NfcUdpCard(None, port).start()
        return Field(kind, NfcReader(f"udp:127.0.0.1:{port}"), card_side, card_side)
    raise ValueError(kind)


@pytest.fixture(params=TRANSPORTS)
def reader_and_card(request):
    """A Field for each transport: mock, pcscd+vpcd, nfcpy-udp (the reader is field.reader)."""
    f = open_field(request.param, request)
    yield f
    f.close()


@pytest.fixture
def field(reader_and_card):
    """The same Field under a shorter name."""
    return reader_and_card

