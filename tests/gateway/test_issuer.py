"""The issuer role: certificates that verify offline, the deny-list's versions and deltas,
remote lock and unlock, who may do what, and each of these from several requests at once
(the `store` tests run on both backends: tests/gateway/conftest.py)."""
import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.core import issuer
from gateway.core.errors import Conflict, Invalid
from protocol import certs, ed25519, tokens
from tests.gateway.fixtures import START as T0
from tests.gateway.fixtures import GatewayApp

_keys = itertools.count(1)


def wallet_key():
    seed = next(_keys).to_bytes(32, "big")
    return seed, ed25519.public_key(seed)


class Gateway(GatewayApp):
    """The Flask app on a temp data dir, with helpers that speak its API."""

    def wallet(self):
        customer = self.call("POST", "/v1/customers", self.operator, {"name": "Rider"}).get_json()
        r = self.call("POST", "/v1/wallets", self.operator, {"customer_id": customer["id"], "currency": "CNY"})
        assert r.status_code == 201, r.get_json()
        return r.get_json()["id"], r.get_json()["credential"]


@pytest.fixture
def gw(tmp_path, backend):
    gateway = Gateway(tmp_path, backend=backend)
    yield gateway
    gateway.close()


def published(gw):
    r = gw.client.get("/v1/issuer/keys")                       # no credentials
    assert r.status_code == 200
    return {bytes.fromhex(k["key_id"]): bytes.fromhex(k["public_key"]) for k in r.get_json()["data"]}


def test_a_certificate_verifies_offline_against_the_published_key(gw):
    wallet_id, credential = gw.wallet()
    seed, public = wallet_key()
    r = gw.call("POST", f"/v1/wallets/{wallet_id}/card", credential, {"public_key": public.hex()})
    assert r.status_code == 201, r.get_json()
    card = r.get_json()
    assert len(bytes.fromhex(card["card_id"])) == 8
    cert = certs.parse(bytes.fromhex(card["certificate"]))
    keys = published(gw)
    assert certs.verify(cert, keys, now=int(T0.timestamp())) == cert
    assert cert.card_public_key == public and cert.card_id.hex() == card["card_id"]
    assert cert.issuer_key_id.hex() == card["issuer_key_id"]
    assert cert.not_after == card["not_after_unix"] > T0.timestamp()
    issuer_public = ed25519.public_key(gw.config.secret("issuer_seed"))
    assert keys == {certs.key_id(issuer_public): issuer_public}
    with pytest.raises(certs.BadCertificate):
        certs.verify(cert, keys, now=cert.not_after + 1)


def test_keys_are_published_before_any_card_and_a_rolled_key_stays_published(gw):
    first = published(gw)
    assert len(first) == 1
    with gw.store.transaction() as tx:
        issuer.ensure_key(tx, bytes(range(32)), now=T0)        # the issuer rolls its key
    with gw.store.read() as tx:
        listed = issuer.published_keys(tx)["data"]
    assert [k["status"] for k in listed] == ["active", "retired"]
    assert set(first) <= set(published(gw)) and len(published(gw)) == 2


def test_certifying_the_same_key_again_answers_the_same_card(gw):
    wallet_id, credential = gw.wallet()
    _, public = wallet_key()
    first = gw.call("POST", f"/v1/wallets/{wallet_id}/card", credential, {"public_key": public.hex()}).get_json()
    again = gw.call("POST", f"/v1/wallets/{wallet_id}/card", credential, {"public_key": public.hex()}).get_json()
    assert again["card_id"] == first["card_id"] and again["certificate"] == first["certificate"]
    listed = gw.call("GET", f"/v1/wallets/{wallet_id}/cards", credential).get_json()["data"]
    assert [c["card_id"] for c in listed] == [first["card_id"]]


def test_a_wallet_can_only_certify_its_own_card(gw):
    mine, my_credential = gw.wallet()
    theirs, their_credential = gw.wallet()
    _, public = wallet_key()
    r = gw.call("POST", f"/v1/wallets/{theirs}/card", my_credential, {"public_key": public.hex()})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "resource_missing"
    assert gw.call("POST", f"/v1/wallets/{mine}/card", my_credential, {"public_key": public.hex()}).status_code == 201
    # and a key that is already my card cannot become theirs
    r = gw.call("POST", f"/v1/wallets/{theirs}/card", their_credential, {"public_key": public.hex()})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "public_key_in_use"
    assert gw.call("POST", f"/v1/wallets/{mine}/card", None, {"public_key": public.hex()}).status_code == 401


@pytest.mark.parametrize("value", ["", "zz" * 32, "00" * 31, "00" * 32, 42, None])
def test_a_bad_public_key_is_a_400_naming_it(gw, value):
    wallet_id, credential = gw.wallet()
    r = gw.call("POST", f"/v1/wallets/{wallet_id}/card", credential, {"public_key": value})
    assert r.status_code == 400 and r.get_json()["error"]["param"] == "public_key"


def test_deny_list_versions_full_list_and_deltas(store):
    token = tokens.uid_token(b"k" * 32, bytes.fromhex("04a1b2c3"))
    with store.transaction() as tx:
        assert issuer.deny_list(tx)["version"] == 0
        assert issuer.deny(tx, entry="00112233aabbccdd", kind="card_id", reason="lost", now=T0) == 1
        assert issuer.deny(tx, entry=token, kind="token", reason="chargeback", now=T0) == 2
        assert issuer.deny(tx, entry=token, kind="token", reason="again", now=T0) == 2   # no change
        assert issuer.deny(tx, entry="ffffffffffffffff", kind="card_id", reason="stolen", now=T0) == 3
        assert issuer.allow(tx, entry="00112233aabbccdd", now=T0) == 4
        assert issuer.allow(tx, entry="00112233aabbccdd", now=T0) == 4                   # no change

        full = issuer.deny_list(tx)
        assert full["full"] and full["version"] == 4
        assert [(e["entry"], e["reason"]) for e in full["entries"]] == [(token, "chargeback"),
                                                                        ("ffffffffffffffff", "stolen")]
        delta = issuer.deny_list(tx, since=1)
        assert not delta["full"] and delta["version"] == 4
        assert {e["entry"] for e in delta["added"]} == {token, "ffffffffffffffff"}
        assert [e["entry"] for e in delta["removed"]] == ["00112233aabbccdd"]
        assert issuer.deny_list(tx, since=4)["added"] == issuer.deny_list(tx, since=4)["removed"] == []
        assert issuer.deny_list(tx, since=99)["full"]            # ahead of the gateway: start over

        # a terminal applying deltas ends with the full list, from any version it held
        for start in range(0, 5):
            held = replay(tx, start)
            d = issuer.deny_list(tx, since=start)
            held = (held - {e["entry"] for e in d["removed"]}) | {e["entry"] for e in d["added"]}
            assert held == {e["entry"] for e in full["entries"]}


def replay(tx, version):
    """The entries denied as of `version`, rebuilt from the change log."""
    held = set()
    for c in tx.query("SELECT * FROM issuer_deny_list_changes WHERE version <= :v ORDER BY version", {"v": version}):
        (held.add if c["action"] == "add" else held.discard)(c["entry"])
    return held


@pytest.mark.parametrize("entry,kind", [("00112233AABBCCDD", "card_id"), ("0011", "card_id"),
                                        ("4111111111111111", "token"), ("uid_x", "token"),
                                        ("00112233aabbccdd", "pan")])
def test_deny_list_refuses_what_is_not_a_card_id_or_token(gw, entry, kind):
    with gw.store.transaction() as tx, pytest.raises(Invalid):
        issuer.deny(tx, entry=entry, kind=kind, reason="x", now=T0)


def test_lock_denies_the_wallets_cards_and_unlock_takes_back_only_those(gw):
    wallet_id, credential = gw.wallet()
    cards = [gw.call("POST", f"/v1/wallets/{wallet_id}/card", credential,
                     {"public_key": wallet_key()[1].hex()}).get_json()["card_id"] for _ in range(2)]
    # an operator separately denies the first card (reported lost)
    r = gw.call("POST", "/v1/issuer/deny-list", gw.operator, {"entry": cards[0], "kind": "card_id", "reason": "lost"})
    assert r.status_code == 201 and r.get_json()["deny_list_version"] == 1

    r = gw.call("POST", f"/v1/wallets/{wallet_id}/lock", gw.operator, {"reason": "suspected fraud"})
    assert r.status_code == 200, r.get_json()
    state = r.get_json()
    assert state["status"] == "locked" and state["denied_card_ids"] == sorted(cards)
    assert state["deny_list_version"] == 2                   # only the second card was new
    assert gw.call("GET", f"/v1/wallets/{wallet_id}", gw.operator).get_json()["status"] == "locked"
    r = gw.call("POST", f"/v1/wallets/{wallet_id}/card", credential, {"public_key": wallet_key()[1].hex()})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "wallet_locked"

    delta = gw.call("GET", "/v1/issuer/deny-list?since=1", gw.operator).get_json()
    assert [e["entry"] for e in delta["added"]] == [cards[1]]
    assert delta["added"][0]["reason"] == "suspected fraud"

    r = gw.call("POST", f"/v1/wallets/{wallet_id}/unlock", gw.operator, {})
    state = r.get_json()
    assert r.status_code == 200 and state["status"] == "active"
    assert state["denied_card_ids"] == [cards[0]]            # the operator's own entry stays
    delta = gw.call("GET", "/v1/issuer/deny-list?since=2", gw.operator).get_json()
    assert delta["version"] == 3 and [e["entry"] for e in delta["removed"]] == [cards[1]]


def test_only_the_operator_may_lock_unlock_or_edit_the_deny_list(gw):
    wallet_id, credential = gw.wallet()
    for path in (f"/v1/wallets/{wallet_id}/lock", f"/v1/wallets/{wallet_id}/unlock"):
        r = gw.call("POST", path, credential, {})
        assert r.status_code == 403 and r.get_json()["error"]["type"] == "permission_error"
    r = gw.call("POST", "/v1/issuer/deny-list", credential, {"entry": "00" * 8, "kind": "card_id", "reason": "x"})
    assert r.status_code == 403
    assert gw.call("DELETE", "/v1/issuer/deny-list/" + "00" * 8, credential).status_code == 403
    assert gw.call("GET", "/v1/issuer/deny-list", credential).status_code == 403
    assert gw.call("GET", "/v1/issuer/deny-list", None).status_code == 401
    assert gw.call("GET", f"/v1/wallets/{wallet_id}", gw.operator).get_json()["status"] == "active"


def test_locking_an_unknown_wallet_is_a_404(gw):
    r = gw.call("POST", "/v1/wallets/wal_000000000000000000000000/lock", gw.operator, {})
    assert r.status_code == 404 and r.get_json()["error"]["type"] == "not_found"


@pytest.mark.parametrize("query", ["since=-1", "since=x", "since=", "version=3"])
def test_bad_deny_list_queries_are_a_400(gw, query):
    r = gw.call("GET", f"/v1/issuer/deny-list?{query}", gw.operator)
    assert r.status_code == 400 and r.get_json()["error"]["type"] == "invalid_request_error"


def test_removing_a_deny_list_entry_over_http(gw):
    entry = "0123456789abcdef"
    gw.call("POST", "/v1/issuer/deny-list", gw.operator, {"entry": entry, "kind": "card_id", "reason": "lost"})
    r = gw.call("DELETE", f"/v1/issuer/deny-list/{entry}", gw.operator)
    assert r.status_code == 200 and r.get_json()["deny_list_version"] == 2
    assert gw.call("GET", "/v1/issuer/deny-list", gw.operator).get_json()["entries"] == []


# -- many writers at once (on PostgreSQL, nodes without a global lock) ----------------------

def at_once(jobs):
    """Run each (function, argument) of jobs on eight threads together; the results in order."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda job: job[0](job[1]), jobs))


def test_deny_list_changes_at_once_take_one_version_each(store):
    first = [f"{n:016x}" for n in range(1, 21)]
    then = [f"{n:016x}" for n in range(21, 31)]

    def deny(entry):
        return store.write(lambda tx: issuer.deny(tx, entry=entry, kind="card_id", reason="lost", now=T0))

    def allow(entry):
        return store.write(lambda tx: issuer.allow(tx, entry=entry, now=T0))

    at_once([(deny, e) for e in first for _ in range(2)])     # each entry twice, together
    at_once([(allow, e) for e in first[:10]] + [(deny, e) for e in then])
    with store.read() as tx:
        listed = issuer.deny_list(tx)
        versions = [c["version"] for c in tx.query("SELECT version FROM issuer_deny_list_changes ORDER BY version")]
        replayed = replay(tx, 40)
    assert versions == list(range(1, 41)) and listed["version"] == 40
    assert sorted(e["entry"] for e in listed["entries"]) == first[10:] + then
    assert replayed == set(first[10:] + then)


def test_one_key_certified_by_several_requests_at_once_is_one_card(store, world, config):
    wallet_id, _ = world.wallet("a")
    _, public = wallet_key()
    seed = config.secret("issuer_seed")

    def certify(_):
        return store.write(lambda tx: issuer.certify(tx, wallet_id=wallet_id, public_key=public, seed=seed,
                                                     now=T0))

    cards = at_once([(certify, None)] * 6)
    assert len({c["card_id"] for c in cards}) == 1
    with store.read() as tx:
        assert [c["card_id"] for c in issuer.wallet_cards(tx, wallet_id)] == [cards[0]["card_id"]]


def test_a_wallet_locked_while_it_is_issued_cards_has_each_denied_once(store, world, config):
    wallet_id, _ = world.wallet("b")
    seed = config.secret("issuer_seed")

    def certify(public):
        try:
            return store.write(lambda tx: issuer.certify(tx, wallet_id=wallet_id, public_key=public, seed=seed,
                                                         now=T0))
        except Conflict as e:
            assert e.code == "wallet_locked"

    def lock(_):
        return store.write(lambda tx: issuer.lock(tx, wallet_id=wallet_id, reason="fraud", now=T0))

    jobs = [(certify, wallet_key()[1]) for _ in range(12)]
    jobs.insert(4, (lock, None))
    jobs.insert(10, (lock, None))
    at_once(jobs)
    with store.read() as tx:
        state = issuer.lock_state(tx, wallet_id)
        cards = [c["card_id"] for c in issuer.wallet_cards(tx, wallet_id)]
    assert state["status"] == "locked" and cards
    assert state["denied_card_ids"] == sorted(cards)           # no card issued past the lock
    assert state["deny_list_version"] == len(cards)            # each denied once, however often locked
    state = store.write(lambda tx: issuer.unlock(tx, wallet_id=wallet_id, now=T0))
    assert state["status"] == "active" and state["denied_card_ids"] == []
    assert state["deny_list_version"] == 2 * len(cards)
