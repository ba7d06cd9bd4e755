"""Webhooks: the outbox, signed delivery to a real receiver, retries, crashes, and
deliverers running at once. The `store` tests run on both backends (tests/gateway/conftest.py)."""
import functools
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.core import webhooks as wh
from gateway.core.errors import Invalid, NotFound
from gateway.http import delivery
from gateway.store import SQLiteStore
from gateway.store import webhooks as webhooks_db
from protocol import webhook_signature

try:
    from tests.gateway.webhook_receiver import Receiver
except ImportError:  # run from another directory
    sys.path.insert(0, str(Path(__file__).parent))
    from webhook_receiver import Receiver

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
REPO = Path(__file__).resolve().parents[2]


SEAL_KEY = bytes(range(32))  # what these tests' endpoint secrets are sealed under


def Deliverer(store, clock, **options):
    """A deliverer allowed to reach the receiver on loopback (as --allow-private-webhooks)."""
    return delivery.Deliverer(store, clock, SEAL_KEY,
                        **{"post": functools.partial(delivery.http_post, private_targets=True), **options})


class Clock:
    def __init__(self, at=T0):
        self.at = at

    def __call__(self):
        return self.at

    def advance(self, seconds):
        self.at += timedelta(seconds=seconds)

    def unix(self):
        return self.at.timestamp()


def endpoint(store, receiver, merchant="mer_1", types=None, now=T0):
    with store.transaction() as tx:
        created = wh.create_endpoint(tx, merchant_id=merchant, url=receiver.url, event_types=types, now=now,
                                      seal_key=SEAL_KEY)
    receiver.secret = created["secret"]
    return created


def test_a_rolled_secret_signs_beside_the_old_one_until_the_overlap_ends(store):
    """Stripe's roll: during the overlap each delivery carries a v1= per secret, so a receiver
    holding either verifies it; after it, only the new secret signs. Both stay sealed at rest."""
    clock = Clock()
    with Receiver(now=clock.unix) as rx:
        old = endpoint(store, rx)
        with store.transaction() as tx:
            rolled = wh.roll_secret(tx, merchant_id="mer_1", endpoint_id=old["id"], now=T0, seal_key=SEAL_KEY,
                                    expires_in=3600)
            with pytest.raises(NotFound):  # another merchant's endpoint is not found
                wh.roll_secret(tx, merchant_id="mer_2", endpoint_id=old["id"], now=T0, seal_key=SEAL_KEY)
        assert rolled["secret"] != old["secret"] and rolled["previous_secret_expires_at"] == "2026-11-27T10:00:00Z"
        with store.read() as tx:
            row = webhooks_db.endpoint(tx, merchant_id="mer_1", endpoint_id=old["id"])
        assert old["secret"] not in str(row) and rolled["secret"] not in str(row)
        emit(store)
        Deliverer(store, clock).deliver_due()
        clock.advance(3601)
        emit(store, now=clock())
        Deliverer(store, clock).deliver_due()
    during, after = rx.received
    assert during["header"].count("v1=") == 2 and after["header"].count("v1=") == 1
    for secret, verifies in ((old["secret"], [True, False]), (rolled["secret"], [True, True])):
        assert [webhook_signature.verify(secret, got["header"], got["body"], now=int(clock.unix()) - 3601 * (i == 0))
                for i, got in enumerate((during, after))] == verifies


def emit(store, n=1, merchant="mer_1", event_type="payment.succeeded", now=T0):
    ids = []
    with store.transaction() as tx:
        for i in range(n):
            ids.append(wh.emit(tx, merchant_id=merchant, event_type=event_type,
                               data={"object": "payment", "id": f"pay_{i}", "amount": 1250 + i,
                                     "currency": "CNY"}, now=now))
    return ids


def deliveries(store):
    with store.read() as tx:
        return {r["event_id"]: r for r in tx.query("SELECT * FROM webhook_deliveries")}


def test_delivered_once_signed_and_verified_by_the_receiver(store):
    clock = Clock()
    with Receiver(now=clock.unix) as rx:
        created = endpoint(store, rx)
        assert created["secret"].startswith("whsec_") and created["id"].startswith("we_")
        [event_id] = emit(store)
        assert Deliverer(store, clock).deliver_due() == 1
        assert Deliverer(store, clock).deliver_due() == 0     # nothing twice
    [got] = rx.received
    assert got["verified"] and got["id"] == event_id == got["event_id"]
    body = json.loads(got["body"])
    assert body["type"] == "payment.succeeded" and body["data"]["amount"] == 1250
    assert body["created_at"] == "2026-11-27T09:00:00Z"
    assert deliveries(store)[event_id]["status"] == "succeeded"


def test_listing_endpoints_never_shows_the_secret(store):
    with Receiver() as rx:
        created = endpoint(store, rx, types=["refund.succeeded"])
    with store.read() as tx:
        [listed] = wh.list_endpoints(tx, merchant_id="mer_1")
        assert wh.list_endpoints(tx, merchant_id="mer_2") == []
    assert listed["id"] == created["id"] and "secret" not in listed
    assert listed["event_types"] == ["refund.succeeded"]


def test_event_is_in_the_outbox_only_if_its_transaction_commits(store):
    with Receiver() as rx:
        endpoint(store, rx)
        with pytest.raises(RuntimeError):
            with store.transaction() as tx:
                wh.emit(tx, merchant_id="mer_1", event_type="payment.succeeded", data={}, now=T0)
                raise RuntimeError("the payment failed after the event was written")
    with store.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM webhook_events")["n"] == 0
        assert tx.one("SELECT COUNT(*) AS n FROM webhook_deliveries")["n"] == 0


def test_only_subscribed_endpoints_of_the_merchant_get_the_event(store):
    with Receiver() as refunds, Receiver() as everything, Receiver() as other_merchant:
        endpoint(store, refunds, types=["refund.succeeded"])
        endpoint(store, everything, types=["*"])
        endpoint(store, other_merchant, merchant="mer_2")
        [pay] = emit(store, event_type="payment.succeeded")
        [ref] = emit(store, event_type="refund.succeeded")
        Deliverer(store, Clock()).deliver_due()
    assert refunds.ids() == [ref]
    assert sorted(everything.ids()) == sorted([pay, ref])
    assert other_merchant.ids() == []


def test_bad_endpoints_are_refused_with_a_param():
    for url in ["ftp://example.org/x", "not a url", "http://user:pw@example.org/", 42, "http:///x"]:
        with pytest.raises(Invalid) as e:
            wh.check_url(url)
        assert e.value.param == "url"
    for types in [[], ["payment.failed"], "payment.succeeded", [1]]:
        with pytest.raises(Invalid) as e:
            wh.check_event_types(types)
        assert e.value.param == "event_types"
    with pytest.raises(ValueError):
        wh.emit(None, merchant_id="m", event_type="payment.maybe", data={}, now=T0)


def test_failures_back_off_exponentially_with_injected_jitter_then_fail(store):
    clock = Clock()
    policy = wh.RetryPolicy(max_attempts=4, base_seconds=10, cap_seconds=3600)
    rng = random.Random(7)
    expected_rng = random.Random(7)
    with Receiver(answers=[500] * 10, now=clock.unix) as rx:
        endpoint(store, rx)
        [event_id] = emit(store)
        deliverer = Deliverer(store, clock, random=rng.random, policy=policy)
        waits = []
        for attempt in range(1, 4):
            assert deliverer.deliver_due() == 1
            d = deliveries(store)[event_id]
            assert d["status"] == "pending" and d["attempts"] == attempt
            wait = d["next_attempt_at"] - int(clock.unix())
            assert wait == policy.delay(attempt, expected_rng.random())
            ceiling = 10 * 2 ** (attempt - 1)
            assert ceiling / 2 <= wait <= ceiling
            clock.advance(wait - 1)
            assert deliverer.deliver_due() == 0          # not due a second early
            clock.advance(1)
            waits.append(wait)
        assert deliverer.deliver_due() == 1              # the 4th and last attempt
    assert waits[0] < waits[1] < waits[2]
    d = deliveries(store)[event_id]
    assert d["status"] == "failed" and d["attempts"] == 4
    assert rx.ids() == [event_id] * 4
    with store.read() as tx:
        [delivery] = wh.list_deliveries(tx, merchant_id="mer_1", event_id=event_id)
    assert [a["status_code"] for a in delivery["attempts"]] == [500] * 4
    assert delivery["status"] == "failed" and delivery["next_attempt_at"] is None


def test_jitter_spreads_retries_and_respects_the_cap():
    policy = wh.RetryPolicy(base_seconds=30, cap_seconds=600)
    assert policy.delay(1, 0.0) == 15 and policy.delay(1, 0.999) == 30
    assert policy.delay(20, 0.0) == 300 and policy.delay(20, 0.999) <= 600
    rng = random.Random(1)
    assert len({policy.delay(3, rng.random()) for _ in range(50)}) > 10


def test_a_timeout_is_a_failed_attempt_and_is_retried(store):
    clock = Clock()
    with Receiver(delay=1.0, now=clock.unix) as rx:
        endpoint(store, rx)
        [event_id] = emit(store)
        deliverer = Deliverer(store, clock, timeout=0.2, random=lambda: 0.0)
        deliverer.deliver_due()
        with store.read() as tx:
            [d] = wh.list_deliveries(tx, merchant_id="mer_1", event_id=event_id)
        assert d["status"] == "pending"
        assert d["attempts"][0]["status_code"] is None and "timed out" in d["attempts"][0]["error"]
        rx.delay = 0
        clock.advance(15)
        assert deliverer.deliver_due() == 1
    assert deliveries(store)[event_id]["status"] == "succeeded"
    assert all(r["verified"] for r in rx.received)


def test_unreachable_endpoint_is_a_failed_attempt(store):
    with Receiver() as rx:
        endpoint(store, rx)
    [event_id] = emit(store)                      # the receiver is gone now
    Deliverer(store, Clock(), random=lambda: 0.5).deliver_due()
    d = deliveries(store)[event_id]
    assert d["status"] == "pending" and d["attempts"] == 1


def test_an_exception_after_claim_loses_nothing(store):
    clock = Clock()

    def crash(*args):
        raise KeyboardInterrupt("the deliverer died")

    with Receiver(now=clock.unix) as rx:
        endpoint(store, rx)
        ids = emit(store, n=3)
        with pytest.raises(KeyboardInterrupt):
            Deliverer(store, clock, post=crash, workers=1, lease_seconds=60).deliver_due()
        assert {d["status"] for d in deliveries(store).values()} == {"delivering"}
        assert Deliverer(store, clock).deliver_due() == 0     # still leased
        clock.advance(60)
        assert Deliverer(store, clock).deliver_due() == 3
    assert sorted(rx.ids()) == sorted(ids)


def test_a_lease_that_expires_after_the_last_attempt_fails_the_delivery(store):
    clock = Clock()
    with Receiver() as rx:
        endpoint(store, rx)
        [event_id] = emit(store)
        policy = wh.RetryPolicy(max_attempts=1)
        with store.transaction() as tx:
            [claimed] = wh.claim(tx, now=clock(), lease_seconds=30, limit=10, seal_key=SEAL_KEY, policy=policy)
        clock.advance(30)
        with store.transaction() as tx:
            assert wh.claim(tx, now=clock(), lease_seconds=30, limit=10, seal_key=SEAL_KEY, policy=policy) == []
    assert deliveries(store)[event_id]["status"] == "failed"


def test_a_stale_deliverer_does_not_overwrite_the_new_claim(store):
    clock = Clock()
    with Receiver() as rx:
        endpoint(store, rx)
        emit(store)
    with store.transaction() as tx:
        [old] = wh.claim(tx, now=clock(), lease_seconds=10, limit=10, seal_key=SEAL_KEY)
    clock.advance(10)
    with store.transaction() as tx:
        [new] = wh.claim(tx, now=clock(), lease_seconds=10, limit=10, seal_key=SEAL_KEY)
    assert new.claim != old.claim and new.attempts == 2
    with store.transaction() as tx:    # the old one finally hears a 200: logged, not decisive
        assert wh.record(tx, old, wh.Outcome(200, None, 5), now=clock(), rand=0.5) == "delivering"
        assert wh.record(tx, new, wh.Outcome(503, None, 5), now=clock(), rand=0.5) == "pending"


def test_an_event_reaches_each_endpoint_once_however_often_it_is_fanned_out(store):
    with Receiver() as a, Receiver() as b:
        endpoint(store, a)
        endpoint(store, b, types=["payment.succeeded"])
    with store.transaction() as tx:
        event_id = wh.emit(tx, merchant_id="mer_1", event_type="payment.succeeded", data={}, now=T0)
        again = webhooks_db.fan_out(tx, event_id=event_id, event_type="payment.succeeded", merchant_id="mer_1",
                                    at=int(T0.timestamp()))
    assert again == 0
    with store.read() as tx:
        assert len(wh.list_deliveries(tx, merchant_id="mer_1", event_id=event_id)) == 2


def test_deliverers_running_at_once_deliver_each_event_once(store):
    """Four deliverers (nodes, in production) claim from one outbox at the same moment:
    their leases keep them off each other's deliveries."""
    clock = Clock()
    start, delivered = threading.Barrier(4), []

    def deliverer():
        d = Deliverer(store, clock, batch=4, workers=1)
        start.wait()
        while (n := d.deliver_due()):
            delivered.append(n)

    with Receiver(now=clock.unix) as rx:
        endpoint(store, rx)
        ids = emit(store, n=60)
        threads = [threading.Thread(target=deliverer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert sorted(rx.ids()) == sorted(ids) and sum(delivered) == 60     # each once: none twice, none lost
    assert {(d["status"], d["attempts"]) for d in deliveries(store).values()} == {("succeeded", 1)}


def test_a_due_delivery_to_an_endpoint_deleted_meanwhile_is_cancelled(store):
    """A fan-out committed just after the endpoint's deletion (on another node) leaves a
    pending delivery to a deleted endpoint: the deleted endpoint gets nothing."""
    with Receiver() as rx:
        created = endpoint(store, rx)
        [event_id] = emit(store)
        with store.transaction() as tx:
            tx.execute("UPDATE webhook_endpoints SET status = 'deleted' WHERE id = :id", {"id": created["id"]})
        assert Deliverer(store, Clock()).deliver_due() == 0
    assert rx.ids() == [] and deliveries(store)[event_id]["status"] == "cancelled"


def test_deleting_an_endpoint_cancels_what_it_had_not_received(store):
    with Receiver() as rx:
        created = endpoint(store, rx)
        emit(store, n=2)
        with store.transaction() as tx:
            wh.delete_endpoint(tx, merchant_id="mer_1", endpoint_id=created["id"], now=T0)
            with pytest.raises(NotFound):
                wh.delete_endpoint(tx, merchant_id="mer_1", endpoint_id=created["id"], now=T0)
        assert Deliverer(store, Clock()).deliver_due() == 0
    assert {d["status"] for d in deliveries(store).values()} == {"cancelled"}


def test_events_list_newest_first_with_a_cursor(store):
    ids = []
    for i in range(5):
        ids += emit(store, now=T0 + timedelta(seconds=i))
    emit(store, merchant="mer_2")
    with store.read() as tx:
        page = wh.list_events(tx, merchant_id="mer_1", limit=2)
        assert [e["id"] for e in page["data"]] == ids[::-1][:2] and page["has_more"]
        rest = wh.list_events(tx, merchant_id="mer_1", limit=10, after=page["data"][-1]["id"])
        assert [e["id"] for e in rest["data"]] == ids[::-1][2:] and not rest["has_more"]
        assert wh.get_event(tx, merchant_id="mer_1", event_id=ids[0])["id"] == ids[0]
        with pytest.raises(NotFound):
            wh.get_event(tx, merchant_id="mer_2", event_id=ids[0])   # not another merchant's


CRASHING_DELIVERER = textwrap.dedent("""
    import functools, sys, threading
    from datetime import datetime, timezone
    from gateway.http import delivery
    from gateway.store import open_store
    store = open_store(sys.argv[1] or None, sys.argv[2])
    clock = lambda: datetime.fromtimestamp(float(sys.argv[3]), timezone.utc)
    print("ready", flush=True)
    post = functools.partial(delivery.http_post, private_targets=True)
    delivery.Deliverer(store, clock, bytes(range(32)), post=post, workers=1, batch=100, lease_seconds=60).deliver_due()
    print("finished", flush=True)
""")


def test_a_deliverer_killed_mid_batch_loses_no_event_and_ids_dedupe(store, config):
    clock = Clock()
    proc = None

    def kill_on_third(n):
        if n == 3:
            os.kill(proc.pid, signal.SIGKILL)    # dies before the 3rd answer is recorded

    with Receiver(on_request=kill_on_third, now=clock.unix) as rx:
        endpoint(store, rx)
        ids = emit(store, n=6)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-c", CRASHING_DELIVERER, config.database_url or "",
                                 str(config.data_dir), str(clock.unix())],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL and "finished" not in out
        assert len(rx.received) == 3
        statuses = sorted(d["status"] for d in deliveries(store).values())
        assert statuses == ["delivering"] * 4 + ["succeeded"] * 2

        clock.advance(60)                         # the dead deliverer's lease runs out
        while Deliverer(store, clock).deliver_due():
            pass
    received = rx.ids()
    assert set(received) == set(ids)                         # every event at least once
    assert len(received) == 7                                # the 3rd one twice
    assert all(r["verified"] for r in rx.received)
    assert {d["status"] for d in deliveries(store).values()} == {"succeeded"}


def test_the_deliver_webhooks_command_delivers_what_is_due(tmp_path):
    """...and first seals a secret an older release stored in plain text, then signs with it."""
    from click.testing import CliRunner

    from gateway.cli import cli

    store = SQLiteStore(tmp_path / "gateway.db")          # where Config(tmp_path) keeps it
    with Receiver() as rx:
        rx.secret = "whsec_" + "ab" * 24
        with store.transaction() as tx:                   # as a release before 0017 stored it
            webhooks_db.insert_endpoint(tx, id="we_old", merchant_id="mer_1", url=rx.url, event_types="*",
                                        secret=rx.secret, status="enabled", created_at=int(T0.timestamp()))
        ids = emit(store, n=2, now=datetime.now(timezone.utc))
        store.close()
        result = CliRunner().invoke(cli, ["deliver-webhooks", "--data", str(tmp_path), "--once",
                                             "--allow-private-webhooks"])
    assert result.exit_code == 0 and "2 webhook deliveries attempted" in result.output
    assert sorted(rx.ids()) == sorted(ids) and all(r["verified"] for r in rx.received)
    store = SQLiteStore(tmp_path / "gateway.db")
    with store.read() as tx:
        [row] = tx.query("SELECT secret FROM webhook_endpoints")
    store.close()
    assert row["secret"].startswith("v1.") and "ab" * 8 not in row["secret"]
