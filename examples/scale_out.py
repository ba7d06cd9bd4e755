"""A city's deployment on one machine: haproxy in front of two gateway nodes on one
PostgreSQL primary with a synchronous streaming standby; then the demo's riders,
buses, bills and shop run against it through the load balancer.

    .venv/bin/python examples/scale_out.py              # under a minute
    .venv/bin/python examples/scale_out.py --riders 20 --keep   # leave it running (Ctrl-C stops)

Needs haproxy and postgresql (Debian packages) besides what `make setup` installs.
Everything listens on 127.0.0.1 or on unix sockets under a temporary directory, and
everything it started is stopped at the end. docs/scale-out.md explains each part.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tapstack.postgres import LocalPostgres  # noqa: E402

HAPROXY = """\
global
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option redispatch
    retries 2
frontend gateway
    bind 127.0.0.1:{port}
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /v1/openapi.json
    http-check expect status 200
{servers}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f} s")


def tapstack(*args: str) -> list[str]:
    return [sys.executable, "-m", "tapstack", *args]


def replication(primary: LocalPostgres) -> list[tuple]:
    import psycopg
    with psycopg.connect(primary.url()) as conn:
        return conn.execute("SELECT application_name, state, sync_state FROM pg_stat_replication").fetchall()


def count_transfers(url: str) -> int:
    import psycopg
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT COUNT(*) FROM ledger_transfers").fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--riders", type=int, default=40)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    options = parser.parse_args()
    if not shutil.which("haproxy"):
        print("haproxy is not installed: apt-get install haproxy", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="tapstack-scale-out-"))
    work.chmod(0o755)  # the database servers run as the postgres user, who must reach their directories
    env = {**os.environ, "TAPSTACK_MASTER_KEY": secrets.token_hex(32)}  # the same on every node
    env.pop("TAPSTACK_DATABASE_URL", None)
    started: list[subprocess.Popen] = []
    primary = LocalPostgres(work / "primary", settings={
        "synchronous_standby_names": "'standby1'", "synchronous_commit": "on", "fsync": "on"})
    standby = LocalPostgres.standby_of(primary, work / "standby", name="standby1", settings={"fsync": "on"})
    try:
        print(f"PostgreSQL primary and synchronous standby under {work}")
        primary.start()
        standby.start()
        deadline = time.monotonic() + 30
        while ("standby1", "streaming", "sync") not in replication(primary):
            if time.monotonic() > deadline:
                raise SystemExit(f"the standby is not streaming: {replication(primary)}")
            time.sleep(0.2)
        url = primary.create_database("tapstack")
        subprocess.run(tapstack("gateway", "migrate", "--database", url, "--data", str(work / "node-0")),
                       env=env, check=True)

        ports = [free_port() for _ in range(options.nodes)]
        for n, port in enumerate(ports):
            log = open(work / f"node-{n}.log", "w")
            started.append(subprocess.Popen(
                tapstack("gateway", "serve", "--database", url, "--data", str(work / f"node-{n}"),
                         "--port", str(port), "--workers", "2", "--allow-private-webhooks"),
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/v1/openapi.json", "a gateway node")
        print(f"{options.nodes} gateway nodes on ports {', '.join(map(str, ports))}")

        front = free_port()
        servers = "\n".join(f"    server node{n} 127.0.0.1:{p} check inter 500ms" for n, p in enumerate(ports))
        (work / "haproxy.cfg").write_text(HAPROXY.format(port=front, servers=servers))
        started.append(subprocess.Popen(["haproxy", "-db", "-f", str(work / "haproxy.cfg")],
                                        stdout=open(work / "haproxy.log", "w"), stderr=subprocess.STDOUT,
                                        start_new_session=True))
        gateway = f"http://127.0.0.1:{front}"
        wait_http(gateway + "/v1/openapi.json", "haproxy")
        print(f"haproxy on {gateway}, round robin over the nodes")

        day = subprocess.run(tapstack("demo", "--gateway", gateway, "--database", url,
                                      "--riders", str(options.riders), "--data", str(work / "demo")), env=env)
        on_primary = count_transfers(url)
        deadline = time.monotonic() + 10  # a synchronous commit is on the standby's disk; replay follows
        while (on_standby := count_transfers(standby.url("tapstack"))) != on_primary and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"\nledger transfers: {on_primary} on the primary, {on_standby} on the synchronous standby")
        print(f"replication: {replication(primary)}")
        if options.keep:
            print(f"running: {gateway} (Ctrl-C stops everything)")
            signal.pause()
        return day.returncode or (0 if on_primary == on_standby else 1)
    except KeyboardInterrupt:
        return 130
    finally:
        for process in started:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        standby.stop()
        primary.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
