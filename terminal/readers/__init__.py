"""Reader backends behind one interface (terminal.readers.base), chosen by a spec string.

    open_reader("pcsc")              the first PC/SC reader (pyscard, pcscd)
    open_reader("pcsc:ACR122")       the first PC/SC reader whose name contains ACR122
    open_reader("usb") / ("usb:054c:06c3")   an nfcpy-driven USB reader (PN533, RC-S380)
    open_reader("udp:127.0.0.1:54321")       nfcpy's udp driver, the wallet emulator's other end
    open_reader("mock")              an in-process MockReader with no card yet
"""
from __future__ import annotations

from terminal.readers.base import CardRemoved, CardSession, Reader, ReaderError, ReaderUnavailable

__all__ = ["open_reader", "Reader", "CardSession", "ReaderError", "ReaderUnavailable", "CardRemoved"]

from collections.abc import Callable

SPEC_HELP = "pcsc, pcsc:NAME, usb, usb:VID:PID, udp:HOST:PORT or mock"


def open_reader(spec: str) -> Reader:
    """A Reader for `spec`; ReaderError (a one-line message) for a spec it cannot use."""
    kind, _, rest = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "pcsc":
        from terminal.readers.pcsc import PcscReader

        return PcscReader(rest or None)
    if kind == "usb":
        from terminal.readers.nfc import NfcReader

        return NfcReader(spec.strip())
    if kind == "udp":
        host, _, port = rest.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ReaderError(f"udp reader needs udp:HOST:PORT, got {spec!r}")
        from terminal.readers.nfc import NfcReader

        return NfcReader(f"udp:{host or '127.0.0.1'}:{port}")
    if kind == "mock" and not rest:
        from terminal.readers.mock import MockReader

        return MockReader()
    raise ReaderError(f"unknown reader {spec!r}: use {SPEC_HELP}")


def complete_response(send: Callable[[bytes], bytes], apdu: bytes) -> bytes:
    """Send apdu through send and finish the ISO 7816-4 transport dialogue for the caller:
    6Cxx re-sends the command with Le xx; 61xx fetches the rest with GET RESPONSE."""
    apdu = bytes(apdu)
    response = send(apdu)
    if len(response) == 2 and response[0] == 0x6C and len(apdu) >= 5:
        response = send(apdu[:-1] + response[1:2])
    data = bytearray()
    for _ in range(256):  # a card answering 61xx forever is broken, not a reason to hang
        if len(response) < 2 or response[-2] != 0x61:
            break
        data += response[:-2]
        response = send(bytes((apdu[0] & 0x03, 0xC0, 0x00, 0x00, response[-1])))
    return bytes(data) + response
