"""Reading an EMV contactless card at the terminal, down to a keyed-hash token.

`read_token` runs SELECT PPSE, SELECT of the application, GET PROCESSING OPTIONS and
READ RECORD until a record carries the card number (PAN), which it turns into a token
at once. The PAN stays inside `_tokenise`: no log line, exception, repr or return
value carries it, and exceptions raised while it is in hand drop their context.

Outcomes: an `EmvRead`; None when the card has no EMV payment application (the tap
then falls back to the UID); `EmvError` when the card breaks the flow. A card leaving
the field surfaces as the transport's own CardRemoved / ReaderError, untouched.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Callable, Iterable

from protocol import emv
from protocol.apdu import (SW_CLA_NOT_SUPPORTED, SW_FILE_NOT_FOUND, SW_FUNCTION_NOT_SUPPORTED,
                           SW_INS_NOT_SUPPORTED, SW_OK, CommandAPDU, MalformedAPDU, ResponseAPDU,
                           parse_response)
from protocol.emv import EmvError
from protocol.tlv import Tlv
from protocol.tokens import MIN_KEY_BYTES, pan_token

__all__ = ["EmvRead", "EmvError", "read_token"]

log = logging.getLogger(__name__)

# Answers to SELECT PPSE meaning "no payment application here", not "broken card".
NO_PPSE = frozenset({SW_FILE_NOT_FOUND, SW_FUNCTION_NOT_SUPPORTED, SW_INS_NOT_SUPPORTED, SW_CLA_NOT_SUPPORTED})
# A real card needs well under 10 commands; this bounds what a hostile AFL can ask for.
MAX_APDUS = 40
_MAX_CHAINED = 8  # 61xx / 6Cxx follow-ups for one command


@dataclass(frozen=True)
class EmvRead:
    """What a read leaves behind. There is no PAN field, by design."""

    token: str  # pan_token(key, PAN)
    aid: str  # the application's AID in upper-case hex
    label: str | None  # application label (50) as the card gives it
    expiry: str | None  # YYMM
    apdus: int  # command APDUs sent, follow-ups (GET RESPONSE) included


class _Link:
    """Sends commands, counts them, follows 61xx (GET RESPONSE) and 6Cxx (wrong Le)."""

    def __init__(self, transmit: Callable[[bytes], bytes]):
        self._transmit = transmit
        self.count = 0

    def _raw(self, command: CommandAPDU, what: str) -> ResponseAPDU:
        if self.count >= MAX_APDUS:
            raise EmvError(f"card asked for more than {MAX_APDUS} commands")
        self.count += 1
        raw = self._transmit(command.to_bytes())
        try:
            return parse_response(raw)
        except MalformedAPDU:
            raise EmvError(f"{what}: answer of {len(raw)} bytes has no status word") from None

    def send(self, command: CommandAPDU, what: str) -> ResponseAPDU:
        answer = self._raw(command, what)
        data = answer.data
        for _ in range(_MAX_CHAINED):
            if answer.sw1 == 0x61:
                answer = self._raw(CommandAPDU(0x00, 0xC0, 0x00, 0x00, le=answer.sw2 or 256), what)
                data += answer.data
            elif answer.sw1 == 0x6C:
                answer = self._raw(CommandAPDU(command.cla, command.ins, command.p1, command.p2,
                                               command.data, le=answer.sw2 or 256), what)
                data = answer.data
            else:
                break
        log.debug("EMV %s -> %s, %d data bytes", what, answer.describe(), len(data))
        return ResponseAPDU(data, answer.sw)


def _require_ok(answer: ResponseAPDU, what: str) -> None:
    if answer.sw != SW_OK:
        raise EmvError(f"{what} answered {answer.describe()}")


def _tokenise(objects: Iterable[Tlv], token_key: bytes) -> tuple[str, str | None] | None:
    """(token, expiry YYMM) if these data objects carry a PAN, else None."""
    pan = emv.pan_from(objects)  # EmvError reasons name the tag, never the digits
    if pan is None:
        return None
    return pan_token(token_key, pan), emv.expiry_from(objects)


def _choose(link: _Link, candidates: tuple[emv.DirectoryEntry, ...]) -> tuple[emv.DirectoryEntry, emv.ApplicationFci]:
    """Select the first candidate that answers 9000 (EMV Book B 3.3.3)."""
    for entry in candidates:
        answer = link.send(emv.select_application(entry.aid), f"SELECT {entry.aid.hex().upper()}")
        if answer.sw != SW_OK:
            continue
        fci = emv.parse_application_fci(answer.data)
        if fci.df_name != entry.aid:
            raise EmvError(f"SELECT {entry.aid.hex().upper()} answered for another DF name")
        return entry, fci
    raise EmvError("no application of the PPSE directory could be selected")


def read_token(transmit: Callable[[bytes], bytes], token_key: bytes, *,
               unpredictable_number: bytes | None = None, today: date | None = None,
               amount: int = 0, supported_aids: Iterable[bytes] | None = None) -> EmvRead | None:
    """Read an EMV contactless card through transmit and return its PAN token.

    unpredictable_number: the 4 bytes of 9F37, fresh random bytes when None.
    today: the transaction date (9A), today in UTC when None.
    amount: 9F02 in minor units of the terminal currency (CNY).
    supported_aids: AIDs (or AID prefixes) the terminal accepts; None accepts all.
    """
    if not isinstance(token_key, (bytes, bytearray)) or len(token_key) < MIN_KEY_BYTES:
        raise ValueError(f"the token key has at least {MIN_KEY_BYTES} bytes")
    terminal = emv.TerminalData(
        transaction_date=today or datetime.now(timezone.utc).date(),
        unpredictable_number=os.urandom(4) if unpredictable_number is None else bytes(unpredictable_number),
        amount=amount,
    )
    link = _Link(transmit)

    ppse = link.send(emv.select_ppse(), "SELECT PPSE")
    if ppse.sw in NO_PPSE:
        return None
    _require_ok(ppse, "SELECT PPSE")
    candidates = emv.choose_applications(emv.parse_ppse_fci(ppse.data), supported_aids)
    if not candidates:
        log.debug("EMV PPSE lists no application this terminal accepts")
        return None
    entry, fci = _choose(link, candidates)
    label = fci.label or entry.label

    gpo = link.send(emv.get_processing_options(emv.fill_dol(fci.pdol, terminal.values())), "GPO")
    _require_ok(gpo, "GPO")
    options = emv.parse_gpo_response(gpo.data)

    found = _tokenise(options.data, token_key)  # qVSDC cards may answer the PAN in the GPO
    for sfi, number in ((afl.sfi, n) for afl in options.afl for n in afl.records()):
        if found:
            break
        what = f"READ RECORD SFI {sfi} #{number}"
        answer = link.send(emv.read_record(sfi, number), what)
        _require_ok(answer, what)
        if sfi > 10 and not answer.data.startswith(b"\x70"):
            continue  # SFI 11 to 30 hold issuer formats, not EMV records
        try:
            objects = emv.parse_record(answer.data)
        except EmvError:
            raise EmvError(f"{what} is not a well-formed record template (70)") from None
        found = _tokenise(objects, token_key)
    if not found:
        raise EmvError("the card's records hold no PAN (5A) or track 2 equivalent (57)")
    token, expiry = found
    return EmvRead(token=token, aid=entry.aid.hex().upper(), label=label, expiry=expiry, apdus=link.count)
