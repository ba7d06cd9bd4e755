"""`tapstack wallet emulate`: cards, masked traces, the presentation schedule, one-line errors."""
from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner

from tapstack.cli import main
from wallet.emulate import EmulateError, Schedule, build_card, mask_pans, run
from wallet.emv_card import TEST_PAN
from wallet.testcards import demo_purse_card


def test_mask_pans_hides_the_card_number_in_pan_and_track2():
    record = "70255711" + TEST_PAN + "D30122010000000000" + "5F200F544553542F43415244484F4C444552" + "9000"
    masked = mask_pans(record)
    assert TEST_PAN not in masked and "424242******4242D3012" in masked
    assert TEST_PAN not in mask_pans("5A08" + TEST_PAN + "9000")
    debit = "805400001A000000C801564255533030303132C6FA"  # amounts and ids are left readable
    assert mask_pans(debit) == debit


def test_build_card_kinds(tmp_path):
    assert build_card("uid").applets == []
    assert build_card("emv", uid=b"\x08\x01\x02\x03").uid == b"\x08\x01\x02\x03"
    assert build_card("purse").applets[0].state.balance > 0
    path = tmp_path / "wallet.json"
    demo = demo_purse_card(balance=1234, path=path, uid=bytes.fromhex("04AABBCCDDEEFF"))
    card = build_card("wallet", path)
    assert card.uid == bytes.fromhex("04AABBCCDDEEFF") and card.applets[0].state.balance == 1234 == demo.balance
    with pytest.raises(EmulateError, match="--wallet"):
        build_card("wallet")
    with pytest.raises(EmulateError, match="cannot read wallet file"):
        build_card("wallet", tmp_path / "missing.json")


class ScriptedTransport:
    def __init__(self):
        self.events, self.presented = [], False

    def present(self):
        self.events.append("present")
        self.presented = True

    def remove(self):
        self.events.append("remove")
        self.presented = False


def test_schedule_presents_and_takes_away_k_times():
    transport = ScriptedTransport()
    shown = run(transport, Schedule(present_for=0, absent_for=0, repeat=3), threading.Event(), say=lambda _: None)
    assert shown == 3 and transport.events == ["present", "remove"] * 3


def test_a_torn_card_comes_back_until_stopped():
    transport, stop = ScriptedTransport(), threading.Event()
    lines = []

    def say(line):
        lines.append(line)
        if len(lines) == 1:
            transport.presented = False  # torn away by the script
        elif len(lines) >= 3:
            stop.set()

    run(transport, Schedule(absent_for=0), stop, say=say)
    assert transport.events[:3] == ["present", "remove", "present"]


def test_cli_errors_are_one_line():
    runner = CliRunner()
    result = runner.invoke(main, ["wallet", "emulate", "--card", "wallet"])
    assert result.exit_code == 1 and result.output.strip() == "Error: --card wallet needs --wallet FILE"
    result = runner.invoke(main, ["wallet", "emulate", "--uid", "zz"])
    assert result.exit_code == 2 and "--uid" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["wallet", "emulate", "--via", "nfcpy-udp", "--start-pcscd"])
    assert result.exit_code == 2 and "--start-pcscd goes with --via vpcd" in result.output


@pytest.mark.nfcpy_udp
def test_cli_presents_a_card_to_an_nfcpy_reader(nfc_udp_port):
    from terminal.readers.nfc import NfcReader

    runner = CliRunner()
    outcome = {}

    def tap():
        reader = NfcReader(f"udp:127.0.0.1:{nfc_udp_port}")
        try:
            session = reader.wait_for_card(10)
            outcome["uid"] = session and session.uid
        finally:
            reader.close()

    thread = threading.Thread(target=tap)
    thread.start()
    result = runner.invoke(main, ["wallet", "emulate", "--via", "nfcpy-udp", "--port", str(nfc_udp_port),
                                  "--card", "uid", "--uid", "04112233445566", "--present-for", "2", "--repeat", "1"])
    thread.join(10)
    assert result.exit_code == 0, result.output
    assert "presenting uid card (UID 04112233445566) via nfcpy-udp" in result.output
    assert outcome["uid"] == bytes.fromhex("04112233445566")
