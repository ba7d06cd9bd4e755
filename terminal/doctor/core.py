"""The doctor's core: the supported-reader table, the facts collected, and the findings.

Plain functions from `Facts` (what terminal.doctor.probes saw) to a `Diagnosis`: one
`Finding` per observation, each ok, warn or fail, with the command that fixes it, and
the readers that are usable. No I/O here; tests feed fabricated facts.

The table of supported readers (`SUPPORTED`) is the one in hardware/README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# ---------------------------------------------------------------------------------------
# The supported readers and the fixes the findings point to


@dataclass(frozen=True)
class ReaderModel:
    name: str
    vid: int
    pid: int
    path: str  # how tapstack drives it: "pcsc" (pcscd + libccid) or "nfcpy" (libusb, directly)
    kernel_module: str | None  # Linux NFC-subsystem driver that binds it if loaded
    pcsc_prefix: str | None = None  # what pcscd's reader name starts with

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04x}:{self.pid:04x}"


# VID:PID sources: libccid's Info.plist (ifd-ccid.bundle, 1.5.2) for the CCID readers,
# nfcpy's nfc/clf/device.py usb_device_map for the others; the kernel modules from
# Linux drivers/nfc/pn533/usb.c and drivers/nfc/port100.c.
SUPPORTED: tuple[ReaderModel, ...] = (
    ReaderModel("ACS ACR122U", 0x072F, 0x2200, "pcsc", "pn533_usb", "ACS ACR122U"),
    ReaderModel("ACS ACR1252U", 0x072F, 0x223B, "pcsc", None, "ACS ACR1252"),
    ReaderModel("Identiv uTrust 3700 F", 0x04E6, 0x5790, "pcsc", None, "Identiv uTrust 3700 F"),
    ReaderModel("SCM SCL3711", 0x04E6, 0x5591, "nfcpy", "pn533_usb"),
    ReaderModel("Sony RC-S380/S", 0x054C, 0x06C1, "nfcpy", "port100"),
    ReaderModel("Sony RC-S380/P", 0x054C, 0x06C3, "nfcpy", "port100"),
    ReaderModel("NXP PN533 board", 0x04CC, 0x2533, "nfcpy", "pn533_usb"),
)

# Kernel drivers that take a reader away from pcscd and nfcpy. `modprobe -r` on them also
# unloads their dependencies (pn533, nfc_digital, nfc) once unused.
KERNEL_NFC_DRIVERS = frozenset({"pn533_usb", "port100"})
# Fix templates: {hw} is where tapstack's hardware/ directory is (Facts.hardware_dir).
BLACKLIST_FIX = (
    "sudo install -m 0644 {hw}/modprobe.d/blacklist-tapstack-nfc.conf /etc/modprobe.d/"
)
UDEV_FIX = (
    "sudo install -m 0644 {hw}/udev/60-tapstack-nfc.rules /etc/udev/rules.d/"
    " && sudo udevadm control --reload && sudo udevadm trigger --subsystem-match=usb"
)
CCID_ESCAPE_FIX = (
    "sudo sed -i '/<key>ifdDriverOptions<\\/key>/{n;s/<string>0x0000<\\/string>/<string>0x0001<\\/string>/}' "
    "/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Info.plist && sudo systemctl restart pcscd"
)
VPCD_CONF_FIX = "sudo install -m 0644 {hw}/reader.conf.d/vpcd-tapstack /etc/reader.conf.d/"
VPCD_DEFAULT_PORT = 0x8C7B  # 35963, vsmartcard's VPCDPORT
VPCD_EXPOSED_FIX = ("let only this machine reach it: sudo systemctl edit pcscd, add [Service] IPAddressDeny=any "
                    "and IPAddressAllow=localhost, then sudo systemctl restart pcscd ({hw}/README.md, "
                    "'The vpcd port is open to the network')")

SCARD_E_NO_SERVICE = 0x8010001D
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E

# PC/SC error codes the probe may meet, with what they mean here and the fix.
SCARD_ERRORS: dict[int, tuple[str, str, str | None]] = {
    SCARD_E_NO_SERVICE: (
        "SCARD_E_NO_SERVICE",
        "pcscd does not answer on its socket (not running, or socket activation is off)",
        "sudo systemctl enable --now pcscd.socket  (without systemd: sudo service pcscd start)",
    ),
    0x8010001E: (
        "SCARD_E_SERVICE_STOPPED",
        "pcscd stopped while answering",
        "sudo systemctl restart pcscd; journalctl -u pcscd -n 50",
    ),
    SCARD_E_NO_READERS_AVAILABLE: ("SCARD_E_NO_READERS_AVAILABLE", "pcscd answers but has no reader", None),
    0x8010006A: (
        "SCARD_W_SECURITY_VIOLATION",
        "pcscd refused this user (polkit denies org.debian.pcsc-lite.access_pcsc)",
        "allow this user in /etc/polkit-1/rules.d/ (the rule is in tapstack's hardware/README.md, Known pitfalls)",
    ),
    0x80100017: (
        "SCARD_E_READER_UNAVAILABLE",
        "a reader is listed but cannot be used",
        "unplug and replug the reader; journalctl -u pcscd -n 50",
    ),
    0x80100001: ("SCARD_F_INTERNAL_ERROR", "pcscd reported an internal error", "sudo systemctl restart pcscd"),
    0x80100013: ("SCARD_F_COMM_ERROR", "talking to pcscd failed", "sudo systemctl restart pcscd"),
}


def _hw(template: str, facts: "Facts") -> str:
    return template.format(hw=facts.hardware_dir)


def known_reader(vid: int, pid: int) -> ReaderModel | None:
    for model in SUPPORTED:
        if (model.vid, model.pid) == (vid, pid):
            return model
    return None


def is_virtual(pcsc_reader_name: str) -> bool:
    """vsmartcard's vpcd readers: Debian names them "Virtual PCD", tapstack "tapstack vpcd"."""
    lowered = pcsc_reader_name.lower()
    return "virtual pcd" in lowered or "vpcd" in lowered


# ---------------------------------------------------------------------------------------
# Facts: what the shell collected. None means "could not look" (see probe_errors).


@dataclass(frozen=True)
class UsbDevice:
    sysname: str  # the sysfs name, e.g. "1-1.2"
    bus: int
    dev: int
    vid: int
    pid: int
    product: str = ""
    interface_drivers: tuple[str, ...] = ()  # driver bound to each interface ("" when none)
    can_open: bool | None = None  # read+write on the device node for this user
    node_mode: str = ""  # "root:plugdev 0664"

    @property
    def node(self) -> str:
        return f"/dev/bus/usb/{self.bus:03d}/{self.dev:03d}"

    @property
    def nfcpy_path(self) -> str:
        return f"usb:{self.bus:03d}:{self.dev:03d}"


@dataclass(frozen=True)
class Pcscd:
    binary: str | None  # path of the pcscd program, None when not installed
    pids: tuple[int, ...]
    socket: bool  # /run/pcscd/pcscd.comm exists (also true under socket activation)
    config: str | None = None  # the running pcscd's `-c FILE|DIR`, when it was given one


@dataclass(frozen=True)
class PcscAnswer:
    readers: tuple[str, ...] = ()
    error: int | None = None  # SCARD_* code from SCardEstablishContext or SCardListReaders
    problem: str | None = None  # anything else (pyscard does not import)


@dataclass(frozen=True)
class VpcdEntry:
    file: str
    friendly_name: str
    host: str | None  # None: vpcd listens and the card connects; else vpcd connects out
    port: int


@dataclass(frozen=True)
class Vpcd:
    driver: str | None  # path of libifdvpcd.so, None when vsmartcard-vpcd is not installed
    entries: tuple[VpcdEntry, ...] = ()


@dataclass(frozen=True)
class NfcpyOpen:
    path: str  # "usb:001:005" or "tty:AMA0:pn532"
    ok: bool
    text: str  # what nfcpy says of the device, or the error


@dataclass(frozen=True)
class Nfcpy:
    version: str | None
    problem: str | None = None  # import error
    opened: tuple[NfcpyOpen, ...] = ()


@dataclass(frozen=True)
class Facts:
    user: str = ""
    pcscd: Pcscd | None = None
    pcsc: PcscAnswer | None = None
    usb: tuple[UsbDevice, ...] | None = None
    modules: frozenset[str] | None = None  # loaded kernel modules
    ccid_ids: frozenset[tuple[int, int]] | None = None  # VID:PIDs libccid's Info.plist lists
    ccid_options: int | None = None  # libccid's ifdDriverOptions
    vpcd: Vpcd | None = None
    nfcpy: Nfcpy | None = None
    serial_ports: tuple[str, ...] = ()
    hardware_dir: str = "hardware"  # tapstack's hardware/ directory, for the fix commands
    probe_errors: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Findings


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn" or "fail"
    topic: str  # "pcscd", "pcsc", "usb", "vpcd", "nfcpy", "serial", "probe", "summary"
    message: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.level:<5} {self.message}"
        return f"{text}  | fix: {self.fix}" if self.fix else text


@dataclass(frozen=True)
class UsableReader:
    backend: str  # "pcsc" or "nfcpy"
    name: str  # PC/SC reader name, or nfcpy device path
    virtual: bool = False

    @property
    def spec(self) -> str:
        """The reader spec terminal.readers.open_reader takes."""
        return f"pcsc:{self.name}" if self.backend == "pcsc" else self.name


@dataclass(frozen=True)
class Diagnosis:
    findings: tuple[Finding, ...]
    usable: tuple[UsableReader, ...]

    def exit_code(self, hardware_only: bool = False) -> int:
        """0 when a usable reader is there (a real one if hardware_only), else 1."""
        readers = [r for r in self.usable if not (hardware_only and r.virtual)]
        return 0 if readers else 1


# ---------------------------------------------------------------------------------------
# Parsers (pure)


def parse_proc_modules(text: str) -> frozenset[str]:
    """Module names from /proc/modules ("pn533_usb 20480 0 - Live 0x0")."""
    return frozenset(line.split()[0] for line in text.splitlines() if line.strip())


def parse_reader_conf(text: str, file: str = "") -> tuple[VpcdEntry, ...]:
    """The vpcd readers in one reader.conf.d file.

    pcscd's format: FRIENDLYNAME, DEVICENAME, LIBPATH, CHANNELID lines, one stanza per reader.
    (wallet.pcscd has a smaller parser for the files it writes; the terminal may not import
    the wallet, and this one also knows vpcd's connect-out form and CHANNELID.)
    vpcd reads the port from DEVICENAME "host:port" ("/dev/null" as host: listen for the
    card); without a port in DEVICENAME it uses CHANNELID, then its default 35963.
    """
    entries: list[VpcdEntry] = []
    block: dict[str, str] = {}

    def flush() -> None:
        if "vpcd" in block.get("LIBPATH", ""):
            entries.append(_vpcd_entry(block, file))
        block.clear()

    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        key = key.upper()
        value = value.strip().strip('"')
        if key in block:  # a key seen again starts the next reader's stanza
            flush()
        block[key] = value
    flush()
    return tuple(entries)


def _parse_int(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def _vpcd_entry(block: dict[str, str], file: str) -> VpcdEntry:
    device = block.get("DEVICENAME", "")
    host: str | None = None
    port: int | None = None
    if ":" in device:
        name, _, port_text = device.partition(":")
        host = None if name == "/dev/null" else name
        port = _parse_int(port_text)
    if port is None:
        port = _parse_int(block.get("CHANNELID", "")) if "CHANNELID" in block else None
    return VpcdEntry(file, block.get("FRIENDLYNAME", ""), host, port if port is not None else VPCD_DEFAULT_PORT)


def ccid_options_from_plist(data: dict) -> int | None:
    """libccid's ifdDriverOptions (bit 0x01: CCID escape commands allowed through SCardControl)."""
    value = data.get("ifdDriverOptions")
    return _parse_int(value) if isinstance(value, str) else None


def ccid_ids_from_plist(data: dict) -> frozenset[tuple[int, int]]:
    """The VID:PID pairs libccid's Info.plist declares (ifdVendorID / ifdProductID arrays)."""
    vids = data.get("ifdVendorID", [])
    pids = data.get("ifdProductID", [])
    return frozenset((int(v, 16), int(p, 16)) for v, p in zip(vids, pids))


def pcscd_config_arg(argv: list[str]) -> str | None:
    """The FILE|DIR of pcscd's -c / --config option, if given."""
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
    return None


def nfcpy_candidates(facts: Facts) -> tuple[str, ...]:
    """nfcpy paths worth opening: matched nfcpy readers nobody else holds and we may open."""
    paths = []
    for device in facts.usb or ():
        model = known_reader(device.vid, device.pid)
        if model is None or model.path != "nfcpy":
            continue
        if _holder(device) is None and device.can_open is not False:
            paths.append(device.nfcpy_path)
    return tuple(paths)


def _holder(device: UsbDevice) -> str | None:
    """The driver that holds an interface of the device, if any."""
    for driver in device.interface_drivers:
        if driver:
            return driver
    return None


# ---------------------------------------------------------------------------------------
# The diagnosis (pure)


def diagnose(facts: Facts) -> Diagnosis:
    findings: list[Finding] = []
    usable: list[UsableReader] = []
    matched = [(d, known_reader(d.vid, d.pid)) for d in facts.usb or ()]
    matched = [(d, m) for d, m in matched if m is not None]
    wants_pcsc = any(m.path == "pcsc" for _, m in matched)

    findings += _pcscd_findings(facts, wants_pcsc)
    findings += _pcsc_findings(facts, usable)
    findings += _usb_findings(facts, matched, usable)
    findings += _vpcd_findings(facts)
    findings += _nfcpy_findings(facts, matched)
    findings += _serial_findings(facts, usable)
    for probe, error in sorted(facts.probe_errors.items()):
        findings.append(Finding("warn", "probe", f"could not check {probe}: {error}"))
    findings.append(_summary(facts, findings, usable))
    return Diagnosis(tuple(findings), tuple(usable))


def _pcscd_findings(facts: Facts, wants_pcsc: bool) -> list[Finding]:
    p = facts.pcscd
    if p is None:
        return []
    if p.binary is None:
        level = "fail" if wants_pcsc else "warn"
        return [Finding(level, "pcscd", "pcscd is not installed (PC/SC readers and the virtual reader need it)",
                        "sudo apt-get install pcscd libccid pcsc-tools")]
    if p.pids:
        pids = ", ".join(str(x) for x in p.pids)
        config = f", configuration {p.config}" if p.config else ""
        return [Finding("ok", "pcscd", f"pcscd installed at {p.binary}, running (pid {pids}{config})")]
    answered = facts.pcsc is not None and facts.pcsc.error in (None, SCARD_E_NO_READERS_AVAILABLE) and facts.pcsc.problem is None
    if answered:
        return [Finding("ok", "pcscd", f"pcscd installed at {p.binary}, started on demand by its socket")]
    if p.socket:
        return [Finding("fail", "pcscd", "pcscd is not running but its socket /run/pcscd/pcscd.comm exists (stale, or socket activation failed)",
                        "sudo systemctl restart pcscd.socket pcscd; journalctl -u pcscd -n 50")]
    return [Finding("fail", "pcscd", "pcscd is installed but not running",
                    "sudo systemctl enable --now pcscd.socket  (without systemd: sudo service pcscd start)")]


def _pcsc_findings(facts: Facts, usable: list[UsableReader]) -> list[Finding]:
    a = facts.pcsc
    if a is None:
        return []
    if a.problem:
        return [Finding("fail", "pcsc", f"cannot ask pcscd: {a.problem}",
                        "pip install pyscard  (builds with: sudo apt-get install gcc swig libpcsclite-dev)")]
    if a.error == SCARD_E_NO_SERVICE and facts.pcscd is not None and not facts.pcscd.pids:
        # the pcscd line above already says it is not running and how to start it
        return [Finding("fail", "pcsc", "PC/SC: SCARD_E_NO_SERVICE: no pcscd to answer")]
    if a.error is not None and a.error != SCARD_E_NO_READERS_AVAILABLE:
        name, meaning, fix = SCARD_ERRORS.get(a.error, (f"0x{a.error:08X}", "PC/SC call failed", None))
        return [Finding("fail", "pcsc", f"PC/SC: {name}: {meaning}", fix)]
    if not a.readers:
        return [Finding("warn", "pcsc", "pcscd answers but lists no reader",
                        "plug in a reader, or for the emulator: " + _hw(VPCD_CONF_FIX, facts) + " && sudo systemctl restart pcscd")]
    out = []
    for name in a.readers:
        virtual = is_virtual(name)
        usable.append(UsableReader("pcsc", name, virtual))
        if virtual:
            out.append(Finding("ok", "pcsc", f"PC/SC virtual reader (vsmartcard-vpcd): {name!r}"))
        elif any(m.pcsc_prefix and name.startswith(m.pcsc_prefix) for m in SUPPORTED):
            out.append(Finding("ok", "pcsc", f"PC/SC reader: {name!r}"))
        else:
            out.append(Finding("ok", "pcsc", f"PC/SC reader: {name!r} (not in tapstack's table: "
                               "it moves APDUs, but check it is contactless)"))
    return out


def _usb_findings(facts: Facts, matched: list[tuple[UsbDevice, ReaderModel]],
                  usable: list[UsableReader]) -> list[Finding]:
    if facts.usb is None:
        return []
    if not matched:
        return [Finding("warn", "usb", f"no supported reader on USB (the table: {facts.hardware_dir}/README.md)",
                        "plug one in; check with: ls /sys/bus/usb/devices/*/idProduct")]
    out = []
    for device, model in matched:
        where = f"{model.name} ({model.usb_id}) at {device.nfcpy_path}"
        holder = _holder(device)
        if holder in KERNEL_NFC_DRIVERS:
            out.append(Finding("fail", "usb", f"{where} is held by the kernel module {holder}; "
                               f"{'pcscd' if model.path == 'pcsc' else 'nfcpy'} cannot use it",
                               f"sudo modprobe -r {holder} && {_hw(BLACKLIST_FIX, facts)}"))
            continue
        if model.kernel_module and facts.modules and model.kernel_module in facts.modules:
            out.append(Finding("warn", "usb", f"kernel module {model.kernel_module} is loaded: it takes the {model.name} when it is plugged in again",
                               f"sudo modprobe -r {model.kernel_module} && {_hw(BLACKLIST_FIX, facts)}"))
        if model.path == "pcsc":
            out.append(_pcsc_device_finding(facts, device, model, where))
            if model.pid == 0x2200 and facts.ccid_options is not None and not facts.ccid_options & 0x01:
                out.append(Finding("warn", "usb", f"{model.name}: LED and buzzer work only while a card is on the reader "
                                   f"(escape commands need libccid ifdDriverOptions 0x0001, it is 0x{facts.ccid_options:04X})",
                                   CCID_ESCAPE_FIX))
        else:
            out += _nfcpy_device_findings(facts, device, model, where, holder, usable)
    return out


def _pcsc_device_finding(facts: Facts, device: UsbDevice, model: ReaderModel, where: str) -> Finding:
    if facts.ccid_ids is not None and (model.vid, model.pid) not in facts.ccid_ids:
        return Finding("fail", "usb", f"{where}: libccid's Info.plist does not list {model.usb_id}, so pcscd ignores it",
                       "sudo apt-get install --only-upgrade libccid  (or add the IDs: " + facts.hardware_dir + "/README.md)")
    names = [n for n in (facts.pcsc.readers if facts.pcsc else ()) if model.pcsc_prefix and n.startswith(model.pcsc_prefix)]
    if names:
        return Finding("ok", "usb", f"{where} is usable through PC/SC as {names[0]!r}")
    if facts.pcsc is not None and facts.pcsc.error in (None, SCARD_E_NO_READERS_AVAILABLE) and not facts.pcsc.problem:
        return Finding("fail", "usb", f"{where} is plugged in but pcscd does not list it",
                       "sudo systemctl restart pcscd; journalctl -u pcscd -n 50 (look for 'bogus firmware' or 'Can't claim interface')")
    return Finding("warn", "usb", f"{where} is plugged in; usable once pcscd answers (see the pcsc line)")


def _nfcpy_device_findings(facts: Facts, device: UsbDevice, model: ReaderModel, where: str,
                           holder: str | None, usable: list[UsableReader]) -> list[Finding]:
    out = []
    if holder is not None:
        out.append(Finding("fail", "usb", f"{where} is held by another program (driver {holder}; a running terminal or another nfcpy process?)",
                           f"sudo lsof {device.node}  then stop that program"))
        return out
    if device.can_open is False:
        out.append(Finding("fail", "usb", f"{where}: {facts.user or 'this user'} may not open {device.node} ({device.node_mode})",
                           _hw(UDEV_FIX, facts) + f"; sudo adduser {facts.user or '$USER'} plugdev; then replug and log in again"))
        return out
    opened = {o.path: o for o in (facts.nfcpy.opened if facts.nfcpy else ())}
    result = opened.get(device.nfcpy_path)
    if result is None:
        out.append(Finding("warn", "usb", f"{where}: nfcpy did not try it (see the nfcpy line)"))
    elif result.ok:
        usable.append(UsableReader("nfcpy", device.nfcpy_path))
        out.append(Finding("ok", "usb", f"{where} is usable through nfcpy: {result.text}"))
    else:
        out.append(Finding("fail", "usb", f"{where}: nfcpy could not open it: {result.text}",
                           "python -m nfc -v  (nfcpy's own search explains what it sees; then unplug and replug)"))
    return out


def _vpcd_findings(facts: Facts) -> list[Finding]:
    v = facts.vpcd
    if v is None:
        return []
    if v.driver is None:
        return [Finding("warn", "vpcd", "vsmartcard-vpcd is not installed: no virtual reader for the wallet emulator",
                        "sudo apt-get install vsmartcard-vpcd")]
    if not v.entries:
        return [Finding("warn", "vpcd", f"vpcd driver at {v.driver} but no reader.conf.d entry uses it",
                        _hw(VPCD_CONF_FIX, facts) + " && sudo systemctl restart pcscd")]
    out = []
    for e in v.entries:
        side = (f"connects to a card at {e.host}:{e.port}" if e.host else
                f"waits for the card on TCP port {e.port} (slot 1: {e.port + 1}), all interfaces")
        out.append(Finding("ok", "vpcd", f"{e.file}: virtual reader {e.friendly_name!r} {side}"))
        if e.host is None:  # vpcd binds INADDR_ANY (vsmartcard vpcd.c, opensock): no option narrows it
            out.append(Finding("warn", "vpcd", f"{e.file}: vpcd listens on every interface, TCP {e.port} and "
                               f"{e.port + 1}: anyone who can reach them becomes the card in {e.friendly_name!r}",
                               _hw(VPCD_EXPOSED_FIX, facts)))
    ports = [e.port for e in v.entries if e.host is None]
    if len(v.entries) > 1:
        clash = len(set(ports)) < len(ports) or any(p + 1 in ports for p in ports)
        what = "listen on the same ports" if clash else "share one driver instance"
        out.append(Finding("warn", "vpcd", f"{len(v.entries)} vpcd entries {what}; keep one file",
                           "sudo mv /etc/reader.conf.d/vpcd /root/vpcd.disabled  (if you installed vpcd-tapstack)"))
    return out


def _nfcpy_findings(facts: Facts, matched: list[tuple[UsbDevice, ReaderModel]]) -> list[Finding]:
    n = facts.nfcpy
    if n is None:
        return []
    wanted = any(m.path == "nfcpy" for _, m in matched) or any(o.path.startswith("tty") for o in n.opened)
    if n.problem:
        return [Finding("fail" if wanted else "warn", "nfcpy", f"nfcpy does not import: {n.problem}",
                        "pip install 'nfcpy>=1.0.4'")]
    out = [Finding("ok", "nfcpy", f"nfcpy {n.version} imports")]
    return out


def _serial_findings(facts: Facts, usable: list[UsableReader]) -> list[Finding]:
    out = []
    opened = [o for o in (facts.nfcpy.opened if facts.nfcpy else ()) if o.path.startswith("tty")]
    for o in opened:
        if o.ok:
            usable.append(UsableReader("nfcpy", o.path))
            out.append(Finding("ok", "serial", f"PN532 on {o.path} is usable through nfcpy: {o.text}"))
        else:
            out.append(Finding("fail", "serial", f"nothing nfcpy knows answers on {o.path}: {o.text}",
                               "python -m nfc --search-tty -v; check wiring (TX/RX crossed), the board's HSU (UART) mode, and: sudo adduser $USER dialout"))
    if facts.serial_ports and not opened:
        ports = " ".join(facts.serial_ports)
        out.append(Finding("ok", "serial", f"serial ports {ports} not probed (probing may disturb other devices)",
                           "for a PN532 on UART: tapstack terminal doctor --tty /dev/ttyAMA0"))
    return out


def _summary(facts: Facts, findings: list[Finding], usable: list[UsableReader]) -> Finding:
    if usable:
        names = ", ".join(r.spec + (" (virtual)" if r.virtual else "") for r in usable)
        return Finding("ok", "summary", f"usable readers: {names}")
    first_fix = next((f.fix for f in findings if f.level == "fail" and f.fix), None)
    return Finding("fail", "summary", "no usable reader", first_fix or f"see {facts.hardware_dir}/README.md")


def facts_as_json(facts: Facts) -> dict:
    data = asdict(facts)
    if facts.pcsc is not None and facts.pcsc.error is not None:
        data["pcsc"]["error_name"] = SCARD_ERRORS.get(facts.pcsc.error, (f"0x{facts.pcsc.error:08X}",))[0]
    if facts.modules is not None:
        # only the modules that matter here; the full list is noise
        data["modules"] = sorted(m for m in facts.modules if m in {"nfc", "pn533", "pn533_usb", "port100", "pn544"})
    if facts.ccid_ids is not None:
        data["ccid_ids"] = sorted(f"{v:04x}:{p:04x}" for v, p in facts.ccid_ids
                                  if known_reader(v, p) is not None)
    return data


def report_as_json(facts: Facts, diagnosis: Diagnosis) -> dict:
    return {
        "usable": [{**asdict(r), "spec": r.spec} for r in diagnosis.usable],
        "findings": [asdict(f) for f in diagnosis.findings],
        "facts": facts_as_json(facts),
    }
