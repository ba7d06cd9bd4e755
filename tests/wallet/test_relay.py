"""`tapstack wallet relay`: a card on a PC/SC reader relayed into vpcd or nfcpy udp, its sessions
recorded. There is no real reader here: the "real" card is an emulated one in the first vpcd slot
of the session's pcscd, relayed to the second slot or to nfcpy's udp driver."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tapstack.testing import CardChannel
from tapstack.testing.fields import Stage
from tapstack.testing.kit import CardKit
from tapstack.testing.runner import run_scenario
from tapstack.testing.scenario import load_scenario
from terminal.tap import tap
from terminal.trace import mask_pan, read_trace

PAN = "5555555555554444"
kit = CardKit()


def relay(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tapstack", "wallet", "relay", *map(str, args),
                             "--cards", "1", "--timeout", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen) -> str:
    try:
        _, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    assert process.returncode == 0, err
    return err


@pytest.mark.pcscd
def test_a_card_relayed_from_one_vpcd_slot_to_the_other_is_tapped_and_recorded(pcscd_vpcd, tmp_path):
    from terminal.readers.pcsc import PcscReader
    from wallet.transports.vpcd import VpcdCard

    source, target = pcscd_vpcd.readers
    out = tmp_path / "relayed.trace.jsonl"
    with VpcdCard(kit.emv(pan=PAN, uid="04112233445566"), source.port) as real:
        process = relay("--from", f"pcsc:{source.pcsc_name}", "--via", "vpcd", "--port", target.port, "--out", out)
        reader = PcscReader(target.pcsc_name)
        try:
            session = reader.wait_for_card(20)
            assert session is not None and session.atr == bytes.fromhex("3B80800101")
            outcome, _ = tap(session, kit.context())
            assert (outcome.kind, outcome.reason, outcome.token) == ("emv", "token", kit.pan_token(PAN))
            assert session.uid == bytes.fromhex("04112233445566")  # FF CA reaches the real card too
        finally:
            reader.close()
        real.remove()
        err = finish(process)
    assert "card on tapstack vpcd 00 00: UID 04112233445566, ATR 3B80800101" in err
    assert "1 session(s) in" in err
    text = out.read_text()
    assert PAN not in text and mask_pan(PAN) in text
    session, = read_trace(out)
    assert session.reader == source.pcsc_name and session.uid == bytes.fromhex("04112233445566")
    assert [x.command[:4].hex().upper() for x in session.exchanges][:4] == ["00A40400", "00A40400", "00A40400",
                                                                             "80A80000"]
    scenario = tmp_path / "scenario_relayed.yaml"
    scenario.write_text("cards:\n  card: {type: replay, trace: relayed.trace.jsonl}\nsteps:\n  - present: card\n"
                        "  - expect: {outcome: accept, kind: emv, reason: token}\n")
    result = run_scenario(load_scenario(scenario), "mock", Stage())
    assert result.ok, result.report()


@pytest.mark.pcscd
@pytest.mark.nfcpy_udp
def test_a_card_of_the_users_own_relayed_to_nfcpy_answers_as_itself(pcscd_vpcd, nfc_udp_port, tmp_path):
    from terminal.readers.nfc import NfcReader
    from wallet.transports.vpcd import VpcdCard

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "coffee-card"))
    try:
        from coffee_card import AID, CoffeeCard
    finally:
        sys.path.pop(0)
    source = pcscd_vpcd.readers[0]
    out = tmp_path / "coffee.trace.jsonl"
    coffee = CoffeeCard(points=20)
    with VpcdCard(kit.python(coffee), source.port) as real:
        process = relay("--from", f"pcsc:{source.pcsc_name}", "--via", "nfcpy-udp", "--port", nfc_udp_port,
                        "--out", out)
        time.sleep(0.5)
        reader = NfcReader(f"udp:127.0.0.1:{nfc_udp_port}")
        try:
            session = reader.wait_for_card(20)
            assert session is not None and session.uid == bytes.fromhex("04BEA11EAF0001")
            card = CardChannel(session)
            assert card.select(AID).sw == 0x9000
            assert card.send("80E00000", data="02", le=2).data == bytes.fromhex("0028")  # T=0 61xx, fetched upstream
        finally:
            reader.close()
        real.remove()
        finish(process)
    assert coffee.points == 40  # the real card counted the cups
    session, = read_trace(out)
    assert [(x.command.hex().upper(), x.response.hex().upper()) for x in session.exchanges] == [
        ("00A4040009F04245414E4C45414600", "6F1A8409F04245414E4C454146A50D500B4265616E2026204C656166" "9000"),
        ("80E00000010202", "00289000")]


def test_relay_reads_from_pcsc_readers_only():
    from click.testing import CliRunner

    from tapstack.cli import main

    result = CliRunner().invoke(main, ["wallet", "relay", "--from", "udp:127.0.0.1:1"])
    assert result.exit_code == 2 and "--from is a PC/SC reader: pcsc:READER" in result.output


def test_the_real_readers_pcscd_going_away_ends_the_card_not_the_relay():
    import threading

    from wallet.relay import relay_once

    class Session:
        uid, atr = b"\x04\x01\x02\x03", bytes.fromhex("3B80800101")

        def transmit(self, apdu):
            raise OSError("RPC transport error")

        def close(self):
            pass

    class Reader:
        name = "a reader"

        def wait_for_card(self, timeout):
            return Session()

        def wait_for_removal(self, timeout):
            raise RuntimeError("status change: RPC transport error. (0x80100013)")

    class Transport:
        presented = removed = False

        def present(self, card):
            self.presented = card

        def remove(self):
            self.removed = True

        def tear_after(self, n):
            pass

    said, transport = [], Transport()
    card = relay_once(Reader(), Reader(), transport, None, None, number=1, stop=threading.Event(), timeout=1,
                      say=said.append)
    assert card is not None and card.gone and transport.removed
    assert said[1] == "a reader went away: status change: RPC transport error. (0x80100013)"
    assert card.process(bytes.fromhex("00A4040000")) == bytes.fromhex("6F00")  # gone: answered, never raised
