"""`tapstack terminal doctor`: the diagnosis from fabricated facts, the probes on fabricated
/sys and /etc trees, the hardware/ files against the reader table, and the CLI's exit codes."""
from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from terminal.doctor import core, probes
from terminal.cli import cli as terminal_cli
from terminal.doctor.core import (
    Facts, Nfcpy, NfcpyOpen, PcscAnswer, Pcscd, UsbDevice, Vpcd, VpcdEntry,
)

REPO = Path(__file__).resolve().parents[2]
NO_SERVICE = 0x8010001D
NO_READERS = 0x8010002E

ACR122U = UsbDevice("1-1", 1, 4, 0x072F, 0x2200, "ACR122U PICC Interface", ("",), None, "root:root 0664")
SCL3711 = UsbDevice("1-2", 1, 7, 0x04E6, 0x5591, "SCL3711-NFC&RW", ("",), True, "root:plugdev 0664")
RCS380 = UsbDevice("1-3", 1, 9, 0x054C, 0x06C3, "RC-S380/P", ("",), True, "root:plugdev 0664")
MOUSE = UsbDevice("1-4", 1, 2, 0x046D, 0xC077, "USB Optical Mouse", ("usbhid",), False, "root:root 0664")
CCID_IDS = frozenset({(0x072F, 0x2200), (0x04E6, 0x5790)})


def running_pcscd(**kw) -> Pcscd:
    return Pcscd(binary="/usr/sbin/pcscd", pids=(412,), socket=True, **kw)


def facts(**kw) -> Facts:
    base = dict(user="rider", pcscd=running_pcscd(), pcsc=PcscAnswer(error=NO_READERS), usb=(MOUSE,),
                modules=frozenset({"usbhid"}), ccid_ids=CCID_IDS, vpcd=Vpcd(None), nfcpy=Nfcpy("1.0.4"))
    base.update(kw)
    return Facts(**base)


def levels(diagnosis, topic):
    return [f.level for f in diagnosis.findings if f.topic == topic]


def finding(diagnosis, level, text):
    found = [f for f in diagnosis.findings if f.level == level and text in f.message]
    assert found, f"no {level} finding with {text!r} in:\n" + "\n".join(f.line() for f in diagnosis.findings)
    return found[0]


# --- the core -------------------------------------------------------------------------


def test_pcscd_missing_with_a_ccid_reader_plugged_in_fails_and_says_what_to_install():
    d = core.diagnose(facts(pcscd=Pcscd(None, (), False), pcsc=PcscAnswer(error=NO_SERVICE), usb=(ACR122U,)))
    f = finding(d, "fail", "pcscd is not installed")
    assert "apt-get install pcscd" in f.fix
    assert d.usable == ()
    assert d.exit_code() == 1
    assert d.findings[-1].level == "fail" and d.findings[-1].topic == "summary"


def test_pcscd_missing_without_a_ccid_reader_is_only_a_warning():
    d = core.diagnose(facts(pcscd=Pcscd(None, (), False), pcsc=PcscAnswer(error=NO_SERVICE)))
    assert levels(d, "pcscd") == ["warn"]


def test_pcscd_not_running_says_how_to_start_it():
    d = core.diagnose(facts(pcscd=Pcscd("/usr/sbin/pcscd", (), False), pcsc=PcscAnswer(error=NO_SERVICE)))
    f = finding(d, "fail", "not running")
    assert "systemctl enable --now pcscd.socket" in f.fix
    assert levels(d, "pcsc") == ["fail"]
    assert d.exit_code() == 1


def test_stale_socket_is_told_apart_from_a_stopped_pcscd():
    d = core.diagnose(facts(pcscd=Pcscd("/usr/sbin/pcscd", (), True), pcsc=PcscAnswer(error=NO_SERVICE)))
    assert "restart pcscd.socket" in finding(d, "fail", "socket").fix


def test_socket_activated_pcscd_that_answers_is_ok():
    d = core.diagnose(facts(pcscd=Pcscd("/usr/sbin/pcscd", (), True), pcsc=PcscAnswer(readers=("Virtual PCD 00 00",))))
    finding(d, "ok", "started on demand")


def test_acr122u_listed_by_pcscd_is_usable_and_exit_is_zero():
    name = "ACS ACR122U PICC Interface 00 00"
    d = core.diagnose(facts(pcsc=PcscAnswer(readers=(name,)), usb=(ACR122U, MOUSE)))
    finding(d, "ok", f"usable through PC/SC as {name!r}")
    assert d.usable == (core.UsableReader("pcsc", name, False),)
    assert d.exit_code() == 0 and d.exit_code(hardware_only=True) == 0
    assert "fail" not in [f.level for f in d.findings]


def test_acr122u_led_without_a_card_needs_the_ccid_escape_option():
    listed = PcscAnswer(readers=("ACS ACR122U PICC Interface 00 00",))
    d = core.diagnose(facts(pcsc=listed, usb=(ACR122U,), ccid_options=0x0000))
    f = finding(d, "warn", "LED and buzzer work only while a card is on the reader")
    assert "ifdDriverOptions" in f.fix and "0x0001" in f.fix
    assert d.exit_code() == 0
    d = core.diagnose(facts(pcsc=listed, usb=(ACR122U,), ccid_options=0x0001))
    assert not [f for f in d.findings if "LED" in f.message]


def test_ccid_options_are_read_from_the_plist_string():
    assert core.ccid_options_from_plist({"ifdDriverOptions": "0x0005"}) == 5
    assert core.ccid_options_from_plist({}) is None


def test_a_pcsc_reader_outside_the_table_is_usable_but_flagged():
    d = core.diagnose(facts(pcsc=PcscAnswer(readers=("Alcor Micro AU9540 00 00",))))
    finding(d, "ok", "not in tapstack's table")
    assert d.exit_code(hardware_only=True) == 0


def test_ccid_reader_plugged_in_but_not_listed_points_at_the_pcscd_log():
    d = core.diagnose(facts(usb=(ACR122U,)))
    assert "journalctl -u pcscd" in finding(d, "fail", "pcscd does not list it").fix
    assert d.exit_code() == 1


def test_ccid_reader_missing_from_info_plist_is_named():
    acr1252 = UsbDevice("1-5", 1, 11, 0x072F, 0x223B, "ACR1252 Dual Reader", ("",), None, "")
    d = core.diagnose(facts(usb=(acr1252,)))
    f = finding(d, "fail", "Info.plist does not list 072f:223b")
    assert "libccid" in f.fix


def test_pn533_held_by_the_kernel_module_fails_with_unload_and_blacklist_fix():
    held = UsbDevice("1-2", 1, 7, 0x04E6, 0x5591, "SCL3711", ("pn533_usb",), True, "root:plugdev 0664")
    f_ = facts(usb=(held,), modules=frozenset({"pn533_usb", "pn533", "nfc"}))
    d = core.diagnose(f_)
    f = finding(d, "fail", "held by the kernel module pn533_usb")
    assert f.fix.startswith("sudo modprobe -r pn533_usb && ")
    assert "blacklist-tapstack-nfc.conf" in f.fix
    assert core.nfcpy_candidates(f_) == ()
    assert d.exit_code() == 1


def test_acr122u_held_by_pn533_usb_is_lost_to_pcscd_too():
    held = UsbDevice("1-1", 1, 4, 0x072F, 0x2200, "ACR122U", ("pn533_usb",), None, "")
    d = core.diagnose(facts(usb=(held,)))
    assert "pcscd cannot use it" in finding(d, "fail", "pn533_usb").message


def test_rc_s380_held_by_port100_names_port100():
    held = UsbDevice("1-3", 1, 9, 0x054C, 0x06C1, "RC-S380/S", ("port100",), True, "")
    d = core.diagnose(facts(usb=(held,)))
    assert finding(d, "fail", "port100").fix.startswith("sudo modprobe -r port100 && ")


def test_loaded_module_not_yet_bound_warns_about_the_next_plug_in():
    f_ = facts(usb=(SCL3711,), modules=frozenset({"pn533_usb"}),
               nfcpy=Nfcpy("1.0.4", None, (NfcpyOpen("usb:001:007", True, "SCM Micro SCL3711-NFC&RW PN533v2.7 at usb:001:007"),)))
    d = core.diagnose(f_)
    finding(d, "warn", "pn533_usb is loaded")
    assert d.exit_code() == 0


def test_fix_commands_point_at_where_the_hardware_files_are():
    held = UsbDevice("1-2", 1, 7, 0x04E6, 0x5591, "SCL3711", ("pn533_usb",), True, "")
    d = core.diagnose(facts(usb=(held,), hardware_dir="/opt/tapstack/hardware"))
    assert "install -m 0644 /opt/tapstack/hardware/modprobe.d/blacklist-tapstack-nfc.conf" in finding(d, "fail", "pn533_usb").fix
    assert probes.hardware_dir() == str(REPO / "hardware")  # run from a checkout


def test_acr122u_with_pn533_usb_loaded_but_not_bound_warns_too():
    listed = PcscAnswer(readers=("ACS ACR122U PICC Interface 00 00",))
    d = core.diagnose(facts(pcsc=listed, usb=(ACR122U,), modules=frozenset({"pn533_usb", "nfc"})))
    finding(d, "warn", "pn533_usb is loaded: it takes the ACS ACR122U")
    assert d.exit_code() == 0


def test_permission_denied_on_the_usb_node_gives_the_udev_fix():
    denied = UsbDevice("1-2", 1, 7, 0x04E6, 0x5591, "SCL3711", ("",), False, "root:root 0664")
    f_ = facts(usb=(denied,))
    d = core.diagnose(f_)
    f = finding(d, "fail", "rider may not open /dev/bus/usb/001/007 (root:root 0664)")
    assert "60-tapstack-nfc.rules" in f.fix and "adduser rider plugdev" in f.fix
    assert core.nfcpy_candidates(f_) == ()
    assert d.exit_code() == 1


def test_nfcpy_reader_that_opens_is_usable_and_its_firmware_is_shown():
    text = "SONY RC-S380/P NFC Port-100 v1.11 at usb:001:009"
    f_ = facts(usb=(RCS380,), nfcpy=Nfcpy("1.0.4", None, (NfcpyOpen("usb:001:009", True, text),)))
    assert core.nfcpy_candidates(f_) == ("usb:001:009",)
    d = core.diagnose(f_)
    finding(d, "ok", "v1.11")
    assert d.usable == (core.UsableReader("nfcpy", "usb:001:009"),)


def test_nfcpy_reader_that_does_not_open_fails_with_the_nfcpy_error():
    f_ = facts(usb=(RCS380,), nfcpy=Nfcpy("1.0.4", None, (NfcpyOpen("usb:001:009", False, "[Errno 19] No such device"),)))
    d = core.diagnose(f_)
    assert "python -m nfc" in finding(d, "fail", "No such device").fix
    assert d.exit_code() == 1


def test_nfcpy_reader_held_by_another_program():
    busy = UsbDevice("1-3", 1, 9, 0x054C, 0x06C3, "RC-S380/P", ("usbfs",), True, "")
    d = core.diagnose(facts(usb=(busy,)))
    assert "lsof /dev/bus/usb/001/009" in finding(d, "fail", "held by another program").fix


def test_nfcpy_import_failure_fails_only_when_an_nfcpy_reader_needs_it():
    broken = Nfcpy(None, "No module named 'usb1'")
    assert levels(core.diagnose(facts(nfcpy=broken)), "nfcpy") == ["warn"]
    assert levels(core.diagnose(facts(nfcpy=broken, usb=(SCL3711,))), "nfcpy") == ["fail"]


def test_security_violation_is_explained_as_polkit():
    d = core.diagnose(facts(pcsc=PcscAnswer(error=0x8010006A)))
    assert "polkit" in finding(d, "fail", "SCARD_W_SECURITY_VIOLATION").message


def test_unknown_pcsc_error_is_shown_in_hex():
    d = core.diagnose(facts(pcsc=PcscAnswer(error=0x80100099)))
    finding(d, "fail", "0x80100099")


def test_pyscard_missing_says_how_to_build_it():
    d = core.diagnose(facts(pcsc=PcscAnswer(problem="pyscard does not import (No module named 'smartcard')")))
    assert "swig" in finding(d, "fail", "pyscard").fix


def test_vpcd_configured_is_reported_with_its_ports_and_the_virtual_reader_counts_unless_hardware_only():
    entry = VpcdEntry("/etc/reader.conf.d/vpcd", "Virtual PCD", None, 35963)
    d = core.diagnose(facts(vpcd=Vpcd("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", (entry,)),
                              pcsc=PcscAnswer(readers=("Virtual PCD 00 00", "Virtual PCD 00 01"))))
    finding(d, "ok", "TCP port 35963 (slot 1: 35964)")
    exposed = finding(d, "warn", "vpcd listens on every interface, TCP 35963 and 35964")
    assert "IPAddressAllow=localhost" in exposed.fix and "hardware/README.md" in exposed.fix
    assert all(r.virtual for r in d.usable) and len(d.usable) == 2
    assert d.exit_code() == 0
    assert d.exit_code(hardware_only=True) == 1


def test_a_vpcd_that_connects_out_to_its_card_listens_nowhere():
    entry = VpcdEntry("/etc/reader.conf.d/vpcd-lab", "lab card", "127.0.0.1", 35963)
    d = core.diagnose(facts(vpcd=Vpcd("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", (entry,))))
    finding(d, "ok", "connects to a card at 127.0.0.1:35963")
    assert not [f for f in d.findings if f.topic == "vpcd" and f.level != "ok"]


def test_vpcd_installed_but_not_configured_and_not_installed():
    d = core.diagnose(facts(vpcd=Vpcd("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", ())))
    assert "vpcd-tapstack" in finding(d, "warn", "no reader.conf.d entry").fix
    d = core.diagnose(facts(vpcd=Vpcd(None)))
    assert "vsmartcard-vpcd" in finding(d, "warn", "not installed").fix


def test_two_vpcd_entries_on_the_same_port_are_flagged():
    a = VpcdEntry("/etc/reader.conf.d/vpcd", "Virtual PCD", None, 35963)
    b = VpcdEntry("/etc/reader.conf.d/vpcd-tapstack", "tapstack vpcd", None, 35963)
    d = core.diagnose(facts(vpcd=Vpcd("/x/libifdvpcd.so", (a, b))))
    finding(d, "warn", "same ports")


def test_a_failed_probe_is_reported_and_the_rest_still_diagnosed():
    f_ = facts(usb=None, modules=None, probe_errors={"USB devices (/sys/bus/usb)": "timed out after 3 s"},
               pcsc=PcscAnswer(readers=("ACS ACR122U PICC Interface 00 00",)))
    d = core.diagnose(f_)
    finding(d, "warn", "could not check USB devices (/sys/bus/usb): timed out after 3 s")
    finding(d, "ok", "PC/SC reader")
    assert d.exit_code() == 0


def test_serial_ports_are_listed_but_not_probed_unless_asked():
    d = core.diagnose(facts(serial_ports=("/dev/ttyAMA0",)))
    assert "--tty /dev/ttyAMA0" in finding(d, "ok", "not probed").fix
    pn532 = NfcpyOpen("tty:AMA0:pn532", True, "NXP PN532v1.6 at /dev/ttyAMA0")
    d = core.diagnose(facts(serial_ports=("/dev/ttyAMA0",), nfcpy=Nfcpy("1.0.4", None, (pn532,))))
    finding(d, "ok", "PN532 on tty:AMA0:pn532 is usable")
    assert d.usable == (core.UsableReader("nfcpy", "tty:AMA0:pn532"),)


def test_every_finding_is_one_line_and_failures_carry_a_fix():
    d = core.diagnose(facts(pcscd=Pcscd(None, (), False), pcsc=PcscAnswer(error=NO_SERVICE),
                              usb=(ACR122U, UsbDevice("1-2", 1, 7, 0x04E6, 0x5591, "", ("pn533_usb",), False, ""))))
    for f in d.findings:
        assert "\n" not in f.line()
        assert f.level in ("ok", "warn", "fail")
        if f.level == "fail" and f.topic not in ("pcsc",):
            assert f.fix, f.line()


# --- parsers ----------------------------------------------------------------------------


def test_parse_reader_conf_reads_debian_vpcd_and_other_forms():
    debian = 'FRIENDLYNAME "Virtual PCD"\nDEVICENAME   /dev/null:0x8C7B\nLIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID    0x8C7B\n'
    assert core.parse_reader_conf(debian, "vpcd") == (VpcdEntry("vpcd", "Virtual PCD", None, 35963),)
    reverse = 'FRIENDLYNAME "card far away"\nDEVICENAME card.example:35970\nLIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\n'
    assert core.parse_reader_conf(reverse)[0].host == "card.example"
    assert core.parse_reader_conf(reverse)[0].port == 35970
    channel_only = 'FRIENDLYNAME x\nLIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID 36000\n'
    assert core.parse_reader_conf(channel_only)[0].port == 36000
    twin = "# comment\nFRIENDLYNAME \"GemPC Twin serial\"\nDEVICENAME /dev/ttyS0\nLIBPATH /usr/lib/pcsc/drivers/serial/libccidtwin.so\n"
    assert core.parse_reader_conf(twin) == ()
    both = twin + debian + debian.replace("0x8C7B", "35980").replace("Virtual PCD", "second")
    assert [e.port for e in core.parse_reader_conf(both)] == [35963, 35980]


def test_parse_proc_modules():
    text = "pn533_usb 20480 0 - Live 0x0000000000000000\npn533 45056 1 pn533_usb, Live 0x0\nnfc 131072 1 pn533, Live 0x0\n"
    assert core.parse_proc_modules(text) == {"pn533_usb", "pn533", "nfc"}


def test_tty_paths_become_nfcpy_pn532_paths():
    assert probes._tty_path("/dev/ttyAMA0") == "tty:AMA0:pn532"
    assert probes._tty_path("/dev/ttyUSB1") == "tty:USB1:pn532"
    assert probes._tty_path("tty:S0:pn532") == "tty:S0:pn532"


# --- the shell --------------------------------------------------------------------------


def test_run_with_timeout_gives_up_on_a_hung_probe_and_passes_errors_through():
    release = threading.Event()
    with pytest.raises(probes.ProbeTimeout):
        probes.run_with_timeout(lambda: release.wait(30), 0.05)
    release.set()

    def broken():
        raise PermissionError("denied")

    with pytest.raises(PermissionError):
        probes.run_with_timeout(broken, 5)
    assert probes.run_with_timeout(lambda: 42, 5) == 42


def test_probe_usb_reads_ids_and_interface_drivers_from_sysfs(tmp_path):
    dev = tmp_path / "1-2"
    dev.mkdir()
    for name, value in {"idVendor": "04e6", "idProduct": "5591", "busnum": "1", "devnum": "7", "product": "SCL3711-NFC&RW"}.items():
        (dev / name).write_text(value + "\n")
    intf = tmp_path / "1-2:1.0"
    intf.mkdir()
    drivers = tmp_path / "drivers" / "pn533_usb"
    drivers.mkdir(parents=True)
    os.symlink(drivers, intf / "driver")
    (tmp_path / "usb1").mkdir()  # a root hub without ids in this fake tree: skipped
    (device,) = probes.probe_usb(str(tmp_path))
    assert (device.vid, device.pid, device.bus, device.dev) == (0x04E6, 0x5591, 1, 7)
    assert device.interface_drivers == ("pn533_usb",)
    assert device.nfcpy_path == "usb:001:007" and device.node == "/dev/bus/usb/001/007"


def test_probe_usb_without_sysfs_raises_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        probes.probe_usb(str(tmp_path / "missing"))


def test_probe_vpcd_reads_every_file_in_reader_conf_d(tmp_path):
    (tmp_path / "vpcd").write_text((REPO / "hardware/reader.conf.d/vpcd-tapstack").read_text())
    (tmp_path / "libccidtwin").write_text("#DEVICENAME /dev/ttyS0\n")
    driver = tmp_path / "libifdvpcd.so"
    driver.write_bytes(b"")
    v = probes.probe_vpcd(str(tmp_path), (str(tmp_path / "absent.so"), str(driver)))
    assert v.driver == str(driver)
    assert [(e.file.endswith("vpcd"), e.port, e.host) for e in v.entries] == [(True, 35963, None)]
    single = probes.probe_vpcd(str(tmp_path / "vpcd"), (str(driver),))  # pcscd -c FILE
    assert [e.port for e in single.entries] == [35963]


def test_collect_keeps_going_when_probes_fail_or_hang(monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(probes, "probe_pcscd", lambda: running_pcscd())
    monkeypatch.setattr(probes, "probe_pcsc", lambda: release.wait(30))
    monkeypatch.setattr(probes, "probe_usb", lambda: (_ for _ in ()).throw(OSError("sysfs unreadable")))
    monkeypatch.setattr(probes, "probe_modules", lambda: frozenset())
    monkeypatch.setattr(probes, "probe_ccid_ids", lambda: CCID_IDS)
    monkeypatch.setattr(probes, "probe_ccid_options", lambda: 0)
    monkeypatch.setattr(probes, "probe_vpcd", lambda conf: Vpcd(None))
    monkeypatch.setattr(probes, "probe_nfcpy_import", lambda: Nfcpy("1.0.4"))
    monkeypatch.setattr(probes, "probe_serial_ports", lambda: ())
    try:
        f_ = probes.collect(timeout=0.1)
    finally:
        release.set()
    assert f_.pcscd == running_pcscd() and f_.ccid_ids == CCID_IDS
    assert f_.pcsc is None and f_.usb is None and f_.vpcd == Vpcd(None)
    assert "timed out" in f_.probe_errors["PC/SC readers (pyscard)"]
    assert f_.probe_errors["USB devices (/sys/bus/usb)"] == "sysfs unreadable"


def test_probe_pcscd_finds_the_process_and_its_configuration(tmp_path):
    for pid, comm, argv in [(14, "pcscd", ["/usr/sbin/pcscd", "-f", "-c", "/tmp/readers"]), (15, "bash", ["bash"])]:
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "comm").write_text(comm + "\n")
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    p = probes.probe_pcscd(socket_path=str(tmp_path / "absent"), proc=str(tmp_path))
    assert (p.pids, p.config, p.socket) == ((14,), "/tmp/readers", False)
    assert core.pcscd_config_arg(["pcscd", "--config=/etc/x"]) == "/etc/x"
    assert core.pcscd_config_arg(["pcscd", "-f"]) is None


def test_collect_reads_vpcd_from_the_running_pcscds_configuration(monkeypatch):
    seen = []
    monkeypatch.setattr(probes, "probe_pcscd", lambda: Pcscd("/usr/sbin/pcscd", (14,), True, "/tmp/readers"))
    monkeypatch.setattr(probes, "probe_vpcd", lambda conf: seen.append(conf) or Vpcd(None))
    for name in ("probe_pcsc", "probe_usb", "probe_modules", "probe_ccid_ids", "probe_ccid_options",
                 "probe_nfcpy_import", "probe_serial_ports"):
        monkeypatch.setattr(probes, name, lambda: None)
    f_ = probes.collect(timeout=5)
    assert seen == ["/tmp/readers"] and f_.vpcd == Vpcd(None)
    assert "configuration /tmp/readers" in core.diagnose(f_).findings[0].message


def test_collect_opens_only_the_nfcpy_candidates_and_asked_ttys(monkeypatch):
    opened = []
    monkeypatch.setattr(probes, "probe_pcscd", lambda: running_pcscd())
    monkeypatch.setattr(probes, "probe_pcsc", lambda: PcscAnswer(error=NO_READERS))
    monkeypatch.setattr(probes, "probe_usb", lambda: (ACR122U, SCL3711, MOUSE,
                                                     UsbDevice("1-3", 1, 9, 0x054C, 0x06C3, "", ("port100",), True, "")))
    monkeypatch.setattr(probes, "probe_modules", lambda: frozenset())
    monkeypatch.setattr(probes, "probe_ccid_ids", lambda: CCID_IDS)
    monkeypatch.setattr(probes, "probe_ccid_options", lambda: 0)
    monkeypatch.setattr(probes, "probe_vpcd", lambda conf: Vpcd(None))
    monkeypatch.setattr(probes, "probe_nfcpy_import", lambda: Nfcpy("1.0.4"))
    monkeypatch.setattr(probes, "probe_serial_ports", lambda: ("/dev/ttyAMA0",))

    def fake_open(path):
        opened.append(path)
        return NfcpyOpen(path, True, f"device at {path}")

    monkeypatch.setattr(probes, "probe_nfcpy_open", fake_open)
    f_ = probes.collect(timeout=5, ttys=("/dev/ttyAMA0",))
    assert opened == ["usb:001:007", "tty:AMA0:pn532"]  # not the ACR122U (PC/SC) nor the port100-held RC-S380
    assert [o.path for o in f_.nfcpy.opened] == opened


# --- hardware/ files against the table --------------------------------------------------


def test_supported_nfcpy_readers_are_the_ones_nfcpy_drives():
    from nfc.clf.device import usb_device_map

    for model in core.SUPPORTED:
        if model.path == "nfcpy":
            assert (model.vid, model.pid) in usb_device_map, model.name
    assert usb_device_map[(0x072F, 0x2200)] == "acr122"


def test_supported_pcsc_readers_are_in_this_machines_libccid_table():
    plist = Path(probes.CCID_PLIST)
    if not plist.exists():
        pytest.skip("libccid is not installed here")
    ids = probes.probe_ccid_ids(str(plist))
    for model in core.SUPPORTED:
        if model.path == "pcsc":
            assert (model.vid, model.pid) in ids, model.name


def test_udev_rules_give_plugdev_every_nfcpy_reader():
    text = (REPO / "hardware/udev/60-tapstack-nfc.rules").read_text()
    rules = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    pairs = set()
    for rule in rules:
        vid = re.search(r'ATTR\{idVendor\}=="([0-9a-f]{4})"', rule)
        pid = re.search(r'ATTR\{idProduct\}=="([0-9a-f]{4})"', rule)
        if vid and pid:
            assert 'GROUP="plugdev"' in rule and 'MODE="0660"' in rule, rule
            pairs.add((int(vid.group(1), 16), int(pid.group(1), 16)))
    wanted = {(m.vid, m.pid) for m in core.SUPPORTED if m.path == "nfcpy"}
    assert wanted <= pairs
    pcsc_only = {(m.vid, m.pid) for m in core.SUPPORTED if m.path == "pcsc"}
    assert not (pcsc_only & pairs), "PC/SC readers belong to pcscd, not to plugdev"


def test_blacklist_frees_pn533_and_rc_s380_readers():
    text = (REPO / "hardware/modprobe.d/blacklist-tapstack-nfc.conf").read_text()
    blacklisted = set(re.findall(r"^blacklist\s+(\S+)", text, re.M))
    assert {"pn533_usb", "pn533", "nfc", "port100"} <= blacklisted
    for model in core.SUPPORTED:
        if model.kernel_module:
            assert model.kernel_module in blacklisted


def test_tapstack_vpcd_conf_listens_on_the_default_port():
    text = (REPO / "hardware/reader.conf.d/vpcd-tapstack").read_text()
    (entry,) = core.parse_reader_conf(text)
    assert (entry.host, entry.port) == (None, core.VPCD_DEFAULT_PORT)
    assert core.is_virtual(entry.friendly_name + " 00 00")


def test_readme_table_lists_every_supported_reader_with_its_usb_id():
    text = (REPO / "hardware/README.md").read_text()
    for model in core.SUPPORTED:
        assert model.usb_id in text.lower(), model.name


# --- the CLI ----------------------------------------------------------------------------


def run_cli(monkeypatch, f_, *args):
    monkeypatch.setattr(probes, "collect", lambda timeout, ttys: f_)
    return CliRunner().invoke(terminal_cli, ["doctor", *args])


def test_cli_exits_zero_with_a_usable_reader(monkeypatch):
    result = run_cli(monkeypatch, facts(pcsc=PcscAnswer(readers=("ACS ACR122U PICC Interface 00 00",)), usb=(ACR122U,)))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("ok    usable readers: pcsc:ACS ACR122U")


def test_cli_exits_one_with_no_usable_reader_and_prints_fixes(monkeypatch):
    result = run_cli(monkeypatch, facts(pcscd=Pcscd("/usr/sbin/pcscd", (), False), pcsc=PcscAnswer(error=NO_SERVICE)))
    assert result.exit_code == 1
    assert "fail  no usable reader" in result.output
    assert "| fix: sudo systemctl enable --now pcscd.socket" in result.output
    assert "Traceback" not in result.output


def test_cli_json_output(monkeypatch):
    held = UsbDevice("1-2", 1, 7, 0x04E6, 0x5591, "SCL3711", ("pn533_usb",), True, "")
    result = run_cli(monkeypatch, facts(usb=(held,), modules=frozenset({"pn533_usb", "usbhid"})), "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["exit_code"] == 1 and report["usable"] == []
    fails = [f for f in report["findings"] if f["level"] == "fail"]
    assert any("pn533_usb" in f["message"] and f["fix"].startswith("sudo modprobe -r") for f in fails)
    assert report["facts"]["modules"] == ["pn533_usb"]
    assert report["facts"]["usb"][0]["interface_drivers"] == ["pn533_usb"]
    assert report["facts"]["pcsc"]["error_name"] == "SCARD_E_NO_READERS_AVAILABLE"


def test_cli_hardware_only_does_not_count_the_virtual_reader(monkeypatch):
    f_ = facts(pcsc=PcscAnswer(readers=("Virtual PCD 00 00",)))
    assert run_cli(monkeypatch, f_).exit_code == 0
    result = run_cli(monkeypatch, f_, "--hardware-only")
    assert result.exit_code == 1
    assert "only virtual readers" in result.output
    assert json.loads(run_cli(monkeypatch, f_, "--json", "--hardware-only").output)["exit_code"] == 1
