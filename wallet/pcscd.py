"""Run the real pcscd with vsmartcard-vpcd virtual readers, for tests, the emulator and the demo.

`start(n)` writes a reader.conf.d directory with one vpcd driver on a free TCP port (its
slots, up to two, listen on PORT and PORT+1), runs `pcscd -f -c DIR` in the foreground,
and waits until PC/SC lists the readers. The wallet
emulator then presents a card by connecting to a reader's port (wallet.transports.vpcd).

pcscd's socket is fixed at /run/pcscd/pcscd.comm, so one pcscd serves the machine. If one
is already running, `start` reuses it only when it already has the readers asked for, and
never stops a pcscd it did not start; otherwise it says which pid is in the way.

The vpcd driver accepts cards on all interfaces: whoever reaches the port can put a card
in the reader. It is for tests and demos; a production validator has no vpcd reader.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
INSTALL_HINT = "apt-get install pcscd vsmartcard-vpcd"
DEFAULT_NAME = "tapstack vpcd"


class PcscdError(RuntimeError):
    """pcscd could not be started or reached; the message says what to do."""


class PcscdBusy(PcscdError):
    """Another pcscd runs (only one can): the message says whose and what to do."""

    def __init__(self, message: str, pid: int):
        super().__init__(message)
        self.pid = pid


VPCD_SLOTS = 2  # one vpcd driver instance serves two slots, on PORT and PORT + 1


@dataclass(frozen=True)
class VpcdReader:
    """One virtual reader slot: PC/SC lists it as "FRIENDLYNAME 00 SS", the card connects to port."""

    friendly_name: str  # FRIENDLYNAME in reader.conf
    base_port: int  # the port in DEVICENAME; slot s listens on base_port + s
    slot: int = 0

    @property
    def port(self) -> int:
        return self.base_port + self.slot

    @property
    def pcsc_name(self) -> str:
        return f"{self.friendly_name} 00 {self.slot:02d}"


@dataclass
class Pcscd:
    """A pcscd serving vpcd readers: one this process started (stop() ends it) or one reused."""

    readers: list[VpcdReader]
    pid: int | None
    config_dir: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_path: Path | None = None

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the pcscd this object started (SIGTERM, then SIGKILL); a reused one is left alone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.process = None
        if self.config_dir is not None:
            shutil.rmtree(self.config_dir, ignore_errors=True)

    def __enter__(self) -> "Pcscd":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def free_ports(n: int) -> list[int]:
    """n TCP ports P free right now, each with P+1 free too (vpcd's second slot listens there)."""
    held, ports = [], []
    try:
        while len(ports) < n:
            a = socket.socket()
            a.bind(("", 0))
            held.append(a)
            b = socket.socket()
            try:
                b.bind(("", a.getsockname()[1] + 1))
            except OSError:
                b.close()
                continue
            held.append(b)
            ports.append(a.getsockname()[1])
        return ports
    finally:
        for s in held:
            s.close()


def reader_conf(name: str, base_port: int) -> str:
    """The reader.conf stanza of one vpcd driver instance (two slots: base_port and base_port + 1)."""
    return (f'FRIENDLYNAME "{name}"\n'
            f"DEVICENAME   /dev/null:{base_port}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    {base_port}\n")


def parse_reader_conf(text: str) -> list[VpcdReader]:
    """The vpcd reader slots declared in reader.conf text (other drivers are skipped)."""
    readers, entry = [], {}

    def flush():
        if "LIBPATH" in entry and "vpcd" in entry["LIBPATH"] and "DEVICENAME" in entry:
            port = entry["DEVICENAME"].rpartition(":")[2]
            base = int(port, 0)
            readers.extend(VpcdReader(entry.get("FRIENDLYNAME", "Virtual PCD"), base, slot)
                           for slot in range(VPCD_SLOTS))
        entry.clear()

    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        key, value = key.upper(), value.strip().strip('"')
        if key in entry:  # a key seen again starts the next reader's stanza
            flush()
        entry[key] = value
    flush()
    return readers


def running_pcscd() -> int | None:
    """The pid of a pcscd already running on this machine, or None."""
    return next(iter(running_pcscds()), None)


def running_pcscds() -> list[int]:
    """The pids of the pcscd processes in our way. A pcscd in another mount namespace (a
    container, an isolated test run) has its own /run/pcscd: it is not; nor is one that has
    exited and waits to be reaped (a zombie holds no socket)."""
    ours, found = _mount_namespace("self"), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if ((entry / "comm").read_text().strip() == "pcscd" and not _zombie(entry)
                    and _mount_namespace(entry.name) in (ours, None)):
                found.append(int(entry.name))
        except OSError:  # the process ended while we looked
            continue
    return found


def _zombie(entry: Path) -> bool:
    return (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z"


def _mount_namespace(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:  # not ours to look at: count it as in the way
        return None


def configured_readers(pid: int) -> list[VpcdReader]:
    """The vpcd readers a running pcscd was configured with (its -c DIR, else /etc/reader.conf.d)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []
    args = [a.decode(errors="replace") for a in argv if a]
    conf = Path("/etc/reader.conf.d")
    for i, a in enumerate(args):
        if a in ("-c", "--config") and i + 1 < len(args):
            conf = Path(args[i + 1])
        elif a.startswith("--config="):
            conf = Path(a.partition("=")[2])
    files = sorted(conf.iterdir()) if conf.is_dir() else [conf]
    readers = []
    for f in files:
        try:
            readers += parse_reader_conf(f.read_text())
        except (OSError, ValueError):  # unreadable, not text, or a port that is not a number
            continue
    return readers


# --- who is in the way ------------------------------------------------------------------

@dataclass(frozen=True)
class Holder:
    """A process and what it is, for a message: the pcscd in the way, or what started it."""
    pid: int
    command: str  # its command line, shortened
    kind: str  # "system", "emulator", "tests", "demo", "tapstack-left", "this", "other"

    def describe(self) -> str:
        return f"`{self.command}` (pid {self.pid})"


def _cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def _parent(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1]) or None
    except (OSError, ValueError, IndexError):
        pass
    return None


def _short(argv: list[str]) -> str:
    """The command as a person would have typed it: the interpreter and the paths trimmed."""
    words = list(argv)
    while len(words) > 1 and Path(words[0]).name.startswith(("python", "bash", "sh")):
        words.pop(0)
        if words[0] == "-m" and len(words) > 1:
            words.pop(0)
    if words:
        words[0] = Path(words[0]).name
    text = " ".join(words)
    return text if len(text) <= 80 else text[:77] + "..."


def process_kind(pid: int) -> Holder:
    """What the process pid is: a tapstack emulator, a test run, the demo, systemd ..."""
    argv = _cmdline(pid)
    text = " ".join(argv)
    if pid == os.getpid():
        kind = "this"
    elif argv and Path(argv[0]).name in ("systemd", "init"):
        kind = "system"
    elif "wallet emulate" in text or "wallet relay" in text:
        kind = "emulator"
    elif "pytest" in text or "tapstack test" in text or "testing/cli" in text:
        kind = "tests"
    elif "tapstack demo" in text or text.endswith("tapstack.demo"):
        kind = "demo"
    else:
        kind = "other"
    return Holder(pid, _short(argv) or f"pid {pid}", kind)


def pcscd_owner(pid: int) -> Holder:
    """Who runs the pcscd pid: the program that started it (kind of that program), the
    system's pcscd, or a pcscd tapstack started whose program has exited ("tapstack-left")."""
    own_config = any(Path(a).parent.name.startswith("tapstack-pcscd-") or "tapstack-pcscd-" in a
                     for a in _cmdline(pid))
    parent = _parent(pid)
    owner = process_kind(parent) if parent else None
    if owner is None or owner.kind == "system":  # adopted by init: whoever started it has gone
        if own_config:
            return Holder(pid, _short(_cmdline(pid)), "tapstack-left")
        return Holder(pid, "systemd", "system")
    return owner


def in_the_way(pid: int, usable: int, needed: int, reuse: bool = True) -> str:
    """One paragraph: which pcscd is in the way, who runs it, and what to do."""
    owner = pcscd_owner(pid)
    if usable < needed or reuse:
        readers = f"{usable} usable vpcd reader{'s' if usable != 1 else ''}, {needed} needed"
    else:
        readers = "tests run a pcscd of their own: another program's cards would be theirs too"
    if owner.kind == "system":
        return (f"the system's pcscd (pid {pid}, started by systemd) is running ({readers}); only one pcscd "
                "runs on a machine. Stop it while tapstack runs its own: sudo systemctl stop pcscd.socket pcscd "
                "(start it again afterwards)")
    if owner.kind == "emulator":
        return (f"pcscd (pid {pid}) was started by {owner.describe()} ({readers}); only one pcscd runs on a "
                f"machine. Stop that emulator (Ctrl-C where it runs, or kill {owner.pid}), then run again")
    if owner.kind == "tests":
        return (f"pcscd (pid {pid}) belongs to another test run, {owner.describe()} ({readers}); only one pcscd "
                f"runs on a machine. Wait for it to end (or stop it: kill {owner.pid}), then run again")
    if owner.kind == "demo":
        return (f"pcscd (pid {pid}) belongs to the demo, {owner.describe()}; wait for the demo to end "
                f"(or stop it: kill {owner.pid}), then run again")
    if owner.kind == "tapstack-left":
        return (f"pcscd (pid {pid}) was left running by an earlier tapstack run whose program has exited "
                f"({readers}): stop it with kill {pid}, then run again")
    if owner.kind == "this":
        return f"pcscd (pid {pid}) was started by this very program ({readers})"
    return (f"pcscd (pid {pid}, started by {owner.describe()}) is running ({readers}); only one pcscd runs "
            f"on a machine: stop it (kill {pid}, or systemctl stop pcscd.socket pcscd), then run again")


def slot_holder(port: int) -> Holder | None:
    """The process whose socket is connected to the vpcd slot listening on port (a card someone
    presents there), from /proc/net/tcp; None when no other process holds it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "01" and int(fields[2].rpartition(":")[2], 16) == port:
                inodes.add(fields[9])  # an established connection to the port: the card's end
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            return process_kind(int(entry.name))
    return None


def list_pcsc_readers() -> list[str]:
    """Reader names PC/SC lists now; [] when pcscd is not reachable."""
    from smartcard import scard

    rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rc != scard.SCARD_S_SUCCESS:
        return []
    try:
        rc, names = scard.SCardListReaders(ctx, [])
        return list(names) if rc == scard.SCARD_S_SUCCESS else []
    finally:
        scard.SCardReleaseContext(ctx)


def _socket_activated_pcscd() -> int | None:
    """The pid of a pcscd that systemd (pcscd.socket) starts on demand, or None.

    systemd holds /run/pcscd/pcscd.comm while pcscd is idle; connecting wakes pcscd up, which
    tells it apart from a stale socket file that a pcscd we start replaces on its own."""
    if not PCSCD_SOCKET.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            probe.connect(str(PCSCD_SOCKET))
    except OSError:
        return None  # nobody listens: a stale file
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        pid = running_pcscd()
        if pid is not None:
            return pid
        time.sleep(0.05)
    raise PcscdError(f"something else holds {PCSCD_SOCKET} (systemd's pcscd.socket?): "
                     "stop it (systemctl stop pcscd.socket pcscd) to let tapstack start its own pcscd")


def check_installed() -> str:
    """The pcscd executable; PcscdError naming the packages if pcscd or the vpcd driver is missing."""
    exe = shutil.which("pcscd") or next((p for p in ("/usr/sbin/pcscd", "/sbin/pcscd") if os.path.exists(p)), None)
    if exe is None:
        raise PcscdError(f"pcscd is not installed: {INSTALL_HINT}")
    if not VPCD_DRIVER.exists():
        raise PcscdError(f"the vsmartcard-vpcd driver ({VPCD_DRIVER}) is not installed: {INSTALL_HINT}")
    return exe


def start(n_readers: int = 1, name: str = DEFAULT_NAME, port: int | None = None,
          reuse: bool = True, timeout: float = 10.0) -> Pcscd:
    """Start pcscd with n (1 or 2) vpcd reader slots "NAME 00 00", "NAME 00 01", or reuse a
    running pcscd that has them. Raises PcscdError with a one-line explanation otherwise.

    pcscd's vpcd driver keeps its connections per slot number, not per reader, so two
    vpcd entries in one pcscd would share them: one entry with its two slots is the most
    one pcscd can serve.
    """
    if not 1 <= n_readers <= VPCD_SLOTS:
        raise PcscdError(f"one pcscd serves 1 to {VPCD_SLOTS} vpcd readers, not {n_readers}")
    exe = check_installed()
    other = running_pcscd() or _socket_activated_pcscd()
    if other is not None:
        listed = set(list_pcsc_readers())
        usable = [r for r in configured_readers(other) if r.pcsc_name in listed]
        if port is not None:
            usable = [r for r in usable if r.base_port == port]
        if reuse and len(usable) >= n_readers:
            return Pcscd(usable[:n_readers], pid=other)
        raise PcscdBusy(in_the_way(other, len(usable), n_readers, reuse), other)
    base_port = port if port is not None else free_ports(1)[0]
    readers = [VpcdReader(name, base_port, slot) for slot in range(n_readers)]
    config_dir = Path(tempfile.mkdtemp(prefix="tapstack-pcscd-"))
    conf = config_dir / "reader.conf.d"
    conf.mkdir()
    (conf / "tapstack-vpcd").write_text(reader_conf(name, base_port))
    log_path = config_dir / "pcscd.log"
    PCSCD_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([exe, "-f", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    daemon = Pcscd(readers, pid=process.pid, config_dir=config_dir, process=process, log_path=log_path)
    wanted = {r.pcsc_name for r in readers}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = _tail(log_path)
            daemon.stop()
            raise PcscdError(f"pcscd exited with status {process.returncode}: {tail}")
        if wanted <= set(list_pcsc_readers()):
            return daemon
        time.sleep(0.05)
    tail = _tail(log_path)
    daemon.stop()
    raise PcscdError(f"pcscd did not list the vpcd readers within {timeout:.0f} s: {tail}")


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
