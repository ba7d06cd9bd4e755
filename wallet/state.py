"""The purse's persistent state: a plain value, and two tiny stores that keep it.

`PurseState` is everything the purse applet remembers between taps. A store's `save`
returns only once the state is durable, and the applet saves BEFORE its answer leaves,
so a crash or a tear between a debit and its answer neither loses nor duplicates value:
the next session finds the new balance and the receipt in the log.

`MemoryStore` is for tests; `FileStore` keeps the state in a wallet file (JSON, see
docs/card-protocol.md, "Wallet file"), written atomically: temp file, fsync, rename,
fsync of the directory. Sections of the file it does not own are kept as they are.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from protocol import certs, ed25519
from protocol.purse import (CURRENCY_CODES, ID_SIZE, MAX_BALANCE, MAX_COUNTER, RECEIPT_LOG_SIZE,
                            RECEIPT_SIZE)

WALLET_FORMAT = "tapstack-wallet/1"


class WalletFileError(ValueError):
    """A wallet file that cannot be read or does not hold a valid purse."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no balance


@dataclass(frozen=True)
class PurseState:
    card_id: bytes
    seed: bytes  # the card's Ed25519 private seed
    certificate: bytes  # issuer certificate of the card key, 113 bytes
    issuer_public_key: bytes  # verifies TOP-UP and LOCK authorisations
    currency: str
    balance: int
    counter: int = 0
    locked: bool = False
    receipts: tuple[bytes, ...] = ()  # the last RECEIPT_LOG_SIZE receipts, newest last

    def __post_init__(self):
        problems = []
        if len(self.card_id) != ID_SIZE:
            problems.append("card_id must be 8 bytes")
        if len(self.seed) != ed25519.SEED_SIZE or len(self.issuer_public_key) != ed25519.PUBLIC_KEY_SIZE:
            problems.append("seed and issuer_public_key must be 32 bytes")
        if self.currency not in CURRENCY_CODES:
            problems.append(f"unsupported currency {self.currency!r}")
        if not (_is_int(self.balance) and 0 <= self.balance <= MAX_BALANCE):
            problems.append(f"balance must be an integer 0..{MAX_BALANCE}")
        if not (_is_int(self.counter) and 0 <= self.counter <= MAX_COUNTER):
            problems.append("counter must fit in 4 bytes")
        if len(self.receipts) > RECEIPT_LOG_SIZE or any(len(r) != RECEIPT_SIZE for r in self.receipts):
            problems.append(f"receipts: at most {RECEIPT_LOG_SIZE} of {RECEIPT_SIZE} bytes")
        try:
            cert = certs.parse(self.certificate)
            if cert.card_id != self.card_id or cert.card_public_key != ed25519.public_key(self.seed):
                problems.append("certificate is not for this card id and key")
        except (certs.BadCertificate, ValueError) as e:
            problems.append(f"certificate: {e}")
        if problems:
            raise ValueError("; ".join(problems))

    def with_receipt(self, receipt: bytes, **changes) -> PurseState:
        """The state after a transaction: changes applied, receipt appended to the log."""
        return replace(self, receipts=(self.receipts + (bytes(receipt),))[-RECEIPT_LOG_SIZE:], **changes)

    def to_json(self) -> dict:
        return {"card_id": self.card_id.hex(), "seed": self.seed.hex(), "certificate": self.certificate.hex(),
                "issuer_public_key": self.issuer_public_key.hex(), "currency": self.currency,
                "balance": self.balance, "counter": self.counter, "locked": self.locked,
                "receipts": [r.hex() for r in self.receipts]}

    @classmethod
    def from_json(cls, doc: dict) -> PurseState:
        """Build from the "purse" section of a wallet file; raise WalletFileError if invalid."""
        try:
            return cls(bytes.fromhex(doc["card_id"]), bytes.fromhex(doc["seed"]),
                       bytes.fromhex(doc["certificate"]), bytes.fromhex(doc["issuer_public_key"]),
                       doc["currency"], doc["balance"], doc.get("counter", 0), bool(doc.get("locked", False)),
                       tuple(bytes.fromhex(r) for r in doc.get("receipts", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise WalletFileError(f"invalid purse section: {e}") from None


class MemoryStore:
    """Keeps the state in memory; `fail` makes the next saves raise, to test a failed write."""

    def __init__(self, state: PurseState):
        self.state = state
        self.fail = False
        self.saves = 0

    def save(self, state: PurseState) -> None:
        if self.fail:
            raise OSError("simulated write failure")
        self.state = state
        self.saves += 1


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace path with text so that a crash leaves either the old or the new file, whole."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def read_wallet(path: Path) -> dict:
    """The wallet file as a dict; raise WalletFileError with a one-line reason."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise WalletFileError(f"cannot read wallet file {path}: {e.strerror}") from None
    except ValueError as e:
        raise WalletFileError(f"wallet file {path} is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != WALLET_FORMAT:
        raise WalletFileError(f"wallet file {path} is not in format {WALLET_FORMAT}")
    return doc


class FileStore:
    """Keeps the state in the "purse" section of a wallet file."""

    def __init__(self, path: Path, doc: dict, state: PurseState):
        self.path = Path(path)
        self.doc = doc
        self.state = state

    @classmethod
    def open(cls, path: Path) -> FileStore:
        doc = read_wallet(path)
        if not isinstance(doc.get("purse"), dict):
            raise WalletFileError(f"wallet file {path} has no purse")
        return cls(path, doc, PurseState.from_json(doc["purse"]))

    @classmethod
    def create(cls, path: Path, state: PurseState, uid: bytes, name: str = "purse card",
               **sections) -> FileStore:
        """Write a new wallet file (mode 0600: it holds the card key); never over an existing one."""
        if Path(path).exists():
            raise WalletFileError(f"wallet file {path} already exists; it may hold value, so it is kept")
        store = cls(path, {"format": WALLET_FORMAT, "name": name, "uid": bytes(uid).hex(), **sections}, state)
        store.save(state)
        return store

    def save(self, state: PurseState) -> None:
        doc = {**self.doc, "purse": state.to_json()}
        write_atomically(self.path, json.dumps(doc, indent=2) + "\n")
        self.doc, self.state = doc, state
