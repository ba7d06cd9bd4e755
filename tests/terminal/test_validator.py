"""The validator's decisions as tables, then the shell deciding real taps on a mock reader."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from protocol.uplink import RecordError, TapRecord, reference
from terminal.bus import Validator
from terminal.card import MESSAGES, Place, already_tapped, decide, remember
from terminal.journal import Journal
from terminal.readers.mock import MockReader
from terminal.settings import Settings, check_settings
from terminal.stops import StopChange, StopFeed, parse_command, place_at, read_stop_feed
from terminal.tap import TapOutcome
from wallet.card import plain_uid_card
from wallet.testcards import demo_purse_card

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)
PLACE = Place("R1", "S3")
CARD = bytes.fromhex("5441500000000001")
TOKEN = "uid_" + "a" * 32


def outcome(kind="purse", accepted=True, reason="paid", **fields) -> TapOutcome:
    defaults = {"purse": dict(card_id=CARD, amount=200, currency="CNY", balance_after=800, receipt=b"\x01" * 108),
                "uid": dict(token=TOKEN, currency="CNY"), "emv": dict(token="pan_" + "b" * 32, currency="CNY")}
    return TapOutcome(kind, accepted, reason, **{**defaults.get(kind, {}), **fields})


@pytest.mark.parametrize("tap, recent, accepted, reason, amount, signal", [
    (outcome(), {}, True, "paid", 200, "accept"),
    (outcome(reason="recovered"), {}, True, "recovered", 200, "accept"),
    # a purse debit that happened is accepted even inside the window: money and display agree
    (outcome(), {CARD.hex(): NOW - timedelta(seconds=5)}, True, "paid", 200, "accept"),
    (outcome(accepted=False, reason="insufficient_balance", amount=None, receipt=None), {}, False,
     "insufficient_balance", None, "deny"),
    (outcome(accepted=False, reason="deny_listed", amount=None, receipt=None), {}, False, "deny_listed", None,
     "deny"),
    (outcome("uid", reason="token"), {}, True, "token", None, "accept"),
    (outcome("uid", reason="token"), {TOKEN: NOW - timedelta(seconds=59)}, False, "already_tapped", None, "deny"),
    (outcome("uid", reason="token"), {TOKEN: NOW - timedelta(seconds=60)}, True, "token", None, "accept"),
    (outcome("emv", reason="token"), {TOKEN: NOW - timedelta(seconds=1)}, True, "token", None, "accept"),
    (TapOutcome("error", False, "card_removed"), {}, False, "card_removed", None, "error"),
    (TapOutcome("unknown", False, "random_uid"), {}, False, "random_uid", None, "deny"),
])
def test_decide(tap, recent, accepted, reason, amount, signal):
    d = decide(tap, now=NOW, place=PLACE, rules_version=7, recent=recent)
    assert (d.accepted, d.reason, d.amount, d.signal) == (accepted, reason, amount, signal)
    assert (d.route, d.stop, d.at) == ("R1", "S3", NOW)
    assert d.message == MESSAGES[reason]
    assert d.rules_version == (7 if tap.kind in ("purse", "emv", "uid") else None)


def test_a_decision_carries_the_receipt_and_never_a_card_number():
    d = decide(outcome(), now=NOW, place=PLACE, rules_version=7, recent={})
    row = d.to_json()
    assert row["receipt"] == "01" * 108 and row["card_id"] == CARD.hex()
    assert row["at"] == int(NOW.timestamp()) and row["balance_after"] == 800
    assert set(row) == {"at", "kind", "accepted", "reason", "route", "stop", "rules_version", "amount",
                        "currency", "balance_after", "card_id", "token", "receipt"}


@pytest.mark.parametrize("last, now, window, expected", [
    (None, NOW, 60, False),
    (NOW, NOW, 60, True),
    (NOW - timedelta(seconds=59.9), NOW, 60, True),
    (NOW - timedelta(seconds=60), NOW, 60, False),
    (NOW + timedelta(seconds=10), NOW, 60, False),  # a clock set back: not a repeat
    (NOW - timedelta(seconds=5), NOW, 3, False),
])
def test_already_tapped(last, now, window, expected):
    recent = {} if last is None else {"x": last}
    assert already_tapped(recent, "x", now, timedelta(seconds=window)) is expected


def test_remember_keeps_accepted_taps_within_the_window_only():
    accepted = decide(outcome(), now=NOW, place=PLACE, rules_version=1, recent={})
    refused = decide(outcome("uid", accepted=False, reason="deny_listed"), now=NOW, place=PLACE,
                               rules_version=1, recent={})
    recent = remember({"old": NOW - timedelta(minutes=5)}, accepted)
    assert recent == {CARD.hex(): NOW}
    assert remember(recent, refused) == recent


@pytest.mark.parametrize("line, place, expected", [
    ("stop S4", PLACE, Place("R1", "S4")),
    ("route R2 stop A", PLACE, Place("R2", "A")),
    ("route R2 stop A", None, Place("R2", "A")),
    ("route R9", PLACE, Place("R9", "S3")),
])
def test_commands(line, place, expected):
    assert parse_command(line, place) == expected


@pytest.mark.parametrize("line, place", [("stop", PLACE), ("go S4", PLACE), ("stop S1", None), ("", PLACE)])
def test_bad_commands(line, place):
    with pytest.raises(ValueError):
        parse_command(line, place)


BAD_NAMES = ["S\x00", "\x01\xff", "Nord/Süd", "x" * 65, "a b", "<script>"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_route_or_stop_the_gateway_would_refuse_is_refused_on_every_way_in(name, tmp_path):
    """A tap journalled under such a name would be refused at upload and its fare never cleared."""
    with pytest.raises(RecordError):  # what the gateway's ingestion checks rows with
        TapRecord.from_json({"id": 1, "at": NOW.isoformat(), "kind": "uid", "accepted": True, "reason": "ok",
                             "route": "R1", "stop": name, "amount": 0, "currency": "CNY"})
    for line in (f"stop {name}", f"route {name} stop S1"):
        if len(line.split()) % 2 == 0:  # a name with a space is not one word of a command anyway
            with pytest.raises(ValueError, match="letters, digits"):
                parse_command(line, PLACE)
    (tmp_path / "feed.json").write_text(json.dumps([{"at": "2026-11-27T08:00:00Z", "route": name, "stop": "S1"}]))
    with pytest.raises(ValueError, match="entry 1: .*letters, digits"):
        read_stop_feed(tmp_path / "feed.json")
    with pytest.raises(ValueError, match="--stop"):
        check_settings(Settings(route="R1", stop=name))


def test_place_at_follows_the_feed_in_time_order():
    feed = [StopChange(NOW + timedelta(minutes=m), Place("R1", s))
            for m, s in ((10, "S2"), (0, "S1"), (20, "S3"))]
    assert place_at(feed, NOW - timedelta(seconds=1)) is None
    assert place_at(feed, NOW + timedelta(minutes=15)).stop == "S2"
    assert place_at(feed, NOW + timedelta(hours=1)).stop == "S3"


@pytest.mark.parametrize("held, version, answer, entries, new_version", [
    ({"a"}, 3, {"version": 5, "full": False, "added": [{"entry": "b"}], "removed": [{"entry": "a"}]}, {"b"}, 5),
    ({"a"}, 3, {"version": 9, "full": True, "entries": [{"entry": "z"}]}, {"z"}, 9),
    ({"a"}, 3, {"version": 3, "full": False, "added": [], "removed": []}, {"a"}, 3),
    ({"a"}, 5, {"version": 4, "full": False, "added": [{"entry": "q"}], "removed": []}, {"a"}, 5),
])
def test_apply_deny_delta(held, version, answer, entries, new_version):
    assert reference.apply_deny_delta(frozenset(held), version, answer) == (frozenset(entries), new_version)


def test_a_deny_list_answer_that_is_not_one_is_refused():
    with pytest.raises(ValueError):
        reference.apply_deny_delta(frozenset(), 0, {"version": 1, "full": False})


def test_stop_feed_json_and_csv(tmp_path):
    (tmp_path / "feed.json").write_text('[{"at": "2026-11-27T08:00:00Z", "route": "R1", "stop": "S1"}]')
    (tmp_path / "feed.csv").write_text("at,route,stop\n2026-11-27T08:05:00Z,R1,S2\n")
    assert read_stop_feed(tmp_path / "feed.json")[0].place == Place("R1", "S1")
    assert read_stop_feed(tmp_path / "feed.csv")[0].at == NOW + timedelta(minutes=5)
    (tmp_path / "bad.csv").write_text("at,route,stop\nlater,R1,S2\n")
    with pytest.raises(ValueError, match="entry 1"):
        read_stop_feed(tmp_path / "bad.csv")


# --- the shell over a mock reader --------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


@pytest.fixture
def shell(tmp_path):
    demo = demo_purse_card(balance=1000)
    clock, lines = Clock(), []
    settings = Settings(route="R1", stop="S3", fare=200, token_key=demo.token_key, terminal_id=b"BUS-0001",
                        journal=tmp_path / "j.db")
    journal = Journal(settings.journal, settings.terminal_id)
    v = Validator(settings, MockReader(), journal, clock=clock, out=lines.append)
    v.ref.issuer_keys = demo.issuer_keys
    yield v, demo, clock, lines
    journal.close()


def test_a_repeat_purse_tap_is_refused_before_any_debit(shell):
    v, demo, clock, _ = shell
    v.reader.present(demo.card)
    first = v.handle_card(v.reader.wait_for_card(0))
    clock.now += timedelta(seconds=10)
    sent = len(v.reader.transcript)
    second = v.handle_card(v.reader.wait_for_card(0))
    assert (first.reason, second.reason) == ("paid", "already_tapped")
    assert len(v.reader.transcript) - sent == 1  # the SELECT only
    assert demo.balance == 800
    clock.now += timedelta(seconds=60)
    assert v.handle_card(v.reader.wait_for_card(0)).reason == "paid"
    assert demo.balance == 600
    assert v.reader.signals == ["accept", "deny", "accept"]


def test_a_first_tap_costs_two_apdus(shell):
    v, demo, _, _ = shell
    v.reader.present(demo.card)
    v.handle_card(v.reader.wait_for_card(0))
    assert len(v.reader.transcript) == 2  # SELECT answered once, reused by the tap


def test_no_place_or_no_fare_never_debits(shell):
    v, demo, _, _ = shell
    v.reader.present(demo.card)
    v.s.fare = None
    assert v.handle_card(v.reader.wait_for_card(0)).reason == "no_fare"
    v.place = None
    assert v.handle_card(v.reader.wait_for_card(0)).reason == "no_place"
    assert demo.balance == 1000


def test_deny_listed_and_token_taps(shell):
    v, demo, _, _ = shell
    v.ref.deny = frozenset({demo.card_id.hex()})
    v.reader.present(demo.card)
    assert v.handle_card(v.reader.wait_for_card(0)).reason == "deny_listed"
    v.reader.present(plain_uid_card(bytes.fromhex("04a1b2c3d4e5f6")))
    d = v.handle_card(v.reader.wait_for_card(0))
    assert (d.kind, d.reason, d.token.startswith("uid_")) == ("uid", "token", True)
    assert v.handle_card(v.reader.wait_for_card(0)).reason == "already_tapped"


def test_the_panel_says_what_happened_and_how_old_the_data_is(shell):
    v, demo, clock, lines = shell
    v.ref.refreshed_at = NOW - timedelta(hours=5)
    v.reader.present(demo.card)
    v.handle_card(v.reader.wait_for_card(0))
    assert lines[-2].startswith("ACCEPTED") and "2.00 CNY" in lines[-2] and "balance 8.00 CNY" in lines[-2]
    assert "OFFLINE, data 5 h old" in lines[-1] and "1 to upload" in lines[-1]


def test_commands_and_feed_change_the_place_and_survive_a_restart(shell, tmp_path):
    v, demo, clock, _ = shell
    v.command("stop S9")
    assert v.place == Place("R1", "S9")
    v.feed = StopFeed(tmp_path / "feed.json")
    v.feed.path.write_text('[{"at": "2026-11-27T07:00:00Z", "route": "R2", "stop": "A"}]')
    v.follow_feed()
    assert v.place == Place("R2", "A")
    again = Validator(Settings(fare=200, token_key=demo.token_key, terminal_id=b"BUS-0001",
                               journal=v.s.journal), MockReader(), v.journal, clock=clock, out=lambda _: None)
    assert again.place == Place("R2", "A")


# --- QR tickets --------------------------------------------------------------------------

def ticket(demo, *, route="R1", nonce=b"\x01" * 8, issued_at=NOW):
    from protocol import signed_qr
    from wallet.testcards import demo_card_seed

    return signed_qr.ticket_code(demo_card_seed(demo.card_id), demo.store.state.certificate, issued_at=issued_at,
                                 nonce=nonce, ticket_id=b"T" * 8, product=1, route=route,
                                 valid_from=NOW - timedelta(hours=1), valid_until=NOW + timedelta(hours=1))


def test_a_qr_ticket_frame_is_verified_offline_and_used_once(shell, tmp_path):
    from wallet import qr

    v, demo, clock, _ = shell
    v.frames.directory = tmp_path / "frames"
    v.frames.directory.mkdir()
    qr.write(ticket(demo), v.frames.directory / "0001.png")
    qr.write(ticket(demo), v.frames.directory / "0002.png")  # the same code shown again
    qr.write(ticket(demo, route="R7", nonce=b"\x02" * 8), v.frames.directory / "0003.png")
    (v.frames.directory / "0004.png").write_bytes(b"not an image")
    decisions = [v.handle_frame(path) for path in v.frames.new()]
    assert [d and (d.kind, d.accepted, d.reason) for d in decisions] == [
        ("qr", True, "qr_ticket"), ("qr", False, "qr_replayed"), ("qr", False, "bad_qr"), None]
    assert decisions[0].card_id == demo.card_id.hex()
    assert v.frames.new() == []  # frames already read are not read again
    assert [t["reason"] for t in v.journal.taps()] == ["qr_ticket", "qr_replayed", "bad_qr"]


def test_a_forged_or_expired_qr_ticket_is_refused(shell):
    v, demo, clock, _ = shell
    code = ticket(demo)
    forged = code[:-4] + ("AAAA" if code[-4:] != "AAAA" else "BBBB")
    assert v.decide_qr(forged).decision.reason == "bad_qr"
    clock.now += timedelta(minutes=10)
    assert v.decide_qr(code).decision.reason == "bad_qr"


@pytest.mark.parametrize("command, args, message", [
    ("validator", ["--token-key", "zz"], "--token-key must be hex digits"),
    ("validator", ["--token-key", "00" * 8], "at least 16 bytes"),
    ("till", ["--token-key", "00" * 16, "--merchant-key", "nope"], "merchant's API key, sk_"),
    ("validator", ["--token-key", "00" * 16, "--gateway", "http://x"], "--gateway needs --terminal-key"),
    ("till", ["--token-key", "00" * 16, "--gateway", "http://x"], "--gateway needs --terminal-key"),
    ("validator", ["--token-key", "00" * 16, "--terminal-key", "nope"], "KEY_ID:SECRET_HEX"),
    ("validator", ["--token-key", "00" * 16, "--issuer-key", "abcd"], "issuer key is 32 bytes"),
    ("validator", ["--token-key", "00" * 16, "--reader", "serial:/dev/ttyS0"], "unknown reader"),
])
def test_the_command_refuses_bad_settings_in_one_line(command, args, message, tmp_path):
    from click.testing import CliRunner

    from terminal.cli import cli

    result = CliRunner().invoke(cli, [command, *args, "--journal", str(tmp_path / "j.db")])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_each_program_takes_only_its_own_options_and_run_is_an_alias_that_says_so(tmp_path):
    from click.testing import CliRunner

    from terminal.cli import cli
    from terminal.commands import DEPRECATED

    runner = CliRunner()
    validator_help, till_help = (runner.invoke(cli, [c, "--help"]).output for c in ("validator", "till"))
    assert "--stop-feed" in validator_help and "--sales" not in validator_help and "--merchant-key" not in validator_help
    assert "--sales" in till_help and "--route" not in till_help and "--fare-rules" not in till_help
    for mode in ("bus", "pos"):
        result = runner.invoke(cli, ["run", "--mode", mode, "--token-key", "zz", "--journal", str(tmp_path / "j.db")])
        assert result.exit_code == 1 and result.stderr.splitlines()[0] == DEPRECATED
        assert "--token-key must be hex digits" in result.stderr and "Traceback" not in result.output
