"""The uploader against a real gateway app: batches, retries, lost answers, rejected rows,
and an uploader process killed with SIGKILL mid-upload: nothing lost, nothing doubled."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from gateway.http.app import create_app
from protocol import tokens
from terminal.card import Decision
from protocol.uplink import Client, GatewayRefused, GatewayUnavailable
from terminal.journal import Journal
from terminal.uploader import backoff_delay, upload_all, upload_batch
from tests.gateway.fixtures import START

TID = b"BUS-0100"
ROOT = Path(__file__).resolve().parents[2]


def flask_send(test_client):
    """Client's send over a Flask test client (no sockets)."""
    def send(method, url, headers, body):
        path = "/" + url.split("://", 1)[1].split("/", 1)[1]
        r = test_client.open(path, method=method, data=body, headers=headers)
        return r.status_code, r.get_data()
    return send


def terminal_client(world, send, clock, name="x") -> Client:
    _, api = world.terminal(name)
    key_id, secret = api.auth
    return Client("http://gateway.test", key_id, secret, send=send, clock=clock)


def fill(journal: Journal, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        journal.record(Decision(START - timedelta(hours=1) + timedelta(seconds=i), "uid", True, "token",
                                          "ok", "R1", "S1", token=tokens.uid_token(b"k" * 16, i.to_bytes(4, "big"))))


def gateway_taps(store) -> list[str]:
    with store.read() as tx:
        return [r["tap_id"] for r in tx.query("SELECT tap_id FROM transit_taps ORDER BY tap_id")]


@pytest.mark.parametrize("attempt, jitter, low, high", [
    (1, 0.0, 0.5, 0.5), (1, 0.999, 0.99, 1.0), (4, 0.5, 6.0, 6.0), (30, 0.0, 150.0, 150.0), (1000, 0.999, 299, 300),
])
def test_backoff_grows_to_a_cap_with_jitter(attempt, jitter, low, high):
    assert low <= backoff_delay(attempt, jitter) <= high


def test_everything_goes_up_in_batches_once(world, client, clock, store, tmp_path):
    j = Journal(tmp_path / "j.db", TID)
    fill(j, 1234)
    report = upload_all(j, terminal_client(world, flask_send(client), clock), clock, batch_size=500)
    assert (report.batches, report.accepted, report.duplicate) == (3, 1234, 0)
    assert j.counts() == {"taps": 1234, "unsent": 0}
    assert gateway_taps(store) == sorted(t["id"] for t in j.taps())


def test_an_unreachable_gateway_marks_nothing(world, client, clock, store, tmp_path):
    j = Journal(tmp_path / "j.db", TID)
    fill(j, 10)

    def down(*_):
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(GatewayUnavailable):
        upload_all(j, terminal_client(world, down, clock), clock)
    assert j.counts()["unsent"] == 10
    assert upload_all(j, terminal_client(world, flask_send(client), clock), clock).accepted == 10


def test_a_lost_answer_is_sent_again_and_counts_once(world, client, clock, store, tmp_path):
    j = Journal(tmp_path / "j.db", TID)
    fill(j, 300)
    real = flask_send(client)

    def answer_lost(*args):
        real(*args)  # the gateway commits ...
        raise TimeoutError("timed out")  # ... and the answer never arrives

    with pytest.raises(GatewayUnavailable):
        upload_batch(j, terminal_client(world, answer_lost, clock), clock, batch_size=200)
    assert len(gateway_taps(store)) == 200 and j.counts()["unsent"] == 300
    fill(j, 50, start=300)  # more taps while the answer was lost: the next batch differs
    report = upload_all(j, terminal_client(world, real, clock), clock, batch_size=120)
    assert report.accepted + report.duplicate == 350 and report.duplicate == 200
    assert len(gateway_taps(store)) == 350 and j.counts()["unsent"] == 0


def test_rejected_rows_are_recorded_and_not_sent_again(world, client, clock, store, tmp_path):
    j = Journal(tmp_path / "j.db", TID)
    fill(j, 2)
    j.record(Decision(START, "uid", True, "token", "ok", "R1", "S1", token=None))  # no token
    report = upload_all(j, terminal_client(world, flask_send(client), clock), clock)
    assert (report.accepted, report.rejected) == (2, 1)
    assert j.taps()[-1]["result"].startswith("rejected:missing_field")
    assert upload_all(j, terminal_client(world, flask_send(client), clock), clock).batches == 0


# --- SIGKILL mid-upload -------------------------------------------------------------------

@pytest.fixture
def live_gateway(config, world):
    """The gateway over HTTP on a free port, on the real clock (a subprocess signs with it)."""
    s = config.open_store()
    app = create_app(config, store=s)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", s
    server.shutdown()
    s.close()


UPLOADER = textwrap.dedent("""
    import sys, time
    from datetime import datetime, timezone
    from pathlib import Path
    from protocol.uplink import Client, urllib_send
    from terminal.journal import Journal
    from terminal.uploader import upload_all

    url, key_id, secret, journal, marker, pause = sys.argv[1:7]
    real = urllib_send()

    def send(*args):
        answer = real(*args)
        Path(marker).write_text("answered")  # the gateway committed; the journal is not marked yet
        time.sleep(float(pause))
        return answer

    now = lambda: datetime.now(timezone.utc)
    upload_all(Journal(journal, bytes.fromhex("{tid}")),
               Client(url, key_id, bytes.fromhex(secret), send=send), now, batch_size=100)
""").replace("{tid}", TID.hex())


def spawn_uploader(url, key, journal, marker, pause):
    key_id, secret = key
    return subprocess.Popen([sys.executable, "-c", UPLOADER, url, key_id, secret.hex(), str(journal),
                             str(marker), str(pause)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_an_uploader_killed_between_the_gateway_commit_and_its_mark_loses_and_doubles_nothing(
        world, live_gateway, tmp_path):
    url, gateway_store = live_gateway
    _, api = world.terminal("x")
    path = tmp_path / "j.db"
    j = Journal(path, TID)
    fill(j, 450)
    marker = tmp_path / "answered"
    for round_ in range(3):
        marker.unlink(missing_ok=True)
        proc = spawn_uploader(url, api.auth, path, marker, pause=30)
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), "the uploader never got an answer"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        assert proc.returncode == -signal.SIGKILL
    # Each killed run sent the same first batch: the gateway has it once, the journal none marked.
    assert len(gateway_taps(gateway_store)) == 100 and j.counts()["unsent"] == 450
    proc = spawn_uploader(url, api.auth, path, marker, pause=0)
    assert proc.wait(60) == 0
    assert j.counts() == {"taps": 450, "unsent": 0}
    assert gateway_taps(gateway_store) == sorted(t["id"] for t in j.taps())
    assert {t["result"] for t in j.taps()} == {"accepted"}  # the replayed first batch answers as it did


def test_an_uploader_killed_at_random_moments_loses_and_doubles_nothing(world, live_gateway, tmp_path):
    url, gateway_store = live_gateway
    _, api = world.terminal("x")
    path = tmp_path / "j.db"
    j = Journal(path, TID)
    fill(j, 1500)
    for delay in (0.4, 0.7, 1.0, 1.3):
        proc = spawn_uploader(url, api.auth, path, tmp_path / "m", pause=0)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    assert spawn_uploader(url, api.auth, path, tmp_path / "m", pause=0).wait(60) == 0
    assert j.counts() == {"taps": 1500, "unsent": 0}
    assert gateway_taps(gateway_store) == sorted(t["id"] for t in j.taps())


def test_a_validator_clock_gone_wrong_still_uploads_and_its_taps_are_flagged(world, client, clock, store, tmp_path):
    from email.utils import format_datetime

    j = Journal(tmp_path / "j.db", TID)
    wrong = lambda: clock() + timedelta(hours=2)  # noqa: E731  the validator's clock runs 2 h ahead
    j.record(Decision(wrong(), "uid", True, "token", "ok", "R1", "S1",
                                token=tokens.uid_token(b"k" * 16, b"\x01\x02\x03\x04")))
    real = flask_send(client)

    def with_date(*args):  # what a real server adds to every answer
        status, body = real(*args)
        return status, body, {"Date": format_datetime(clock(), usegmt=True)}

    gateway = terminal_client(world, with_date, wrong)
    report = upload_all(j, gateway, wrong)
    assert report.accepted == 1 and abs(gateway.clock_offset + 7200) < 2
    with store.read() as tx:
        assert tx.one("SELECT flags FROM transit_taps")["flags"] == "clock_suspect"
    stale = terminal_client(world, real, wrong)  # no Date header: nothing to correct with
    with pytest.raises(GatewayRefused):
        stale.get("/v1/issuer/deny-list")
