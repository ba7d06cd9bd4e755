"""The doctor's shell: one probe per fact, each with its own timeout, and `collect`.

Probes read /proc, /sys, /etc/reader.conf.d and libccid's Info.plist, ask pcscd through
pyscard, and open matched nfcpy readers. A probe that fails or hangs is recorded in
`Facts.probe_errors` and the others still run. Nothing here starts or stops pcscd,
loads modules or writes files.
"""
from __future__ import annotations

import glob
import grp
import os
import plistlib
import pwd
import re
import shutil
import stat
import threading
from pathlib import Path
from typing import Callable

from terminal.doctor.core import (
    Facts, Nfcpy, NfcpyOpen, PcscAnswer, Pcscd, UsbDevice, Vpcd, VpcdEntry,
    ccid_ids_from_plist, ccid_options_from_plist, nfcpy_candidates, parse_proc_modules,
    parse_reader_conf, pcscd_config_arg,
)


SYSFS_USB = "/sys/bus/usb/devices"
PROC_MODULES = "/proc/modules"
READER_CONF_DIR = "/etc/reader.conf.d"
CCID_PLIST = "/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Info.plist"
VPCD_DRIVERS = (
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/lib64/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so",
)
PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
SERIAL_GLOBS = ("/dev/ttyUSB*", "/dev/ttyACM*", "/dev/ttyAMA*", "/dev/serial0")


class ProbeTimeout(Exception):
    pass


def run_with_timeout(fn: Callable[[], object], timeout: float) -> object:
    """Run fn in a daemon thread; raise ProbeTimeout if it is not done in time.

    A hung probe (a wedged pcscd, a reader that never answers) is left behind in its
    daemon thread: the process exits soon after anyway.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # reported as the probe's failure
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name=f"doctor-{getattr(fn, '__name__', 'probe')}")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ProbeTimeout(f"timed out after {timeout:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


def probe_pcscd(socket_path: str = PCSCD_SOCKET, proc: str = "/proc") -> Pcscd:
    binary = shutil.which("pcscd") or next(
        (p for p in ("/usr/sbin/pcscd", "/usr/local/sbin/pcscd") if os.access(p, os.X_OK)), None)
    pids, config = [], None
    for comm in glob.glob(os.path.join(proc, "[0-9]*", "comm")):
        try:
            if Path(comm).read_text().strip() != "pcscd":
                continue
            pid = int(Path(comm).parent.name)
            argv = (Path(comm).parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue  # the process ended while we looked
        pids.append(pid)
        config = config or pcscd_config_arg([a.decode(errors="replace") for a in argv])
    return Pcscd(binary, tuple(sorted(pids)), os.path.exists(socket_path), config)


def probe_pcsc() -> PcscAnswer:
    try:
        from smartcard import scard
    except Exception as exc:  # ImportError, or libpcsclite missing at load time
        return PcscAnswer(problem=f"pyscard does not import ({exc})")
    code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if code != scard.SCARD_S_SUCCESS:
        return PcscAnswer(error=code & 0xFFFFFFFF)
    try:
        code, readers = scard.SCardListReaders(context, [])
        if code != scard.SCARD_S_SUCCESS:
            return PcscAnswer(error=code & 0xFFFFFFFF)
        return PcscAnswer(readers=tuple(readers))
    finally:
        scard.SCardReleaseContext(context)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def probe_usb(root: str = SYSFS_USB) -> tuple[UsbDevice, ...]:
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{root} does not exist (no USB, or /sys not mounted)")
    devices = []
    for entry in sorted(base.iterdir()):
        if ":" in entry.name or not (entry / "idVendor").exists():
            continue  # interfaces are "1-1:1.0"; root hubs have idVendor too, harmless
        try:
            vid = int(_read(entry / "idVendor"), 16)
            pid = int(_read(entry / "idProduct"), 16)
            bus = int(_read(entry / "busnum"))
            dev = int(_read(entry / "devnum"))
        except ValueError:
            continue
        drivers = []
        for intf in sorted(base.glob(f"{entry.name}:*")):
            link = intf / "driver"
            drivers.append(os.path.basename(os.readlink(link)) if link.is_symlink() else "")
        node = f"/dev/bus/usb/{bus:03d}/{dev:03d}"
        can_open, mode = _node_access(node)
        devices.append(UsbDevice(entry.name, bus, dev, vid, pid, _read(entry / "product"),
                                 tuple(drivers), can_open, mode))
    return tuple(devices)


def _node_access(node: str) -> tuple[bool | None, str]:
    try:
        st = os.stat(node)
    except OSError:
        return None, ""
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return os.access(node, os.R_OK | os.W_OK), f"{owner}:{group} {stat.S_IMODE(st.st_mode):04o}"


def probe_modules(path: str = PROC_MODULES) -> frozenset[str]:
    return parse_proc_modules(Path(path).read_text())


def probe_ccid_ids(path: str = CCID_PLIST) -> frozenset[tuple[int, int]] | None:
    if not os.path.exists(path):
        return None  # libccid not installed: the pcscd finding says what to install
    with open(path, "rb") as f:
        return ccid_ids_from_plist(plistlib.load(f))


def probe_ccid_options(path: str = CCID_PLIST) -> int | None:
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return ccid_options_from_plist(plistlib.load(f))


def probe_vpcd(conf_dir: str = READER_CONF_DIR, drivers: tuple[str, ...] = VPCD_DRIVERS) -> Vpcd:
    driver = next((d for d in drivers if os.path.exists(d)), None)
    entries: list[VpcdEntry] = []
    files = [conf_dir] if os.path.isfile(conf_dir) else sorted(glob.glob(os.path.join(conf_dir, "*")))
    for conf in files:
        try:
            entries += parse_reader_conf(Path(conf).read_text(errors="replace"), conf)
        except (OSError, IsADirectoryError):
            continue
    return Vpcd(driver, tuple(entries))


def probe_nfcpy_import() -> Nfcpy:
    try:
        import nfc
    except Exception as exc:
        return Nfcpy(None, problem=str(exc) or type(exc).__name__)
    return Nfcpy(getattr(nfc, "__version__", "?"))


def probe_nfcpy_open(path: str) -> NfcpyOpen:
    """Open one nfcpy device, say what it is (chip and firmware), close it."""
    import nfc

    try:
        clf = nfc.ContactlessFrontend(path)
    except Exception as exc:
        return NfcpyOpen(path, False, str(exc) or type(exc).__name__)
    try:
        return NfcpyOpen(path, True, str(clf))
    finally:
        clf.close()


def probe_serial_ports(patterns: tuple[str, ...] = SERIAL_GLOBS) -> tuple[str, ...]:
    return tuple(sorted({p for pattern in patterns for p in glob.glob(pattern)}))


def hardware_dir() -> str:
    """tapstack's hardware/ directory: the checkout's, else the validator guide's /opt/tapstack/hardware."""
    for candidate in (Path(__file__).resolve().parents[2] / "hardware", Path("/opt/tapstack/hardware")):
        if (candidate / "README.md").is_file():
            return str(candidate)
    return "hardware"


def current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def collect(timeout: float = 3.0, ttys: tuple[str, ...] = ()) -> Facts:
    """Gather every fact; each probe gets `timeout` seconds and fails alone."""
    errors: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], object]) -> object:
        try:
            return run_with_timeout(fn, timeout)
        except Exception as exc:
            errors[name] = str(exc) or type(exc).__name__
            return None

    pcscd = attempt("pcscd process", probe_pcscd)
    # vpcd as the running pcscd sees it: a test or demo pcscd may run with its own -c DIR
    conf = pcscd.config if isinstance(pcscd, Pcscd) and pcscd.config else READER_CONF_DIR
    facts = Facts(
        user=current_user(),
        pcscd=pcscd,
        pcsc=attempt("PC/SC readers (pyscard)", probe_pcsc),
        usb=attempt("USB devices (/sys/bus/usb)", probe_usb),
        modules=attempt("kernel modules (/proc/modules)", probe_modules),
        ccid_ids=attempt("libccid Info.plist", probe_ccid_ids),
        ccid_options=attempt("libccid driver options", probe_ccid_options),
        vpcd=attempt("vpcd configuration", lambda: probe_vpcd(conf)),
        nfcpy=attempt("nfcpy import", probe_nfcpy_import),
        serial_ports=attempt("serial ports", probe_serial_ports) or (),
        hardware_dir=hardware_dir(),
        probe_errors=errors,
    )
    if facts.nfcpy is None or facts.nfcpy.problem:
        return facts
    opened = []
    for path in nfcpy_candidates(facts) + tuple(_tty_path(t) for t in ttys):
        result = attempt(f"nfcpy open {path}", lambda p=path: probe_nfcpy_open(p))
        if result is not None:
            opened.append(result)
    return Facts(**{**facts.__dict__, "nfcpy": Nfcpy(facts.nfcpy.version, None, tuple(opened))})


def _tty_path(tty: str) -> str:
    """/dev/ttyAMA0 -> nfcpy's "tty:AMA0:pn532"; an nfcpy path is kept as given."""
    if tty.startswith("tty:"):
        return tty
    name = os.path.basename(tty)
    if name == "serial0":
        name = os.path.basename(os.path.realpath(tty))
    return f"tty:{re.sub(r'^tty', '', name)}:pn532"
