"""A pcscd in the way, or a card in a vpcd slot, said at once: which program, which pid, what to do."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from tapstack.testing.fields import Stage, StageError
from wallet import pcscd


@pytest.fixture
def fake_pcscd(tmp_path, monkeypatch):
    """A process named pcscd (a renamed sleep) started by a parent whose command line is given:
    the machine's only pcscd, as far as wallet.pcscd can tell."""
    started = []
    exe = tmp_path / "pcscd"

    def start(parent_command: str) -> tuple[int, int]:
        if not exe.exists():
            exe.symlink_to("/bin/sleep")
        program, *args = parent_command.split()
        script = tmp_path / program  # a script named as the program, so its command line reads as that program's
        script.write_text(f"#!/bin/bash\n{exe} 30 &\nwait\n")
        script.chmod(0o755)
        parent = subprocess.Popen([str(script), *args], start_new_session=True)
        started.append(parent)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == parent.pid]
            if children and open(f"/proc/{children[0]}/comm").read().strip() == "pcscd":
                monkeypatch.setattr(pcscd, "running_pcscd", lambda: children[0])
                monkeypatch.setattr(pcscd, "list_pcsc_readers", lambda: [])
                return children[0], parent.pid
            time.sleep(0.02)
        raise AssertionError("the fake pcscd did not start")

    yield start
    for parent in started:
        os.killpg(parent.pid, 15)
        parent.wait(5)
    monkeypatch.undo()
    deadline = time.monotonic() + 5
    while any(p == str(exe) for p in _pcscd_commands()) and time.monotonic() < deadline:
        time.sleep(0.05)


def _pcscd_commands():
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            yield open(f"/proc/{pid}/cmdline").read().split("\0")[0]
        except OSError:
            continue


def _parent(pid: int) -> int | None:
    try:
        return int(next(line for line in open(f"/proc/{pid}/status") if line.startswith("PPid:")).split()[1])
    except (OSError, StopIteration):
        return None


def test_an_emulators_pcscd_is_named_at_once_not_waited_for(fake_pcscd):
    pid, emulator = fake_pcscd("tapstack wallet emulate --via vpcd --start-pcscd")
    stage = Stage(wait=120)
    start = time.monotonic()
    with pytest.raises(StageError) as e:
        stage.pcscd()
    assert time.monotonic() - start < 5
    message = str(e.value)
    assert message.startswith(f"pcscd+vpcd cannot start: pcscd (pid {pid}) was started by "
                              f"`tapstack wallet emulate --via vpcd --start-pcscd")
    assert f"(pid {emulator})" in message
    assert f"Stop that emulator (Ctrl-C where it runs, or kill {emulator}), then run again" in message
    with pytest.raises(StageError, match="Stop that emulator"):  # the next test is told at once too
        stage.pcscd()


def test_another_test_runs_pcscd_is_waited_for_and_said_so(fake_pcscd):
    pid, runner = fake_pcscd("pytest -q tests")
    said = []
    start = time.monotonic()
    with pytest.raises(StageError, match=f"belongs to another test run, .*pytest -q tests.* \\(pid {runner}\\)"):
        Stage(wait=1.0, say=said.append).pcscd()
    assert 1.0 <= time.monotonic() - start < 5
    assert len(said) == 1 and said[0].startswith("waiting up to 1 s for another test run's pcscd to end:")


@pytest.mark.parametrize("kind, words", [
    ("system", "the system's pcscd (pid 4242, started by systemd) is running (0 usable vpcd readers, 2 needed); "
               "only one pcscd runs on a machine. Stop it while tapstack runs its own: "
               "sudo systemctl stop pcscd.socket pcscd (start it again afterwards)"),
    ("tapstack-left", "pcscd (pid 4242) was left running by an earlier tapstack run whose program has exited "
                      "(0 usable vpcd readers, 2 needed): stop it with kill 4242, then run again"),
])
def test_a_system_pcscd_or_one_left_behind(kind, words, monkeypatch):
    monkeypatch.setattr(pcscd, "pcscd_owner", lambda pid: pcscd.Holder(pid, "pcscd", kind))
    assert pcscd.in_the_way(4242, 0, 2) == words


def test_reusing_a_pcscd_with_the_readers_is_refused_in_words_that_say_why(monkeypatch):
    monkeypatch.setattr(pcscd, "pcscd_owner", lambda pid: pcscd.Holder(7, "tapstack wallet emulate", "emulator"))
    text = pcscd.in_the_way(4242, 2, 2, reuse=False)
    assert "tests run a pcscd of their own" in text and "2 usable vpcd readers, 2 needed" not in text


@pytest.mark.pcscd
def test_a_card_another_program_presents_in_the_vpcd_slot_is_named(pcscd_vpcd):
    slot = pcscd_vpcd.readers[0]
    emulator = subprocess.Popen([sys.executable, "-m", "tapstack", "wallet", "emulate", "--via", "vpcd",
                                 "--port", str(slot.port), "--card", "uid"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while pcscd.slot_holder(slot.port) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        holder = pcscd.slot_holder(slot.port)
        assert holder is not None and holder.pid == emulator.pid and holder.kind == "emulator"
        from terminal.readers.pcsc import PcscReader

        seen = PcscReader(slot.pcsc_name)
        assert seen.wait_for_card(5) is not None  # pcscd has seen the emulator's card (it polls the slot)
        seen.close()
        with pytest.raises(StageError) as e:
            Stage(daemon=pcscd_vpcd).open("pcscd")
        assert str(e.value) == (f"the vpcd slot '{slot.pcsc_name}' (port {slot.port}) already holds a card that "
                                f"`tapstack wallet emulate --via vpcd --port {slot.port} --card uid` (pid {emulator.pid}) "
                                f"presents: stop it (Ctrl-C where it runs, or kill {emulator.pid}), then run again")
    finally:
        emulator.terminate()
        emulator.wait(10)
    assert pcscd.slot_holder(slot.port) is None


class Transport:
    def __init__(self, presented: bool):
        self.connected = threading.Event()
        self.presented = presented


def test_emulate_asks_about_pcscd_only_when_its_card_waited_in_the_field():
    from wallet.emulate import _hint_if_never_connected

    said = []
    stop = threading.Event()
    _hint_if_never_connected(Transport(presented=True), stop, "127.0.0.1:1", None, said.append, after=0.3)
    assert said == ["waiting for the vpcd driver at 127.0.0.1:1: is pcscd running with a vpcd reader on that port? "
                    "(--start-pcscd starts one)"]

    class Started:
        started_here, pid, log_path = True, 4242, "/tmp/pcscd.log"

    said.clear()
    _hint_if_never_connected(Transport(presented=True), stop, "127.0.0.1:1", Started(), said.append, after=0.3)
    assert said == ["the vpcd driver of the pcscd started here (pid 4242) has not taken the card at 127.0.0.1:1 "
                    "after 0.3 s; its log: /tmp/pcscd.log"]
    said.clear()
    out_of_the_field = Transport(presented=False)  # --present-for 1 --absent-for 3: the card is away
    timer = threading.Timer(0.6, stop.set)
    timer.start()
    _hint_if_never_connected(out_of_the_field, stop, "127.0.0.1:1", Started(), said.append, after=0.3)
    assert said == []
