"""Card-side APDU transports: the wallet emulator's VirtualCard behind a real reader stack.

Each transport carries one wallet.card.VirtualCard and runs it in a thread:

    vpcd.VpcdCard        the card in the real pcscd, through the vsmartcard-vpcd driver (TCP)
    nfc_udp.NfcUdpCard   an ISO-DEP Type 4A target over nfcpy's udp driver

Both share the scripting of CardTransport, which terminal.readers.mock.MockReader mirrors
for in-process tests: present(card), remove(), tear_after(n), cancel_tear(), slow(delay), and an optional
on_exchange(command, response) callback (response None: the card was torn before answering).
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from wallet.card import VirtualCard

ExchangeListener = Callable[[bytes, "bytes | None"], None]


class CardTransport:
    """The scripting shared by the card-side transports; subclasses run the link in `_run`."""

    def __init__(self, card: VirtualCard | None = None, on_exchange: ExchangeListener | None = None):
        self.card = card
        self.on_exchange = on_exchange
        self.apdus = 0  # command APDUs answered (or torn) since start
        self.delay = 0.0
        self._tear_at: int | None = None
        self._want_present = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if card is not None:
            self._want_present.set()

    # scripting -------------------------------------------------------------------------
    def present(self, card: VirtualCard | None = None) -> None:
        """Bring the card (or a new one) into the reader's field."""
        with self._lock:
            if card is not None:
                self.card = card
            if self.card is None:
                raise ValueError("no card to present")
            self._want_present.set()

    def remove(self) -> None:
        """Take the card out of the field (the link drops at once)."""
        with self._lock:
            self._want_present.clear()
        self._drop_link()

    def tear_after(self, n: int) -> None:
        """The n-th command APDU from now is processed by the card, then the card leaves the
        field before its answer goes out: a card pulled away right after committing."""
        if n < 1:
            raise ValueError("tear_after needs n >= 1")
        with self._lock:
            self._tear_at = self.apdus + n

    def cancel_tear(self) -> None:
        """Forget a tear_after that has not happened yet."""
        with self._lock:
            self._tear_at = None

    def slow(self, delay: float) -> None:
        """Wait `delay` seconds before answering each command (a slow card; 0 to stop)."""
        self.delay = max(0.0, float(delay))

    @property
    def presented(self) -> bool:
        return self._want_present.is_set()

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> "CardTransport":
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._want_present.clear()
        self._drop_link()
        self._want_present.set()  # wakes a thread waiting for the card to come: it sees _stopping
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._want_present.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # for subclasses --------------------------------------------------------------------
    def _answer(self, command: bytes) -> bytes | None:
        """Run one command through the card; None when the script tears the card here.

        The transport applies self.delay its own way (vpcd sleeps, ISO-DEP asks for WTX)."""
        card = self.card
        response = card.process(command)
        with self._lock:
            self.apdus += 1
            torn = self._tear_at is not None and self.apdus >= self._tear_at
            if torn:
                self._tear_at = None
                self._want_present.clear()
        if self.on_exchange is not None:
            self.on_exchange(command, None if torn else response)
        return None if torn else response

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _wait_until_wanted(self, poll: float = 0.05) -> bool:
        """Block while the card is out of the field; False once stop() was called."""
        while not self._stopping.is_set():
            if self._want_present.wait(poll):
                return not self._stopping.is_set()
        return False

    def _drop_link(self) -> None:
        """Cut the current link at once (called from any thread)."""

    def _run(self) -> None:
        raise NotImplementedError


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.01) -> bool:
    """Poll predicate until true or timeout seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(poll)
    return True
