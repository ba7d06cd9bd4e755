"""Hostile and broken cards against the whole bus validator (decision, journal, panel).

A hostile card is a real card (a purse, a bank card, a transit card) behind a script of
misbehaviour, one act per exchange: answers of any length (none, one byte, thousands),
bare or chained status words (61xx answered with 61xx again, 6Cxx), huge or malformed
BER-TLV, a genuine answer to another command, silences short and long, its ATR again
(it reset), a reset under the reader, a reader gone mid-exchange. After the script the
card is honest. Hypothesis draws the scripts.

What must hold, every case: no exception escapes the decision; a refusal is clean (a
known reason, nothing paid); an accept is a valid one (a purse paid with a receipt of
this tap, a token of the right form); the journal holds exactly the decision, nothing
half-written. Then the same card, honest, is presented once more: the money the card
lost is exactly the money the journal says it paid, and no debit is left pending.

In-process the session is scripted (every act, fast, many cases); over pcscd+vpcd and
nfcpy udp the card side is scripted (what a card can do there), fewer cases. The cases
run are counted and printed.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.purse import parse_receipt
from protocol.tlv import encode_length
from terminal.bus import Validator
from terminal.card import MESSAGES, Decision
from terminal.journal import Journal
from terminal.readers import complete_response
from terminal.readers.base import CardRemoved, ReaderUnavailable
from terminal.readers.mock import MockReader
from terminal.settings import Settings
from terminal.tap import TapContext, tap
from wallet.card import plain_uid_card
from wallet.emv_card import TEST_PAN, emv_card
from wallet.testcards import DEMO_TOKEN_KEY, demo_issuer_keys, demo_purse_card

NOW = datetime(2026, 11, 27, 8, 30, tzinfo=timezone.utc)
FARE, BALANCE = 200, 1000
KINDS = ("purse", "emv", "uid")
UID = bytes.fromhex("04C0FFEE123456")
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None  # journals of a case: fsync costs nothing there


def fresh_card(kind: str):
    """(card, purse or None): a new card of kind."""
    if kind == "purse":
        demo = demo_purse_card(balance=BALANCE)
        return demo.card, demo
    return (emv_card(bytes.fromhex("08A1B2C3")) if kind == "emv" else plain_uid_card(UID)), None


def genuine_answers() -> list[bytes]:
    """What honest cards answer in their taps (FCIs, a GPO, records, a receipt, a UID):
    a hostile card hands them to the wrong command."""
    ctx = TapContext(fare=FARE, currency="CNY", terminal_id=b"HOSTILE1", issuer_keys=demo_issuer_keys(),
                     token_key=DEMO_TOKEN_KEY, now=NOW)
    answers = []
    for kind in KINDS:
        reader = MockReader(fresh_card(kind)[0])
        tap(reader.wait_for_card(0), ctx)
        answers += [x.response for x in reader.transcript if x.response]
    return answers + [UID + b"\x90\x00"]


GENUINE = genuine_answers()
STATUS_WORDS = [bytes.fromhex(sw) for sw in ("9000", "6A82", "6D00", "6E00", "6985", "6F00", "6700", "6A86",
                                             "9190", "6581", "6100", "61FF", "6C00", "6C10", "6300")]

# Malformed or huge BER-TLV, with 9000: a declared length far beyond the bytes, the indefinite
# form, a tag that never ends, nesting deeper than anything real, a valid but huge template.
tlv = st.one_of(
    st.builds(lambda tag, n, body: tag + encode_length(n) + body, st.sampled_from([b"\x6F", b"\x70", b"\x77", b"\xA5"]),
              st.integers(0x80, 0xFFFFFF), st.binary(max_size=40)),
    st.builds(lambda tag, body: tag + b"\x80" + body, st.sampled_from([b"\x6F", b"\x70"]), st.binary(max_size=40)),
    st.builds(lambda n: b"\x6F\x10\x9F" + b"\xFF" * n, st.integers(1, 64)),
    st.builds(lambda depth: b"".join(b"\x6F\x81" + bytes([min(0xFF, 3 * (depth - i))]) for i in range(depth)),
              st.integers(20, 120)),
    st.builds(lambda n: b"\x70" + encode_length(n + 3) + b"\x9F\x7F" + encode_length(n)[:1] + b"\x00" * n,
              st.integers(200, 3000)),
).map(lambda body: body + b"\x90\x00")

ACTS = st.one_of(
    st.just(("honest",)),
    st.tuples(st.just("raw"), st.binary(max_size=40)),  # wrong lengths: none, one byte, anything
    st.tuples(st.just("sw"), st.sampled_from(STATUS_WORDS)),
    st.tuples(st.just("chain61"), st.integers(1, 400)),  # 61xx, and GET RESPONSE answered 61xx again
    st.tuples(st.just("wrong_le"), st.integers(0, 255)),  # 6Cxx: send it again with Le xx
    st.tuples(st.just("tlv"), tlv),
    st.tuples(st.just("other"), st.sampled_from(GENUINE)),
    st.tuples(st.just("silence"), st.floats(0, 0.01)),  # a short pause, then an honest answer
    st.just(("silent",)),  # never answers: the reader gives up
    st.just(("atr",)),  # answers with its ATR: it reset
    st.just(("reset",)),  # reset under the reader (PC/SC: SCARD_W_RESET_CARD)
    st.just(("gone",)),  # the reader is unplugged mid-exchange
)
CARD_SIDE_ACTS = ("honest", "raw", "sw", "chain61", "wrong_le", "tlv", "other", "silence", "atr")


class Hostile:
    """The misbehaviour of one presentation, over a real card; never raises card-side."""

    def __init__(self, card, script):
        self.card, self.script, self.chain = card, list(script), 0

    def answer(self, apdu: bytes) -> bytes | Exception:
        """The answer to apdu, or the exception the reader would raise."""
        if self.chain and apdu[1:2] == b"\xC0":  # GET RESPONSE of a 61xx chain that never ends
            self.chain -= 1
            return bytes((0x61, self.chain & 0xFF))
        act = self.script.pop(0) if self.script else ("honest",)
        kind = act[0]
        if kind == "raw" or kind == "sw" or kind == "other":
            return act[1]
        if kind == "chain61":
            self.chain = act[1]
            return b"\x61\x00"
        if kind == "wrong_le":
            return bytes((0x6C, act[1]))
        if kind == "tlv":
            return act[1]
        if kind == "silence":
            time.sleep(act[1])
        if kind == "silent":
            return CardRemoved("no answer within the frame waiting time")
        if kind == "atr":
            return self.card.atr
        if kind == "reset":
            self.card.power_on()
            return CardRemoved("the card was reset")
        if kind == "gone":
            return ReaderUnavailable("the reader went away")
        return self.card.process(apdu)


class HostileSession:
    """In-process: a CardSession whose card misbehaves; 61xx and 6Cxx go through the same
    complete_response every real reader session uses."""

    def __init__(self, card, script, uid_known: bool):
        self.hostile, self.atr = Hostile(card, script), card.power_on()
        self.uid = card.uid if uid_known else None  # None: as over PC/SC, the tap asks FF CA

    def transmit(self, apdu: bytes) -> bytes:
        return complete_response(self._raw, apdu)

    def _raw(self, apdu: bytes) -> bytes:
        answer = self.hostile.answer(bytes(apdu))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        pass


class HostileCard:
    """Card-side, for the real transports: a card that misbehaves as scripted, then is honest."""

    def __init__(self, card, script):
        self.card, self.uid, self.atr, self.name = card, card.uid, card.atr, "hostile card"
        self.hostile = Hostile(card, script)

    def power_on(self) -> bytes:
        return self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def process(self, raw: bytes) -> bytes:
        answer = self.hostile.answer(bytes(raw))
        return answer if isinstance(answer, bytes) else b"\x6F\x00"


class Bus:
    """A fresh bus validator (its own journal), offline, with the demo issuer trusted."""

    def __init__(self, reader=None):
        self.dir = Path(tempfile.mkdtemp(prefix="tapstack-hostile-", dir=SCRATCH))
        self.lines: list[str] = []
        settings = Settings(route="R1", stop="S1", fare=FARE, token_key=DEMO_TOKEN_KEY, terminal_id=b"HOSTILE1",
                            journal=self.dir / "j.db", issuer_keys=tuple(demo_issuer_keys().values()),
                            repeat_window=timedelta(0))
        self.journal = Journal(settings.journal, settings.terminal_id)
        self.v = Validator(settings, reader or MockReader(), self.journal, clock=lambda: NOW, out=self.lines.append)

    def close(self):
        self.journal.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def check_decision(d: Decision, rows: list[dict]) -> None:
    """A clean refusal or a valid accept, and the journal holding exactly it."""
    assert isinstance(d, Decision)
    assert d.reason in MESSAGES, d
    if d.accepted:
        assert d.kind in ("purse", "emv", "uid"), d
        if d.kind == "purse":
            receipt = parse_receipt(bytes.fromhex(d.receipt))
            assert (d.amount, receipt.amount, receipt.terminal_id) == (FARE, FARE, b"HOSTILE1")
        else:
            assert d.amount is None and d.token.startswith({"emv": "pan_", "uid": "uid_"}[d.kind])
    else:
        assert d.amount is None and d.receipt is None and d.signal in ("deny", "error"), d
    assert rows[-1] == {"id": rows[-1]["id"], **d.to_json(), "sent_at": None, "result": None}
    assert TEST_PAN not in json.dumps(rows)


def check_money(bus: Bus, demo) -> None:
    """After the honest presentation: what the card lost is what the journal says it paid,
    and nothing of it is left pending. (A card that showed another purse's FCI leaves that
    purse's debit pending, rightly: the validator cannot know it was not that purse.)"""
    assert bus.journal.pending_debits() == bus.v.pending
    if demo is not None:
        paid = sum(r["amount"] for r in bus.journal.taps() if r["accepted"] and r["kind"] == "purse")
        assert BALANCE - demo.balance == paid and bus.v.pending == ()


def present(bus: Bus, session_or_field, card, script=None):
    """Decide one presentation: a ready session, or the card presented on a field."""
    if script is not None:  # in-process
        return bus.v.handle_card(session_or_field)
    field = session_or_field
    field.present(card)
    session = field.reader.wait_for_card(5)
    assert session is not None, "the reader saw no card"
    try:
        return bus.v.handle_card(session)
    finally:
        session.close()
        field.remove()
        assert field.reader.wait_for_removal(5)


def run_case(kind: str, script, seen: Counter, uid_known: bool) -> None:
    card, demo = fresh_card(kind)
    bus = Bus()
    try:
        d = bus.v.handle_card(HostileSession(card, script, uid_known))  # raises: the test fails
        check_decision(d, bus.journal.taps())
        seen[f"{d.kind} {d.reason}"] += 1
        honest = bus.v.handle_card(HostileSession(card, [], uid_known))
        check_decision(honest, bus.journal.taps())
        assert honest.accepted or kind == "uid" and honest.reason == "already_tapped", honest
        check_money(bus, demo)
    finally:
        bus.close()


def report(capsys, where: str, seen: Counter) -> None:
    with capsys.disabled():
        print(f"\nhostile cards {where}: {sum(seen.values())} cases, 0 exceptions escaped the decision; "
              f"first decisions: {', '.join(f'{k} {n}' for k, n in seen.most_common())}")


def test_hostile_cards_in_process(capsys):
    seen: Counter = Counter()

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(kind=st.sampled_from(KINDS), script=st.lists(ACTS, max_size=8), uid_known=st.booleans())
    def case(kind, script, uid_known):
        run_case(kind, script, seen, uid_known)

    case()
    report(capsys, "in-process", seen)
    assert sum(seen.values()) >= 400
    assert any(k.endswith(" paid") for k in seen) and any("garbage" in k or "emv_error" in k for k in seen)


@pytest.fixture(scope="module")
def fields(tapstack_stage):
    opened = {}

    def field(transport):
        if transport not in opened:
            opened[transport] = tapstack_stage.open(transport)
        return opened[transport]

    yield field
    for f in opened.values():
        f.close()


def pytest_generate_tests(metafunc):
    if "real_stack" in metafunc.fixturenames:
        from tapstack.testing.fields import parse_transports

        chosen = parse_transports(metafunc.config.getoption("--tapstack-transport"))
        marks = {"pcscd+vpcd": pytest.mark.pcscd, "nfcpy-udp": pytest.mark.nfcpy_udp}
        metafunc.parametrize("real_stack", [pytest.param(t, marks=marks[t], id=t) for t in chosen if t in marks])


def test_hostile_cards_over_a_real_reader_stack(real_stack, fields, capsys):
    transport = real_stack
    field = fields(transport)
    seen: Counter = Counter()
    card_side = ACTS.filter(lambda act: act[0] in CARD_SIDE_ACTS)

    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(kind=st.sampled_from(KINDS), script=st.lists(card_side, min_size=1, max_size=4))
    def case(kind, script):
        card, demo = fresh_card(kind)
        bus = Bus(field.reader)
        try:
            d = present(bus, field, HostileCard(card, script))
            check_decision(d, bus.journal.taps())
            seen[f"{d.kind} {d.reason}"] += 1
            honest = present(bus, field, card)
            check_decision(honest, bus.journal.taps())
            check_money(bus, demo)
        finally:
            bus.close()

    case()
    report(capsys, f"over {transport}", seen)
    assert sum(seen.values()) >= 10
