"""Ed25519 signatures (RFC 8032), the one signature scheme of tapstack.

Ed25519 because its signatures are deterministic (the same key and message always give
the same 64 bytes, so the docs can carry byte-exact test vectors), its keys and
signatures are small enough for a short APDU, and it needs no random numbers at signing
time. A private key is its 32-byte seed; a public key is 32 bytes.
"""
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

SEED_SIZE = PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key of a 32-byte private seed."""
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign(seed: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True when signature is public's signature of message; never raises for bad input.

    Verified by libsodium (PyNaCl), which takes half the CPU time of OpenSSL's Ed25519 on
    the gateway's hardware (bench/README.md): verification is most of the cost of a
    purse tap's clearing. It also refuses public keys of small order, which no honest
    key is."""
    if len(public) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        crypto_sign_open(bytes(signature) + bytes(message), bytes(public))
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
