"""Journalling card decisions, write-ahead: the shell both desks put around terminal.card.

A desk hands the card in its field and its `card.Terms` to `decide`, which journals what
the decision asks to be journalled before the DEBIT goes out (the debit about to be
sent); then the desk hands the `card.Intent` to `write`, which journals it durably (the
decision and the pending debits in one transaction) before the desk tells anyone. A
journal that cannot take it turns the tap into a refusal (card.unjournalled), reported on
the panel as out of service; `works` tries it again between cards.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from terminal import card
from terminal.journal import Journal, JournalError
from terminal.loop import Service


class WriteAhead:
    PROBE_EVERY = 2.0  # seconds between two tries of a journal that failed

    def __init__(self, journal: Journal, service: Service, clock: Callable[[], datetime]):
        self.journal, self.service, self.clock = journal, service, clock
        self.pending = journal.pending_debits()  # the unfinished purse debits (tear recovery)
        self.error: JournalError | None = None  # why the last write failed
        self._next_probe = 0.0

    def down(self) -> str | None:
        """Why the journal cannot take a tap now (it is tried again first), None when it can."""
        if "journal" in self.service.problems and not self.works():
            return self.service.problems["journal"]
        return None

    def decide(self, session, terms: card.Terms) -> card.Intent:
        """The card's decision; a debit it is about to send is journalled first."""
        step = card.present(session, terms)
        if isinstance(step, card.Intent):
            return step
        if step.ahead is not None:
            try:
                self.journal.save_intent(step.ahead, terms.now)
            except JournalError as e:
                self.service.report("journal", str(e))
                return card.refused_ahead(step, terms, e)
        return card.read(session, step, terms)

    def write(self, intent: card.Intent) -> tuple[str | None, card.Intent]:
        """Journal intent durably: (its journal id, intent); or, when the journal cannot take
        it, (None, what is shown and kept pending instead)."""
        try:
            tap_id = self.journal.record(intent.row, intent.pending)
        except JournalError as e:
            self.error = e
            self.service.report("journal", str(e))
            intent = card.unjournalled(intent, e)
            self.pending = intent.pending
            return None, intent
        self.service.report("journal", None)
        self.pending = intent.pending
        return tap_id, intent

    def works(self) -> bool:
        """Try the journal again (at most every PROBE_EVERY seconds); True once it writes."""
        if time.monotonic() < self._next_probe:
            return False
        self._next_probe = time.monotonic() + self.PROBE_EVERY
        try:
            self.journal.probe(self.clock())
        except JournalError as e:
            self.service.report("journal", str(e))
            return False
        self.service.report("journal", None)
        return True
