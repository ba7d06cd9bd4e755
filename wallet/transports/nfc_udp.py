"""The virtual card as an ISO-DEP (ISO/IEC 14443-4) Type 4A target over nfcpy's udp driver.

nfcpy's udp driver answers the Type A anticollision itself (SENS_RES 4400, the UID as
SDD_RES, SEL_RES 20 = ISO-DEP) and hands over the first frame after selection, the RATS.
From there the card speaks ISO 14443-4 itself: an ATS, then blocks (IsoDepTarget):

    I-block  02|bn, 12|bn with chaining    the APDUs, chained both ways
    R-block  A2|bn ACK, B2|bn NAK          chaining acknowledgements and error recovery
    S-block  C2 DESELECT, F2 WTX           leave the protocol; ask for more time (a slow card)

The udp frames carry no CRC, so the 2 EDC bytes of a frame only count against FSC/FSD.
A card that leaves the field (removed, or torn away before an answer) closes its socket and
sends the reader RFOFF (leave_field): the reader learns at once what over the air it learns
from a frame waiting time running out.
"""
from __future__ import annotations

import logging
import math
import os

from wallet.card import VirtualCard
from wallet.transports import CardTransport, ExchangeListener

log = logging.getLogger(__name__)

FS_TABLE = (16, 24, 32, 40, 48, 64, 96, 128, 256)  # FSCI / FSDI -> frame size
FWI = 8  # frame waiting time 4096/fc * 2^8 = 77 ms: room for a Python card, quick tear detection
# ATS: TL 05, T0 78 (TA TB TC follow, FSCI 8 = 256), TA 80 (106 kbit/s both ways),
# TB FWI<<4 | SFGI 0, TC 00 (neither NAD nor CID).
ATS = bytes((0x05, 0x78, 0x80, FWI << 4, 0x00))
FWT = 4096 / 13.56e6 * 2 ** FWI
LISTEN_WINDOW = 0.2  # seconds one listen lasts; an activation begun in it must end in it (nfcpy listen_tta)

PCB_I, PCB_CHAIN, PCB_CID, PCB_NAD = 0x02, 0x10, 0x08, 0x04
PCB_R_ACK, PCB_R_NAK = 0xA2, 0xB2
PCB_S_DESELECT, PCB_S_WTX = 0xC2, 0xF2


class IsoDepTarget:
    """The card side of ISO 14443-4 block transmission, as a pure state machine.

    receive(frame) returns what to do next:
      ("send", frame)     send this frame and wait for the next one
      ("apdu", command)   a whole command APDU arrived: run it, then send answer(response)
      ("wtx", b"")        the reader granted the waiting time extension asked for
      ("deselect", frame) send this S(DESELECT) response; the card leaves the protocol
      ("ignore", b"")     a frame to stay silent on
    """

    def __init__(self, fsd: int = 256):
        self.fsd = fsd
        self.block_number = 1  # rule C: the PICC block number starts at 1
        self.last_sent = b""
        self.command = bytearray()
        self.pending = b""  # response bytes still to send in a chain
        self.cid: bytes = b""

    @classmethod
    def from_rats(cls, rats: bytes) -> "IsoDepTarget":
        return cls(fsd=FS_TABLE[min(rats[1] >> 4, 8)] if len(rats) > 1 else 256)

    def _sent(self, frame: bytes) -> tuple[str, bytes]:
        self.last_sent = frame
        return "send", frame

    def _header(self, pcb: int) -> bytes:
        return bytes((pcb | (PCB_CID if self.cid else 0),)) + self.cid

    def receive(self, frame: bytes) -> tuple[str, bytes]:
        if not frame:
            return "ignore", b""
        pcb, body = frame[0], frame[1:]
        if pcb & PCB_CID:
            self.cid, body = body[:1], body[1:]
        kind = pcb & 0xC0
        if kind == 0x00 and pcb & 0x22 == 0x02:  # I-block
            if pcb & PCB_NAD:
                body = body[1:]
            self.block_number ^= 1  # rule D: toggle on every I-block
            self.command += body
            if pcb & PCB_CHAIN:
                return self._sent(self._header(PCB_R_ACK | self.block_number))
            command, self.command = bytes(self.command), bytearray()
            return "apdu", command
        if kind == 0x80 and pcb & 0x26 == 0x22:  # R-block
            bn = pcb & 1
            if bn == self.block_number:  # rule 11: the reader missed our last block
                return self._sent(self.last_sent) if self.last_sent else ("ignore", b"")
            if pcb & 0x10:  # rule 12: R(NAK) for a block we never saw -> R(ACK)
                return self._sent(self._header(PCB_R_ACK | self.block_number))
            if self.pending:  # rule 13: the reader acknowledged our chained block: next one
                self.block_number ^= 1
                return self._sent(self._next_block())
            return "ignore", b""
        if kind == 0xC0:  # S-block
            if pcb & 0x30 == 0x30:
                return "wtx", b""
            if pcb & 0x30 == 0x00:
                return "deselect", self._header(PCB_S_DESELECT)
        return "ignore", b""  # PPS and RFU frames: a card stays silent

    def answer(self, response: bytes) -> bytes:
        """The first I-block carrying a response APDU (the rest follow on R(ACK))."""
        self.pending = bytes(response)
        frame = self._next_block()
        self.last_sent = frame
        return frame

    def _next_block(self) -> bytes:
        room = self.fsd - 3 - len(self.cid)  # PCB and 2 EDC bytes count against FSD
        chunk, self.pending = self.pending[:room], self.pending[room:]
        pcb = PCB_I | self.block_number | (PCB_CHAIN if self.pending else 0)
        return self._header(pcb) + chunk

    def wtx_request(self, wtxm: int) -> bytes:
        frame = self._header(PCB_S_WTX) + bytes((wtxm & 0x3F,))
        self.last_sent = frame
        return frame


def listen_on(device, host: str) -> None:
    """Make nfcpy's udp driver listen on `host` only. nfcpy 1.0.4 (nfc/clf/udp.py,
    Device._bind_socket) binds its listening socket to 0.0.0.0: anyone on the network could
    then act as a reader and talk to the card. The card listens where it was told, by
    default 127.0.0.1."""
    import errno
    import socket
    import time

    def bind_socket(time_to_return):
        while time.time() < time_to_return:
            try:
                device.socket.bind((host, device.addr[1]))
                return True
            except socket.error as error:
                if error.errno == errno.EADDRINUSE:
                    return False
                raise
        return False

    device._bind_socket = bind_socket


def leave_field(host: str, port: int, reader: tuple[str, int]) -> None:
    """Tell the reader at once that the card at host:port has left the field.

    Over the air a reader learns it from silence: its frame waiting time (FWT, 77 ms with
    this card's FWI) runs out, and nfcpy then retries up to five times. Over udp the card
    says so with the RFOFF datagram nfcpy's readers already take as a broken link, so the
    reader's pending exchange or presence check fails at once (CardRemoved, an empty field).
    Called once the card's own socket is closed: a poll the reader sends next is refused at
    once, not swallowed by a socket about to close. It goes out from the card's address,
    the only one a loopback reader takes datagrams from."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
            gone.bind((host, port))
            gone.sendto(b"RFOFF", reader)
    except OSError:  # the port is taken again, or the reader has gone too: nothing to tell
        pass


def sdd_res_for(uid: bytes) -> bytes:
    """The UID a Type A target announces: the card's own if it has a standard length,
    else a random 4-byte NFCID1 (first byte 08 marks it random)."""
    if len(uid) in (4, 7, 10):
        return bytes(uid)
    return b"\x08" + os.urandom(3)


class NfcUdpCard(CardTransport):
    """Present a VirtualCard as a Type 4A target on nfcpy's udp driver at host:port."""

    def __init__(self, card: VirtualCard | None, port: int, host: str = "127.0.0.1",
                 on_exchange: ExchangeListener | None = None, poll: float = 0.01):
        super().__init__(card, on_exchange)
        self.host, self.port, self.poll = host, port, poll
        self.deselects = 0
        self.wtx_sent = 0

    def _run(self) -> None:
        import nfc
        import nfc.clf

        clf = nfc.ContactlessFrontend(f"udp:{self.host}:{self.port}")
        listen_on(clf.device, self.host)
        try:
            while self._wait_until_wanted():
                card = self.card
                target = nfc.clf.LocalTarget("106A")
                target.sens_res = bytearray.fromhex("4400")
                target.sdd_res = bytearray(sdd_res_for(card.uid))
                target.sel_res = bytearray.fromhex("20")
                try:
                    activated = clf.listen(target, LISTEN_WINDOW)
                except nfc.clf.CommunicationError:
                    continue
                if activated is None or not activated.tt4_cmd or activated.tt4_cmd[0] != 0xE0:
                    continue  # nothing, or not a RATS: go back to idle
                if self.card is not card:  # another card was presented while this one's UID was announced
                    continue
                self.card.power_on()
                ended = "left"
                try:
                    ended = self._session(clf, IsoDepTarget.from_rats(bytes(activated.tt4_cmd)))
                finally:
                    self.card.power_off()
                    clf.device.mute()  # the card leaves (or resets): stop answering at once
                    if ended == "left":
                        leave_field(self.host, self.port, activated._addr)
        finally:
            clf.close()

    def _session(self, clf, link: IsoDepTarget) -> str:
        """Serve one activation; how it ended: "left" (removed, torn or stopped), "deselected",
        or "released" (the reader switched its field off or went silent)."""
        import nfc.clf

        out: bytes | None = ATS
        while self._want_present.is_set() and not self._stopping.is_set():
            try:
                frame = clf.exchange(out, self.poll)
            except nfc.clf.TimeoutError:
                out = None  # nothing from the reader yet: keep listening, send nothing
                continue
            except nfc.clf.CommunicationError:  # RFOFF: the reader switched its field off
                return "released"
            out = None
            if frame is None:
                return "released"
            action, data = link.receive(bytes(frame))
            if action == "send":
                out = data
            elif action == "deselect":
                self.deselects += 1
                clf.exchange(data, 0)  # send the S(DESELECT) response, expect nothing
                return "deselected"
            elif action == "apdu":
                response = self._answer(data)
                if response is None:
                    return "left"  # torn: processed, but the card is gone before answering
                if self.delay and not self._extend_wait(clf, link, self.delay):
                    return "released"
                out = link.answer(response)
        return "left"

    def _extend_wait(self, clf, link: IsoDepTarget, delay: float) -> bool:
        """Keep the reader waiting `delay` seconds with S(WTX) requests, then return True."""
        import nfc.clf

        while delay > 0:
            wtxm = min(59, max(1, math.ceil(delay / FWT) + 1))
            step = min(delay, (wtxm - 1) * FWT)
            self.wtx_sent += 1
            try:
                reply = clf.exchange(link.wtx_request(wtxm), 4 * FWT)
            except nfc.clf.CommunicationError:
                return False
            if reply is None or link.receive(bytes(reply))[0] != "wtx":
                return False
            self._wait(step)
            delay -= step
        return True
