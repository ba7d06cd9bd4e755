"""The tapstack purse applet protocol: commands, FCI, signed receipts, issuer authorisations.

A stored-value purse on the card, in the manner of the Calypso and PBOC e-purses but
signed with Ed25519: the card keeps a balance, a transaction counter and a log of its
last receipts; every debit or top-up is answered with a receipt signed by the card key,
whose certificate (protocol/certs.py) the issuer signed. Top-ups and locking are
authorised by the issuer's signature, which the card checks with the issuer public key
it holds. docs/card-protocol.md gives every command's bytes and test vectors.

Pure: builders and parsers over bytes and frozen values. Times on the wire are unix
seconds (4 bytes); builders also accept timezone-aware datetimes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from protocol import certs, ed25519, tlv
from protocol import currency as iso4217
from protocol.apdu import (SW_AUTH_FAILED, SW_REFERENCED_DATA_NOT_FOUND, CommandAPDU,
                           select_by_name, sw_name)

# Proprietary RID F0 (ISO 7816-5: no registration), then "tapstack", then version 01.
AID = bytes.fromhex("F0746170737461636B01")
CLA = 0x80
INS_TOPUP = 0x52
INS_DEBIT = 0x54
INS_LOCK = 0x56
INS_GET_RECEIPT = 0x5A

VERSION = 1
STATUS_ACTIVE = 0x00
STATUS_LOCKED = 0x01
KIND_DEBIT = 0x01
KIND_TOPUP = 0x02

MAX_TRANSACTION_AMOUNT = 100_000  # the most one debit or top-up moves, minor units (1 000.00 CNY)
MAX_BALANCE = 100_000  # balance ceiling, minor units
MAX_COUNTER = 0xFFFFFFFF  # a card whose counter reached this refuses further transactions
RECEIPT_LOG_SIZE = 8  # receipts the card keeps, newest last

ID_SIZE = 8  # card id, terminal id
NONCE_SIZE = 8

# Purse status words beyond ISO 7816-4 (the 94xx range, as the PBOC e-purse uses it).
SW_INSUFFICIENT_BALANCE = 0x9401
SW_BALANCE_LIMIT = 0x9402  # a top-up would take the balance over MAX_BALANCE
SW_LOCKED = SW_AUTH_FAILED  # 6983: the purse is locked
SW_NO_RECEIPT = SW_REFERENCED_DATA_NOT_FOUND  # 6A88: no such receipt in the log
PURSE_SW_NAMES = {
    SW_INSUFFICIENT_BALANCE: "insufficient balance",
    SW_BALANCE_LIMIT: "balance limit exceeded",
    SW_LOCKED: "purse locked",
    SW_NO_RECEIPT: "no such receipt",
}

RECEIPT_DOMAIN = b"tapstack/receipt/v1"
TOPUP_DOMAIN = b"tapstack/topup/v1"
LOCK_DOMAIN = b"tapstack/lock/v1"

# The currencies a purse may hold -> ISO 4217 numeric code (2 bytes BCD on the wire).
CURRENCY_CODES = {alpha: iso4217.numeric(alpha)
                  for alpha in ("CNY", "HKD", "MOP", "TWD", "SGD", "JPY", "KRW", "USD", "EUR", "GBP")}
_CURRENCY_BY_CODE = {code: alpha for alpha, code in CURRENCY_CODES.items()}

PURSE_DATA_SIZE = 20
RECEIPT_BODY_SIZE = 44
RECEIPT_SIZE = RECEIPT_BODY_SIZE + ed25519.SIGNATURE_SIZE  # 108
DEBIT_SIZE = 26
TOPUP_BODY_SIZE = 22
TOPUP_SIZE = TOPUP_BODY_SIZE + ed25519.SIGNATURE_SIZE  # 86

TAG_FCI, TAG_DF_NAME, TAG_PROPRIETARY = 0x6F, 0x84, 0xA5
TAG_PURSE_DATA, TAG_CERTIFICATE = 0xC0, 0xC1


class PurseError(ValueError):
    """Bytes that are not a well-formed purse message (FCI, command data, receipt)."""


class BadReceipt(PurseError):
    """A receipt that does not verify: bad certificate, bad signature or another card's."""


def purse_sw_name(sw: int) -> str:
    """The name of a status word, purse-specific ones included: purse_sw_name(0x9401)."""
    return PURSE_SW_NAMES.get(sw) or sw_name(sw)


def unix_seconds(t: datetime | int) -> int:
    """Unix seconds of a timezone-aware datetime (or an int, passed through)."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError("time must be timezone-aware (UTC)")
        return int(t.timestamp())
    return int(t)


def currency_bytes(currency: str) -> bytes:
    """ISO 4217 alpha code to its numeric code as 2 bytes BCD: 'CNY' -> 01 56."""
    try:
        return bytes.fromhex(f"{CURRENCY_CODES[currency]:04d}")
    except KeyError:
        raise ValueError(f"unsupported currency {currency!r}") from None


def currency_from_bytes(raw: bytes) -> str:
    code = raw.hex()
    if not code.isdigit() or int(code) not in _CURRENCY_BY_CODE:
        raise PurseError(f"unknown currency code {code}")
    return _CURRENCY_BY_CODE[int(code)]


def _u32(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} must fit in 4 bytes")
    return value.to_bytes(4, "big")


def _sized(value: bytes, size: int, name: str) -> bytes:
    value = bytes(value)
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
    return value


def _amount(amount: int) -> bytes:
    if not 1 <= amount <= MAX_TRANSACTION_AMOUNT:
        raise ValueError(f"amount must be 1..{MAX_TRANSACTION_AMOUNT}, got {amount}")
    return amount.to_bytes(4, "big")


# --- BER-TLV, just what the FCI needs --------------------------------------------------

def _tlv(tag: int, value: bytes) -> bytes:
    return tlv.tag_bytes(tag) + tlv.encode_length(len(value)) + value


def _tlv_items(data: bytes) -> list[tuple[int, bytes]]:
    """Split concatenated BER-TLV objects; multi-byte tags come back as one integer.

    Not tlv.parse: that one skips 00 and FF between objects as EMV record padding,
    while an FCI has no padding, so a stray byte after it is refused here."""
    items, i = [], 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:  # multi-byte tag: continue while bit 8 is set
            while True:
                if i >= len(data):
                    raise PurseError("truncated tag")
                tag = tag << 8 | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
        if i >= len(data):
            raise PurseError("truncated length")
        n = data[i]
        i += 1
        if n & 0x80:
            size = n & 0x7F
            if size not in (1, 2) or i + size > len(data):
                raise PurseError("bad length field")
            n = int.from_bytes(data[i:i + size], "big")
            i += size
        if i + n > len(data):
            raise PurseError("value runs past the end")
        items.append((tag, bytes(data[i:i + n])))
        i += n
    return items


# --- SELECT and the FCI ----------------------------------------------------------------

@dataclass(frozen=True)
class Fci:
    """What SELECT tells the terminal: who the card is and what it holds."""
    card_id: bytes
    currency: str
    balance: int
    counter: int  # transactions done so far; the next receipt carries counter + 1
    locked: bool
    certificate: bytes  # protocol/certs.py layout, 113 bytes

    def purse_data(self) -> bytes:
        return (bytes((VERSION, STATUS_LOCKED if self.locked else STATUS_ACTIVE))
                + _sized(self.card_id, ID_SIZE, "card id") + currency_bytes(self.currency)
                + _u32(self.balance, "balance") + _u32(self.counter, "counter"))

    def to_bytes(self) -> bytes:
        proprietary = _tlv(TAG_PURSE_DATA, self.purse_data()) + _tlv(TAG_CERTIFICATE, self.certificate)
        return _tlv(TAG_FCI, _tlv(TAG_DF_NAME, AID) + _tlv(TAG_PROPRIETARY, proprietary))


def select_command() -> bytes:
    """00 A4 04 00 0A F0746170737461636B01 00."""
    return select_by_name(AID).to_bytes()


def parse_fci(data: bytes) -> Fci:
    """Parse the FCI a purse answers to SELECT; raise PurseError if it is not one."""
    top = _tlv_items(bytes(data))
    if len(top) != 1 or top[0][0] != TAG_FCI:
        raise PurseError("not an FCI template")
    inner = dict(_tlv_items(top[0][1]))
    if inner.get(TAG_DF_NAME) != AID:
        raise PurseError("FCI names another application")
    if TAG_PROPRIETARY not in inner:
        raise PurseError("FCI without purse data")
    fields = dict(_tlv_items(inner[TAG_PROPRIETARY]))
    raw, cert = fields.get(TAG_PURSE_DATA), fields.get(TAG_CERTIFICATE)
    if raw is None or len(raw) != PURSE_DATA_SIZE:
        raise PurseError("purse data missing or of the wrong size")
    if cert is None or len(cert) != certs.SIZE:
        raise PurseError("certificate missing or of the wrong size")
    if raw[0] != VERSION or raw[1] not in (STATUS_ACTIVE, STATUS_LOCKED):
        raise PurseError(f"unknown purse version {raw[0]} or status {raw[1]}")
    return Fci(raw[2:10], currency_from_bytes(raw[10:12]), int.from_bytes(raw[12:16], "big"),
               int.from_bytes(raw[16:20], "big"), raw[1] == STATUS_LOCKED, cert)


# --- DEBIT -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Debit:
    """The data of a DEBIT command: what the terminal asks the card to pay."""
    amount: int
    currency: str
    terminal_id: bytes
    nonce: bytes  # the terminal's transaction id, echoed in the receipt
    time: int  # terminal time, unix seconds

    def to_bytes(self) -> bytes:
        return (_amount(self.amount) + currency_bytes(self.currency)
                + _sized(self.terminal_id, ID_SIZE, "terminal id") + _sized(self.nonce, NONCE_SIZE, "nonce")
                + _u32(self.time, "time"))


def debit_command(amount: int, currency: str, terminal_id: bytes, nonce: bytes,
                  time: datetime | int) -> bytes:
    """80 54 00 00 1A <amount 4, currency 2, terminal id 8, nonce 8, time 4> 00."""
    data = Debit(amount, currency, terminal_id, nonce, unix_seconds(time)).to_bytes()
    return CommandAPDU(CLA, INS_DEBIT, 0, 0, data, le=256).to_bytes()


def parse_debit(data: bytes) -> Debit:
    """Card side: the DEBIT data field. Length is checked by the caller (6700)."""
    if len(data) != DEBIT_SIZE:
        raise PurseError(f"DEBIT data is {DEBIT_SIZE} bytes")
    return Debit(int.from_bytes(data[0:4], "big"), currency_from_bytes(data[4:6]), bytes(data[6:14]),
                 bytes(data[14:22]), int.from_bytes(data[22:26], "big"))


# --- receipts --------------------------------------------------------------------------

@dataclass(frozen=True)
class Receipt:
    """A transaction the card signed: a debit at a terminal or an issuer's top-up."""
    kind: int  # KIND_DEBIT or KIND_TOPUP
    card_id: bytes
    counter: int  # this transaction's number: the counter after it
    amount: int
    balance_after: int
    currency: str
    terminal_id: bytes  # zeros for a top-up
    nonce: bytes  # the terminal's nonce; a top-up's issuer reference
    time: int  # unix seconds, as the terminal or issuer sent it
    signature: bytes = b""

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.time, timezone.utc)

    def body(self) -> bytes:
        return (bytes((VERSION, self.kind)) + _sized(self.card_id, ID_SIZE, "card id")
                + _u32(self.counter, "counter") + _u32(self.amount, "amount")
                + _u32(self.balance_after, "balance") + currency_bytes(self.currency)
                + _sized(self.terminal_id, ID_SIZE, "terminal id") + _sized(self.nonce, NONCE_SIZE, "nonce")
                + _u32(self.time, "time"))

    def to_bytes(self) -> bytes:
        return self.body() + self.signature


def sign_receipt(card_seed: bytes, receipt: Receipt) -> Receipt:
    """Card side: the receipt with the card's signature of RECEIPT_DOMAIN + body."""
    return replace(receipt, signature=ed25519.sign(card_seed, RECEIPT_DOMAIN + receipt.body()))


def parse_receipt(raw: bytes) -> Receipt:
    """Parse a receipt without verifying it; raise PurseError if malformed."""
    raw = bytes(raw)
    if len(raw) != RECEIPT_SIZE:
        raise PurseError(f"a receipt is {RECEIPT_SIZE} bytes, got {len(raw)}")
    if raw[0] != VERSION or raw[1] not in (KIND_DEBIT, KIND_TOPUP):
        raise PurseError(f"unknown receipt version {raw[0]} or kind {raw[1]}")
    return Receipt(raw[1], raw[2:10], int.from_bytes(raw[10:14], "big"), int.from_bytes(raw[14:18], "big"),
                   int.from_bytes(raw[18:22], "big"), currency_from_bytes(raw[22:24]), raw[24:32],
                   raw[32:40], int.from_bytes(raw[40:44], "big"), raw[44:])


def check_receipt_signature(receipt: Receipt, certificate: certs.Certificate) -> Receipt:
    """Check that receipt is signed by the card the (already verified) certificate names."""
    if receipt.card_id != certificate.card_id:
        raise BadReceipt(f"receipt of card {receipt.card_id.hex()}, certificate of card "
                         f"{certificate.card_id.hex()}")
    if not ed25519.verify(certificate.card_public_key, RECEIPT_DOMAIN + receipt.body(), receipt.signature):
        raise BadReceipt("card signature does not verify")
    return receipt


def verify_receipt(receipt: bytes, certificate: bytes | certs.Certificate,
                   issuer_keys: dict[bytes, bytes], now: datetime | int) -> Receipt:
    """Verify a receipt offline: the certificate against the issuer keys (by key id) at now,
    then the card's signature. Return the Receipt or raise BadReceipt saying what is wrong."""
    try:
        cert = certificate if isinstance(certificate, certs.Certificate) else certs.parse(certificate)
        certs.verify(cert, issuer_keys, unix_seconds(now))
    except certs.BadCertificate as e:
        raise BadReceipt(f"bad certificate: {e}") from e
    return check_receipt_signature(parse_receipt(receipt), cert)


def get_receipt_command(counter: int | None = None) -> bytes:
    """80 5A 00 00 00: the last receipt; 80 5A 00 00 04 <counter> 00: that transaction's."""
    data = b"" if counter is None else _u32(counter, "counter")
    return CommandAPDU(CLA, INS_GET_RECEIPT, 0, 0, data, le=256).to_bytes()


# --- issuer authorisations: TOP-UP and LOCK ----------------------------------------------

@dataclass(frozen=True)
class TopUp:
    """The data of a TOP-UP command, signed by the issuer for one card at one counter."""
    amount: int
    currency: str
    counter: int  # the card's counter before the top-up: an authorisation is good once
    reference: bytes  # the issuer's 8-byte top-up id, echoed as the receipt's nonce
    time: int
    signature: bytes = b""

    def body(self) -> bytes:
        return (_amount(self.amount) + currency_bytes(self.currency) + _u32(self.counter, "counter")
                + _sized(self.reference, NONCE_SIZE, "reference") + _u32(self.time, "time"))

    def to_bytes(self) -> bytes:
        return self.body() + self.signature


def topup_message(card_id: bytes, topup: TopUp) -> bytes:
    """What the issuer signs: TOPUP_DOMAIN + card id + the TOP-UP body."""
    return TOPUP_DOMAIN + _sized(card_id, ID_SIZE, "card id") + topup.body()


def authorise_topup(issuer_seed: bytes, card_id: bytes, counter: int, amount: int, currency: str,
                    reference: bytes, time: datetime | int) -> bytes:
    """Issuer side: the 86-byte TOP-UP data crediting amount to card_id at counter."""
    unsigned = TopUp(amount, currency, counter, bytes(reference), unix_seconds(time))
    return replace(unsigned, signature=ed25519.sign(issuer_seed, topup_message(card_id, unsigned))).to_bytes()


def topup_command(authorisation: bytes) -> bytes:
    """80 52 00 00 56 <authorisation from authorise_topup> 00."""
    return CommandAPDU(CLA, INS_TOPUP, 0, 0, _sized(authorisation, TOPUP_SIZE, "authorisation"),
                       le=256).to_bytes()


def parse_topup(data: bytes) -> TopUp:
    if len(data) != TOPUP_SIZE:
        raise PurseError(f"TOP-UP data is {TOPUP_SIZE} bytes")
    return TopUp(int.from_bytes(data[0:4], "big"), currency_from_bytes(data[4:6]),
                 int.from_bytes(data[6:10], "big"), bytes(data[10:18]), int.from_bytes(data[18:22], "big"),
                 bytes(data[22:]))


def authorise_lock(issuer_seed: bytes, card_id: bytes) -> bytes:
    """Issuer side: the 64-byte signature that locks card_id for good."""
    return ed25519.sign(issuer_seed, LOCK_DOMAIN + _sized(card_id, ID_SIZE, "card id"))


def lock_command(authorisation: bytes) -> bytes:
    """80 56 00 00 40 <issuer signature of LOCK_DOMAIN + card id>."""
    return CommandAPDU(CLA, INS_LOCK, 0, 0, _sized(authorisation, ed25519.SIGNATURE_SIZE,
                                                   "authorisation")).to_bytes()
