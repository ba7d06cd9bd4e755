"""read_token against the emulated card: the documented vector, every outcome, and no PAN leaks."""
import logging
import re
import traceback
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import emv
from protocol.tlv import Tlv
from protocol.tokens import pan_token
from terminal.emv import EmvError, EmvRead, read_token
from terminal.readers.base import CardRemoved
from wallet.card import VirtualCard, plain_uid_card
from wallet.emv_card import TEST_PAN, VISA_CREDIT_AID, PaymentApplication, PpseApplet, card_records, emv_card

DOC = Path(__file__).resolve().parents[2] / "docs" / "emv-contactless.md"
KEY = bytes(range(32))
UID = bytes.fromhex("04A1B2C3D4E5F6")
UN = bytes.fromhex("A1B2C3D4")
TODAY = date(2026, 11, 27)
OTHER_PAN = "5555555555554444"  # Stripe's public Mastercard test number


class Recorder:
    """A transmit function over a virtual card that keeps every exchange."""

    def __init__(self, card: VirtualCard):
        self.card = card
        self.card.power_on()
        self.exchanges: list[tuple[bytes, bytes]] = []

    def __call__(self, command: bytes) -> bytes:
        answer = self.card.process(command)
        self.exchanges.append((command, answer))
        return answer


def read(card, **kwargs):
    kwargs = {"unpredictable_number": UN, "today": TODAY, **kwargs}
    return read_token(Recorder(card) if isinstance(card, VirtualCard) else card, KEY, **kwargs)


def _card(records, gpo_answer=None, pan_entries=None, aid=VISA_CREDIT_AID, df_name=None):
    app = PaymentApplication(aid, "TEST", records)
    if gpo_answer is not None:
        app.gpo_answer = gpo_answer
    if df_name is not None:
        app.fci = app.fci.replace(aid, df_name)
    ppse = PpseApplet(pan_entries if pan_entries is not None else [emv.DirectoryEntry(aid, "TEST", 1)])
    return VirtualCard(UID, [ppse, app])


def _record(*objects: Tlv) -> bytes:
    return Tlv(0x70, objects).to_bytes()


# --- the documented vector ----------------------------------------------------------

def _vector():
    text = DOC.read_text()
    block = text.split("<!-- test-vector:begin -->")[1].split("<!-- test-vector:end -->")[0]
    values, exchange, current = {}, [], None
    for line in block.splitlines():
        if line.startswith("```") or not line.strip():
            current = None
            continue
        if line.startswith(("C:", "R:")):
            current = [line[0], line[2:]]
            exchange.append(current)
        elif line.startswith(" ") and current is not None:
            current[1] += line
        else:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    exchange = [(kind, bytes.fromhex(re.sub(r"\s", "", hexes))) for kind, hexes in exchange]
    return values, exchange


def test_the_documented_exchange_byte_for_byte():
    values, exchange = _vector()
    assert [kind for kind, _ in exchange] == ["C", "R"] * 4
    recorder = Recorder(emv_card(UID))
    result = read_token(recorder, bytes.fromhex(values["token key"]),
                        unpredictable_number=bytes.fromhex(values["unpredictable"]),
                        today=date.fromisoformat(values["date"]), amount=int(values["amount"]))
    assert [b for pair in recorder.exchanges for b in pair] == [raw for _, raw in exchange]
    assert result == EmvRead(token=values["token"], aid=values["aid"], label=values["label"],
                             expiry=values["expiry"], apdus=int(values["apdus"]))


def test_token_is_the_pan_token_of_the_test_pan():
    result = read(emv_card(UID))
    assert result.token == pan_token(KEY, TEST_PAN)
    assert (result.aid, result.label, result.expiry, result.apdus) == ("A0000000031010", "TAPSTACK VISA", "3012", 4)
    assert read(emv_card(UID, pan=OTHER_PAN)).token == pan_token(KEY, OTHER_PAN) != result.token


def test_fresh_unpredictable_number_and_date_by_default():
    recorder = Recorder(emv_card(UID))
    assert read_token(recorder, KEY).token == pan_token(KEY, TEST_PAN)
    gpo = recorder.exchanges[2][0]
    assert gpo[:4] == bytes.fromhex("80A80000") and len(gpo) == 4 + 1 + 35 + 1


# --- the other shapes a card can take -----------------------------------------------

def test_pan_from_5a_when_there_is_no_track_2():
    card = _card({(2, 1): _record(Tlv(0x5A, bytes.fromhex("378282246310005F")),
                                  Tlv(0x5F24, bytes.fromhex("290630")))})
    result = read(card)
    assert result.token == pan_token(KEY, "378282246310005") and result.expiry == "2906"


def test_reads_on_until_a_record_has_the_pan():
    records = {(1, 1): _record(Tlv(0x5F20, b"X/Y")), (1, 2): _record(Tlv(0x9F07, b"\xff\x00")),
               (3, 1): _record(Tlv(0x57, emv.track2_equivalent(OTHER_PAN, "2801"))),
               (3, 2): _record(Tlv(0x5A, b"\x00"))}  # never read: the PAN came first
    recorder = Recorder(_card(records))
    result = read_token(recorder, KEY, unpredictable_number=UN, today=TODAY)
    assert result.token == pan_token(KEY, OTHER_PAN) and result.apdus == 6
    assert [c.hex().upper() for c, _ in recorder.exchanges[3:]] == ["00B2010C00", "00B2020C00", "00B2011C00"]


def test_pan_in_the_gpo_answer_needs_no_record():
    gpo = Tlv(0x77, (Tlv(0x82, b"\x00\x00"), Tlv(0x94, bytes.fromhex("08010100")),
                     Tlv(0x57, emv.track2_equivalent(OTHER_PAN, "2801")))).to_bytes()
    result = read(_card(card_records(TEST_PAN, "3012", "A/B"), gpo_answer=gpo))
    assert result.token == pan_token(KEY, OTHER_PAN) and result.apdus == 3


def test_records_outside_emv_sfis_are_skipped():
    records = {(11, 1): b"\x01\x02\x03", (12, 1): _record(Tlv(0x5A, bytes.fromhex("5555555555554444")))}
    assert read(_card(records)).token == pan_token(KEY, OTHER_PAN)


def test_gpo_format_1():
    gpo = bytes.fromhex("8006" "0000" "08010100")  # AIP 0000, AFL SFI 1 record 1
    assert read(_card(card_records(TEST_PAN, "3012", "A/B"), gpo_answer=gpo)).token == pan_token(KEY, TEST_PAN)


def test_next_candidate_when_the_first_will_not_select():
    entries = [emv.DirectoryEntry(bytes.fromhex("A0000000041010"), "GONE", 1),
               emv.DirectoryEntry(VISA_CREDIT_AID, "TEST", 2)]
    assert read(_card(card_records(TEST_PAN, "3012", "A/B"), pan_entries=entries)).apdus == 5


def test_chained_answers_are_fetched():
    """A link that answers 61xx then serves the rest with GET RESPONSE, or 6Cxx for a wrong Le."""
    card = emv_card(UID)
    card.power_on()
    pending = {}

    def transmit(command: bytes) -> bytes:
        if command[:2] == b"\x00\xc0":
            data = pending.pop("data")
            return data + b"\x90\x00"
        if command[1] == 0xB2 and command[-1] == 0x00:
            answer = card.process(command)
            return b"\x6c" + bytes((len(answer) - 2,))
        answer = card.process(command)
        if len(answer) > 2:
            pending["data"] = answer[:-2]
            return b"\x61" + bytes((len(answer) - 2,))
        return answer

    result = read_token(transmit, KEY, unpredictable_number=UN, today=TODAY)
    # 4 commands, a GET RESPONSE after each of the first three, READ RECORD again with
    # Le 27 and its GET RESPONSE
    assert result.token == pan_token(KEY, TEST_PAN) and result.apdus == 4 + 3 + 2


# --- None: no EMV here --------------------------------------------------------------

def test_a_card_without_ppse_gives_none():
    recorder = Recorder(plain_uid_card(UID))
    assert read_token(recorder, KEY) is None
    assert len(recorder.exchanges) == 1


@pytest.mark.parametrize("sw", ["6A82", "6A81", "6D00", "6E00"])
def test_no_ppse_status_words_give_none(sw):
    assert read_token(lambda c: bytes.fromhex(sw), KEY) is None


def test_empty_or_unsupported_directory_gives_none():
    assert read(_card({(1, 1): b"\x70\x00"}, pan_entries=[])) is None
    assert read(emv_card(UID), supported_aids=[bytes.fromhex("A000000004")]) is None
    assert read(emv_card(UID), supported_aids=[bytes.fromhex("A000000003")]).token == pan_token(KEY, TEST_PAN)


# --- EmvError: a card that breaks the flow ------------------------------------------

BAD_PAN = "4242424242424241"  # fails the Luhn check


def _bad_cards():
    good = card_records(TEST_PAN, "3012", "A/B")
    bad_pan = {(1, 1): _record(Tlv(0x5A, bytes.fromhex(BAD_PAN)))}
    return {
        "ppse 6283": (lambda: _script(["6283"]), "SELECT PPSE answered 6283"),
        "ppse garbage": (lambda: _script(["6F05849000"]), "PPSE answer is not valid BER-TLV"),
        "no status word": (lambda: _script(["90"]), "no status word"),
        "nothing selects": (lambda: _card(good, pan_entries=[emv.DirectoryEntry(bytes(7), "X", 1)]),
                            "could be selected"),
        "other DF name": (lambda: _card(good, df_name=bytes.fromhex("A0000000039999")), "another DF name"),
        "GPO refused": (lambda: _card(good, gpo_answer=b"\x9f\x27\x01\x00"), "starts with tag 9F27"),
        "bad AFL": (lambda: _card(good, gpo_answer=bytes.fromhex("8006000000010100")), "AFL entry 0"),
        "GPO not TLV": (lambda: _card(good, gpo_answer=bytes.fromhex("80060000080101")), "GPO answer is not valid"),
        "Luhn": (lambda: _card(bad_pan), "fails the Luhn check"),
        "broken record": (lambda: _card({(1, 1): bytes.fromhex("700A5A08" + BAD_PAN + "5F24")}),
                          "not a well-formed record"),
        "no PAN": (lambda: _card({(1, 1): _record(Tlv(0x5F20, b"A/B"))}), "hold no PAN"),
        "endless AFL": (lambda: _card({(1, r): _record() for r in range(1, 100)}), "more than 40 commands"),
    }


def _script(answers):
    answers = iter(answers)
    return lambda command: bytes.fromhex(next(answers))


@pytest.mark.parametrize("name", list(_bad_cards()))
def test_broken_cards_raise_emv_error(name, caplog):
    make, words = _bad_cards()[name]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(EmvError, match=words) as info:
        read(make())
    _assert_no_pan(info.value.reason, str(info.value), repr(info.value),
                   "".join(traceback.format_exception(info.value)), caplog.text,
                   *(r.getMessage() for r in caplog.records))


def test_gpo_status_word_is_reported():
    card = emv_card(UID)
    card.power_on()

    def transmit(command):
        return bytes.fromhex("6985") if command[:2] == b"\x80\xa8" else card.process(command)

    with pytest.raises(EmvError, match="GPO answered 6985"):
        read_token(transmit, KEY)


def test_a_tear_passes_through():
    card = emv_card(UID)
    card.power_on()

    def transmit(command):
        if command[1] == 0xB2:
            raise CardRemoved("card left the field")
        return card.process(command)

    with pytest.raises(CardRemoved):
        read_token(transmit, KEY)


def test_short_key_is_refused_before_any_command():
    sent = []
    with pytest.raises(ValueError):
        read_token(lambda c: sent.append(c) or b"\x90\x00", b"short")
    assert sent == []


# --- the PAN leaves no trace --------------------------------------------------------

def _pan_forms(pan):
    return {pan, pan.encode().hex(), " ".join(pan[i:i + 4] for i in range(0, len(pan), 4)), pan[:12]}


def _assert_no_pan(*texts, pans=(TEST_PAN, BAD_PAN, OTHER_PAN)):
    for text in texts:
        for pan in pans:
            for form in _pan_forms(pan):
                assert form.lower() not in text.lower(), f"PAN found in {text[:80]!r}"


def test_pan_appears_nowhere_in_a_read_or_the_logs(caplog):
    caplog.set_level(logging.DEBUG)
    result = read(emv_card(UID))
    assert caplog.records  # the read does log, at DEBUG
    assert not hasattr(result, "pan")
    _assert_no_pan(repr(result), str(result), *map(str, vars(result).values()), caplog.text,
                   *(str(r.args) for r in caplog.records), *(r.getMessage() for r in caplog.records))


# --- anything a card answers --------------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_answers_give_none_a_read_or_emv_error(data):
    """A real card's answers, some replaced by random bytes, truncated, or with a byte changed."""
    card = emv_card(UID, pan=data.draw(st.sampled_from([TEST_PAN, OTHER_PAN])))
    card.power_on()

    def transmit(command: bytes) -> bytes:
        answer = card.process(command)
        how = data.draw(st.sampled_from(["real", "real", "random", "cut", "flip", "sw"]))
        if how == "random":
            return data.draw(st.binary(max_size=80))
        if how == "cut":
            return answer[:data.draw(st.integers(0, len(answer)))]
        if how == "flip" and answer:
            i = data.draw(st.integers(0, len(answer) - 1))
            return answer[:i] + bytes((data.draw(st.integers(0, 255)),)) + answer[i + 1:]
        if how == "sw":
            return answer[:-2] + data.draw(st.binary(min_size=2, max_size=2))
        return answer

    try:
        result = read_token(transmit, KEY, unpredictable_number=UN, today=TODAY)
    except EmvError as e:
        _assert_no_pan(str(e))
        return
    assert result is None or isinstance(result, EmvRead)
    if result is not None:
        assert result.token.startswith("pan_")
        _assert_no_pan(repr(result))
