"""An emulated EMV contactless bank card: the PPSE and a payment application as applets.

Enough of a Visa-like card for a terminal (or any EMV reading tool) to read it:

    SELECT 2PAY.SYS.DDF01   -> 6F { 84, A5 { BF0C { 61 { 4F AID, 50 label, 87 priority } } } }
    SELECT A0000000031010   -> 6F { 84, A5 { 50 label, 87, 9F38 PDOL, 5F2D } }
    GPO 80 A8 00 00 83 ...  -> 77 { 82 AIP, 94 AFL }   (6700 if the PDOL data has the wrong length)
    READ RECORD 00 B2 r s   -> 70 { ... }              (SFI 1: 57, 5F20; SFI 2: 5A, 5F24, 5F34)

It computes no cryptogram and offers no offline data authentication (AIP 0000): it
exists to be read and tokenised, not to authorise payments. Every command gets a status
word: out-of-order commands 6985, an unknown SFI 6A82, an unknown record 6A83.
"""
from __future__ import annotations

from typing import Mapping

from protocol import emv, tlv
from protocol.apdu import (SW_CLA_NOT_SUPPORTED, SW_CONDITIONS_NOT_SATISFIED, SW_FILE_NOT_FOUND,
                           SW_INS_NOT_SUPPORTED, SW_OK, SW_RECORD_NOT_FOUND, SW_REFERENCED_DATA_NOT_FOUND,
                           SW_WRONG_DATA, SW_WRONG_LENGTH, SW_WRONG_P1P2, CommandAPDU, respond)
from protocol.tlv import Tlv
from wallet.card import Applet, VirtualCard

# Stripe's published Visa test card number (https://docs.stripe.com/testing): Luhn-valid
# and never issued to anyone.
TEST_PAN = "4242424242424242"
TEST_EXPIRY = "3012"
VISA_CREDIT_AID = bytes.fromhex("A0000000031010")
DEFAULT_LABEL = "TAPSTACK VISA"
DEFAULT_NAME = "TEST/CARDHOLDER"

# The PDOL of a Visa qVSDC card: TTQ, amount, amount other, country, TVR, currency,
# date, transaction type, unpredictable number (33 bytes of data).
VISA_PDOL = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")
NO_ODA_AIP = bytes.fromhex("0000")


class PpseApplet:
    """The Proximity Payment System Environment: the directory of payment applications."""

    aid = emv.PPSE

    def __init__(self, entries: list[emv.DirectoryEntry]):
        directory = []
        for e in entries:
            fields = [Tlv(emv.ADF_NAME, e.aid)]
            if e.label:
                fields.append(Tlv(emv.APPLICATION_LABEL, e.label.encode("ascii")))
            if e.priority:
                fields.append(Tlv(emv.PRIORITY, bytes((e.priority,))))
            directory.append(Tlv(emv.DIRECTORY_ENTRY, tuple(fields)))
        self.fci = Tlv(emv.FCI_TEMPLATE, (
            Tlv(emv.DF_NAME, self.aid),
            Tlv(emv.FCI_PROPRIETARY, (Tlv(emv.FCI_ISSUER_DISCRETIONARY, tuple(directory)),)),
        )).to_bytes()

    def select(self, command: CommandAPDU) -> bytes:
        return _select_answer(command, self.fci)

    def process(self, command: CommandAPDU) -> bytes:
        if command.cla & 0x80 == 0 and command.ins == 0xB2:
            return respond(SW_RECORD_NOT_FOUND)  # the PPSE has no records
        return respond(SW_INS_NOT_SUPPORTED)

    def deselect(self) -> None:
        pass


def _select_answer(command: CommandAPDU, fci: bytes) -> bytes:
    if command.p2 == 0x02:  # next occurrence: each AID is on the card once
        return respond(SW_FILE_NOT_FOUND)
    if command.p2 != 0x00:
        return respond(SW_WRONG_P1P2)
    return respond(SW_OK, fci)


class PaymentApplication:
    """A payment application: FCI with a PDOL, GPO answered in format 2, records by SFI."""

    def __init__(self, aid: bytes, label: str, records: Mapping[tuple[int, int], bytes],
                 pdol: bytes = VISA_PDOL, aip: bytes = NO_ODA_AIP, priority: int = 1):
        self.aid = bytes(aid)
        self.records = dict(records)  # (sfi, record number) -> record bytes (70 template)
        self.pdol = tlv.parse_dol(pdol)
        self.fci = Tlv(emv.FCI_TEMPLATE, (
            Tlv(emv.DF_NAME, self.aid),
            Tlv(emv.FCI_PROPRIETARY, (
                Tlv(emv.APPLICATION_LABEL, label.encode("ascii")),
                Tlv(emv.PRIORITY, bytes((priority,))),
                Tlv(emv.PDOL, bytes(pdol)),
                Tlv(emv.LANGUAGE, b"en"),
            )),
        )).to_bytes()
        self.gpo_answer = Tlv(emv.GPO_FORMAT_2, (
            Tlv(emv.AIP, bytes(aip)),
            Tlv(emv.AFL, _afl(self.records)),
        )).to_bytes()
        self.state = "idle"  # idle -> selected -> initiated (after GPO)

    def select(self, command: CommandAPDU) -> bytes:
        answer = _select_answer(command, self.fci)
        self.state = "selected" if answer[-2:] == b"\x90\x00" else "idle"
        return answer

    def process(self, command: CommandAPDU) -> bytes:
        if command.cla == 0x80 and command.ins == 0xA8:
            return self._gpo(command)
        if command.cla == 0x00 and command.ins == 0xB2:
            return self._read_record(command)
        if command.cla == 0x80 and command.ins == 0xCA:  # GET DATA: no ATC or PIN counter here
            return respond(SW_REFERENCED_DATA_NOT_FOUND)
        if command.ins in (0xA8, 0xB2, 0xCA):
            return respond(SW_CLA_NOT_SUPPORTED)
        return respond(SW_INS_NOT_SUPPORTED)

    def deselect(self) -> None:
        self.state = "idle"

    def _gpo(self, command: CommandAPDU) -> bytes:
        if command.p1 != 0x00 or command.p2 != 0x00:
            return respond(SW_WRONG_P1P2)
        if self.state != "selected":  # one GPO per transaction, after SELECT
            return respond(SW_CONDITIONS_NOT_SATISFIED)
        data = command.data
        if len(data) < 2 or data[0] != emv.COMMAND_TEMPLATE:
            return respond(SW_WRONG_DATA)
        try:
            template = tlv.parse_one(data, emv.COMMAND_TEMPLATE)
        except tlv.TlvError:
            return respond(SW_WRONG_LENGTH)
        if len(template.value) != tlv.dol_length(self.pdol):
            return respond(SW_WRONG_LENGTH)
        self.state = "initiated"
        return respond(SW_OK, self.gpo_answer)

    def _read_record(self, command: CommandAPDU) -> bytes:
        if command.p2 & 0x07 != 0x04 or command.p1 == 0:
            return respond(SW_WRONG_P1P2)
        if self.state != "initiated":
            return respond(SW_CONDITIONS_NOT_SATISFIED)
        sfi = command.p2 >> 3
        if not any(s == sfi for s, _ in self.records):
            return respond(SW_FILE_NOT_FOUND)
        record = self.records.get((sfi, command.p1))
        if record is None:
            return respond(SW_RECORD_NOT_FOUND)
        return respond(SW_OK, record)


def _afl(records: Mapping[tuple[int, int], bytes]) -> bytes:
    """One AFL entry per SFI, first to last record, none for offline authentication."""
    afl = b""
    for sfi in sorted({s for s, _ in records}):
        numbers = sorted(r for s, r in records if s == sfi)
        afl += bytes((sfi << 3, numbers[0], numbers[-1], 0))
    return afl


def card_records(pan: str, expiry: str, name: str) -> dict[tuple[int, int], bytes]:
    """The records of a Visa-like card: SFI 1 record 1 the track 2 equivalent and the name,
    SFI 2 record 1 the PAN, expiry and PAN sequence number."""
    track = Tlv(emv.RECORD_TEMPLATE, (
        Tlv(emv.TRACK2, emv.track2_equivalent(pan, expiry, "201", "0000000000")),
        Tlv(emv.CARDHOLDER_NAME, name.encode("ascii")),
    ))
    pan_digits = pan + "F" * (len(pan) % 2)
    card = Tlv(emv.RECORD_TEMPLATE, (
        Tlv(emv.PAN, bytes.fromhex(pan_digits)),
        Tlv(emv.EXPIRY, emv.expiration_date(expiry)),
        Tlv(emv.PAN_SEQUENCE, b"\x01"),
    ))
    return {(1, 1): track.to_bytes(), (2, 1): card.to_bytes()}


def emv_applets(pan: str = TEST_PAN, expiry: str = TEST_EXPIRY, label: str = DEFAULT_LABEL,
                name: str = DEFAULT_NAME, aid: bytes = VISA_CREDIT_AID) -> list[Applet]:
    """The PPSE and one payment application, to put on a card next to other applets."""
    if not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19 and emv.luhn_valid(pan)):
        raise ValueError("the card number must be 12 to 19 digits passing the Luhn check")
    if not (len(expiry) == 4 and expiry.isdigit() and 1 <= int(expiry[2:]) <= 12):
        raise ValueError("the expiry is YYMM")
    if not (label.isascii() and 1 <= len(label) <= 16):
        raise ValueError("the application label is 1 to 16 ASCII characters")
    if not (name.isascii() and 2 <= len(name) <= 26):
        raise ValueError("the cardholder name is 2 to 26 ASCII characters")
    if not 5 <= len(aid) <= 16:
        raise ValueError("an AID is 5 to 16 bytes")
    app = PaymentApplication(aid, label, card_records(pan, expiry, name))
    ppse = PpseApplet([emv.DirectoryEntry(app.aid, label, 1)])
    return [ppse, app]


def emv_card(uid: bytes, pan: str = TEST_PAN, expiry: str = TEST_EXPIRY, label: str = DEFAULT_LABEL,
             name: str = DEFAULT_NAME) -> VirtualCard:
    """A contactless bank card holding only the EMV profile."""
    return VirtualCard(uid, emv_applets(pan, expiry, label, name), name="emv card")
