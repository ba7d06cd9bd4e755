"""PC/SC readers through pyscard and pcscd: USB CCID readers (ACR122U, ACR1252U ...) and vpcd.

Card arrival and removal come from SCardGetStatusChange; the \\\\?PnP?\\Notification pseudo
reader wakes the wait when readers are plugged in or out. Transmit follows ISO 7816-4 on
behalf of the layers above: 61xx is collected with GET RESPONSE and 6Cxx re-sent with the
right Le. A card leaving maps to CardRemoved, a reader or pcscd leaving to ReaderUnavailable.
"""
from __future__ import annotations

import logging
import time

from smartcard import scard

from terminal.readers import complete_response
from terminal.readers.base import CardRemoved, ReaderError, ReaderUnavailable

log = logging.getLogger(__name__)

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
GET_UID = bytes.fromhex("FFCA000000")
IOCTL_CCID_ESCAPE = scard.SCARD_CTL_CODE(3500)  # pcsc-lite's CCID driver escape (needs ifdDriverOptions 0x0001)

# Errors that mean the card went away (or was reset under us) during an exchange.
CARD_GONE = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_RESET_CARD,
             scard.SCARD_W_UNPOWERED_CARD, scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_E_NOT_TRANSACTED,
             scard.SCARD_F_COMM_ERROR, scard.SCARD_E_INVALID_HANDLE, scard.SCARD_E_COMM_DATA_LOST}
# Errors that mean the reader or the PC/SC service went away.
READER_GONE = {scard.SCARD_E_READER_UNAVAILABLE, scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_NO_SERVICE,
               scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_E_NO_READERS_AVAILABLE}

# ACR122U LED and buzzer (ACR122U API v2.04, 6.2 "Bi-color LED and buzzer control"):
# FF 00 40 <LED state> 04 <T1> <T2> <repetitions> <buzzer link>; T1, T2 in 100 ms units.
ACR122_SIGNALS = {
    "accept": bytes.fromhex("FF0040A804030101" "01"),  # green blinks once, one short beep
    "deny": bytes.fromhex("FF00405404020202" "03"),  # red blinks twice, beeps on both phases
    "error": bytes.fromhex("FF00405404050103" "01"),  # red, three long beeps
}


def _err(rc: int) -> str:
    return f"{scard.SCardGetErrorMessage(rc).strip()} (0x{rc & 0xFFFFFFFF:08X})"


def _check(rc: int, what: str) -> None:
    if rc == scard.SCARD_S_SUCCESS:
        return
    if rc in READER_GONE:
        raise ReaderUnavailable(f"{what}: {_err(rc)}")
    if rc in CARD_GONE:
        raise CardRemoved(f"{what}: {_err(rc)}")
    raise ReaderError(f"{what}: {_err(rc)}")


def list_readers() -> list[str]:
    """Names of the PC/SC readers plugged in now; ReaderUnavailable if pcscd is not running."""
    rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    _check(rc, "cannot reach pcscd")
    try:
        rc, names = scard.SCardListReaders(ctx, [])
        if rc in (scard.SCARD_E_NO_READERS_AVAILABLE,):
            return []
        _check(rc, "cannot list readers")
        return list(names)
    finally:
        scard.SCardReleaseContext(ctx)


class PcscSession:
    """A connected card. `uid` costs one FF CA exchange, made only when first asked for."""

    def __init__(self, reader: "PcscReader", hcard, protocol: int, atr: bytes):
        self.reader = reader
        self.atr = atr
        self.protocol = protocol
        self._hcard = hcard
        self._uid: bytes | None = None
        self._uid_read = False

    @property
    def uid(self) -> bytes | None:
        if not self._uid_read:
            self._uid_read = True
            response = self.transmit(GET_UID)
            self._uid = response[:-2] if response[-2:] == b"\x90\x00" and len(response) > 2 else None
        return self._uid

    def transmit(self, apdu: bytes) -> bytes:
        return complete_response(self._raw, apdu)

    def _raw(self, apdu: bytes) -> bytes:
        if self._hcard is None:
            raise CardRemoved("session closed")
        pci = scard.SCARD_PCI_T1 if self.protocol == scard.SCARD_PROTOCOL_T1 else scard.SCARD_PCI_T0
        rc, response = scard.SCardTransmit(self._hcard, pci, list(apdu))
        if rc != scard.SCARD_S_SUCCESS:
            self.reader._forget_if_service_gone(rc)
            _check(rc, "transmit")
        if len(response) < 2:
            # vpcd (and some readers) report a card that vanished mid-command as an empty answer
            raise CardRemoved(f"the card did not answer ({len(response)} bytes)")
        return bytes(response)

    def close(self) -> None:
        if self._hcard is not None:
            scard.SCardDisconnect(self._hcard, scard.SCARD_LEAVE_CARD)
            self._hcard = None


class PcscReader:
    """A PC/SC reader: the first one whose name contains `name` (any reader when None)."""

    def __init__(self, name: str | None = None, poll: float = 0.5):
        self.wanted = name
        self.poll = poll  # ceiling on one SCardGetStatusChange wait, so a timeout is honoured
        self._ctx = None
        self._name: str | None = None
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self.session: PcscSession | None = None

    @property
    def name(self) -> str:
        return self._name or self.wanted or "pcsc"

    @property
    def has_led(self) -> bool:
        return "ACR122" in self.name.upper()

    # context and reader resolution ----------------------------------------------------
    def _context(self):
        if self._ctx is None:
            rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            _check(rc, "cannot reach pcscd (is it running?)")
            self._ctx = ctx
        return self._ctx

    def _forget_if_service_gone(self, rc: int) -> None:
        if rc in (scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_E_INVALID_HANDLE):
            self._release_context()

    def _release_context(self) -> None:
        if self._ctx is not None:
            scard.SCardReleaseContext(self._ctx)
            self._ctx = None

    def _resolve(self) -> str:
        rc, names = scard.SCardListReaders(self._context(), [])
        if rc != scard.SCARD_S_SUCCESS and rc != scard.SCARD_E_NO_READERS_AVAILABLE:
            self._forget_if_service_gone(rc)
            _check(rc, "cannot list readers")
        for n in names or []:
            if self.wanted is None or self.wanted in n:
                self._name = n
                return n
        raise ReaderUnavailable(f"no PC/SC reader matching {self.wanted!r}" if self.wanted
                                else "no PC/SC reader plugged in")

    def _state(self, known: int, wait: float) -> int:
        """The reader's event state after waiting up to `wait` s for it to differ from `known`.

        The PnP pseudo reader rides along so that a reader plugged in or out ends the wait."""
        ctx, name = self._context(), self._resolve()
        states = [(name, known), (PNP_NOTIFICATION, self._pnp_state)]
        rc, out = scard.SCardGetStatusChange(ctx, int(wait * 1000), states)
        if rc == scard.SCARD_E_TIMEOUT:
            return known
        if rc != scard.SCARD_S_SUCCESS:
            # No card is involved in watching a reader: a failure here is pcscd's (stopped under
            # us: SCARD_F_COMM_ERROR, "RPC transport error") or the reader's.
            self._release_context()
            raise ReaderUnavailable(f"status change: {_err(rc)}")
        self._pnp_state = out[1][1] & ~scard.SCARD_STATE_CHANGED
        state = out[0][1] & ~scard.SCARD_STATE_CHANGED
        if state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
            raise ReaderUnavailable(f"reader {name!r} went away")
        return state

    def _wait_state(self, done, timeout: float | None) -> bool:
        """Wait until done(state) holds; through reader or pcscd absence, until timeout.

        Raises ReaderUnavailable if the reader was still absent when time ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        known, absent = scard.SCARD_STATE_UNAWARE, None
        while True:
            left = self.poll if deadline is None else min(self.poll, deadline - time.monotonic())
            try:
                state = self._state(known, max(0.0, left) if known != scard.SCARD_STATE_UNAWARE else 0)
                absent = None
                if done(state):
                    return True
                known = state
            except ReaderUnavailable as error:  # hot-plug: keep waiting for the reader to come back
                absent, known = error, scard.SCARD_STATE_UNAWARE
                if left > 0:
                    time.sleep(min(0.1, left))
            if deadline is not None and time.monotonic() >= deadline:
                if absent is not None:
                    raise absent
                return False

    # Reader interface -----------------------------------------------------------------
    def wait_for_card(self, timeout: float | None = None) -> PcscSession | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            present = lambda s: s & scard.SCARD_STATE_PRESENT and not s & scard.SCARD_STATE_MUTE
            if not self._wait_state(present, left):
                return None
            session = self._connect()
            if session is not None:
                return session
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.01)  # the card left between the event and the connect: wait again

    def _connect(self) -> PcscSession | None:
        if self.session is not None:  # a new card (or the same one again): the old handle is done
            self.session.close()
            self.session = None
        ctx, name = self._context(), self._resolve()
        rc, hcard, protocol = scard.SCardConnect(ctx, name, scard.SCARD_SHARE_SHARED,
                                                 scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        if rc in CARD_GONE:
            return None
        _check(rc, f"connect to the card in {name}")
        rc, _reader, _state, _protocol, atr = scard.SCardStatus(hcard)
        if rc != scard.SCARD_S_SUCCESS:
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
            return None
        self.session = PcscSession(self, hcard, protocol, bytes(atr))
        return self.session

    def wait_for_removal(self, timeout: float | None = None) -> bool:
        try:
            return self._wait_state(lambda s: s & scard.SCARD_STATE_EMPTY, timeout)
        except ReaderUnavailable:
            return True  # no reader, no card in its field

    def signal(self, outcome: str) -> None:
        """LED and buzzer on ACR122U-family readers; nothing on readers without them."""
        command = ACR122_SIGNALS.get(outcome)
        if command is None or not self.has_led:
            return
        if self.session is not None and self.session._hcard is not None:
            try:  # through the card connection while the card is there
                self.session._raw(command)
                return
            except (ReaderError, CardRemoved):
                pass
        try:  # no card: a direct connection to the reader and the CCID escape
            rc, hcard, _ = scard.SCardConnect(self._context(), self._resolve(), scard.SCARD_SHARE_DIRECT, 0)
            _check(rc, "direct connect")
            try:
                rc, _ = scard.SCardControl(hcard, IOCTL_CCID_ESCAPE, list(command))
                _check(rc, "escape")
            finally:
                scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
        except (ReaderError, CardRemoved) as error:  # a missed beep must not fail the tap
            log.debug("signal %s on %s failed: %s", outcome, self.name, error)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        self._release_context()
