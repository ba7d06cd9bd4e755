"""Signed pay codes and QR tickets: round trips, and every reason a code is refused."""
import base64
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from protocol import certs, ed25519, signed_qr
from protocol.signed_qr import (BadEncoding, BadSignature, Expired, InvalidCertificate, NotYetValid,
                                PayCode, Replayed, Ticket, UnknownIssuer)

ISSUER_SEED = bytes(range(32))
OTHER_ISSUER_SEED = bytes(range(100, 132))
WALLET_SEED = bytes(range(1, 33))
CARD_ID = bytes.fromhex("0000000000000042")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
NONCE = bytes.fromhex("a1b2c3d4e5f60718")
DOC = Path(__file__).resolve().parents[2] / "docs" / "qr-formats.md"

# The vectors of docs/qr-formats.md: Ed25519 signatures are deterministic, so are codes.
PAY_BYTES = (
    "01016b0970c0003ca1b2c3d4e5f607180156475aa7000000000000004279b5562e8fe654f94078b112e8a98b"
    "a7901f853ae695bed7e0e3910bad0496646ceaa440d0466a63c383c6f56c3babd60be4dc31133ebb899c0c62"
    "08541a2f6f8594700cf276a2d2ceca6752657900ff4a37385cf386738a429f8b9c528a197f50acc20c009c00"
    "001388dc7de87546985dde394ea6d578e45eda87f31278bf40dc443551aceebf96244670e7a025e1d4ef31f5"
    "83485e255d79056e8de84d0878b93a2d89eb7180763700")
PAY_TEXT = (
    "TS:W50-NDJBEF10*JK2YOA3TG+0R70-0925L0000000007I8R-M**5E5T/MVRBFPH2NJLB8LE:33K7*-I4DRRYSJL"
    "14Q0DVC%TTW88Q+8ORCTTG81VKO7U2R/-S896*-7%HHKP1H21/D3J4EKYITS1+:EBTQKQPXIAGDFECW6:6ZXB*:GO"
    "LHS7KDYJSKHC4G $LCN1LWJJ00QDHC-F7$EZBJ94SJ.9I:Q7*S8SR WU-BF:881S8SEA98U6:IW+8VCTMZ4G-Q9E6"
    "%QGQ+BY B+U0D.HAX9ZBF/F7RJHVFEN.E00")
TICKET_TEXT = (
    "TS:X50-NDJBEF10*JK2YOA3TG+0R70-0925L0000000007I8R-M**5E5T/MVRBFPH2NJLB8LE:33K7*-I4DRRYSJL"
    "14Q0DVC%TTW88Q+8ORCTTG81VKO7U2R/-S896*-7%HHKP1H21/D3J4EKYITS1+:EBTQKQPXIAGDFECW6:6ZXB*:GO"
    "LHS7KDYJSKHC4G $L6P1ON9646646Y869.0H81SDM+F1636PG83K65-IVC07+VZ8F$8WQ1A1$0:/3VSSPP63XOQ2W"
    "WAN.W92/Q8D5-C4A318DO7UGPWPL08ZRP-.ISOAK5AG6WW0LWAWYPSJ6030")
CERT_NOT_AFTER = datetime(2027, 11, 27, 12, 0, tzinfo=timezone.utc)


def issuer_keys(*seeds):
    return {certs.key_id(ed25519.public_key(s)): ed25519.public_key(s) for s in seeds or (ISSUER_SEED,)}


def certificate(issuer_seed=ISSUER_SEED, wallet_seed=WALLET_SEED, not_after=NOW + timedelta(days=365)):
    return certs.issue(issuer_seed, CARD_ID, ed25519.public_key(wallet_seed), int(not_after.timestamp()))


def pay(**changes):
    args = dict(issued_at=NOW, nonce=NONCE, lifetime=60, limit=5000, currency="CNY")
    return signed_qr.pay_code(WALLET_SEED, certificate(), **{**args, **changes})


def ticket(**changes):
    args = dict(issued_at=NOW, nonce=NONCE, ticket_id=b"TKT00001", product=7, route="B12",
                valid_from=NOW - timedelta(hours=1), valid_until=NOW + timedelta(hours=23))
    return signed_qr.ticket_code(WALLET_SEED, certificate(), **{**args, **changes})


def resign(text, mutate, seed=WALLET_SEED):
    """Change the signed bytes of a code and sign again with seed: a well-formed forgery."""
    signed, _ = signed_qr.decode(text)
    signed = mutate(bytearray(signed))
    sig = ed25519.sign(seed, signed_qr.SIGN_DOMAIN + bytes(signed))
    return signed_qr.PREFIX + signed_qr.b45encode(bytes(signed) + sig)


def test_vectors_are_stable_and_in_the_docs():
    cert = certificate(not_after=CERT_NOT_AFTER)
    text = signed_qr.pay_code(WALLET_SEED, cert, issued_at=NOW, nonce=NONCE, lifetime=60,
                              limit=5000, currency="CNY")
    assert text == PAY_TEXT
    assert signed_qr.b45decode(text[3:]).hex() == PAY_BYTES
    assert signed_qr.ticket_code(WALLET_SEED, cert, issued_at=NOW, nonce=NONCE, ticket_id=b"TKT00001",
                                 product=7, route="B12", valid_from=NOW - timedelta(hours=1),
                                 valid_until=NOW + timedelta(hours=23)) == TICKET_TEXT
    doc = DOC.read_text(encoding="utf-8")
    for vector in (PAY_BYTES, PAY_TEXT, TICKET_TEXT):
        assert f"    {vector}\n" in doc
    assert certs.key_id(ed25519.public_key(ISSUER_SEED)).hex() in doc


def test_pay_code_round_trip():
    code = signed_qr.verify(pay(), issuer_keys(), NOW + timedelta(seconds=10))
    assert isinstance(code, PayCode)
    assert (code.card_id, code.nonce, code.limit, code.currency) == (CARD_ID, NONCE, 5000, "CNY")
    assert (code.issued_at, code.expires_at) == (NOW, NOW + timedelta(seconds=60))
    assert code.certificate == certificate()


def test_pay_code_without_limit():
    code = signed_qr.verify(pay(limit=None, currency=None), issuer_keys(), NOW)
    assert (code.limit, code.currency) == (None, None)


@pytest.mark.parametrize("currency, limit", [("JPY", 3000), ("KWD", 1500), ("XCG", 50), ("ISK", 999)])
def test_pay_code_limit_in_any_iso_4217_currency(currency, limit):
    code = signed_qr.verify(pay(limit=limit, currency=currency), issuer_keys(), NOW)
    assert (code.limit, code.currency) == (limit, currency)


@pytest.mark.parametrize("currency", ["ANG", "XYZ", "cny"])
def test_pay_code_limit_currency_must_read_back_as_itself(currency):
    # ANG's numeric code 532 now belongs to XCG: a code written in ANG would be read as XCG.
    with pytest.raises(ValueError, match="unknown currency"):
        pay(currency=currency)


def test_ticket_round_trip():
    code = signed_qr.verify(ticket(route="地铁2号线"), issuer_keys(), NOW)
    assert isinstance(code, Ticket)
    assert (code.ticket_id, code.product, code.route) == (b"TKT00001", 7, "地铁2号线")
    assert (code.valid_from, code.valid_until) == (NOW - timedelta(hours=1), NOW + timedelta(hours=23))


def test_text_is_qr_alphanumeric_and_compact():
    text = pay()
    alphanumeric = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    assert set(text) <= alphanumeric
    raw = signed_qr.b45decode(text[len(signed_qr.PREFIX):])
    assert len(raw) == 16 + certs.SIZE + 6 + 64
    assert len(text) < len(signed_qr.PREFIX + base64.b32encode(raw).decode().rstrip("="))


def test_signatures_are_deterministic():
    assert pay() == pay()
    assert pay() != pay(nonce=bytes(8))


@pytest.mark.parametrize("index", [0, 5, 40, 150, 250, -1])
def test_a_changed_character_is_refused(index):
    text = pay()
    i = index % len(text)
    if i < len(signed_qr.PREFIX):
        i = len(signed_qr.PREFIX)
    new = "0" if text[i] != "0" else "1"
    with pytest.raises((BadEncoding, BadSignature, InvalidCertificate)):
        signed_qr.verify(text[:i] + new + text[i + 1:], issuer_keys(), NOW)


@pytest.mark.parametrize("offset, refusal", [
    (2, BadSignature), (7, BadSignature), (9, BadSignature),  # issued at, lifetime, nonce
    (16 + 2, UnknownIssuer), (16 + 10, InvalidCertificate), (16 + 30, InvalidCertificate),  # cert
    (129 + 1, BadSignature), (129 + 5, BadSignature), (-1, BadSignature)])  # limit, signature
def test_tampered_bytes_are_refused(offset, refusal):
    signed, sig = signed_qr.decode(pay())
    raw = bytearray(signed + sig)
    raw[offset] ^= 0x01
    text = signed_qr.PREFIX + signed_qr.b45encode(bytes(raw))
    with pytest.raises(signed_qr.SignedQrError) as err:
        signed_qr.verify(text, issuer_keys(), NOW)
    assert type(err.value) is refusal


def test_raised_limit_signed_by_another_key_is_refused():
    other_wallet = bytes(range(50, 82))

    def raise_limit(b):
        b[-4:] = (10 ** 6).to_bytes(4, "big")
        return b
    with pytest.raises(BadSignature):
        signed_qr.verify(resign(pay(), raise_limit, seed=other_wallet), issuer_keys(), NOW)


def test_unknown_issuer():
    text = signed_qr.pay_code(WALLET_SEED, certificate(OTHER_ISSUER_SEED), issued_at=NOW, nonce=NONCE)
    with pytest.raises(UnknownIssuer, match="unknown issuer key"):
        signed_qr.verify(text, issuer_keys(), NOW)
    assert signed_qr.verify(text, issuer_keys(ISSUER_SEED, OTHER_ISSUER_SEED), NOW).card_id == CARD_ID


def test_certificate_claiming_a_known_issuer_but_signed_by_another():
    forged = certificate(OTHER_ISSUER_SEED)
    forged = certs.Certificate(certs.key_id(ed25519.public_key(ISSUER_SEED)), forged.card_id,
                               forged.card_public_key, forged.not_after, forged.signature)
    text = signed_qr.pay_code(WALLET_SEED, forged, issued_at=NOW, nonce=NONCE)
    with pytest.raises(InvalidCertificate, match="issuer signature"):
        signed_qr.verify(text, issuer_keys(), NOW)


def test_expired_certificate():
    text = signed_qr.pay_code(WALLET_SEED, certificate(not_after=NOW - timedelta(days=1)),
                              issued_at=NOW, nonce=NONCE)
    with pytest.raises(InvalidCertificate, match="expired"):
        signed_qr.verify(text, issuer_keys(), NOW)


def test_expiry_with_skew_allowance():
    text = pay(lifetime=60)
    assert signed_qr.verify(text, issuer_keys(), NOW + timedelta(seconds=60 + 30))
    with pytest.raises(Expired, match="expired at 2026-11-27 12:01:00"):
        signed_qr.verify(text, issuer_keys(), NOW + timedelta(seconds=60 + 31))
    with pytest.raises(Expired):
        signed_qr.verify(text, issuer_keys(), NOW + timedelta(seconds=65), skew=0)


def test_not_yet_valid_beyond_skew():
    text = pay()
    assert signed_qr.verify(text, issuer_keys(), NOW - timedelta(seconds=30))
    with pytest.raises(NotYetValid, match="31 s ahead"):
        signed_qr.verify(text, issuer_keys(), NOW - timedelta(seconds=31))


def test_long_lived_code_is_refused():
    text = pay(lifetime=3600)
    with pytest.raises(Expired, match="valid for 3600 s"):
        signed_qr.verify(text, issuer_keys(), NOW)
    assert signed_qr.verify(text, issuer_keys(), NOW, max_lifetime=3600)


def test_ticket_outside_its_validity():
    text = ticket(valid_from=NOW + timedelta(hours=2), valid_until=NOW + timedelta(hours=3))
    with pytest.raises(NotYetValid, match="ticket valid from"):
        signed_qr.verify(text, issuer_keys(), NOW)
    text = ticket(valid_from=NOW - timedelta(hours=3), valid_until=NOW - timedelta(hours=2))
    with pytest.raises(Expired, match="ticket validity ended"):
        signed_qr.verify(text, issuer_keys(), NOW)


def test_replay_is_refused_and_the_seen_set_is_pruned():
    first = signed_qr.verify(pay(), issuer_keys(), NOW)
    seen = signed_qr.refuse_replay(first, {}, NOW)
    with pytest.raises(Replayed, match="already used"):
        signed_qr.refuse_replay(first, seen, NOW + timedelta(seconds=5))
    other = signed_qr.verify(pay(nonce=bytes(8)), issuer_keys(), NOW)
    before = dict(seen)
    seen2 = signed_qr.refuse_replay(other, seen, NOW)
    assert seen == before and len(seen2) == 2  # the input is not changed
    # Once a code can no longer verify (expiry + skew passed), it leaves the set.
    later = NOW + timedelta(seconds=60 + 31)
    fresh = signed_qr.verify(pay(nonce=b"\xff" * 8, issued_at=later), issuer_keys(), later)
    assert set(signed_qr.refuse_replay(fresh, seen2, later)) == {fresh.replay_key}


def test_same_nonce_from_another_card_is_not_a_replay():
    seen = signed_qr.refuse_replay(signed_qr.verify(pay(), issuer_keys(), NOW), {}, NOW)
    other_card = certs.issue(ISSUER_SEED, bytes(7) + b"\x43", ed25519.public_key(WALLET_SEED),
                             int((NOW + timedelta(days=1)).timestamp()))
    code = signed_qr.verify(signed_qr.pay_code(WALLET_SEED, other_card, issued_at=NOW, nonce=NONCE),
                            issuer_keys(), NOW)
    assert len(signed_qr.refuse_replay(code, seen, NOW)) == 2


@pytest.mark.parametrize("text, words", [
    ("", "not a tapstack signed code"),
    ("000201010211", "not a tapstack signed code"),
    ("TS:abc", "not base45"),
    ("TS:AAAA", "single character"),
    ("TS::::", "out of range"),
    ("TS:" + signed_qr.b45encode(b"\x01" * 50), "at least"),
    ("TS:" + signed_qr.b45encode(b"\x09" * 250), "unknown version 9"),
])
def test_bad_encoding(text, words):
    with pytest.raises(BadEncoding, match=words):
        signed_qr.verify(text, issuer_keys(), NOW)


def test_unknown_kind_and_bad_body_are_bad_encoding():
    def kind(b):
        b[1] = 9
        return b
    with pytest.raises(BadEncoding, match="unknown kind 9"):
        signed_qr.verify(resign(pay(), kind), issuer_keys(), NOW)

    def route_length(b):
        b[-4] = 30
        return b
    with pytest.raises(BadEncoding, match="route length 30"):
        signed_qr.verify(resign(ticket(), route_length), issuer_keys(), NOW)


def test_issuing_refuses_mismatched_key_and_bad_values():
    with pytest.raises(ValueError, match="not the key in the certificate"):
        signed_qr.pay_code(bytes(32), certificate(), issued_at=NOW, nonce=NONCE)
    with pytest.raises(ValueError, match="go together"):
        pay(currency=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        pay(issued_at=datetime(2026, 11, 27))
    with pytest.raises(ValueError, match="nonce"):
        pay(nonce=b"short")
    with pytest.raises(ValueError, match="route"):
        ticket(route="R" * 33)


@pytest.mark.parametrize("raw, text", [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"),
                                       (b"base-45", "UJCLQE7W581"), (b"ietf!", "QED8WEX0"), (b"", "")])
def test_base45_rfc9285_vectors(raw, text):
    assert signed_qr.b45encode(raw) == text
    assert signed_qr.b45decode(text) == raw


@given(st.binary(max_size=300))
def test_base45_round_trip(raw):
    assert signed_qr.b45decode(signed_qr.b45encode(raw)) == raw


@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:abc", max_size=400))
def test_verify_never_fails_other_than_by_saying_why(text):
    with pytest.raises(signed_qr.SignedQrError):
        signed_qr.verify(signed_qr.PREFIX + text, issuer_keys(), NOW)
