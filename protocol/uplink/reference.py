"""The reference data a terminal decides with, as the gateway serves them.

    GET KEYS_PATH            {"data": [{"key_id": hex, "public_key": hex}, ...]}: issuer keys
    GET DENY_LIST_PATH?since=N  the deny-list: in full, or the delta since version N
    GET FARE_RULES_PATH      the fare rules document (protocol.fares), 404 when none

`ReferenceData` is the bundle; the functions read each answer (ValueError when an
answer is not what it should be). The terminal downloads and caches them; the
gateway serves them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from protocol import fares

KEYS_PATH = "/v1/issuer/keys"
DENY_LIST_PATH = "/v1/issuer/deny-list"
FARE_RULES_PATH = "/v1/taps/fare-rules"


@dataclass(frozen=True)
class ReferenceData:
    issuer_keys: dict[bytes, bytes] = field(default_factory=dict)  # key id -> Ed25519 public key
    deny: frozenset[str] = frozenset()  # card ids and tokens refused
    deny_version: int = 0
    rules: fares.FareRules | None = None

    @property
    def rules_version(self) -> int | None:
        return self.rules.version if self.rules is not None else None


def deny_list_path(since: int) -> str:
    return f"{DENY_LIST_PATH}?since={int(since)}"


def issuer_keys(answer: Mapping) -> dict[bytes, bytes]:
    """The keys of GET KEYS_PATH's answer: key id -> public key."""
    try:
        return {bytes.fromhex(k["key_id"]): bytes.fromhex(k["public_key"]) for k in answer["data"]}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not an issuer keys answer: {e}") from None


def apply_deny_delta(entries: frozenset[str], version: int, answer: Mapping) -> tuple[frozenset[str], int]:
    """The deny-list after the gateway's answer to GET DENY_LIST_PATH?since=version.

    A full answer replaces the list; a delta adds and removes entries. An answer older
    than what is held changes nothing. ValueError for an answer that is not a deny-list.
    """
    try:
        new_version = int(answer["version"])
        if answer.get("full"):
            return frozenset(str(e["entry"]) for e in answer["entries"]), new_version
        if new_version < version:
            return entries, version
        added = {str(e["entry"]) for e in answer["added"]}
        removed = {str(e["entry"]) for e in answer["removed"]}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a deny-list answer: {e}") from None
    return frozenset((entries - removed) | added), new_version


def fare_rules(document: Mapping) -> fares.FareRules:
    """The fare rules of GET FARE_RULES_PATH's answer (ValueError when they do not parse)."""
    return fares.parse_rules(document)
