"""A validator at the exit door (--direction off): a purse card is recorded and never debited,
a bank or UID card's tap-off is journalled, and each upload row says "direction": "off";
an entry validator's rows stay as they were (no direction: a tap-on)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from terminal.bus import Validator
from terminal.commands import validator_command
from terminal.journal import Journal
from terminal.readers.mock import MockReader
from terminal.settings import Settings, check_settings, hex_arg, secret_text
from wallet.card import plain_uid_card
from wallet.testcards import demo_purse_card

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


def validator_at(tmp_path, demo, direction: str, name: str = "j.db"):
    clock, lines = Clock(), []
    settings = Settings(route="R1", stop="S3", fare=200, token_key=demo.token_key, terminal_id=b"BUS-0001",
                        journal=tmp_path / name, direction=direction)
    journal = Journal(settings.journal, settings.terminal_id)
    v = Validator(settings, MockReader(), journal, clock=clock, out=lines.append)
    v.ref.issuer_keys = demo.issuer_keys
    return v, clock, lines


def test_a_purse_at_the_exit_is_recorded_and_not_debited(tmp_path):
    demo = demo_purse_card(balance=1000)
    v, clock, lines = validator_at(tmp_path, demo, "off")
    v.reader.present(demo.card)
    d = v.handle_card(v.reader.wait_for_card(0))
    assert (d.kind, d.accepted, d.reason, d.amount, d.receipt) == ("purse", True, "tap_off", None, None)
    assert demo.balance == 1000 and d.balance_after == 1000
    assert len(v.reader.transcript) == 1  # the SELECT only: no debit command was sent
    assert v.reader.signals == ["accept"]
    assert lines[-2].startswith("ACCEPTED") and "balance 10.00 CNY" in lines[-2]
    (row,) = v.journal.unsent()
    assert row["direction"] == "off" and row["card_id"] == demo.card_id.hex() and row["amount"] is None
    clock.now += timedelta(seconds=5)  # the same card again at once: a repeat, still no debit
    assert v.handle_card(v.reader.wait_for_card(0)).reason == "already_tapped"
    assert demo.balance == 1000
    v.journal.close()


def test_a_token_tap_off_is_journalled_with_its_direction(tmp_path):
    demo = demo_purse_card()
    v, _, _ = validator_at(tmp_path, demo, "off")
    v.reader.present(plain_uid_card(bytes.fromhex("04a1b2c3d4e5f6")))
    d = v.handle_card(v.reader.wait_for_card(0))
    assert (d.kind, d.accepted, d.reason) == ("uid", True, "token")
    (row,) = v.journal.unsent()
    assert row["direction"] == "off" and row["token"].startswith("uid_")
    v.journal.close()


def test_an_entry_validator_debits_and_its_rows_carry_no_direction(tmp_path):
    demo = demo_purse_card(balance=1000)
    v, _, _ = validator_at(tmp_path, demo, "on")
    v.reader.present(demo.card)
    assert v.handle_card(v.reader.wait_for_card(0)).reason == "paid"
    assert demo.balance == 800
    (row,) = v.journal.unsent()
    assert "direction" not in row and row["amount"] == 200
    v.journal.close()


def test_a_decisions_row_carries_its_direction_only_for_a_tap_off(tmp_path):
    demo = demo_purse_card(balance=1000)
    v, _, _ = validator_at(tmp_path, demo, "on")
    v.reader.present(demo.card)
    d = v.write_ahead.decide(v.reader.wait_for_card(0), v.terms()).decision
    assert d.direction == "on" and "direction" not in d.to_json()
    off = replace(d, direction="off")
    assert off.to_json() == {**d.to_json(), "direction": "off"}
    assert (off.signal, off.identity) == (d.signal, d.identity)
    v.journal.close()


def test_a_bad_direction_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="direction must be one of on, off"):
        check_settings(Settings(token_key=b"k" * 16, terminal_id=b"BUS-0001", direction="sideways"))
    answer = CliRunner().invoke(validator_command, ["--direction", "sideways", "--token-key", "00" * 16])
    assert answer.exit_code != 0 and "sideways" in answer.output and "Traceback" not in answer.output


def test_hex_arg_and_secret_text_are_public_for_the_link_command(tmp_path):
    assert hex_arg("00ff", "--token-key") == b"\x00\xff"
    with pytest.raises(ValueError, match="--token-key must be hex digits"):
        hex_arg("zz", "--token-key")
    (tmp_path / "key").write_text("abcd\n")
    assert secret_text(f"@{tmp_path / 'key'}") == "abcd" and secret_text("beef") == "beef"
