"""The vpcd card transport: its wire protocol against a stand-in driver, then through the real pcscd."""
from __future__ import annotations

import socket

import pytest

from protocol.apdu import CommandAPDU, parse_response
from terminal.readers.base import ReaderUnavailable
from wallet.card import DEFAULT_ATR, VirtualCard, plain_uid_card
from wallet.pcscd import free_ports
from wallet.transports import wait_until
from wallet.transports.vpcd import VpcdCard, frame

ECHO_AID = bytes.fromhex("F0746170737461636B01")
SELECT_ECHO = CommandAPDU(0x00, 0xA4, 0x04, 0x00, ECHO_AID, le=256).to_bytes()


class StandInDriver:
    """The driver end of the vpcd protocol: listens, accepts the card, sends messages."""

    def __init__(self, port: int):
        self.port = port
        self.server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.server.settimeout(5)
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.conn, _ = self.server.accept()
        self.conn.settimeout(5)

    def send(self, payload: bytes) -> None:
        self.conn.sendall(frame(payload))

    def receive(self) -> bytes:
        header = self._exact(2)
        return self._exact(int.from_bytes(header, "big"))

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise EOFError("card closed the connection")
            buf += chunk
        return buf

    def apdu(self, command: bytes) -> bytes:
        self.send(command)
        return self.receive()

    def closed_by_card(self) -> bool:
        try:
            return self.conn.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def driver():
    d = StandInDriver(free_ports(1)[0])
    yield d
    d.close()


def test_atr_power_cycle_and_apdus(driver, echo_card):
    with VpcdCard(echo_card, driver.port):
        driver.accept()
        driver.send(b"\x04")
        assert driver.receive() == DEFAULT_ATR
        driver.send(b"\x01")  # power on: no answer; the next message is an APDU
        assert parse_response(driver.apdu(SELECT_ECHO)).ok
        assert echo_card.selected is not None
        driver.send(b"\x00")  # power off forgets the selected applet
        assert driver.apdu(CommandAPDU(0x00, 0x02, 0, 0, b"x").to_bytes())[-2:] == b"\x6D\x00"
        assert echo_card.selected is None


def test_extended_apdu_and_256_byte_response(driver, echo_card):
    with VpcdCard(echo_card, driver.port):
        driver.accept()
        driver.send(b"\x01")
        driver.apdu(SELECT_ECHO)
        data = bytes(range(256)) * 4
        echoed = parse_response(driver.apdu(CommandAPDU(0x00, 0x02, 0, 0, data, le=65536).to_bytes()))
        assert echoed.ok and echoed.data == data
        full = parse_response(driver.apdu(CommandAPDU(0x00, 0x01, 0, 0, le=256).to_bytes()))
        assert full.ok and full.data == bytes(range(256))


def test_tear_processes_the_command_then_drops_the_link(driver, echo_card):
    seen = []
    with VpcdCard(echo_card, driver.port, on_exchange=lambda c, r: seen.append((c, r))) as card:
        driver.accept()
        card.tear_after(2)
        assert parse_response(driver.apdu(SELECT_ECHO)).ok
        driver.send(CommandAPDU(0x00, 0x02, 0, 0, b"paid").to_bytes())
        assert driver.closed_by_card()
        assert seen[-1] == (CommandAPDU(0x00, 0x02, 0, 0, b"paid").to_bytes(), None)
        assert not card.presented
        card.present()  # presented again: a new connection
        driver.accept()
        driver.send(b"\x04")
        assert driver.receive() == DEFAULT_ATR


def test_an_empty_answer_is_a_mute_card_that_left_never_an_empty_frame(driver):
    """vpcd's driver waits forever for the body of an empty answer frame (pcscd then hangs in
    SCardTransmit): a card program answering nothing drops the link, as a mute card does."""
    class Mute(VirtualCard):
        def process(self, raw: bytes) -> bytes:
            return b""

    with VpcdCard(Mute(b"\x04\x11\x22\x33\x44\x55\x66"), driver.port) as card:
        driver.accept()
        driver.send(SELECT_ECHO)
        assert driver.closed_by_card()
        assert not card.presented


def test_remove_closes_and_present_reconnects(driver):
    with VpcdCard(plain_uid_card(b"\x01\x02\x03\x04"), driver.port) as card:
        driver.accept()
        assert wait_until(lambda: card.connected.is_set(), 2)
        card.remove()
        assert driver.closed_by_card()
        card.present()
        driver.accept()
        assert driver.apdu(bytes.fromhex("FFCA000000")) == bytes.fromhex("010203049000")


def test_reconnects_when_the_driver_comes_back(echo_card):
    port = free_ports(1)[0]
    first = StandInDriver(port)
    with VpcdCard(echo_card, port, retry_interval=0.02):
        first.accept()
        first.close()  # pcscd stopped
        second = StandInDriver(port)  # and started again
        try:
            second.accept()
            second.send(b"\x04")
            assert second.receive() == DEFAULT_ATR
        finally:
            second.close()


def test_slow_card_answers_after_its_delay(driver, echo_card):
    with VpcdCard(echo_card, driver.port) as card:
        driver.accept()
        card.slow(0.5)
        driver.send(SELECT_ECHO)
        driver.conn.settimeout(0.1)
        with pytest.raises(socket.timeout):
            driver.receive()  # nothing yet: the card is still thinking
        driver.conn.settimeout(5)
        assert parse_response(driver.receive()).ok


# --- through the real pcscd --------------------------------------------------------------

@pytest.fixture
def vpcd_field(pcscd_vpcd):
    from terminal.readers.pcsc import PcscReader

    spec = pcscd_vpcd.readers[1]
    exchanges = []
    card_side = VpcdCard(None, spec.port, on_exchange=lambda c, r: exchanges.append(c)).start()
    reader = PcscReader(spec.pcsc_name)
    assert reader.wait_for_removal(3)
    yield card_side, reader, exchanges
    card_side.stop()
    reader.wait_for_removal(3)
    reader.close()


@pytest.mark.pcscd
def test_pcscd_sees_the_card_atr_and_reads_uid_lazily(vpcd_field):
    card_side, reader, exchanges = vpcd_field
    card = VirtualCard(bytes.fromhex("04A1B2C3D4E5F6"), atr=bytes.fromhex("3B8F8001804F0CA0000003060300030000000068"))
    card_side.present(card)
    session = reader.wait_for_card(5)
    assert session.atr == card.atr
    assert exchanges == []  # no APDU spent on the UID until someone asks
    assert session.uid == card.uid
    assert exchanges == [bytes.fromhex("FFCA000000")]
    assert session.uid == card.uid and len(exchanges) == 1


@pytest.mark.pcscd
def test_pcscd_long_responses_get_response_and_wrong_le(vpcd_field, echo_card):
    card_side, reader, exchanges = vpcd_field
    card_side.present(echo_card)
    session = reader.wait_for_card(5)
    assert parse_response(session.transmit(SELECT_ECHO)).ok
    full = parse_response(session.transmit(CommandAPDU(0x00, 0x01, 0, 0, le=256).to_bytes()))
    assert full.ok and full.data == bytes(range(256))
    collected = parse_response(session.transmit(bytes.fromhex("0003000000")))
    assert collected.ok and collected.data == bytes(range(40)) * 10  # 61 00, then 61 90: 400 bytes
    resent = parse_response(session.transmit(bytes.fromhex("0004000000")))
    assert resent.ok and resent.data == bytes(range(16))
    assert exchanges[-1] == bytes.fromhex("0004000010")  # re-sent with the Le the card asked for


@pytest.mark.pcscd
def test_pcscd_extended_apdu(vpcd_field, echo_card):
    card_side, reader, _ = vpcd_field
    card_side.present(echo_card)
    session = reader.wait_for_card(5)
    session.transmit(SELECT_ECHO)
    data = bytes(range(256)) * 3
    echoed = parse_response(session.transmit(CommandAPDU(0x00, 0x02, 0, 0, data, le=65536).to_bytes()))
    assert echoed.ok and echoed.data == data


@pytest.mark.pcscd
def test_pcscd_power_cycle_on_reconnect_deselects(vpcd_field, echo_card):
    card_side, reader, _ = vpcd_field
    card_side.present(echo_card)
    session = reader.wait_for_card(5)
    session.transmit(SELECT_ECHO)
    assert echo_card.selected is not None
    card_side.remove()
    assert reader.wait_for_removal(5)
    assert echo_card.selected is None
    card_side.present()
    session = reader.wait_for_card(5)
    assert session.transmit(CommandAPDU(0x00, 0x02, 0, 0, b"x").to_bytes())[-2:] == b"\x6D\x00"


@pytest.mark.pcscd
def test_pcscd_restart_reader_unavailable_then_card_and_reader_come_back(pcscd_vpcd, echo_card):
    """pcscd going away and coming back (a service restart, or a reader unplugged and back):
    the reader reports it, the card reconnects to the driver, the reader finds the card again."""
    from terminal.readers.pcsc import PcscReader
    from wallet import pcscd

    spec = pcscd_vpcd.readers[0]
    with VpcdCard(echo_card, spec.port, retry_interval=0.02) as card_side:
        reader = PcscReader(spec.pcsc_name)
        assert reader.wait_for_card(5) is not None
        pcscd_vpcd.stop()
        with pytest.raises(ReaderUnavailable):
            reader.wait_for_card(0.5)
        again = pcscd.start(2, port=spec.base_port, reuse=False)
        # the session fixture stops whatever pcscd it holds: hand it the new one
        pcscd_vpcd.process, pcscd_vpcd.pid, pcscd_vpcd.config_dir = again.process, again.pid, again.config_dir
        session = reader.wait_for_card(5)
        assert session is not None and card_side.connected.is_set()
        assert parse_response(session.transmit(SELECT_ECHO)).ok
        reader.close()
