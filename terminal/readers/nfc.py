"""Readers driven directly by nfcpy: PN533 / RC-S380 over USB (`usb:...`), or `udp:host:port`.

The reader polls for a Type A target, activates it as an ISO-DEP Type 4A tag (RATS, then
ISO 14443-4 blocks inside nfcpy) and moves APDUs with tag.transceive. Like a PC/SC reader it
answers the pseudo-APDU FF CA 00 00 (the UID) itself, from the anticollision UID. A card that
stops answering (nfcpy gives up after its retries) is CardRemoved.

Over loopback udp (the wallet emulator's card) the reader polls every POLL_INTERVAL and
learns of an empty field at once (loopback_udp), so a card arrives, leaves and is torn away
in a few milliseconds (bench/arrival_bench.py).
"""
from __future__ import annotations

import errno
import ipaddress
import itertools
import logging
import threading
import time

from terminal.readers import complete_response
from terminal.readers.base import CardRemoved, ReaderError, ReaderUnavailable

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.01  # seconds between two polls of an empty field
PRESENCE_INTERVAL = 0.02  # seconds between two presence checks of a card in the field
EMPTY_LOOKS = 3  # looks in a row that find the field empty before the card counts as gone


class NfcSession:
    def __init__(self, reader: "NfcReader", tag):
        self.reader = reader
        self.tag = tag
        self.uid = bytes(tag.identifier)
        # the ATR PC/SC part 3 builds for an ISO 14443-4 Type A card without historical bytes
        self.atr = bytes.fromhex("3B80800101")
        self._open = True

    def transmit(self, apdu: bytes) -> bytes:
        return complete_response(self._raw, apdu)

    def _raw(self, apdu: bytes) -> bytes:
        import nfc.clf
        import nfc.tag

        apdu = bytes(apdu)
        if not self._open:
            raise CardRemoved("session closed")
        if apdu[:2] == b"\xFF\xCA":  # GET DATA pseudo-APDU: the reader answers it, as PC/SC readers do
            if apdu[2:4] == b"\x00\x00":
                return self.uid + b"\x90\x00"
            return b"\x6A\x81"
        if not hasattr(self.tag, "transceive") or not hasattr(self.tag, "_dep"):
            return b"\x6A\x81"  # not an ISO-DEP card: no APDUs
        try:
            response = self.tag.transceive(apdu)
        except (nfc.tag.TagCommandError, nfc.clf.CommunicationError) as error:
            self._open = False
            self.reader._release()  # field off: what the card may still send is not read as a new card's
            raise CardRemoved(f"the card stopped answering: {error}") from None
        except IOError as error:
            self._open = False
            if error.errno == errno.ENODEV:
                raise ReaderUnavailable(f"reader {self.reader.path} went away") from None
            raise ReaderError(str(error)) from None
        if response is None or len(response) < 2:
            self._open = False
            raise CardRemoved("the card did not answer")
        return bytes(response)

    def close(self) -> None:
        if self._open:
            self._open = False
            self.reader._release()


class NfcReader:
    """An nfcpy ContactlessFrontend at `path` ("usb", "usb:054c:06c3", "udp:127.0.0.1:54321").

    The device is opened when first needed and again after it went away (a USB reader
    unplugged, the device closed under us): until it opens, waiting for a card raises
    ReaderUnavailable saying why, and the caller simply asks again later."""

    def __init__(self, path: str):
        self.path = path
        self.name = f"nfcpy {path}"
        self.session: NfcSession | None = None
        self.clf = None
        try:
            self._frontend()
        except ReaderUnavailable as error:  # not there yet: said again at the first wait
            log.info("%s", error)

    def _frontend(self):
        """The open ContactlessFrontend, opening it if needed; ReaderUnavailable if it cannot be."""
        if self.clf is None:
            import nfc

            try:
                self.clf = nfc.ContactlessFrontend(self.path)
            except (IOError, OSError) as error:
                raise ReaderUnavailable(f"cannot open nfcpy reader {self.path}: {error}") from None
            if self.path.startswith("udp:"):
                loopback_udp(self.clf.device)
        return self.clf

    def _lost(self, error) -> ReaderUnavailable:
        """The device failed under us: drop it (it is opened afresh next time)."""
        clf, self.clf = self.clf, None
        if self.session is not None:
            self.session._open = False
        try:
            if clf is not None:
                clf.close()
        except Exception:  # closing a device that is already gone
            pass
        return ReaderUnavailable(f"reader {self.path} went away: {error}")

    def _sense(self):
        import nfc.clf
        import nfc.tag

        clf = self._frontend()
        try:
            target = clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1)
        except nfc.clf.CommunicationError:
            return None
        except Exception as error:  # IOError (ENODEV: unplugged), or a driver broken mid-call
            raise self._lost(error) from None
        if target is None:
            return None
        try:
            return nfc.tag.activate(clf, target)
        except Exception as error:  # a card answering RATS with a short or odd ATS: not activated
            log.debug("activation failed: %s", error)
            self._release()
            return None

    def wait_for_card(self, timeout: float | None = None) -> NfcSession | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.session is not None:  # a new activation resets the card: the old session is done
            self.session.close()
            self.session = None
        for polls in itertools.count():
            tag = self._sense()
            if tag is not None:
                self.session = NfcSession(self, tag)
                return self.session
            if deadline is not None and time.monotonic() >= deadline:
                return None
            # the first polls follow each other closely: a card just presented is often a
            # millisecond from listening; then POLL_INTERVAL
            time.sleep(min(POLL_INTERVAL, 0.001 * 2 ** polls))

    def _release(self) -> None:
        """Field off: the card resets and may be activated again."""
        try:
            if self.clf is not None and self.clf.device is not None:
                self.clf.device.mute()
        except Exception as error:  # the device is gone: the next sense reports it
            log.debug("mute failed: %s", error)

    def _field_empty(self) -> bool:
        session = self.session
        if session is not None and session._open:
            try:
                if session.tag.is_present:
                    return False
            except Exception:  # nfcpy raises assorted errors on a vanished tag
                pass
            session._open = False
            self._release()
        tag = self._sense()
        if tag is None:
            return True
        self._release()
        return False

    def wait_for_removal(self, timeout: float | None = None) -> bool:
        """True once the field is seen empty at EMPTY_LOOKS looks in a row: a presence check or a
        sense the card was too slow to answer (a loaded machine, a card at the edge of the
        field) is not a card gone, which the loop would take for the next presentation."""
        deadline = None if timeout is None else time.monotonic() + timeout
        empty = 0
        while True:
            try:
                empty = empty + 1 if self._field_empty() else 0
            except ReaderUnavailable:
                return True  # no reader, no card in its field
            if empty >= EMPTY_LOOKS:
                return True
            # a field that looked empty is looked at to the end, past the deadline: on a slow
            # reader the looks of one short wait would otherwise never add up
            if deadline is not None and time.monotonic() >= deadline and not empty:
                return False
            time.sleep(PRESENCE_INTERVAL)

    def signal(self, outcome: str) -> None:
        """nfcpy readers have no LED or buzzer API nfcpy drives: nothing to show."""

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        if self.clf is not None:
            self.clf.close()
            self.clf = None


SENSE_WAIT = 0.05  # seconds for each answer while activating a card over loopback


def loopback_udp(device) -> None:
    """Tune nfcpy's udp driver (nfcpy 1.0.4, nfc/clf/udp.py) for a card on this machine.

    The driver waits a whole second for each SENS_RES, so every poll of an empty field, and
    every card that arrives between two polls, costs a second; over loopback a card answers
    within a millisecond, so activation waits SENSE_WAIT instead.

    Its socket, unbound and unconnected, takes datagrams from any address and never learns
    that nothing listens: towards a loopback card it is bound to 127.0.0.1 and connected to
    the card's address. Then a frame sent while no card listens there comes back at once as
    ECONNREFUSED (the kernel's ICMP port unreachable), which is the empty field: a poll, or
    an exchange with a card that has left, ends then rather than after its timeout."""
    if not ipaddress.ip_address(device.addr[0]).is_loopback:
        return
    import nfc.clf

    create, sense, send, receive = device._create_socket, device.sense_tta, device._send_data, device._recv_data
    sensing = threading.local()

    def create_socket():
        create()
        if device.socket is not None and device.socket.getsockname()[1] == 0:
            device.socket.bind((device.addr[0], 0))
            device.socket.connect(device.addr)

    def sense_tta(target):
        sensing.on = True
        try:
            return sense(target)
        finally:
            sensing.on = False

    def send_data(brty, data, addr):
        try:
            return send(brty, data, addr)
        except ConnectionRefusedError:  # an earlier frame found no card: nor will this one
            if brty == "RFOFF":
                return None
            raise nfc.clf.TimeoutError("no card in the field") from None

    def recv_data(timeout, *brty):
        if getattr(sensing, "on", False) and timeout is not None:
            timeout = min(timeout, SENSE_WAIT)
        try:
            return receive(timeout, *brty)
        except ConnectionRefusedError:
            raise nfc.clf.TimeoutError("no card in the field") from None

    device._create_socket, device.sense_tta = create_socket, sense_tta
    device._send_data, device._recv_data = send_data, recv_data
