"""An in-process reader holding Cards, for tests of the layers above the readers.

It takes the same script as the card-side transports (present, remove, tear_after, slow)
and keeps a transcript of every exchange, so a test can assert what went over the air.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from typing import Protocol

from terminal.readers import complete_response
from terminal.readers.base import CardRemoved


class Card(Protocol):
    """What the mock needs of a card: wallet.card.VirtualCard fits (the terminal never imports wallet)."""
    uid: bytes

    def power_on(self) -> bytes: ...

    def power_off(self) -> None: ...

    def process(self, raw: bytes) -> bytes: ...


@dataclass(frozen=True)
class Exchange:
    command: bytes
    response: bytes | None  # None: the card was torn away before answering


class MockSession:
    def __init__(self, reader: "MockReader", card: Card, generation: int):
        self.reader = reader
        self.card = card
        self.uid = card.uid  # a contactless reader learns the UID at anticollision
        self.atr = card.power_on()
        self._generation = generation

    def transmit(self, apdu: bytes) -> bytes:
        return complete_response(lambda raw: self.reader._transmit(self, raw), apdu)

    def close(self) -> None:
        self._generation = -1


class MockReader:
    name = "mock"

    def __init__(self, card: Card | None = None):
        self.card: Card | None = None
        self.transcript: list[Exchange] = []
        self.signals: list[str] = []
        self.delay = 0.0
        self._tear_at: int | None = None
        self._apdus = 0
        self._generation = 0  # bumped at each removal: sessions of an earlier presence are dead
        self._changed = threading.Condition()
        self._present = False
        if card is not None:
            self.present(card)

    # scripting -------------------------------------------------------------------------
    def present(self, card: Card | None = None) -> None:
        with self._changed:
            card = card or self.card
            if card is None:
                raise ValueError("no card to present")
            if self.card is not None and self._present:
                self._remove_locked()
            self.card, self._present = card, True
            self._changed.notify_all()

    def remove(self) -> None:
        with self._changed:
            self._remove_locked()

    def _remove_locked(self) -> None:
        if self.card is not None:
            self.card.power_off()
        self._present = False
        self._generation += 1
        self._changed.notify_all()

    def tear_after(self, n: int) -> None:
        if n < 1:
            raise ValueError("tear_after needs n >= 1")
        self._tear_at = self._apdus + n

    def cancel_tear(self) -> None:
        """Forget a tear_after that has not happened yet."""
        self._tear_at = None

    def slow(self, delay: float) -> None:
        self.delay = max(0.0, float(delay))

    @property
    def presented(self) -> bool:
        return self._present

    # Reader interface -----------------------------------------------------------------
    def wait_for_card(self, timeout: float | None = None) -> MockSession | None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._present, timeout):
                return None
            return MockSession(self, self.card, self._generation)

    def wait_for_removal(self, timeout: float | None = None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._present, timeout)

    def signal(self, outcome: str) -> None:
        self.signals.append(outcome)

    def close(self) -> None:
        pass

    def _transmit(self, session: MockSession, apdu: bytes) -> bytes:
        with self._changed:
            if not self._present or session._generation != self._generation:
                raise CardRemoved("the card is not in the field")
            response = session.card.process(apdu)
            self._apdus += 1
            if self._tear_at is not None and self._apdus >= self._tear_at:
                self._tear_at = None
                self.transcript.append(Exchange(apdu, None))
                self._remove_locked()
                raise CardRemoved("the card left the field before answering")
            self.transcript.append(Exchange(apdu, response))
        if self.delay:
            time.sleep(self.delay)
        return response
