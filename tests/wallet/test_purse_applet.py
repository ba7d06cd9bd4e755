"""The purse applet on a virtual card: every command and status word, saving, and random APDUs."""
import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import certs, ed25519
from protocol import purse
from protocol.apdu import CommandAPDU, parse_response
from wallet.purse import PurseApplet, issue_purse, new_purse, purse_card
from wallet.state import FileStore, PurseState, WalletFileError
from wallet.testcards import DEMO_CARD_ID, DEMO_ISSUER_SEED, demo_card_seed, demo_purse_card

TERMINAL = b"BUS00042"
T0 = 1_798_761_600


def send(card, raw: bytes):
    return parse_response(card.process(raw))


def debit(amount=200, currency="CNY", nonce=b"N0000001", time=T0):
    return purse.debit_command(amount, currency, TERMINAL, nonce, time)


def topup(counter, amount=1000, card_id=DEMO_CARD_ID, issuer_seed=DEMO_ISSUER_SEED, reference=b"TOPUP001"):
    return purse.topup_command(purse.authorise_topup(issuer_seed, card_id, counter, amount, "CNY", reference, T0))


def selected(**kwargs):
    demo = demo_purse_card(**kwargs)
    assert send(demo.card, purse.select_command()).sw == 0x9000
    return demo


def test_select_answers_the_fci_of_the_purse():
    demo = demo_purse_card(balance=1234)
    answer = send(demo.card, purse.select_command())
    fci = purse.parse_fci(answer.data)
    assert answer.sw == 0x9000
    assert (fci.card_id, fci.currency, fci.balance, fci.counter, fci.locked) == (DEMO_CARD_ID, "CNY", 1234, 0, False)
    assert certs.verify(certs.parse(fci.certificate), demo.issuer_keys, T0).card_id == DEMO_CARD_ID


def test_debit_pays_and_signs_a_receipt_saved_before_the_answer():
    demo = selected(balance=1000)
    answer = send(demo.card, debit(300))
    assert answer.sw == 0x9000
    receipt = purse.verify_receipt(answer.data, demo.store.state.certificate, demo.issuer_keys, T0)
    assert (receipt.kind, receipt.counter, receipt.amount, receipt.balance_after) == (purse.KIND_DEBIT, 1, 300, 700)
    assert (receipt.terminal_id, receipt.nonce, receipt.time) == (TERMINAL, b"N0000001", T0)
    assert (demo.store.state.balance, demo.store.state.counter) == (700, 1)
    assert demo.store.state.receipts == (answer.data,)
    assert demo.store.saves == 1


def test_debit_of_the_whole_balance_leaves_zero():
    demo = selected(balance=200)
    assert send(demo.card, debit(200)).sw == 0x9000
    assert demo.balance == 0
    assert send(demo.card, debit(1)).sw == purse.SW_INSUFFICIENT_BALANCE


# Each refusal: the command, its status word, and nothing changes on the card.
REFUSALS = [
    ("insufficient balance", lambda: debit(2001), purse.SW_INSUFFICIENT_BALANCE),
    ("amount zero", lambda: CommandAPDU(0x80, 0x54, 0, 0, bytes(4) + debit()[9:31], 256).to_bytes(), 0x6A80),
    ("amount over the maximum", lambda: CommandAPDU(0x80, 0x54, 0, 0, (purse.MAX_AMOUNT + 1).to_bytes(4, "big")
                                                    + debit()[9:31], 256).to_bytes(), 0x6A80),
    ("another currency", lambda: debit(currency="EUR"), 0x6A80),
    ("unknown currency code", lambda: debit().replace(b"\x01\x56", b"\x09\x99", 1), 0x6A80),
    ("DEBIT data too short", lambda: CommandAPDU(0x80, 0x54, 0, 0, debit()[5:30], 256).to_bytes(), 0x6700),
    ("DEBIT data too long", lambda: CommandAPDU(0x80, 0x54, 0, 0, debit()[5:31] + b"\x00", 256).to_bytes(), 0x6700),
    ("DEBIT without data", lambda: bytes.fromhex("8054000000"), 0x6700),
    ("P1 not zero", lambda: b"\x80\x54\x01" + debit()[3:], 0x6A86),
    ("P2 not zero", lambda: b"\x80\x54\x00\x01" + debit()[4:], 0x6A86),
    ("unknown INS", lambda: bytes.fromhex("80CA000000"), 0x6D00),
    ("interindustry INS", lambda: bytes.fromhex("00B0000000"), 0x6D00),
    ("SELECT by file id", lambda: bytes.fromhex("00A4000C023F00"), 0x6A86),
    ("unknown CLA", lambda: b"\x90" + debit()[1:], 0x6E00),
    ("secure messaging CLA", lambda: b"\x84" + debit()[1:], 0x6E00),
    ("not an APDU", lambda: b"\x80\x54", 0x6700),
    ("Lc disagrees with the data", lambda: debit()[:-3], 0x6700),
    ("TOP-UP with a forged signature", lambda: topup(0, issuer_seed=bytes(32)), 0x6982),
    ("TOP-UP for another card", lambda: topup(0, card_id=bytes(8)), 0x6982),
    ("TOP-UP for another counter", lambda: topup(5), 0x6985),
    ("TOP-UP over the ceiling", lambda: topup(0, amount=purse.MAX_BALANCE - 2000 + 1), purse.SW_BALANCE_LIMIT),
    ("TOP-UP of zero", lambda: purse.topup_command(bytes(4) + purse.authorise_topup(
        DEMO_ISSUER_SEED, DEMO_CARD_ID, 0, 1, "CNY", b"TOPUP001", T0)[4:]), 0x6A80),
    ("TOP-UP data too short", lambda: CommandAPDU(0x80, 0x52, 0, 0, bytes(85), 256).to_bytes(), 0x6700),
    ("LOCK with a forged signature", lambda: purse.lock_command(purse.authorise_lock(bytes(32), DEMO_CARD_ID)), 0x6982),
    ("LOCK for another card", lambda: purse.lock_command(purse.authorise_lock(DEMO_ISSUER_SEED, bytes(8))), 0x6982),
    ("LOCK without data", lambda: bytes.fromhex("8056000000"), 0x6700),
    ("GET RECEIPT from an empty log", lambda: purse.get_receipt_command(), purse.SW_NO_RECEIPT),
    ("GET RECEIPT of a counter never used", lambda: purse.get_receipt_command(1), purse.SW_NO_RECEIPT),
    ("GET RECEIPT with 2 bytes of data", lambda: CommandAPDU(0x80, 0x5A, 0, 0, b"\x00\x01", 256).to_bytes(), 0x6700),
]


@pytest.mark.parametrize("name, command, sw", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_answer_their_status_word_and_change_nothing(name, command, sw):
    demo = selected(balance=2000)
    before = demo.store.state
    answer = send(demo.card, command())
    assert (answer.sw, answer.data) == (sw, b"")
    assert demo.store.state == before
    assert demo.store.saves == 0


def test_select_of_another_aid_is_not_found_and_deselects_the_purse():
    demo = selected()
    assert send(demo.card, purse.select_command().replace(purse.AID, b"\xA0\x00\x00\x00\x03\x10\x10\x00\x00\x00")).sw == 0x6A82
    assert send(demo.card, debit()).sw == 0x6E00  # no application selected
    assert demo.balance == 2000


def test_purse_commands_before_select_are_refused():
    demo = demo_purse_card()
    assert send(demo.card, debit()).sw == 0x6E00
    assert demo.balance == 2000


def test_topup_credits_once_and_answers_a_topup_receipt():
    demo = selected(balance=2000)
    answer = send(demo.card, topup(0, amount=500))
    assert answer.sw == 0x9000
    receipt = purse.verify_receipt(answer.data, demo.store.state.certificate, demo.issuer_keys, T0)
    assert (receipt.kind, receipt.counter, receipt.amount, receipt.balance_after) == (purse.KIND_TOPUP, 1, 500, 2500)
    assert (receipt.terminal_id, receipt.nonce) == (bytes(8), b"TOPUP001")
    assert send(demo.card, topup(0, amount=500)).sw == 0x6985  # the same authorisation again
    assert demo.balance == 2500


def test_topup_to_exactly_the_ceiling():
    demo = selected(balance=2000)
    assert send(demo.card, topup(0, amount=purse.MAX_BALANCE - 2000)).sw == 0x9000
    assert demo.balance == purse.MAX_BALANCE


def test_lock_stops_debits_and_topups_but_not_receipt_recovery():
    demo = selected()
    paid = send(demo.card, debit())
    lock = purse.lock_command(purse.authorise_lock(DEMO_ISSUER_SEED, DEMO_CARD_ID))
    assert send(demo.card, lock).sw == 0x9000
    assert send(demo.card, lock).sw == 0x9000  # idempotent
    assert send(demo.card, debit()).sw == purse.SW_LOCKED
    assert send(demo.card, topup(1)).sw == purse.SW_LOCKED
    assert send(demo.card, purse.get_receipt_command()).data == paid.data
    assert purse.parse_fci(send(demo.card, purse.select_command()).data).locked
    assert demo.balance == 1800


def test_get_receipt_by_counter_within_the_log():
    demo = selected(balance=5000)
    receipts = [send(demo.card, debit(10, nonce=bytes([i]) * 8)).data for i in range(purse.RECEIPT_LOG_SIZE + 2)]
    assert len(demo.store.state.receipts) == purse.RECEIPT_LOG_SIZE
    assert send(demo.card, purse.get_receipt_command()).data == receipts[-1]
    assert send(demo.card, purse.get_receipt_command(3)).data == receipts[2]
    assert send(demo.card, purse.get_receipt_command(2)).sw == purse.SW_NO_RECEIPT  # dropped from the log
    assert send(demo.card, purse.get_receipt_command(len(receipts) + 1)).sw == purse.SW_NO_RECEIPT


def test_an_exhausted_counter_refuses_transactions():
    demo = selected()
    demo.store.state = replace(demo.store.state, counter=purse.MAX_COUNTER)
    assert send(demo.card, debit()).sw == 0x6985
    assert send(demo.card, topup(purse.MAX_COUNTER)).sw == 0x6985
    assert demo.balance == 2000


def test_a_failed_save_answers_memory_failure_and_pays_nothing():
    demo = selected()
    demo.store.fail = True
    assert send(demo.card, debit()).sw == 0x6581
    assert (demo.balance, demo.store.state.counter) == (2000, 0)
    demo.store.fail = False
    assert send(demo.card, debit()).sw == 0x9000
    assert demo.store.state.counter == 1


# --- the wallet file ------------------------------------------------------------------

def test_file_state_survives_a_crash_between_debit_and_answer(tmp_path):
    path = tmp_path / "wallet.json"
    demo = selected(path=path)
    lost_answer = send(demo.card, debit())  # the card saved, then "crashed" before answering
    reborn = purse_card(FileStore.open(path), b"\x08\x00\x00\x01")
    send(reborn, purse.select_command())
    assert send(reborn, purse.get_receipt_command()).data == lost_answer.data
    assert purse.parse_fci(send(reborn, purse.select_command()).data).balance == 1800
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_file_state_crash_during_the_write_keeps_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "wallet.json"
    demo = selected(path=path)
    before = path.read_text()

    def crash(*args):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    assert send(demo.card, debit()).sw == 0x6581
    assert path.read_text() == before
    assert [f.name for f in tmp_path.iterdir()] == ["wallet.json"]  # no temp file left behind
    assert demo.balance == 2000


def test_file_store_keeps_sections_it_does_not_own(tmp_path):
    path = tmp_path / "wallet.json"
    state = issue_purse(DEMO_ISSUER_SEED, demo_card_seed(DEMO_CARD_ID), DEMO_CARD_ID, "CNY", 900, 2_000_000_000)
    FileStore.create(path, state, b"\x04\x11\x22\x33\x44\x55\x66", name="rider", emv={"profile": "x"})
    card = purse_card(FileStore.open(path), b"\x04\x11\x22\x33\x44\x55\x66")
    send(card, purse.select_command())
    send(card, debit(100))
    doc = json.loads(path.read_text())
    assert doc["emv"] == {"profile": "x"} and doc["name"] == "rider" and doc["uid"] == "04112233445566"
    assert doc["purse"]["balance"] == 800 and len(doc["purse"]["receipts"]) == 1
    assert PurseState.from_json(doc["purse"]) == FileStore.open(path).state


@pytest.mark.parametrize("content, message", [
    ("not json", "not JSON"),
    ('{"format": "other"}', "not in format"),
    ('{"format": "tapstack-wallet/1"}', "has no purse"),
    ('{"format": "tapstack-wallet/1", "purse": {"card_id": "00"}}', "invalid purse section"),
    ('{"format": "tapstack-wallet/1", "purse": []}', "has no purse"),
])
def test_bad_wallet_files_give_one_clear_error(tmp_path, content, message):
    path = tmp_path / "wallet.json"
    path.write_text(content)
    with pytest.raises(WalletFileError, match=message):
        PurseApplet.from_file(path)
    with pytest.raises(WalletFileError, match="cannot read"):
        PurseApplet.from_file(tmp_path / "missing.json")


def test_a_wallet_file_with_a_mismatched_certificate_is_refused(tmp_path):
    path = tmp_path / "wallet.json"
    demo_purse_card(path=path)
    doc = json.loads(path.read_text())
    doc["purse"]["seed"] = "00" * 32  # another key than the certificate's
    path.write_text(json.dumps(doc))
    with pytest.raises(WalletFileError, match="certificate is not for this card"):
        FileStore.open(path)


def test_new_purse_checks_its_parts_fit_together():
    seed, issuer_public = demo_card_seed(DEMO_CARD_ID), ed25519.public_key(DEMO_ISSUER_SEED)
    cert = certs.issue(DEMO_ISSUER_SEED, DEMO_CARD_ID, ed25519.public_key(seed), 2_000_000_000)
    assert new_purse(seed, DEMO_CARD_ID, cert, issuer_public, "CNY", 0).balance == 0
    with pytest.raises(ValueError, match="certificate is not for this card"):
        new_purse(seed, bytes(8), cert, issuer_public, "CNY", 0)
    with pytest.raises(ValueError, match="balance"):
        new_purse(seed, DEMO_CARD_ID, cert, issuer_public, "CNY", purse.MAX_BALANCE + 1)
    with pytest.raises(ValueError, match="currency"):
        new_purse(seed, DEMO_CARD_ID, cert, issuer_public, "XXX", 0)


# --- random APDUs -----------------------------------------------------------------------

KNOWN_SW = {0x9000, 0x9401, 0x9402, 0x6983, 0x6982, 0x6985, 0x6A80, 0x6A82, 0x6A86, 0x6A88, 0x6700,
            0x6D00, 0x6E00}

headers = st.tuples(st.sampled_from([0x00, 0x80, 0xFF, 0x84, 0x90]) | st.integers(0, 255),
                    st.sampled_from([0x54, 0x52, 0x56, 0x5A, 0xA4, 0xCA]) | st.integers(0, 255),
                    st.sampled_from([0, 4]) | st.integers(0, 255), st.sampled_from([0]) | st.integers(0, 255))
structured = st.builds(lambda h, data, le: CommandAPDU(*h, data, le).to_bytes(), headers,
                       st.sampled_from([0, 4, 25, 26, 27, 64, 86]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
                       | st.binary(max_size=300), st.none() | st.integers(1, 65536))
well_formed_debits = st.builds(lambda amount, currency, nonce: debit(amount, currency, nonce),
                               st.integers(1, 2500), st.sampled_from(["CNY", "CNY", "EUR"]), st.binary(min_size=8, max_size=8))
topups = st.builds(lambda counter, amount: topup(counter, amount), st.integers(0, 4), st.integers(1, 3000))
commands = st.lists(st.one_of(st.binary(max_size=40), structured, well_formed_debits, topups,
                              st.just(purse.select_command()), st.just(purse.get_receipt_command())), max_size=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands)
def test_random_apdus_get_a_known_status_word_and_move_value_only_by_receipt(script):
    demo = selected(balance=2000)
    issuer_keys, cert = demo.issuer_keys, demo.store.state.certificate
    for raw in script:
        before = demo.store.state
        answer = parse_response(demo.card.process(raw))  # never raises, always 2+ bytes
        after = demo.store.state
        assert answer.sw in KNOWN_SW, f"{raw.hex()} -> {answer.describe()}"
        if after.balance == before.balance and after.counter == before.counter:
            assert after == before
            continue
        # Value moved: only by a debit or an issuer-signed top-up, answered with its receipt.
        assert raw[:2] in (b"\x80\x54", b"\x80\x52") and answer.sw == 0x9000
        receipt = purse.verify_receipt(answer.data, cert, issuer_keys, T0)
        sign = -1 if receipt.kind == purse.KIND_DEBIT else 1
        assert after.balance == before.balance + sign * receipt.amount == receipt.balance_after
        assert after.counter == before.counter + 1 == receipt.counter
        assert after.receipts[-1] == answer.data
        assert 0 <= after.balance <= purse.MAX_BALANCE


@pytest.mark.parametrize("field, value, message", [
    ("balance", True, "balance"), ("balance", -1, "balance"), ("balance", "2000", "balance"),
    ("counter", 2**32, "counter"), ("currency", "XXX", "currency"), ("receipts", ["00"], "receipts"),
])
def test_a_purse_section_with_a_bad_field_is_refused(tmp_path, field, value, message):
    path = tmp_path / "wallet.json"
    demo_purse_card(path=path)
    doc = json.loads(path.read_text())
    doc["purse"][field] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(WalletFileError, match=message):
        FileStore.open(path)


CRASHING_CARD = """
import os, sys
from protocol import purse
from protocol.apdu import parse_command
from wallet.purse import PurseApplet
from wallet.state import FileStore

class CrashAfterSave(FileStore):
    def save(self, state):
        super().save(state)
        os._exit(17)  # the process dies after the write, before any answer leaves

applet = PurseApplet(CrashAfterSave.open(sys.argv[1]))
applet.process(parse_command(purse.debit_command(300, "CNY", b"BUS00042", b"CRASHED1", 1798761600)))
"""


def test_a_process_killed_between_save_and_answer_keeps_exactly_one_debit(tmp_path):
    path = tmp_path / "wallet.json"
    demo = demo_purse_card(balance=1000, path=path)
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", CRASHING_CARD, str(path)], cwd=root, capture_output=True,
                          env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 17, done.stderr.decode()
    reborn = purse_card(FileStore.open(path), b"\x08\x00\x00\x01")
    fci = purse.parse_fci(send(reborn, purse.select_command()).data)
    assert (fci.balance, fci.counter) == (700, 1)
    receipt = purse.verify_receipt(send(reborn, purse.get_receipt_command(1)).data, fci.certificate, demo.issuer_keys, T0)
    assert (receipt.nonce, receipt.amount, receipt.balance_after) == (b"CRASHED1", 300, 700)
