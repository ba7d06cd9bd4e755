"""protocol.request_signing: the canonical request both sides build, and its checks."""
from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, strategies as st

from protocol import request_signing as rs

SECRET = bytes(range(32))
NONCE = "0123456789abcdef"


def test_canonical_request_is_the_documented_six_lines():
    body = b'{"amount":100}'
    expected = "\n".join(["TAPSTACK-HMAC-SHA256", "POST", "/v1/pos/authorizations?x=1", "1764234000",
                          NONCE, hashlib.sha256(body).hexdigest()]).encode()
    assert rs.canonical_request("post", "/v1/pos/authorizations?x=1", 1764234000, NONCE, body) == expected
    assert rs.sign(SECRET, "POST", "/v1/pos/authorizations?x=1", 1764234000, NONCE, body) == \
        hmac.new(SECRET, expected, hashlib.sha256).hexdigest()


@given(method=st.sampled_from(["GET", "POST"]), path=st.text(min_size=1, max_size=40),
       ts=st.integers(0, 2**40), body=st.binary(max_size=200))
def test_a_signature_verifies_and_any_change_breaks_it(method, path, ts, body):
    sig = rs.sign(SECRET, method, path, ts, NONCE, body)
    assert rs.verify(SECRET, method, path, ts, NONCE, body, sig)
    assert rs.verify(SECRET, method, path, ts, NONCE, body, sig.upper())
    assert not rs.verify(SECRET, method, path, ts + 1, NONCE, body, sig)
    assert not rs.verify(SECRET, method, path + "x", ts, NONCE, body, sig)
    assert not rs.verify(SECRET, method, path, ts, NONCE, body + b" ", sig)
    assert not rs.verify(SECRET, method, path, ts, NONCE[::-1], body, sig)
    assert not rs.verify(SECRET[::-1], method, path, ts, NONCE, body, sig)
    assert not rs.verify(SECRET, method, path, ts, NONCE, body, "é" + sig[1:])


def test_signed_headers_carry_what_the_gateway_reads():
    headers = rs.signed_headers("tk_1", SECRET, "GET", "/v1/x", b"", timestamp=5, nonce=NONCE)
    assert headers[rs.KEY_ID_HEADER] == "tk_1" and headers[rs.TIMESTAMP_HEADER] == "5"
    assert rs.verify(SECRET, "GET", "/v1/x", 5, NONCE, b"", headers[rs.SIGNATURE_HEADER])


def test_window_and_header_parsing():
    assert rs.within_window(1000, 1300) and rs.within_window(1300, 1000)
    assert not rs.within_window(1000, 1300.5) and not rs.within_window(1301, 1000)
    assert rs.parse_timestamp("1764234000") == 1764234000
    for bad in ("", "-1", "1e9", " 1", "١٢٣", "9" * 13):
        assert rs.parse_timestamp(bad) is None
    assert rs.valid_nonce("a" * 16) and rs.valid_nonce("A-_9" * 16)
    assert not rs.valid_nonce("a" * 15) and not rs.valid_nonce("a" * 65) and not rs.valid_nonce("a b" * 8)
