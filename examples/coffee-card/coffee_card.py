"""The Bean & Leaf coffee card: a made-up loyalty card, written as a tapstack.testing.Card.

It is not tapstack's: it stands for the card you want to test. A contact card (T=0) whose
one application counts points: ten for each cup bought, spent with a PIN.

    SELECT     00 A4 04 00 09 F04245414E4C454146 00   the FCI: 6F { 84 AID, A5 { 50 "Bean & Leaf" } }
    SERIAL     80 CA 9F 7F 00                         9F7F 08 <serial>
    POINTS     80 B0 00 00 02                         the points, 2 bytes
    EARN       80 E0 00 00 01 <cups> 02               points + 10 per cup; the new points
    VERIFY     00 20 00 01 04 <PIN, 4 ASCII digits>   9000, 63Cx (x tries left), 6983 blocked
    REDEEM     80 D0 00 00 02 <points> 02             after VERIFY: the points left; 6985 not enough
    HISTORY    80 B2 00 00 00                         the last 8 movements, 3 bytes each (type, points)

Before SELECT every command is answered 6985; a wrong instruction 6D00. A new session
(power-on) forgets the PIN was verified. As a T=0 card, the card runtime answers EARN and
REDEEM 61 02 (the reader fetches the data with GET RESPONSE) and a HISTORY asked with the
wrong Le 6Cxx (the reader asks again), as such cards do.
"""
from __future__ import annotations

from protocol.apdu import (SW_AUTH_FAILED, SW_CONDITIONS_NOT_SATISFIED, SW_INS_NOT_SUPPORTED, SW_OK,
                           SW_SECURITY_STATUS, SW_WRONG_DATA, SW_WRONG_LENGTH, respond)
from tapstack.testing import Card

AID = bytes.fromhex("F04245414E4C454146")  # F0 (a proprietary RID) "BEANLEAF"
FCI = bytes.fromhex("6F1A8409F04245414E4C454146A50D500B4265616E2026204C656166")
POINTS_PER_CUP = 10
PIN_TRIES = 3


class CoffeeCard(Card):
    # A T=0 contact card's ATR: TS 3B, T0 68 (TB1 and TC1, 8 historical bytes), "BEANLEAF".
    atr = "3B6800004245414E4C454146"
    protocol = "T=0"
    uid = "04BEA11EAF0001"

    def __init__(self, points: int = 0, pin: str = "1234", serial: str = "0102030405060708"):
        self.points = points
        self.pin = pin
        self.serial = serial
        self.tries = PIN_TRIES
        self.history: list[str] = []  # hex, 3 bytes each: E0 earned or D0 redeemed, then the points
        self._selected = False
        self._verified = False

    def reset(self):
        self._selected = self._verified = False

    def process(self, command):
        if command.ins == 0xA4:
            self._selected = command.p1 == 0x04 and command.data == AID
            return respond(SW_OK, FCI) if self._selected else respond(0x6A82)
        if not self._selected:
            return respond(SW_CONDITIONS_NOT_SATISFIED)
        if (command.cla, command.ins, command.p1, command.p2) == (0x80, 0xCA, 0x9F, 0x7F):
            return respond(SW_OK, bytes.fromhex("9F7F08" + self.serial))
        if (command.cla, command.ins) == (0x80, 0xB0):
            return respond(SW_OK, self.points.to_bytes(2, "big"))
        if (command.cla, command.ins) == (0x80, 0xE0):
            if len(command.data) != 1 or not command.data[0]:
                return respond(SW_WRONG_LENGTH)
            return self.move(0xE0, command.data[0] * POINTS_PER_CUP)
        if (command.cla, command.ins) == (0x00, 0x20):
            return self.verify(command.data)
        if (command.cla, command.ins) == (0x80, 0xD0):
            if not self._verified:
                return respond(SW_SECURITY_STATUS)
            if len(command.data) != 2:
                return respond(SW_WRONG_LENGTH)
            return self.move(0xD0, int.from_bytes(command.data, "big"))
        if (command.cla, command.ins) == (0x80, 0xB2):
            return respond(SW_OK, bytes.fromhex("".join(self.history[-8:])))
        return respond(SW_INS_NOT_SUPPORTED)

    def verify(self, pin: bytes):
        if self.tries == 0:
            return respond(SW_AUTH_FAILED)
        if len(pin) != 4:
            return respond(SW_WRONG_DATA)
        if pin == self.pin.encode("ascii"):
            self.tries, self._verified = PIN_TRIES, True
            return respond(SW_OK)
        self.tries -= 1
        return respond(0x63C0 | self.tries) if self.tries else respond(SW_AUTH_FAILED)

    def move(self, kind: int, points: int):
        if kind == 0xD0 and points > self.points:
            return respond(SW_CONDITIONS_NOT_SATISFIED)
        self.points += points if kind == 0xE0 else -points
        self.history.append(f"{kind:02X}{points:04X}")
        return respond(SW_OK, self.points.to_bytes(2, "big"))
