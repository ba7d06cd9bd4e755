"""Keyed-hash tokens: independent HMAC check, domain separation, normalisation, no leaks."""
import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.tokens import is_low_assurance, pan_token, token_kind, uid_token

KEY = bytes(range(32))
PAN = "4242424242424242"


def test_pan_token_is_hmac_sha256_of_the_labelled_digits():
    mac = hmac.new(KEY, b"tapstack/token/pan/v1\x00" + PAN.encode(), hashlib.sha256).digest()
    assert pan_token(KEY, PAN) == "pan_" + base64.b32encode(mac[:20]).decode().lower()


def test_uid_token_is_hmac_sha256_of_the_labelled_uid():
    uid = bytes.fromhex("04A1B2C3D4E5F6")
    mac = hmac.new(KEY, b"tapstack/token/uid/v1\x00" + uid, hashlib.sha256).digest()
    assert uid_token(KEY, uid) == "uid_" + base64.b32encode(mac[:20]).decode().lower()


def test_pan_is_normalised_to_digits():
    assert pan_token(KEY, "4242 4242 4242 4242") == pan_token(KEY, PAN) == pan_token(KEY, "4242-4242-4242-4242")


def test_kinds_are_separated():
    # the same bytes read as a PAN and as a UID never give the same token body
    digits = "12345678"
    assert pan_token(KEY, digits)[4:] != uid_token(KEY, digits.encode())[4:]
    assert token_kind(pan_token(KEY, PAN)) == "pan" and not is_low_assurance(pan_token(KEY, PAN))
    assert token_kind(uid_token(KEY, b"\x01\x02\x03\x04")) == "uid"
    assert is_low_assurance(uid_token(KEY, b"\x01\x02\x03\x04"))
    assert token_kind("pan_short") is None and token_kind("card_" + "a" * 32) is None


def test_the_key_matters():
    assert pan_token(KEY, PAN) != pan_token(bytes(32), PAN)
    with pytest.raises(ValueError):
        pan_token(b"short", PAN)


@pytest.mark.parametrize("bad", ["", "4242", "4242x4242424242", "42424242424242424242", "४२४२४२४२४२४२"])
def test_bad_pans_are_refused_without_echoing_them(bad):
    with pytest.raises(ValueError) as info:
        pan_token(KEY, bad)
    assert bad == "" or bad not in str(info.value)


def test_empty_uid_is_refused():
    with pytest.raises(ValueError):
        uid_token(KEY, b"")


@settings(deadline=None)
@given(st.text("0123456789", min_size=8, max_size=19), st.text("0123456789", min_size=8, max_size=19))
def test_distinct_pans_get_distinct_tokens(a, b):
    assert (pan_token(KEY, a) == pan_token(KEY, b)) == (a == b)
    assert len(pan_token(KEY, a)) == 36 and token_kind(pan_token(KEY, a)) == "pan"
