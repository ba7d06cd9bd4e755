"""The journal: a decision is on disk before the rider is told; a restart keeps taps,
pending debits and reference data; rows stay unsent until the gateway answers."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from terminal.bus import Validator
from terminal.card import Decision
from terminal.journal import Journal, JournalError
from terminal.readers.mock import MockReader
from terminal.settings import Settings
from wallet.testcards import demo_purse_card

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)
TID = b"BUS-0007"


def decision(n: int = 0, **changes) -> Decision:
    fields = dict(at=NOW + timedelta(seconds=n), kind="uid", accepted=True, reason="token", message="ok",
                  route="R1", stop="S1", token="uid_" + "a" * 32)
    fields.update(changes)
    return Decision(**fields)


def test_tap_ids_are_the_terminal_and_a_sequence(tmp_path):
    j = Journal(tmp_path / "j.db", TID)
    ids = [j.record(decision(n)) for n in range(3)]
    assert ids == [f"{TID.hex()}-{n:010d}" for n in (1, 2, 3)]
    assert [r["id"] for r in j.unsent(2)] == ids[:2]


def test_the_journal_runs_in_wal_with_full_sync(tmp_path):
    Journal(tmp_path / "j.db", TID).record(decision())
    db = sqlite3.connect(tmp_path / "j.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn = Journal(tmp_path / "j.db", TID)._db
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_another_terminals_journal_is_refused(tmp_path):
    Journal(tmp_path / "j.db", TID)
    with pytest.raises(JournalError, match="journal of terminal"):
        Journal(tmp_path / "j.db", b"BUS-0008")


def test_marking_sent_is_per_tap_and_once(tmp_path):
    j = Journal(tmp_path / "j.db", TID)
    ids = [j.record(decision(n)) for n in range(4)]
    j.mark_sent({ids[0]: "accepted", ids[2]: "rejected:invalid_field"}, NOW)
    assert [r["id"] for r in j.unsent()] == [ids[1], ids[3]]
    j.mark_sent({ids[0]: "duplicate"}, NOW + timedelta(hours=1))  # a later answer does not rewrite
    assert [t["result"] for t in j.taps()] == ["accepted", None, "rejected:invalid_field", None]
    assert j.counts() == {"taps": 4, "unsent": 2}


class Watching(MockReader):
    """A reader whose signal checks, from another connection, that the tap is already on disk."""

    def __init__(self, path, card):
        super().__init__(card)
        self.path = path
        self.on_disk_at_signal = []

    def signal(self, outcome):
        db = sqlite3.connect(self.path)
        self.on_disk_at_signal.append(db.execute("SELECT COUNT(*) FROM taps").fetchone()[0])
        db.close()
        super().signal(outcome)


def test_a_decision_is_journalled_before_the_reader_signals(tmp_path):
    demo = demo_purse_card(balance=1000)
    path = tmp_path / "j.db"
    reader = Watching(path, demo.card)
    j = Journal(path, TID)
    v = Validator(Settings(route="R1", stop="S1", fare=200, token_key=demo.token_key, terminal_id=TID,
                           journal=path), reader, j, clock=lambda: NOW, out=lambda _: None)
    v.ref.issuer_keys = demo.issuer_keys
    v.handle_card(reader.wait_for_card(0))
    assert reader.on_disk_at_signal == [1]
    assert j.taps()[0]["receipt"] is not None


def test_a_journal_that_refuses_writes_refuses_the_tap_and_resumes_by_itself(tmp_path):
    demo = demo_purse_card(balance=1000)
    reader = MockReader(demo.card)
    j = Journal(tmp_path / "j.db", TID)
    lines = []
    v = Validator(Settings(route="R1", stop="S1", fare=200, token_key=demo.token_key, terminal_id=TID,
                           journal=tmp_path / "j.db"), reader, j, clock=lambda: NOW, out=lines.append)
    v.ref.issuer_keys = demo.issuer_keys
    j._db.execute("PRAGMA query_only = ON")  # the disk refuses writes
    d = v.handle_card(reader.wait_for_card(0))
    assert (d.accepted, d.reason, d.message) == (False, "journal_unavailable", "Out of service: tap not taken")
    assert reader.signals == ["error"] and demo.balance == 1000  # nothing debited that could not be journalled
    assert len(reader.transcript) == 1  # refused after SELECT, before any DEBIT
    assert "journal" in v.service.problems and any(line.startswith("OUT OF SERVICE  journal:") for line in lines)
    assert lines[-1].endswith("OUT OF SERVICE: journal")  # the panel's status line
    j._db.execute("PRAGMA query_only = OFF")  # room again
    v.write_ahead._next_probe = 0
    d = v.handle_card(reader.wait_for_card(0))
    assert (d.accepted, d.reason, demo.balance) == (True, "paid", 800)
    assert v.service.in_service and "IN SERVICE      journal works again" in lines
    assert [t["reason"] for t in j.taps()] == ["paid"]


def test_a_payment_the_journal_could_not_take_is_recovered_not_charged_again(tmp_path):
    """The journal fails between the debit and its record: the rider is refused, and the card's
    next tap completes that payment from the card's receipt log."""
    demo = demo_purse_card(balance=1000)
    reader = MockReader(demo.card)
    j = Journal(tmp_path / "j.db", TID)
    v = Validator(Settings(route="R1", stop="S1", fare=200, token_key=demo.token_key, terminal_id=TID,
                           journal=tmp_path / "j.db"), reader, j, clock=lambda: NOW, out=lambda _: None)
    v.ref.issuer_keys = demo.issuer_keys
    record = j.record

    def full_disk(decision, pending=None):
        raise JournalError("j.db: database or disk is full")

    j.record = full_disk
    d = v.handle_card(reader.wait_for_card(0))
    assert (d.accepted, d.reason, demo.balance) == (False, "journal_unavailable", 800)  # the card paid
    assert len(v.pending) == 1
    j.record = record
    v.write_ahead._next_probe = 0
    d = v.handle_card(reader.wait_for_card(0))
    assert (d.accepted, d.reason, d.amount, demo.balance) == (True, "recovered", 200, 800)  # once
    assert v.pending == () and j.pending_debits() == ()


def test_a_torn_debit_is_recovered_after_a_restart(tmp_path):
    demo = demo_purse_card(balance=1000)
    path = tmp_path / "j.db"

    def validator_on(journal):
        v = Validator(Settings(route="R1", stop="S1", fare=200, token_key=demo.token_key, terminal_id=TID,
                               journal=path), MockReader(demo.card), journal, clock=lambda: NOW,
                      out=lambda _: None)
        v.ref.issuer_keys = demo.issuer_keys
        return v

    first = validator_on(Journal(path, TID))
    first.reader.tear_after(2)  # the DEBIT is processed by the card, its answer lost
    assert first.handle_card(first.reader.wait_for_card(0)).reason == "card_removed"
    assert demo.balance == 800
    first.journal.close()

    second = validator_on(Journal(path, TID))  # the validator restarted
    assert len(second.pending) == 1
    second.reader.present(demo.card)
    d = second.handle_card(second.reader.wait_for_card(0))
    assert (d.reason, d.amount, demo.balance) == ("recovered", 200, 800)  # charged once
    assert second.journal.pending_debits() == ()
    assert [t["reason"] for t in second.journal.taps()] == ["card_removed", "recovered"]


def test_reference_data_survives_a_restart(tmp_path):
    j = Journal(tmp_path / "j.db", TID)
    j.save("deny_list", {"version": 4, "entries": ["ab" * 8]}, NOW)
    j.close()
    again = Journal(tmp_path / "j.db", TID)
    assert again.load("deny_list") == ({"version": 4, "entries": ["ab" * 8]}, int(NOW.timestamp()))


def test_a_validator_dying_between_the_debit_and_the_journal_recovers_the_receipt(tmp_path):
    demo = demo_purse_card(balance=1000)
    path = tmp_path / "j.db"

    def validator_on(journal, at):
        v = Validator(Settings(route="R1", stop="S1", fare=200, token_key=demo.token_key, terminal_id=TID,
                               journal=path), MockReader(demo.card), journal, clock=lambda: at, out=lambda _: None)
        v.ref.issuer_keys = demo.issuer_keys
        return v

    first = validator_on(Journal(path, TID), NOW)
    decision = first.write_ahead.decide(first.reader.wait_for_card(0), first.terms()).decision  # the card paid ...
    assert decision.reason == "paid" and demo.balance == 800
    first.journal._db.close()  # ... and the validator died before journalling it

    second = validator_on(Journal(path, TID), NOW + timedelta(minutes=5))
    assert [d.card_id for d in second.pending] == [demo.card_id]
    d = second.handle_card(second.reader.wait_for_card(0))
    assert (d.reason, d.amount, d.receipt, demo.balance) == ("recovered", 200, decision.receipt, 800)
    assert second.journal.pending_debits() == ()
    again = second.handle_card(second.reader.wait_for_card(0))  # the window counts from the recovery
    assert again.reason == "already_tapped" and demo.balance == 800


def test_a_refused_tap_leaves_no_intent_behind(tmp_path):
    demo = demo_purse_card(balance=100)
    j = Journal(tmp_path / "j.db", TID)
    v = Validator(Settings(route="R1", stop="S1", fare=200, token_key=demo.token_key, terminal_id=TID,
                           journal=tmp_path / "j.db"), MockReader(demo.card), j, clock=lambda: NOW,
                  out=lambda _: None)
    v.ref.issuer_keys = demo.issuer_keys
    assert v.handle_card(v.reader.wait_for_card(0)).reason == "insufficient_balance"
    assert j.pending_debits() == () and v.pending == ()


def test_a_restarted_validator_still_refuses_a_repeat_tap(tmp_path):
    demo = demo_purse_card(balance=1000)
    path = tmp_path / "j.db"

    def validator_on(at):
        v = Validator(Settings(route="R1", stop="S1", fare=200, token_key=demo.token_key, terminal_id=TID,
                               journal=path), MockReader(demo.card), Journal(path, TID), clock=lambda: at,
                      out=lambda _: None)
        v.ref.issuer_keys = demo.issuer_keys
        return v

    first = validator_on(NOW)
    assert first.handle_card(first.reader.wait_for_card(0)).reason == "paid"
    first.journal.close()
    soon = validator_on(NOW + timedelta(seconds=20))  # restarted; the rider saw nothing and taps again
    assert soon.handle_card(soon.reader.wait_for_card(0)).reason == "already_tapped"
    later = validator_on(NOW + timedelta(seconds=61))
    assert later.handle_card(later.reader.wait_for_card(0)).reason == "paid"
    assert demo.balance == 600
