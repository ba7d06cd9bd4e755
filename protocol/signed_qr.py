"""Customer-presented QR codes: pay codes and QR tickets, signed by the wallet, checked offline.

A wallet shows a short-lived code; a till or a bus validator scans it and checks it with
nothing but the issuer public keys: the wallet's issuer certificate (protocol/certs.py)
vouches for the wallet's Ed25519 key, and that key signs the code.

Binary layout (version 1), integers big-endian:

    offset  size  field
    0       1     version, 0x01
    1       1     kind: 0x01 pay code, 0x02 ticket
    2       4     issued at, unix seconds UTC
    6       2     lifetime in seconds: expires at = issued at + lifetime
    8       8     nonce, random per code (passed in)
    16      113   the wallet's issuer certificate
    129     n     body, by kind (below)
    129+n   64    wallet Ed25519 signature of SIGN_DOMAIN + bytes 0..129+n

    pay code body, 6 bytes: limit currency (ISO 4217 numeric, 0 = no limit), limit amount
        (u32, minor units, 0 = no limit). The card id is the certificate's.
    ticket body: ticket id (8), product (u16), valid from (u32 unix), valid until (u32 unix),
        route length (u8, at most 32) and the route as UTF-8.

Text form: PREFIX + base45 (RFC 9285) of the bytes. Base45's alphabet is exactly the QR
alphanumeric set, 5.5 bits a character, so a 199-byte pay code is 302 characters and fits
a version 10 symbol at error correction M; base32 (no padding) needs 322 and version 11.

`verify` returns the code or raises a `SignedQrError` subclass saying why. Replay is a
separate decision over a passed-in seen-set (`refuse_replay`), so the validator and the
gateway each keep their own.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from protocol import certs, ed25519
from protocol import currency as iso4217

VERSION = 1
PAY_CODE, TICKET = 1, 2
PREFIX = "TS:"
SIGN_DOMAIN = b"tapstack/qr/v1"
NONCE_SIZE = 8
DEFAULT_SKEW = 30  # seconds of clock difference allowed between wallet and verifier
DEFAULT_MAX_LIFETIME = 300  # a code valid for longer than this is refused: it is not short-lived
MAX_ROUTE = 32

_HEADER = struct.Struct(">BBIH8s")  # version, kind, issued at, lifetime, nonce
_PAY_BODY = struct.Struct(">HI")
_TICKET_BODY = struct.Struct(">8sHIIB")
# A limit may be in any ISO 4217 currency whose numeric code reads back as itself (so not
# ANG, whose number XCG now carries).
_CURRENCY_NUMERIC = {c.alpha: c.numeric for c in iso4217.CURRENCIES.values() if iso4217.alpha(c.numeric) == c.alpha}
_CURRENCY_ALPHA = {number: alpha for alpha, number in _CURRENCY_NUMERIC.items()}


class SignedQrError(ValueError):
    """Why a code was refused; `reason` is a stable machine-readable word."""
    reason = "invalid"


class BadEncoding(SignedQrError):
    reason = "bad_encoding"


class UnknownIssuer(SignedQrError):
    reason = "unknown_issuer"


class InvalidCertificate(SignedQrError):
    reason = "bad_certificate"


class BadSignature(SignedQrError):
    reason = "bad_signature"


class Expired(SignedQrError):
    reason = "expired"


class NotYetValid(SignedQrError):
    reason = "not_yet_valid"


class Replayed(SignedQrError):
    reason = "replayed"


@dataclass(frozen=True)
class PayCode:
    """A wallet's offer to pay, up to limit (minor units of currency) when one is set."""
    card_id: bytes
    issued_at: datetime
    expires_at: datetime
    nonce: bytes
    certificate: certs.Certificate
    limit: int | None
    currency: str | None  # ISO 4217 alphabetic, with limit

    @property
    def replay_key(self) -> bytes:
        return self.card_id + self.nonce


@dataclass(frozen=True)
class Ticket:
    """A ticket shown by a wallet: product on route, valid from/until (the entitlement),
    in a code itself valid from issued_at to expires_at (the presentation)."""
    card_id: bytes
    issued_at: datetime
    expires_at: datetime
    nonce: bytes
    certificate: certs.Certificate
    ticket_id: bytes
    product: int
    route: str
    valid_from: datetime
    valid_until: datetime

    @property
    def replay_key(self) -> bytes:
        return self.card_id + self.nonce


# ------------------------------------------------------------------------ base45

_B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_B45_VALUE = {c: i for i, c in enumerate(_B45)}


def b45encode(data: bytes) -> str:
    """RFC 9285: two bytes become three characters, a last odd byte two."""
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += (_B45[c], _B45[d], _B45[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (_B45[c], _B45[d])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Inverse of b45encode; raises BadEncoding for characters or groups base45 cannot hold."""
    try:
        values = [_B45_VALUE[c] for c in text]
    except KeyError as missing:
        raise BadEncoding(f"character {missing.args[0]!r} is not base45") from None
    if len(values) % 3 == 1:
        raise BadEncoding("base45 text length leaves a single character")
    out = bytearray()
    for i in range(0, len(values), 3):
        group = values[i:i + 3]
        if len(group) == 3:
            n = group[0] + group[1] * 45 + group[2] * 2025
            if n > 0xFFFF:
                raise BadEncoding("base45 group out of range")
            out += n.to_bytes(2, "big")
        else:
            n = group[0] + group[1] * 45
            if n > 0xFF:
                raise BadEncoding("base45 group out of range")
            out.append(n)
    return bytes(out)


# ------------------------------------------------------------------------ issuing

def _unix(moment: datetime, name: str) -> int:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (UTC)")
    return int(moment.timestamp())


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _sign(wallet_seed: bytes, certificate: certs.Certificate | bytes, kind: int,
          issued_at: datetime, lifetime: int, nonce: bytes, body: bytes) -> str:
    cert = certs.parse(certificate) if isinstance(certificate, (bytes, bytearray)) else certificate
    if ed25519.public_key(wallet_seed) != cert.card_public_key:
        raise ValueError("the wallet key is not the key in the certificate")
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
    if not 1 <= lifetime <= 0xFFFF:
        raise ValueError("lifetime must be 1 to 65535 seconds")
    signed = (_HEADER.pack(VERSION, kind, _unix(issued_at, "issued_at"), lifetime, bytes(nonce))
              + cert.to_bytes() + body)
    return PREFIX + b45encode(signed + ed25519.sign(wallet_seed, SIGN_DOMAIN + signed))


def pay_code(wallet_seed: bytes, certificate: certs.Certificate | bytes, *, issued_at: datetime,
             nonce: bytes, lifetime: int = 60, limit: int | None = None,
             currency: str | None = None) -> str:
    """The text of a pay code; limit (minor units) and currency ("CNY") go together or not at all."""
    if (limit is None) != (currency is None):
        raise ValueError("limit and currency go together")
    if limit is None:
        body = _PAY_BODY.pack(0, 0)
    else:
        if currency not in _CURRENCY_NUMERIC:
            raise ValueError(f"unknown currency {currency!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 0xFFFFFFFF:
            raise ValueError("limit must be a positive integer of minor units below 2**32")
        body = _PAY_BODY.pack(_CURRENCY_NUMERIC[currency], limit)
    return _sign(wallet_seed, certificate, PAY_CODE, issued_at, lifetime, nonce, body)


def ticket_code(wallet_seed: bytes, certificate: certs.Certificate | bytes, *, issued_at: datetime,
                nonce: bytes, ticket_id: bytes, product: int, route: str, valid_from: datetime,
                valid_until: datetime, lifetime: int = 60) -> str:
    """The text of a QR ticket: the entitlement (valid_from..valid_until) in a short-lived code."""
    route_bytes = route.encode("utf-8")
    if len(ticket_id) != 8:
        raise ValueError("ticket id must be 8 bytes")
    if len(route_bytes) > MAX_ROUTE:
        raise ValueError(f"route must be at most {MAX_ROUTE} bytes of UTF-8")
    if not 0 <= product <= 0xFFFF:
        raise ValueError("product must fit 16 bits")
    start, end = _unix(valid_from, "valid_from"), _unix(valid_until, "valid_until")
    if end < start:
        raise ValueError("valid_until is before valid_from")
    body = _TICKET_BODY.pack(bytes(ticket_id), product, start, end, len(route_bytes)) + route_bytes
    return _sign(wallet_seed, certificate, TICKET, issued_at, lifetime, nonce, body)


# ----------------------------------------------------------------------- checking

def decode(text: str) -> tuple[bytes, bytes]:
    """Text -> (signed bytes, signature); raises BadEncoding."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise BadEncoding(f"not a tapstack signed code (it starts with {PREFIX!r})")
    raw = b45decode(text[len(PREFIX):])
    minimum = _HEADER.size + certs.SIZE + ed25519.SIGNATURE_SIZE
    if len(raw) < minimum:
        raise BadEncoding(f"{len(raw)} bytes; a signed code has at least {minimum}")
    if raw[0] != VERSION:
        raise BadEncoding(f"unknown version {raw[0]}")
    return raw[:-ed25519.SIGNATURE_SIZE], raw[-ed25519.SIGNATURE_SIZE:]


def _certificate(signed: bytes) -> certs.Certificate:
    try:
        return certs.parse(signed[_HEADER.size:_HEADER.size + certs.SIZE])
    except certs.BadCertificate as err:
        raise InvalidCertificate(str(err)) from None


def _read(signed: bytes) -> PayCode | Ticket:
    """The code in signed bytes; call it only once the signature has verified."""
    _, kind, issued, lifetime, nonce = _HEADER.unpack_from(signed)
    cert = _certificate(signed)
    body = signed[_HEADER.size + certs.SIZE:]
    common = dict(card_id=cert.card_id, issued_at=_utc(issued), expires_at=_utc(issued + lifetime),
                  nonce=nonce, certificate=cert)
    if kind == PAY_CODE:
        if len(body) != _PAY_BODY.size:
            raise BadEncoding(f"a pay code body is {_PAY_BODY.size} bytes, got {len(body)}")
        numeric, limit = _PAY_BODY.unpack(body)
        if numeric == 0 and limit == 0:
            return PayCode(limit=None, currency=None, **common)
        if numeric not in _CURRENCY_ALPHA or limit == 0:
            raise BadEncoding(f"limit {limit} in currency {numeric:03d}: a limit is positive, "
                              "in a known currency")
        return PayCode(limit=limit, currency=_CURRENCY_ALPHA[numeric], **common)
    if kind == TICKET:
        if len(body) < _TICKET_BODY.size:
            raise BadEncoding("ticket body truncated")
        ticket_id, product, start, end, route_len = _TICKET_BODY.unpack_from(body)
        route = body[_TICKET_BODY.size:]
        if len(route) != route_len:
            raise BadEncoding(f"route length {route_len}, got {len(route)} bytes")
        try:
            route_text = route.decode("utf-8")
        except UnicodeDecodeError:
            raise BadEncoding("route is not UTF-8") from None
        return Ticket(ticket_id=ticket_id, product=product, route=route_text, valid_from=_utc(start),
                      valid_until=_utc(end), **common)
    raise BadEncoding(f"unknown kind {kind}")


def verify(text: str, issuer_keys: dict[bytes, bytes], now: datetime, *, skew: int = DEFAULT_SKEW,
           max_lifetime: int = DEFAULT_MAX_LIFETIME) -> PayCode | Ticket:
    """Check a code offline at time now; return it or raise the SignedQrError saying why.

    The certificate and the signature are checked before the body is read and before the
    times, so a tampered code reads as a bad signature and "expired" is only ever said of
    a genuine code.
    """
    signed, signature = decode(text)
    at = _unix(now, "now")
    cert = _certificate(signed)
    if cert.issuer_key_id not in issuer_keys:
        raise UnknownIssuer(f"unknown issuer key {cert.issuer_key_id.hex()}")
    try:
        certs.verify(cert, issuer_keys, at)
    except certs.BadCertificate as err:
        raise InvalidCertificate(str(err)) from None
    if not ed25519.verify(cert.card_public_key, SIGN_DOMAIN + signed, signature):
        raise BadSignature("the wallet signature does not verify")
    code = _read(signed)
    lifetime = int((code.expires_at - code.issued_at).total_seconds())
    if lifetime > max_lifetime:
        raise Expired(f"code is valid for {lifetime} s; at most {max_lifetime} s is accepted")
    when = _utc(at)
    slack = timedelta(seconds=skew)
    if code.issued_at > when + slack:
        raise NotYetValid(f"code issued at {code.issued_at:%Y-%m-%d %H:%M:%S} UTC, "
                          f"{(code.issued_at - when).total_seconds():.0f} s ahead (allowance {skew} s)")
    if when > code.expires_at + slack:
        raise Expired(f"code expired at {code.expires_at:%Y-%m-%d %H:%M:%S} UTC")
    if isinstance(code, Ticket):
        if when + slack < code.valid_from:
            raise NotYetValid(f"ticket valid from {code.valid_from:%Y-%m-%d %H:%M:%S} UTC")
        if when > code.valid_until + slack:
            raise Expired(f"ticket validity ended at {code.valid_until:%Y-%m-%d %H:%M:%S} UTC")
    return code


def refuse_replay(code: PayCode | Ticket, seen: dict[bytes, datetime], now: datetime, *,
                  skew: int = DEFAULT_SKEW) -> dict[bytes, datetime]:
    """Accept code once: return the new seen-set (replay key -> code expiry), or raise Replayed.

    Entries whose codes `verify` would now refuse as expired are dropped, so the set holds
    only the last few minutes of codes. seen itself is not changed.
    """
    if code.replay_key in seen:
        raise Replayed(f"code {code.nonce.hex()} of card {code.card_id.hex()} was already used")
    horizon = now - timedelta(seconds=skew)
    kept = {key: expiry for key, expiry in seen.items() if expiry >= horizon}
    kept[code.replay_key] = code.expires_at
    return kept
