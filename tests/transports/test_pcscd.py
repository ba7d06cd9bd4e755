"""The pcscd harness: reader.conf, refusing or reusing a pcscd it did not start, install checks."""
from __future__ import annotations

import socket

import pytest

from wallet import pcscd
from wallet.pcscd import PcscdError, VpcdReader


def test_reader_conf_round_trip_gives_both_slots():
    text = pcscd.reader_conf("bus 12 validator", 40123)
    assert "DEVICENAME   /dev/null:40123" in text and "libifdvpcd.so" in text
    assert pcscd.parse_reader_conf(text) == [VpcdReader("bus 12 validator", 40123, 0),
                                            VpcdReader("bus 12 validator", 40123, 1)]
    assert VpcdReader("bus 12 validator", 40123, 1).pcsc_name == "bus 12 validator 00 01"
    assert VpcdReader("x", 40123, 1).port == 40124


def test_parse_debian_config_and_skip_other_drivers():
    text = ("# Gemalto serial\nFRIENDLYNAME \"GemPCTwin serial\"\nDEVICENAME /dev/ttyS0\n"
            "LIBPATH /usr/lib/pcsc/drivers/serial/libccidtwin.so\n\n"
            "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME   /dev/null:0x8C7B\n"
            "LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID    0x8C7B\n")
    assert [r.port for r in pcscd.parse_reader_conf(text)] == [35963, 35964]


def test_free_ports_come_with_their_neighbour_free():
    for port in pcscd.free_ports(3):
        for p in (port, port + 1):
            with socket.socket() as s:
                s.bind(("", p))


def test_missing_driver_names_the_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(pcscd, "VPCD_DRIVER", tmp_path / "libifdvpcd.so")
    with pytest.raises(PcscdError, match="apt-get install pcscd vsmartcard-vpcd"):
        pcscd.start(1)


def test_more_slots_than_vpcd_has_is_refused():
    with pytest.raises(PcscdError, match="1 to 2"):
        pcscd.start(3)


@pytest.mark.pcscd
def test_a_running_pcscd_is_reused_only_with_the_readers_needed(pcscd_vpcd):
    assert pcscd.running_pcscd() == pcscd_vpcd.pid
    with pytest.raises(PcscdError, match=f"pid {pcscd_vpcd.pid}"):
        pcscd.start(1, reuse=False)
    with pytest.raises(PcscdError, match=f"pid {pcscd_vpcd.pid}"):
        pcscd.start(1, port=pcscd_vpcd.readers[0].base_port + 100)
    reused = pcscd.start(2)
    assert not reused.started_here and reused.pid == pcscd_vpcd.pid
    assert [r.pcsc_name for r in reused.readers] == [r.pcsc_name for r in pcscd_vpcd.readers]
    reused.stop()  # leaves the pcscd it did not start alone
    assert pcscd.running_pcscd() == pcscd_vpcd.pid
    assert set(r.pcsc_name for r in pcscd_vpcd.readers) <= set(pcscd.list_pcsc_readers())


def test_a_socket_held_by_systemd_is_reported_and_a_stale_one_ignored(monkeypatch, tmp_path):
    path = tmp_path / "pcscd.comm"
    monkeypatch.setattr(pcscd, "PCSCD_SOCKET", path)
    monkeypatch.setattr(pcscd, "running_pcscd", lambda: None)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    assert pcscd._socket_activated_pcscd() is None
    path.unlink()
    with socket.socket(socket.AF_UNIX) as held:
        held.bind(str(path))
        held.listen(1)
        with pytest.raises(PcscdError, match="systemctl stop pcscd.socket"):
            pcscd.start(1)


def test_a_pcscd_that_exited_unreaped_is_not_running(tmp_path):
    """A zombie named pcscd (its parent never waited for it) holds no socket: not in the way."""
    import shutil
    import subprocess
    import time

    fake = tmp_path / "pcscd"
    shutil.copy("/bin/sleep", fake)
    process = subprocess.Popen([str(fake), "30"])
    try:
        deadline = time.monotonic() + 5
        while process.pid not in pcscd.running_pcscds() and time.monotonic() < deadline:
            time.sleep(0.02)  # until the child has exec'd the program
        assert process.pid in pcscd.running_pcscds()
        process.kill()
        deadline = time.monotonic() + 5
        while process.pid in pcscd.running_pcscds() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.pid not in pcscd.running_pcscds()  # killed, not yet waited for
        assert open(f"/proc/{process.pid}/stat").read().rpartition(")")[2].split()[0] == "Z"
    finally:
        process.kill()
        process.wait()
