"""A virtual contactless card: a UID, an ATR and applets selected by AID.

This is the card runtime of the wallet emulator, the part a Java Card OS plays on a
real card: it routes SELECT by AID to an applet, passes later commands to the selected
applet, answers the PC/SC pseudo-APDU GET DATA (FF CA 00 00 00) with the UID, and turns
every malformed or unknown command into a status word. `process` never raises.
"""
from __future__ import annotations

from typing import Protocol

from protocol.apdu import (SW_CLA_NOT_SUPPORTED, SW_FILE_NOT_FOUND, SW_INS_NOT_SUPPORTED, SW_OK,
                           SW_UNKNOWN, SW_WRONG_LENGTH, SW_WRONG_P1P2, CommandAPDU, MalformedAPDU,
                           parse_command, respond)

# The ATR PC/SC part 3 builds for an ISO 14443-4 Type A card with no historical bytes:
# 3B 80 80 01, then TCK = 80 ^ 80 ^ 01 = 01.
DEFAULT_ATR = bytes.fromhex("3B80800101")


class Applet(Protocol):
    aid: bytes

    def select(self, command: CommandAPDU) -> bytes:
        """Answer the SELECT that chose this applet (usually with its FCI)."""

    def process(self, command: CommandAPDU) -> bytes:
        """Answer a command sent while this applet is selected. Never raises."""

    def deselect(self) -> None:
        """Forget any per-session state (the card left the field or another applet was chosen)."""


class VirtualCard:
    def __init__(self, uid: bytes, applets: list[Applet] = (), atr: bytes = DEFAULT_ATR, name: str = "card"):
        self.uid = bytes(uid)
        self.atr = bytes(atr)
        self.name = name
        self.applets = list(applets)
        self.selected: Applet | None = None

    def power_on(self) -> bytes:
        """A new session in the field: nothing selected. Returns the ATR."""
        self._deselect()
        return self.atr

    reset = power_on

    def power_off(self) -> None:
        self._deselect()

    def process(self, raw: bytes) -> bytes:
        try:
            command = parse_command(raw)
        except MalformedAPDU:
            return respond(SW_WRONG_LENGTH)
        try:
            return self._dispatch(command)
        except Exception:  # an applet fault must not reach the reader as a dead card
            self._deselect()
            return respond(SW_UNKNOWN)

    def _dispatch(self, command: CommandAPDU) -> bytes:
        if command.cla == 0xFF:
            return self._pseudo_apdu(command)
        if command.cla & 0x80 == 0 and command.ins == 0xA4 and command.p1 == 0x04:
            return self._select(command)
        if self.selected is None:  # no application chosen: only SELECT and GET DATA make sense
            return respond(SW_CLA_NOT_SUPPORTED if command.cla & 0x80 else SW_INS_NOT_SUPPORTED)
        return self.selected.process(command)

    def _select(self, command: CommandAPDU) -> bytes:
        if not command.data:
            return respond(SW_WRONG_LENGTH)
        for applet in self.applets:
            # ISO 7816-4: a SELECT may name an AID by its first bytes (partial selection)
            if applet.aid.startswith(command.data):
                if self.selected is not applet:
                    self._deselect()
                self.selected = applet
                answer = applet.select(command)
                if answer[-2:] != b"\x90\x00":  # the applet refused: nothing stays selected
                    self._deselect()
                return answer
        self._deselect()
        return respond(SW_FILE_NOT_FOUND)

    def _pseudo_apdu(self, command: CommandAPDU) -> bytes:
        if command.ins == 0xCA:  # GET DATA: P1 00 the UID, P1 01 the historical bytes
            if command.p1 == 0x00 and command.p2 == 0x00:
                return respond(SW_OK, self.uid)
            return respond(SW_WRONG_P1P2)
        return respond(SW_INS_NOT_SUPPORTED)

    def _deselect(self) -> None:
        if self.selected is not None:
            self.selected.deselect()
        self.selected = None


def plain_uid_card(uid: bytes, name: str = "uid card") -> VirtualCard:
    """A MIFARE-like card: a UID and no ISO 7816 applications."""
    return VirtualCard(uid, [], name=name)
