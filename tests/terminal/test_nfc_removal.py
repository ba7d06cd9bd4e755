"""When the nfcpy reader counts a card as gone: after EMPTY_LOOKS empty looks in a row, so a
late presence answer is not a removal, and a slow reader's looks still add up."""
from __future__ import annotations

import time

from terminal.readers import nfc


def reader_seeing(looks: list[bool], seconds_per_look: float = 0.0) -> nfc.NfcReader:
    """An NfcReader (no device opened) whose field looks are scripted: True = empty."""
    reader = object.__new__(nfc.NfcReader)
    script = iter(looks)

    def field_empty() -> bool:
        time.sleep(seconds_per_look)
        return next(script, False)

    reader._field_empty = field_empty
    return reader


def test_one_empty_look_between_present_ones_is_no_removal():
    assert not reader_seeing([False, True, False, True, True, False] + [False] * 50).wait_for_removal(0.3)


def test_empty_looks_in_a_row_are_a_removal():
    assert reader_seeing([False, False] + [True] * nfc.EMPTY_LOOKS).wait_for_removal(1)


def test_a_slow_reader_finishes_its_looks_past_a_short_wait():
    """Each look takes longer than the wait: the loop's short waits must still see the card go."""
    reader = reader_seeing([True] * nfc.EMPTY_LOOKS, seconds_per_look=0.1)
    assert reader.wait_for_removal(0.05)


def test_a_present_card_ends_the_wait_at_its_deadline():
    started = time.monotonic()
    assert not reader_seeing([False] * 1000).wait_for_removal(0.1)
    assert time.monotonic() - started < 1.0
