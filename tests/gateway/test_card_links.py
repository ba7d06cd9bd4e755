"""Card links: a wallet's link code, spent by one terminal tap; one wallet per token; only tokens."""
from __future__ import annotations

import json
import threading

from gateway.core import card_links
from protocol import tokens
from tests.gateway.fixtures import error, ok

KEY = b"t" * 32
PAN_TOKEN = tokens.pan_token(KEY, "4242424242424242")
UID_TOKEN = tokens.uid_token(KEY, bytes.fromhex("04a1b2c3d4e5f6"))


def link_code(world, wallet: str = "a") -> str:
    wallet_id, api = world.wallet(wallet)
    answer = ok(api.post(f"/v1/wallets/{wallet_id}/card-links"), 201)
    assert answer["wallet_id"] == wallet_id and answer["object"] == "card_link_code"
    return answer["code"]


def tap(world, code: str, token: str, terminal: str = "x"):
    _, api = world.terminal(terminal)
    return api.post(f"/v1/card-links/{code}/tap", {"token": token})


def links(world, wallet: str = "a") -> list[dict]:
    wallet_id, api = world.wallet(wallet)
    return ok(api.get(f"/v1/wallets/{wallet_id}/linked-cards"))["data"]


def test_a_tap_with_the_code_links_the_card_to_the_wallet(world):
    wallet_id, _ = world.wallet("a")
    terminal_id, _ = world.terminal("x")
    link = ok(tap(world, link_code(world), PAN_TOKEN), 201)
    assert (link["wallet_id"], link["token"], link["kind"], link["assurance"], link["terminal_id"]) == (
        wallet_id, PAN_TOKEN, "pan", "high", terminal_id)
    uid = ok(tap(world, link_code(world), UID_TOKEN), 201)
    assert (uid["kind"], uid["assurance"]) == ("uid", "low")
    assert {(x["id"], x["token"]) for x in links(world)} == {(link["id"], PAN_TOKEN), (uid["id"], UID_TOKEN)}


def test_codes_are_typed_loosely_but_stored_only_as_hashes(world, store):
    code = link_code(world)
    with store.read() as tx:
        stored = json.dumps(tx.query("SELECT * FROM fare_link_codes"))
    assert code not in stored and card_links.normalise_code(code) not in stored
    assert ok(tap(world, code.lower().replace("-", " "), PAN_TOKEN), 201)["token"] == PAN_TOKEN


def test_an_expired_code_links_nothing(world, clock):
    code = link_code(world)
    clock.advance(card_links.LINK_CODE_SECONDS)
    error(tap(world, code, PAN_TOKEN), 404, "not_found")
    assert links(world) == []


def test_a_code_is_spent_by_one_tap(world):
    code = link_code(world)
    ok(tap(world, code, PAN_TOKEN), 201)
    error(tap(world, code, UID_TOKEN), 404, "not_found")
    error(tap(world, "ABCDE-FGHJK", UID_TOKEN), 404, "not_found")
    assert [x["token"] for x in links(world)] == [PAN_TOKEN]


def test_a_token_belongs_to_one_wallet_until_it_is_unlinked(world):
    first = ok(tap(world, link_code(world, "a"), PAN_TOKEN), 201)
    error(tap(world, link_code(world, "b"), PAN_TOKEN), 409, "conflict", "token_linked")
    assert links(world, "b") == []
    again = ok(tap(world, link_code(world, "a"), PAN_TOKEN), 201)  # the same wallet: the link it has
    assert again["id"] == first["id"] and len(links(world, "a")) == 1
    wallet_id, api = world.wallet("a")
    assert ok(api.client.delete(f"/v1/wallets/{wallet_id}/linked-cards/{first['id']}",
                                headers=api._headers("DELETE", "", b"", None)))["deleted"] is True
    moved = ok(tap(world, link_code(world, "b"), PAN_TOKEN), 201)
    assert moved["wallet_id"] == world.wallet("b")[0] and links(world, "a") == []


def test_only_tokens_are_linked_never_a_card_number(world, store):
    code = link_code(world)
    for bad in ("4242424242424242", "pan_" + "A" * 32, 42, None):
        error(tap(world, code, bad), 400, "invalid_request_error")
    ok(tap(world, code, PAN_TOKEN), 201)  # the refused attempts did not spend the code
    with store.read() as tx:
        assert "4242424242424242" not in json.dumps(tx.query("SELECT * FROM fare_card_links"))


def test_a_wallet_sees_and_unlinks_only_its_own_cards(world):
    link = ok(tap(world, link_code(world, "a"), PAN_TOKEN), 201)
    wallet_a, _ = world.wallet("a")
    _, b = world.wallet("b")
    error(b.get(f"/v1/wallets/{wallet_a}/linked-cards"), 404, "not_found")
    error(b.post(f"/v1/wallets/{wallet_a}/card-links"), 404, "not_found")
    r = b.client.delete(f"/v1/wallets/{wallet_a}/linked-cards/{link['id']}",
                        headers=b._headers("DELETE", "", b"", None))
    error(r, 404, "not_found")
    wallet_b, _ = world.wallet("b")
    r = b.client.delete(f"/v1/wallets/{wallet_b}/linked-cards/{link['id']}",
                        headers=b._headers("DELETE", "", b"", None))
    error(r, 404, "not_found")
    assert [x["id"] for x in links(world, "a")] == [link["id"]]
    assert [x["id"] for x in ok(world.operator.get(f"/v1/wallets/{wallet_a}/linked-cards"))["data"]] == [link["id"]]


def test_a_locked_wallet_gets_no_code(world):
    wallet_id, api = world.wallet("a")
    ok(world.operator.post(f"/v1/wallets/{wallet_id}/lock", {"reason": "lost phone"}))
    error(api.post(f"/v1/wallets/{wallet_id}/card-links"), 409, "conflict", "wallet_locked")


def test_taps_at_once_spend_a_code_once_and_link_a_token_to_one_wallet(app, world):
    def at_once(*attempts):
        """Each (code, token) tapped from its own thread and client, all released together."""
        barrier = threading.Barrier(len(attempts))
        answers = [None] * len(attempts)

        def send(n, code, token):
            _, terminal = world.terminal("x")
            mine = terminal.as_(terminal.auth)
            mine.client = app.test_client()
            barrier.wait()
            answers[n] = mine.post(f"/v1/card-links/{code}/tap", {"token": token})

        threads = [threading.Thread(target=send, args=(n, *a)) for n, a in enumerate(attempts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sorted(r.status_code for r in answers)

    for n in range(4):
        code = link_code(world)
        token = tokens.uid_token(KEY, bytes([4, n, 1, 2, 3, 4, 5]))
        assert at_once((code, token), (code, tokens.uid_token(KEY, bytes([4, n, 9, 9, 9, 9, 9])))) == [201, 404]
        assert at_once((link_code(world, "a"), token), (link_code(world, "b"), token)) == [201, 409]
    in_a, in_b = [[x["token"] for x in links(world, w)] for w in ("a", "b")]
    assert len(set(in_a)) == len(in_a) and len(set(in_b)) == len(in_b) and not set(in_a) & set(in_b)
    assert 4 <= len(in_a) + len(in_b) <= 8
