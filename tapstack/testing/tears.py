"""The tear matrix: every card kind torn at every exchange of its tap, over every transport.

A rider pulls the card away at the worst moment: the card has processed a command, its
answer never reaches the reader. `tear_matrix()` generates one case per card kind
(purse, EMV, UID, unknown), exchange index (1..N, N the exchanges of that kind's tap on
that transport, EXCHANGES) and transport; `run_tear(case, field)` runs it through the
bus validator (terminal.bus.Validator, its journal in a temporary directory) on a Field
of the Stage, and `TearResult.problems` lists what went wrong:

- the torn tap must be a clean refusal, `card_removed`, and nothing may be raised;
- presented again, the card is decided as if nothing had happened, except a purse torn
  after its DEBIT committed, whose payment is completed from the card's receipt log
  (`recovered`) instead of being charged again;
- the journal matches the card: one row per presentation, the money it says was paid is
  the money the card lost (the receipt's balance is the card's), no debit left pending,
  and no card number anywhere.

    with Stage() as stage, stage.open("pcscd+vpcd") as field:
        for case in tear_matrix(["pcscd+vpcd"]):
            assert run_tear(case, field).problems == []

A field is shared by all the cases of its transport: a case leaves it empty.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path

from protocol.purse import parse_receipt
from protocol.tokens import pan_token, uid_token
from tapstack.testing.fields import TRANSPORTS
from tapstack.testing.scenario import DEFAULT_NOW
from wallet.card import plain_uid_card
from wallet.emv_card import TEST_PAN, emv_card
from wallet.testcards import DEMO_TOKEN_KEY, demo_issuer_keys, demo_purse_card

KINDS = ("purse", "emv", "uid", "unknown")
FARE = 200
BALANCE = 1000
UID = bytes.fromhex("04C0FFEE123456")  # a transit card's fixed 7-byte UID
RANDOM_UID = bytes.fromhex("08123456")  # ISO 14443-3 random UID: no identity to record
SETTLE = 5.0  # seconds a reader may take to see a card come or go

# Exchanges the card itself answers in one untorn tap at the validator. A purse: SELECT,
# DEBIT. EMV: SELECT purse (6A82), SELECT PPSE, SELECT the application, GET PROCESSING
# OPTIONS, READ RECORD. UID and unknown cards: SELECT purse, SELECT PPSE, then the UID,
# which the reader knows from anticollision (the mock, nfcpy; a USB PC/SC reader answers
# FF CA itself), except through vsmartcard-vpcd, which hands FF CA to the card program.
EXCHANGES = {
    "purse": {"mock": 2, "pcscd+vpcd": 2, "nfcpy-udp": 2},
    "emv": {"mock": 5, "pcscd+vpcd": 5, "nfcpy-udp": 5},
    "uid": {"mock": 2, "pcscd+vpcd": 3, "nfcpy-udp": 2},
    "unknown": {"mock": 2, "pcscd+vpcd": 3, "nfcpy-udp": 2},
}
DEBIT_EXCHANGE = 2  # the purse commits at its second exchange


@dataclass(frozen=True)
class TearCase:
    kind: str  # purse, emv, uid, unknown
    transport: str  # mock, pcscd+vpcd, nfcpy-udp
    index: int  # the exchange torn: processed by the card, its answer lost

    @property
    def exchanges(self) -> int:
        return EXCHANGES[self.kind][self.transport]

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.index}of{self.exchanges}-{self.transport}"

    @property
    def then(self) -> tuple[bool, str]:
        """(accepted, reason) of the card's next presentation."""
        if self.kind == "purse":
            return True, "recovered" if self.index == DEBIT_EXCHANGE else "paid"
        return (False, "random_uid") if self.kind == "unknown" else (True, "token")


def tear_matrix(transports=TRANSPORTS, kinds=KINDS) -> list[TearCase]:
    """Every (kind, exchange, transport): the cases to run."""
    return [TearCase(kind, transport, index) for transport in transports for kind in kinds
            for index in range(1, EXCHANGES[kind][transport] + 1)]


def build_card(kind: str):
    """(the card, its DemoPurse or None) for a kind, fresh: a purse of BALANCE fen, an EMV card
    with the test PAN, a transit card with a fixed UID, a card showing a random UID."""
    if kind == "purse":
        demo = demo_purse_card(balance=BALANCE)
        return demo.card, demo
    if kind == "emv":
        return emv_card(RANDOM_UID), None
    return plain_uid_card(UID if kind == "uid" else RANDOM_UID), None


def expected_token(kind: str) -> str | None:
    return {"emv": pan_token(DEMO_TOKEN_KEY, TEST_PAN), "uid": uid_token(DEMO_TOKEN_KEY, UID)}.get(kind)


@dataclass
class TearResult:
    case: TearCase
    decisions: list = dataclass_field(default_factory=list)  # terminal.card.Decision per presentation
    rows: list[dict] = dataclass_field(default_factory=list)  # the journal, as its taps
    pending: tuple = ()  # debits the journal still holds as pending
    balance: int | None = None  # the purse's balance afterwards
    counter: int | None = None  # the purse's transaction counter afterwards
    problems: list[str] = dataclass_field(default_factory=list)

    def report(self) -> str:
        lines = [f"tear {self.case.id}:"] + [f"  {problem}" for problem in self.problems]
        lines += [f"  decision {n}: {d.kind} {d.reason} accepted={d.accepted} ({d.detail})"
                  for n, d in enumerate(self.decisions, 1)]
        return "\n".join(lines)


class CountingCard:
    """A card that counts the commands it answers (everything else is the card's own)."""

    def __init__(self, card):
        self._card, self.commands = card, 0

    def __getattr__(self, name):
        return getattr(self._card, name)

    def process(self, raw: bytes) -> bytes:
        self.commands += 1
        return self._card.process(raw)


@contextlib.contextmanager
def bus_validator():
    """The bus validator (terminal.bus.Validator) of the matrix, offline, with its journal in a
    temporary directory; opened on a reader with .on(reader)."""
    from terminal.bus import Validator
    from terminal.journal import Journal
    from terminal.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="tapstack-tear-"))
    settings = Settings(route="R1", stop="S1", fare=FARE, token_key=DEMO_TOKEN_KEY, terminal_id=b"TEAR0001",
                        journal=workdir / "journal.db", issuer_keys=tuple(demo_issuer_keys().values()))
    journal = Journal(settings.journal, settings.terminal_id)
    try:
        yield lambda reader: Validator(settings, reader, journal, clock=lambda: DEFAULT_NOW, out=lambda line: None)
    finally:
        journal.close()
        shutil.rmtree(workdir, ignore_errors=True)


def exchanges_of(kind: str, field) -> tuple[int, object]:
    """(exchanges the card answered, the decision) of one untorn tap of a fresh card of `kind`."""
    card = CountingCard(build_card(kind)[0])
    result = TearResult(TearCase(kind, field.kind, 0))
    with bus_validator() as on:
        decision = _present(field, card, on(field.reader), result, "untorn")
    if decision is None:
        raise AssertionError("; ".join(result.problems))
    return card.commands, decision


def run_tear(case: TearCase, field) -> TearResult:
    """Tear the card at case.index, present it again, and check what must hold."""
    result = TearResult(case)
    card, demo = build_card(case.kind)
    with bus_validator() as on:
        validator = on(field.reader)
        field.tear_after(case.index)
        try:
            for presentation in ("torn", "again"):
                decision = _present(field, card, validator, result, presentation)
                if decision is None:
                    return result
                result.decisions.append(decision)
        finally:
            field.card_side.cancel_tear()  # a tear that never came must not hit the next case
        result.rows, result.pending = validator.journal.taps(), validator.journal.pending_debits()
    if demo is not None:
        result.balance, result.counter = demo.balance, demo.store.state.counter
    result.problems += check(result)
    return result


def _present(field, card, validator, result: TearResult, presentation: str):
    """One presentation through the validator; None (and a problem) if it did not happen cleanly."""
    field.present(card)
    session = field.reader.wait_for_card(SETTLE)
    if session is None:
        result.problems.append(f"{presentation}: the reader saw no card within {SETTLE:g} s")
        return None
    try:
        return validator.handle_card(session)
    except Exception as e:  # the point of the matrix: nothing may escape the decision
        result.problems.append(f"{presentation}: {type(e).__name__} escaped the decision: {e}")
        return None
    finally:
        session.close()
        field.remove()
        if not field.reader.wait_for_removal(SETTLE):
            result.problems.append(f"{presentation}: the reader still saw the card {SETTLE:g} s after it left")


def check(r: TearResult) -> list[str]:
    """What must hold after a torn tap and the next presentation; [] when all does."""
    case, problems = r.case, []
    torn, again = r.decisions
    if (torn.accepted, torn.reason) != (False, "card_removed"):
        problems.append(f"the torn tap: expected a refusal card_removed, got {torn.reason} accepted={torn.accepted}")
    if (again.accepted, again.reason) != case.then:
        problems.append(f"the next tap: expected {case.then[1]} accepted={case.then[0]}, got {again.reason} "
                        f"accepted={again.accepted}")
    if [row["reason"] for row in r.rows] != [torn.reason, again.reason]:
        problems.append(f"the journal holds {[row['reason'] for row in r.rows]}, not one row per presentation")
    if r.pending:
        problems.append(f"{len(r.pending)} debit(s) left pending in the journal")
    if TEST_PAN in json.dumps(r.rows):
        problems.append("a card number in the journal")
    paid = sum(row["amount"] or 0 for row in r.rows if row["accepted"])
    if case.kind == "purse":
        if BALANCE - r.balance != paid or paid != FARE:
            problems.append(f"the card lost {BALANCE - r.balance}, the journal says {paid} was paid (fare {FARE})")
        receipts = [parse_receipt(bytes.fromhex(row["receipt"])) for row in r.rows if row["receipt"]]
        if [(x.counter, x.balance_after) for x in receipts] != [(r.counter, r.balance)]:
            problems.append(f"the journalled receipts {[(x.counter, x.balance_after) for x in receipts]} are not "
                            f"the card's last transaction ({r.counter}, {r.balance})")
    else:
        if paid:
            problems.append(f"a {case.kind} tap journalled a payment of {paid}")
        tokens = [row["token"] for row in r.rows if row["accepted"]]
        if tokens != ([expected_token(case.kind)] if case.then[0] else []):
            problems.append(f"the journal's accepted tokens {tokens} are not the card's")
    return problems
