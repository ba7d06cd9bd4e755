"""The demo's moving parts as processes it starts and stops: the pid lock, the gateway
(`tapstack gateway serve` under gunicorn, delivering webhooks too), the terminal programs it
operates on their input and output (`Console`: the till and the bus validators) and the preflight checks.

Every process is started in its own session and stopped by its own pid (SIGTERM to its
process group, then SIGKILL), so nothing else on the machine is touched.
"""
from __future__ import annotations

import errno
import importlib.util
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from wallet import pcscd


class DemoError(Exception):
    """What stops the demo, in one line for the person running it."""


# --- preflight ---------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(data_dir: Path) -> Path:
    """Write our pid to DATA_DIR/demo.pid; DemoError when a live demo holds it (a stale file is taken)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "demo.pid"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                pid = int(path.read_text().split("\n", 1)[0].strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise DemoError(f"a demo is already running (pid {pid}): stop it with kill {pid} or wait") from None
            stop_orphans(path)  # stale: its demo was killed; stop what it had started
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return path
    raise DemoError(f"cannot take the demo lock {path}: another demo is starting")


def record_child(lock: Path, pid: int, token: str) -> None:
    """Note in the lock file a process the demo started; `token` is a string from its command
    line, so a later demo stops it only if that pid still runs that program."""
    with open(lock, "a") as f:
        f.write(f"child {pid} {token}\n")


def stop_orphans(lock: Path) -> list[int]:
    """Stop the processes a killed demo recorded and left running (each by its pid, after
    checking its command line); the pids stopped."""
    try:
        entries = [line.split(" ", 2) for line in lock.read_text().splitlines() if line.startswith("child ")]
    except OSError:
        return []
    stopped = []
    for _, pid_text, token in (e for e in entries if len(e) == 3):
        try:
            pid = int(pid_text)
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (ValueError, OSError):
            continue  # gone already
        if token not in command:
            continue  # the pid was reused by another program
        try:
            os.killpg(pid, signal.SIGTERM)  # our children lead their own process groups
        except (ProcessLookupError, PermissionError):
            continue
        stopped.append(pid)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in stopped) and time.monotonic() < deadline:
        time.sleep(0.1)
    return stopped


def release_lock(path: Path) -> None:
    try:
        if path.read_text().split("\n", 1)[0].strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


def check_port(port: int, host: str = "127.0.0.1") -> None:
    with socket.socket() as s:
        # As gunicorn binds: connections of an earlier run in TIME_WAIT do not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                raise DemoError(f"port {port} is in use: pass --port") from None
            raise DemoError(f"cannot use port {port}: {e.strerror}") from None


PCSCD_PATHS = ("/usr/sbin/pcscd", "/sbin/pcscd")  # where Debian puts it, when sbin is not on PATH
PYTHON_MODULES = {"smartcard": "pyscard", "nfc": "nfcpy", "zxingcpp": "zxing-cpp", "gunicorn": "gunicorn"}


def check_installed() -> None:
    """DemoError naming what is missing: pcscd, the vpcd driver, a Python package."""
    if not (shutil.which("pcscd") or any(os.path.exists(p) for p in PCSCD_PATHS)):
        raise DemoError("pcscd is not installed: run make setup (it installs pcscd and vsmartcard-vpcd)")
    if not pcscd.VPCD_DRIVER.exists():
        raise DemoError(f"the virtual reader driver ({pcscd.VPCD_DRIVER}) is not installed: run make setup "
                        "(Debian package vsmartcard-vpcd)")
    for module, package in PYTHON_MODULES.items():
        if importlib.util.find_spec(module) is None:
            raise DemoError(f"the Python package {package} is not installed: run make setup")


def check_no_pcscd() -> None:
    pid = pcscd.running_pcscd()
    if pid is not None:
        raise DemoError(f"another pcscd (pid {pid}) holds {pcscd.PCSCD_SOCKET}: stop it "
                        f"(sudo systemctl stop pcscd.socket pcscd, or kill {pid} if you started it), then run again")


MARKER = ".tapstack-demo"  # names a directory the demo made, which it may empty at each run


def check_data_dir(data_dir: Path) -> None:
    """DemoError unless data_dir is missing, empty, or a demo's own (each run empties it)."""
    if data_dir.exists() and not data_dir.is_dir():
        raise DemoError(f"{data_dir} is not a directory: pass another --data")
    if data_dir.is_dir() and not (data_dir / MARKER).exists() and any(
            p.name != "demo.pid" for p in data_dir.iterdir()):
        raise DemoError(f"{data_dir} is not empty and not a demo's data directory (each run empties it): "
                        "pass a new or empty --data")


def preflight(data_dir: Path, port: int) -> Path:
    """Every check that needs nothing started; the lock file taken (release it with release_lock)."""
    if data_dir.exists() and not data_dir.is_dir():
        raise DemoError(f"{data_dir} is not a directory: pass another --data")
    lock = acquire_lock(data_dir)
    try:
        check_data_dir(data_dir)
        (data_dir / MARKER).touch()
        check_port(port)
        check_installed()
        check_no_pcscd()
    except BaseException:
        release_lock(lock)
        raise
    return lock


# --- processes ---------------------------------------------------------------------------

class Process:
    """A child process in its own session, its output to a log file; stop() ends it and its children."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name, self.log_path = name, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, env=env)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)  # its own group: gunicorn's master and workers
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


class Console(Process):
    """A terminal program the demo operates as its operator would: commands typed on its stdin,
    its panel read line by line from its stdout (each line copied to its log as it comes)."""

    def __init__(self, name: str, argv: list[str], log_path: Path):
        self.name, self.log_path = name, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "a", encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True, env=env, text=True, encoding="utf-8",
                                      errors="replace", bufsize=1)
        self._lines: queue.Queue = queue.Queue()
        self._copier = threading.Thread(target=self._copy, name=f"{name} output", daemon=True)
        self._copier.start()

    def _copy(self) -> None:
        for line in self.popen.stdout:
            self._log.write(line)
            self._log.flush()
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of output: the program stopped

    def type(self, line: str) -> None:
        """One line on the program's input; DemoError when it no longer reads any."""
        try:
            self.popen.stdin.write(line + "\n")
            self.popen.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise self.stopped() from None

    def expect(self, *prefixes: str, timeout: float, containing: str = "") -> str:
        """The next output line that starts with one of `prefixes` (and holds `containing`);
        DemoError, with the last lines of its log, when the program stops or says nothing such in time."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._lines.put(None)  # stays at the end for the next caller
                raise self.stopped()
            if line.startswith(prefixes) and containing in line:
                return line
        raise DemoError(f"{self.name} did not answer within {timeout:.0f} s (its log {self.log_path}: "
                        f"{self.tail()})")

    def stopped(self) -> DemoError:
        try:
            code = self.popen.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        return DemoError(f"{self.name} stopped ({how}); the last lines of {self.log_path}: {self.tail()}")

    def finish(self, timeout: float) -> int:
        """Wait for the program to end by itself (after `quit`); its exit status."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DemoError(f"{self.name} did not stop within {timeout:.0f} s of quit: {self.tail()}") from None
        self._copier.join(5)
        return code

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self._copier.join(5)
        for stream in (self.popen.stdin, self.popen.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        self._log.close()


def tapstack_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tapstack", *args]


def gateway_args(gateway_dir: Path, database: str | None) -> list[str]:
    """Where a `tapstack gateway` command finds its gateway: the data directory, and the
    database URL when it is not the directory's SQLite file."""
    return ["--data", str(gateway_dir), *(["--database", database] if database else [])]


def migrate_gateway(gateway_dir: Path, database: str) -> None:
    """`tapstack gateway migrate` on a database the demo is given; it must hold no gateway yet."""
    import psycopg
    try:
        with psycopg.connect(database, connect_timeout=5) as conn:
            used = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    except psycopg.Error as e:
        raise DemoError(f"cannot use the database: {' '.join(str(e).split())}") from None
    if used:
        raise DemoError("the database already holds a gateway: give the demo an empty database"
                        " (the demo starts its city from nothing)")
    done = subprocess.run(tapstack_command("gateway", "migrate", *gateway_args(gateway_dir, database)),
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise DemoError(f"cannot migrate the database: {done.stderr.strip() or done.stdout.strip()}")


def start_gateway(gateway_dir: Path, port: int, log_path: Path, workers: int = 2,
                  timeout: float = 30.0, database: str | None = None) -> Process:
    """`tapstack gateway serve` on 127.0.0.1:port, waited for until it answers. It delivers the
    webhooks too, to the demo's receiver on loopback: private targets are allowed."""
    process = Process("gateway", tapstack_command("gateway", "serve", *gateway_args(gateway_dir, database),
                                                  "--host", "127.0.0.1", "--port", str(port),
                                                  "--workers", str(workers), "--allow-private-webhooks"),
                      log_path)
    url = f"http://127.0.0.1:{port}/v1/openapi.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running():
            raise DemoError(f"the gateway stopped at start-up: {process.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return process
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    process.stop()
    raise DemoError(f"the gateway did not answer on port {port} within {timeout:.0f} s: {process.tail()}")


def publish_fares(gateway_dir: Path, rules_file: Path, database: str | None) -> None:
    """`tapstack gateway publish-fares`: the city's fare rules, for the gateway and the validators."""
    done = subprocess.run(tapstack_command("gateway", "publish-fares", str(rules_file),
                                           *gateway_args(gateway_dir, database)),
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise DemoError(f"cannot publish the fare rules: {done.stderr.strip() or done.stdout.strip()}")


def fetch(url: str, bearer: str, timeout: float = 10.0) -> bytes:
    """GET url with a bearer key; the body (an image). DemoError on any failure."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bearer}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.read()
    except (urllib.error.URLError, OSError) as e:
        raise DemoError(f"GET {url}: {e}") from None
