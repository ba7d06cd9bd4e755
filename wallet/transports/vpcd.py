"""The virtual card as a card in the real pcscd, through the vsmartcard-vpcd driver.

The vpcd driver (a pcscd reader driver) listens on TCP; the card connects to it. Each
message is a 2-byte big-endian length and a payload. A 1-byte payload is a control code
(00 power off, 01 power on, 02 reset, 04 get ATR, only the last one answered, with the
ATR); a longer payload is a command APDU, answered with the response APDU.

Presenting the card is connecting; removing it is closing the connection. If the driver
goes away (pcscd stopped) the card reconnects when it comes back, as long as it is presented.
"""
from __future__ import annotations

import socket
import threading

from wallet.card import VirtualCard
from wallet.transports import CardTransport, ExchangeListener

CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0x00, 0x01, 0x02, 0x04


def frame(payload: bytes) -> bytes:
    """One vpcd message: 2-byte big-endian length, then the payload."""
    if len(payload) > 0xFFFF:
        raise ValueError("vpcd payload longer than 65535 bytes")
    return len(payload).to_bytes(2, "big") + payload


class LinkClosed(Exception):
    """The driver closed the connection (pcscd stopped or the reader was released)."""


class VpcdCard(CardTransport):
    """Present a VirtualCard to the vpcd reader listening on host:port (run with start()/stop())."""

    def __init__(self, card: VirtualCard | None, port: int, host: str = "127.0.0.1",
                 on_exchange: ExchangeListener | None = None, retry_interval: float = 0.05):
        super().__init__(card, on_exchange)
        self.host, self.port = host, port
        self.retry_interval = retry_interval
        self.connected = threading.Event()  # set while the driver holds our connection
        self.powered = False
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()

    def _run(self) -> None:
        while self._wait_until_wanted():
            sock = self._connect()
            if sock is None:
                self._wait(self.retry_interval)
                continue
            try:
                self._serve(sock)
            except (LinkClosed, OSError):
                pass  # removed, torn, or the driver went away: loop and reconnect if still presented
            finally:
                self._close(sock)

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=1.0)
        except OSError:
            return None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._sock_lock:
            if not self._want_present.is_set() or self._stopping.is_set():  # removed while we were connecting
                sock.close()
                return None
            self._sock = sock
        self.connected.set()
        return sock

    def _close(self, sock: socket.socket) -> None:
        with self._sock_lock:
            if self._sock is sock:
                self._sock = None
        self.connected.clear()
        self.powered = False
        try:
            sock.close()
        except OSError:
            pass
        if self.card is not None:
            self.card.power_off()

    def _drop_link(self) -> None:
        with self._sock_lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the serving thread's recv
            except OSError:
                pass

    def _serve(self, sock: socket.socket) -> None:
        while True:
            payload = self._receive(sock)
            if not self._want_present.is_set():
                raise LinkClosed("card removed")
            if len(payload) == 1:
                code = payload[0]
                if code == CTRL_ATR:
                    sock.sendall(frame(self.card.atr))
                elif code in (CTRL_ON, CTRL_RESET):
                    self.card.power_on()
                    self.powered = True
                elif code == CTRL_OFF:
                    self.card.power_off()
                    self.powered = False
                continue  # unknown control codes are ignored, as a card ignores noise
            response = self._answer(payload)
            if response is None:  # torn: the card committed, the answer never leaves
                raise LinkClosed("torn")
            if not response:
                # No card answers nothing (an R-APDU carries at least SW1 SW2): a card program
                # that does is mute, as if it left the field. An empty frame would also hang
                # the driver: vpcd's vicc_transmit then waits in recv() for 0 bytes forever.
                with self._lock:
                    self._want_present.clear()
                raise LinkClosed("mute: an empty answer")
            if self.delay:
                self._wait(self.delay)
            sock.sendall(frame(response))

    @staticmethod
    def _receive(sock: socket.socket) -> bytes:
        header = _recv_exact(sock, 2)
        return _recv_exact(sock, int.from_bytes(header, "big"))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        # vpcd writes the length and the body in two writes; without QUICKACK each
        # APDU waits for a delayed ACK (about 40 ms). Linux clears it after use, so set it each time.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise LinkClosed("driver closed the connection")
        buf += chunk
    return bytes(buf)
