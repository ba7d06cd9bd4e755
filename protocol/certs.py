"""Issuer certificates: the gateway (the issuer) vouches for a wallet's public key.

Layout, 113 bytes, integers big-endian:

    offset size  field
    0      1     version, 0x01
    1      4     issuer key id: the first 4 bytes of SHA-256(issuer public key)
    5      8     card id, assigned by the issuer
    13     32    card (wallet) Ed25519 public key
    45     4     not after, unix seconds UTC
    49     64    issuer Ed25519 signature of CERT_DOMAIN + bytes 0..48

A terminal holds the issuer public keys by key id, so an issuer can roll its key while
old certificates stay verifiable until they expire.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from protocol import ed25519

VERSION = 1
CERT_DOMAIN = b"tapstack/cert/v1"
SIZE = 113
_BODY = 49


class BadCertificate(ValueError):
    """The certificate is malformed, expired, from an unknown issuer or forged."""


@dataclass(frozen=True)
class Certificate:
    issuer_key_id: bytes
    card_id: bytes
    card_public_key: bytes
    not_after: int
    signature: bytes

    def body(self) -> bytes:
        return (bytes((VERSION,)) + self.issuer_key_id + self.card_id + self.card_public_key
                + self.not_after.to_bytes(4, "big"))

    def to_bytes(self) -> bytes:
        return self.body() + self.signature


def key_id(issuer_public_key: bytes) -> bytes:
    return hashlib.sha256(issuer_public_key).digest()[:4]


def issue(issuer_seed: bytes, card_id: bytes, card_public_key: bytes, not_after: int) -> Certificate:
    """Sign a certificate for card_public_key; card_id is 8 bytes, not_after unix seconds."""
    if len(card_id) != 8:
        raise ValueError("card id must be 8 bytes")
    if len(card_public_key) != ed25519.PUBLIC_KEY_SIZE:
        raise ValueError("card public key must be 32 bytes")
    unsigned = Certificate(key_id(ed25519.public_key(issuer_seed)), bytes(card_id),
                           bytes(card_public_key), int(not_after), b"")
    return Certificate(unsigned.issuer_key_id, unsigned.card_id, unsigned.card_public_key,
                       unsigned.not_after, ed25519.sign(issuer_seed, CERT_DOMAIN + unsigned.body()))


def parse(raw: bytes) -> Certificate:
    raw = bytes(raw)
    if len(raw) != SIZE:
        raise BadCertificate(f"a certificate is {SIZE} bytes, got {len(raw)}")
    if raw[0] != VERSION:
        raise BadCertificate(f"unknown certificate version {raw[0]}")
    return Certificate(raw[1:5], raw[5:13], raw[13:45], int.from_bytes(raw[45:49], "big"), raw[49:])


def verify(cert: Certificate, issuer_keys: dict[bytes, bytes], now: int) -> Certificate:
    """Check cert against the issuer public keys (by key id) at unix time now; return it or raise."""
    issuer_public = issuer_keys.get(cert.issuer_key_id)
    if issuer_public is None:
        raise BadCertificate(f"unknown issuer key {cert.issuer_key_id.hex()}")
    if not ed25519.verify(issuer_public, CERT_DOMAIN + cert.body(), cert.signature):
        raise BadCertificate("issuer signature does not verify")
    if now > cert.not_after:
        raise BadCertificate("certificate expired")
    return cert
