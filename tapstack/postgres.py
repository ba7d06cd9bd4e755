"""A PostgreSQL cluster of its own, in a directory, for tests, benchmarks and the
scale-out example: initdb, pg_ctl start, and stop by pid.

    with LocalPostgres(tmp_dir) as pg:
        url = pg.create_database("gateway")      # postgresql:///gateway?host=...&user=postgres

It listens on a unix socket in its own directory and on no TCP port (unless
`port` is given: then on 127.0.0.1 too), so several can run on one machine. The
socket trusts its local users; TCP connections need a password (scram-sha-256). PostgreSQL refuses to run
as root: when this process is root, the server's files belong to the postgres
user and its programs run through `runuser -u postgres`.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
SERVER_USER = "postgres"


class PostgresMissing(RuntimeError):
    """PostgreSQL's server programs are not installed."""


def server_bin() -> Path:
    """The directory of initdb and pg_ctl (Debian keeps them off PATH)."""
    for directory in BIN_DIRS:
        if Path(directory, "initdb").is_file():
            return Path(directory)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresMissing("PostgreSQL is not installed: apt-get install postgresql (initdb and pg_ctl are needed)")


class LocalPostgres:
    """One cluster in `root` (a new temporary directory when None). `settings` are
    postgresql.conf settings (fsync, synchronous_commit, ...)."""

    def __init__(self, root: str | os.PathLike | None = None, *, port: int | None = None,
                 settings: dict[str, str] | None = None):
        self._own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="tapstack-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log = self.root / "postgres.log"
        self.port = port or 5432
        self.tcp = port is not None
        self.settings = dict(settings or {})
        self.bin = server_bin()
        self.as_root = os.geteuid() == 0
        self.pid: int | None = None
        self.primary: LocalPostgres | None = None

    @classmethod
    def standby_of(cls, primary: "LocalPostgres", root=None, *, name: str = "standby1",
                   port: int | None = None, settings: dict[str, str] | None = None) -> "LocalPostgres":
        """A streaming replica of `primary`, made from a base backup (pg_basebackup) at first
        start. `name` is its application_name: list it in the primary's
        synchronous_standby_names to make every commit wait for it."""
        standby = cls(root, port=port, settings={
            "primary_conninfo": f"'host={primary.socket_dir} port={primary.port} user={SERVER_USER}"
                                f" application_name={name}'",
            **(settings or {})})
        standby.primary = primary
        return standby

    # -- life ----------------------------------------------------------------

    def start(self) -> "LocalPostgres":
        if not (self.data / "PG_VERSION").exists():
            self._init()
        listen = "127.0.0.1" if self.tcp else ""
        options = [f"-c listen_addresses='{listen}'", f"-c port={self.port}",
                   f"-c unix_socket_directories='{self.socket_dir}'"]
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", " ".join(options), "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server by its pid: "fast" (SIGINT: roll back sessions, checkpoint)
        or "immediate" (SIGQUIT: like a crash; recovery replays the WAL at next start)."""
        if self.pid is None:
            return
        signum = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            self.pid = None
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(self.pid):
            time.sleep(0.02)
        if _alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None

    def promote(self) -> None:
        """Make a standby the primary (pg_ctl promote)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def cleanup(self) -> None:
        """Stop, and remove the directory when this object made it."""
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- use -----------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        """The database through the unix socket, as the postgres user (trusted there)."""
        return f"postgresql:///{dbname}?host={self.socket_dir}&port={self.port}&user={SERVER_USER}"

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE DATABASE and the like)."""
        import psycopg
        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database (copied from `template` when given); its URL."""
        copy = f" TEMPLATE {_ident(template)}" if template else ""
        self.sql(f"CREATE DATABASE {_ident(name)}{copy}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")

    # -- inside --------------------------------------------------------------

    def _init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self.as_root:
            user = pwd.getpwnam(SERVER_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
            os.chmod(self.root, 0o700)
        if self.primary is not None:  # a standby starts as a copy of its primary
            self._run("pg_basebackup", "-D", str(self.data), "-h", str(self.primary.socket_dir),
                      "-p", str(self.primary.port), "-U", SERVER_USER, "-X", "stream", "-c", "fast")
            (self.data / "standby.signal").touch()
            if self.as_root:
                user = pwd.getpwnam(SERVER_USER)
                os.chown(self.data / "standby.signal", user.pw_uid, user.pw_gid)
            return
        self._run("initdb", "-D", str(self.data), "-U", SERVER_USER, "--auth-local=trust", "--auth-host=scram-sha-256",
                  "--encoding=UTF8", "--locale=C", "--no-instructions")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self.as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd="/")
        if done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain database name: {name!r}")
    return f'"{name}"'
