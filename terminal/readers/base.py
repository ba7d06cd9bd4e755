"""The one reader interface every backend (PC/SC, nfcpy, mock) implements.

A Reader waits for a card to enter its field and hands back a CardSession; the session
transmits APDU bytes and reports the card leaving. Backends know nothing of fares,
purses or EMV: they move bytes and signal the outcome with LEDs and buzzer.
"""
from __future__ import annotations

from typing import Protocol


class ReaderError(Exception):
    """The reader failed (unplugged, driver error, no such reader)."""


class ReaderUnavailable(ReaderError):
    """The reader is not there (yet): not plugged in, or its service is not running."""


class CardRemoved(Exception):
    """The card left the field before the exchange finished (a tear)."""


class CardSession(Protocol):
    uid: bytes | None  # anti-collision UID, None when the reader cannot tell
    atr: bytes  # PC/SC ATR, or the one PC/SC would build for a contactless card

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU, return the response APDU (data + SW1 SW2).

        Raises CardRemoved if the card leaves, ReaderError if the reader fails.
        """

    def close(self) -> None:
        """Release the card (it may stay in the field)."""


class Reader(Protocol):
    name: str

    def wait_for_card(self, timeout: float | None = None) -> CardSession | None:
        """Block until a card is in the field and connected, or timeout seconds pass (None)."""

    def wait_for_removal(self, timeout: float | None = None) -> bool:
        """Block until the field is empty; False if timeout passed first."""

    def signal(self, outcome: str) -> None:
        """Show the outcome of a tap: "accept", "deny" or "error" (LED, buzzer; a no-op where absent)."""

    def close(self) -> None:
        ...
