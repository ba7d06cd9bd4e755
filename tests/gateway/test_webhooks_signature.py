"""The Tapstack-Signature header, checked against a verifier written here from the spec."""
import hashlib
import hmac

from hypothesis import given, strategies as st

from protocol import webhook_signature as ws

SECRET = "whsec_5f1d3c0a9b8e7d6c5b4a39281706f5e4"
BODY = b'{"id":"evt_1","type":"payment.succeeded","data":{"amount":1250,"currency":"CNY"}}'


def reference_verify(secret: str, header: str, body: bytes, now: int, tolerance: int = 300) -> bool:
    """Stripe's documented procedure, step by step."""
    fields = [kv.split("=", 1) for kv in header.split(",") if "=" in kv]
    t = [v for k, v in fields if k == "t"]
    v1 = [v for k, v in fields if k == "v1"]
    if len(t) != 1 or not v1:
        return False
    payload = t[0].encode() + b"." + body
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in v1) and abs(now - int(t[0])) <= tolerance


def test_header_layout_and_reference_verifier_accepts_it():
    header = ws.sign(SECRET, 1_780_000_000, BODY)
    t, v1 = header.split(",")
    assert t == "t=1780000000"
    assert v1.startswith("v1=") and len(v1) == 3 + 64
    assert reference_verify(SECRET, header, BODY, now=1_780_000_000)


def test_verify_accepts_a_header_made_by_the_reference_procedure():
    t = 1_780_000_123
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert ws.verify(SECRET, f"t={t},v1={mac}", BODY, now=t + 10)


@given(body=st.binary(max_size=300), t=st.integers(0, 2**32), skew=st.integers(-300, 300))
def test_both_verifiers_agree_within_tolerance(body, t, skew):
    header = ws.sign(SECRET, t, body)
    assert ws.verify(SECRET, header, body, now=t + skew)
    assert reference_verify(SECRET, header, body, now=t + skew)


def test_tolerance_bounds():
    header = ws.sign(SECRET, 1000, BODY)
    assert ws.verify(SECRET, header, BODY, now=1300)
    assert not ws.verify(SECRET, header, BODY, now=1301)    # replayed too late
    assert not ws.verify(SECRET, header, BODY, now=699)     # from too far in the future
    assert ws.verify(SECRET, header, BODY, now=1600, tolerance=600)


def test_tampered_body_wrong_secret_and_forged_timestamp_fail():
    header = ws.sign(SECRET, 1000, BODY)
    assert not ws.verify(SECRET, header, BODY.replace(b"1250", b"9250"), now=1000)
    assert not ws.verify("whsec_other", header, BODY, now=1000)
    moved = header.replace("t=1000", "t=1001")            # the timestamp is signed too
    assert not ws.verify(SECRET, moved, BODY, now=1001)


def test_several_v1_values_one_match_is_enough():
    good = ws.sign(SECRET, 1000, BODY).split(",")[1]
    old = ws.sign("whsec_previous", 1000, BODY).split(",")[1]
    assert ws.verify(SECRET, f"t=1000,{old},{good},v0=ignored", BODY, now=1000)
    assert not ws.verify(SECRET, f"t=1000,{old}", BODY, now=1000)


def test_malformed_headers_are_rejected_without_raising():
    for header in ["", "garbage", "t=,v1=", "v1=abcd", "t=1000", "t=x,v1=00", "t=1000,v1=é",
                   "t=-5,v1=" + "0" * 64, ",,,=,"]:
        assert ws.verify(SECRET, header, BODY, now=1000) is False
