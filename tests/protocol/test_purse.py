"""The purse protocol: the test vectors of docs/card-protocol.md byte for byte, and the parsers."""
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import certs, ed25519
from protocol import purse

DOC = Path(__file__).resolve().parents[2] / "docs" / "card-protocol.md"

# The fixed inputs of the test vectors (docs/card-protocol.md, "Test vectors").
ISSUER_SEED = bytes(range(0x00, 0x20))
CARD_SEED = bytes(range(0x20, 0x40))
CARD_ID = bytes.fromhex("5441500000000001")
NOT_AFTER = 2_000_000_000
TERMINAL_ID = b"BUS00042"
NONCE = bytes(range(1, 9))
TIME = datetime(2027, 1, 1, tzinfo=timezone.utc)  # 1798761600
ISSUER_PUBLIC = ed25519.public_key(ISSUER_SEED)
ISSUER_KEYS = {certs.key_id(ISSUER_PUBLIC): ISSUER_PUBLIC}

VECTORS = {
    "issuer_public_key": "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
    "card_public_key": "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7",
    "certificate": "0156475aa7544150000000000129acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c8"
                   "9794bc9322966dd7773594002a33535c11b47a55009c3ef5b46204cdb946435dd08e7add12"
                   "3ad92931a64eb0e9a40e700e2edcc1b9a55107e0d697c4cd2f907e14b497ff231eafb69a3c4102",
    "select": "00a404000af0746170737461636b0100",
    "fci": "6f8198840af0746170737461636b01a58189c014010054415000000000010156000007d000000000c171"
           "0156475aa7544150000000000129acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc93"
           "22966dd7773594002a33535c11b47a55009c3ef5b46204cdb946435dd08e7add123ad92931a64eb0e9"
           "a40e700e2edcc1b9a55107e0d697c4cd2f907e14b497ff231eafb69a3c4102",
    "debit": "805400001a000000c80156425553303030343201020304050607086b36ec8000",
    "receipt": "0101544150000000000100000001000000c8000007080156425553303030343201020304050607086b"
               "36ec800e6524548b0e961a013f2b054ee65420829c609ac1923ab268e47a1c9e537b40d45ff9d59c9c"
               "78203386f3d771702c1574dd3e7ca5bce318ba5d29096781d10b",
    "get_last_receipt": "805a000000",
    "get_receipt_1": "805a0000040000000100",
    "topup": "805200005600001388015600000001544f5055503030316b36fa9010137106b5727f166a3453093735"
             "c739ff8603a20e113658d6472a96b0b44272649cf120c2d213878afaae41d49bccf160661e27ce48ecac"
             "ba86abda4acd3c0000",
    "topup_receipt": "01025441500000000001000000020000138800001a9001560000000000000000544f50555030"
                     "30316b36fa90ec2d16155dbd5b8647d3d925d461f1979ed9fe5fee037f6ea0112b4b3c0a6f71"
                     "284e4ab55fbaf28dd870237d22786cd389b914b5f8ae2e1819870d66136f290d",
    "lock": "80560000403b10b1404f9a91fa1cb9d211bfee80cc15998d7341765271eb732ef67c3b14f084cdb6f87c"
            "5999ac4c27f01f0bc59052e0c1c9276f35ef728b08626c7ba9e70e",
}


def vector(name: str) -> bytes:
    return bytes.fromhex(VECTORS[name])


def card_certificate() -> certs.Certificate:
    return certs.issue(ISSUER_SEED, CARD_ID, ed25519.public_key(CARD_SEED), NOT_AFTER)


def vector_fci() -> purse.Fci:
    return purse.Fci(CARD_ID, "CNY", 2000, 0, False, card_certificate().to_bytes())


def vector_receipt() -> purse.Receipt:
    return purse.sign_receipt(CARD_SEED, purse.Receipt(purse.KIND_DEBIT, CARD_ID, 1, 200, 1800, "CNY", TERMINAL_ID,
                                               NONCE, purse.unix_seconds(TIME)))


def test_every_vector_is_printed_in_the_docs():
    # The docs wrap long hex over lines of at most 64 digits; compare without whitespace.
    doc = "".join(DOC.read_text().lower().split())
    for name, hexdigits in VECTORS.items():
        assert hexdigits in doc, f"vector {name} missing from {DOC.name}"


def test_keys_and_certificate_vectors():
    assert ed25519.public_key(ISSUER_SEED) == vector("issuer_public_key")
    assert ed25519.public_key(CARD_SEED) == vector("card_public_key")
    assert card_certificate().to_bytes() == vector("certificate")


def test_select_and_fci_vectors():
    assert purse.select_command() == vector("select")
    assert vector_fci().to_bytes() == vector("fci")
    assert purse.parse_fci(vector("fci")) == vector_fci()


def test_debit_and_receipt_vectors():
    assert purse.debit_command(200, "CNY", TERMINAL_ID, NONCE, TIME) == vector("debit")
    assert vector_receipt().to_bytes() == vector("receipt")
    assert purse.parse_receipt(vector("receipt")) == vector_receipt()


def test_get_receipt_vectors():
    assert purse.get_receipt_command() == vector("get_last_receipt")
    assert purse.get_receipt_command(1) == vector("get_receipt_1")


def test_topup_and_lock_vectors():
    auth = purse.authorise_topup(ISSUER_SEED, CARD_ID, 1, 5000, "CNY", b"TOPUP001", 1798765200)
    assert purse.topup_command(auth) == vector("topup")
    topup_receipt = purse.sign_receipt(CARD_SEED, purse.Receipt(purse.KIND_TOPUP, CARD_ID, 2, 5000, 6800, "CNY",
                                                        bytes(8), b"TOPUP001", 1798765200))
    assert topup_receipt.to_bytes() == vector("topup_receipt")
    assert purse.lock_command(purse.authorise_lock(ISSUER_SEED, CARD_ID)) == vector("lock")


def test_verify_receipt_accepts_the_vector():
    receipt = purse.verify_receipt(vector("receipt"), vector("certificate"), ISSUER_KEYS, TIME)
    assert (receipt.card_id, receipt.counter, receipt.amount, receipt.balance_after) == (CARD_ID, 1, 200, 1800)
    assert receipt.at == TIME


@pytest.mark.parametrize("flip", [0, 2, 12, 16, 20, 23, 30, 38, 43, 44, 107])
def test_verify_receipt_refuses_any_changed_byte(flip):
    raw = bytearray(vector("receipt"))
    raw[flip] ^= 0x01
    with pytest.raises(purse.PurseError):
        purse.verify_receipt(bytes(raw), vector("certificate"), ISSUER_KEYS, TIME)


def test_verify_receipt_refuses_bad_certificates():
    other_issuer = bytes(32)
    forged = certs.issue(other_issuer, CARD_ID, ed25519.public_key(CARD_SEED), NOT_AFTER)
    with pytest.raises(purse.BadReceipt, match="unknown issuer"):
        purse.verify_receipt(vector("receipt"), forged, ISSUER_KEYS, TIME)
    with pytest.raises(purse.BadReceipt, match="expired"):
        purse.verify_receipt(vector("receipt"), vector("certificate"), ISSUER_KEYS, NOT_AFTER + 1)
    with pytest.raises(purse.BadReceipt, match="certificate"):
        purse.verify_receipt(vector("receipt"), vector("certificate")[:-1], ISSUER_KEYS, TIME)


def test_verify_receipt_refuses_another_cards_receipt():
    other_id = bytes.fromhex("5441500000000002")
    other_cert = certs.issue(ISSUER_SEED, other_id, ed25519.public_key(CARD_SEED), NOT_AFTER)
    with pytest.raises(purse.BadReceipt, match="certificate of card 5441500000000002"):
        purse.verify_receipt(vector("receipt"), other_cert, ISSUER_KEYS, TIME)
    # Same card id, another key: the signature gives it away.
    other_key = certs.issue(ISSUER_SEED, CARD_ID, ed25519.public_key(bytes(32)), NOT_AFTER)
    with pytest.raises(purse.BadReceipt, match="signature"):
        purse.verify_receipt(vector("receipt"), other_key, ISSUER_KEYS, TIME)


def test_receipt_domain_separates_it_from_other_signatures():
    # A receipt body signed without the domain (as if for another message type) does not verify.
    receipt = vector_receipt()
    bare = replace(receipt, signature=ed25519.sign(CARD_SEED, receipt.body()))
    with pytest.raises(purse.BadReceipt):
        purse.verify_receipt(bare.to_bytes(), vector("certificate"), ISSUER_KEYS, TIME)


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f[:-1], "runs past the end"),
    (lambda f: b"\x70" + f[1:], "not an FCI"),
    (lambda f: f.replace(purse.AID, b"\xA0" + purse.AID[1:]), "another application"),
    (lambda f: f.replace(bytes.fromhex("c01401"), bytes.fromhex("c01402")), "unknown purse version"),
    (lambda f: f.replace(bytes.fromhex("c014010054"), bytes.fromhex("c014010754")), "status"),
    (lambda f: f.replace(bytes.fromhex("0156000007d0"), bytes.fromhex("0999000007d0")), "currency"),
    (lambda f: f + b"\x00", "truncated length"),
    (lambda f: f + b"\x90\x00", "not an FCI"),
    (lambda f: b"", "not an FCI"),
])
def test_parse_fci_refuses_malformed(mutate, message):
    with pytest.raises(purse.PurseError, match=message):
        purse.parse_fci(mutate(vector("fci")))


def test_parse_fci_tolerates_extra_objects_in_the_proprietary_template():
    fci = vector_fci()
    extra = purse._tlv(0xC0, fci.purse_data()) + purse._tlv(0xC1, fci.certificate) + purse._tlv(0xDF20, b"\x01")
    raw = purse._tlv(0x6F, purse._tlv(0x84, purse.AID) + purse._tlv(0xA5, extra))
    assert purse.parse_fci(raw) == fci


@pytest.mark.parametrize("raw, message", [
    (bytes(107), "108 bytes"),
    (b"\x02" + bytes(107), "version"),
    (b"\x01\x03" + bytes(106), "kind"),
])
def test_parse_receipt_refuses_malformed(raw, message):
    with pytest.raises(purse.PurseError, match=message):
        purse.parse_receipt(raw)


@pytest.mark.parametrize("call, message", [
    (lambda: purse.debit_command(0, "CNY", TERMINAL_ID, NONCE, TIME), "amount"),
    (lambda: purse.debit_command(purse.MAX_AMOUNT + 1, "CNY", TERMINAL_ID, NONCE, TIME), "amount"),
    (lambda: purse.debit_command(200, "XXX", TERMINAL_ID, NONCE, TIME), "currency"),
    (lambda: purse.debit_command(200, "CNY", b"BUS", NONCE, TIME), "terminal id"),
    (lambda: purse.debit_command(200, "CNY", TERMINAL_ID, b"", TIME), "nonce"),
    (lambda: purse.debit_command(200, "CNY", TERMINAL_ID, NONCE, datetime(2027, 1, 1)), "timezone"),
    (lambda: purse.authorise_topup(ISSUER_SEED, CARD_ID, -1, 100, "CNY", b"TOPUP001", TIME), "counter"),
    (lambda: purse.topup_command(b"short"), "authorisation"),
    (lambda: purse.lock_command(b"short"), "authorisation"),
])
def test_builders_refuse_bad_values(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_currency_codes_round_trip_and_are_bcd():
    assert purse.currency_bytes("CNY") == b"\x01\x56"
    assert purse.currency_bytes("EUR") == b"\x09\x78"
    for alpha in purse.CURRENCY_CODES:
        assert purse.currency_from_bytes(purse.currency_bytes(alpha)) == alpha
    with pytest.raises(purse.PurseError):
        purse.currency_from_bytes(b"\x01\x5a")  # not BCD


def test_purse_status_words_have_names():
    assert purse.purse_sw_name(purse.SW_INSUFFICIENT_BALANCE) == "insufficient balance"
    assert purse.purse_sw_name(purse.SW_BALANCE_LIMIT) == "balance limit exceeded"
    assert purse.purse_sw_name(0x6A82) == "file or application not found"


# --- properties -------------------------------------------------------------------------

ids = st.binary(min_size=8, max_size=8)
u32 = st.integers(0, 0xFFFFFFFF)
currencies = st.sampled_from(sorted(purse.CURRENCY_CODES))


@given(ids, currencies, st.integers(0, purse.MAX_BALANCE), u32, st.booleans())
def test_fci_round_trips(card_id, currency, balance, counter, locked):
    fci = purse.Fci(card_id, currency, balance, counter, locked, vector("certificate"))
    assert purse.parse_fci(fci.to_bytes()) == fci


@given(st.sampled_from([purse.KIND_DEBIT, purse.KIND_TOPUP]), ids, u32, st.integers(1, purse.MAX_AMOUNT), u32, currencies,
       ids, ids, u32, st.binary(min_size=64, max_size=64))
def test_receipt_round_trips(kind, card_id, counter, amount, balance, currency, terminal_id, nonce, time, sig):
    receipt = purse.Receipt(kind, card_id, counter, amount, balance, currency, terminal_id, nonce, time, sig)
    assert purse.parse_receipt(receipt.to_bytes()) == receipt


@given(st.integers(1, purse.MAX_AMOUNT), currencies, ids, ids, u32)
def test_debit_round_trips(amount, currency, terminal_id, nonce, time):
    debit = purse.Debit(amount, currency, terminal_id, nonce, time)
    assert purse.parse_debit(debit.to_bytes()) == debit
    assert purse.debit_command(amount, currency, terminal_id, nonce, time)[5:31] == debit.to_bytes()


@settings(max_examples=500)
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=200).map(lambda b: purse._tlv(0x6F, b)),
                 st.binary(max_size=150).map(lambda b: purse._tlv(0x6F, purse._tlv(0x84, purse.AID) + purse._tlv(0xA5, b)))))
def test_parsers_refuse_random_bytes_with_purse_errors_only(raw):
    for parse in (purse.parse_fci, purse.parse_receipt, purse.parse_debit, purse.parse_topup):
        try:
            parse(raw)
        except purse.PurseError:
            pass
    with pytest.raises(purse.PurseError):
        purse.verify_receipt(raw[:108].ljust(108, b"\x01"), vector("certificate"), ISSUER_KEYS, TIME)
