"""Link mode against a real gateway over HTTP (werkzeug on loopback) with the mock reader:
an EMV card and a UID card linked by one tap each; a purse card refused without a debit;
a spent code and a card linked elsewhere refused in one line."""
from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from protocol import tokens
from protocol.purse import INS_DEBIT
from terminal import link
from terminal.cli import cli as terminal_cli
from protocol.uplink import Client
from terminal.readers.mock import MockReader
from tests.gateway.fixtures import ok
from tests.gateway.test_card_links import link_code
from wallet.card import plain_uid_card
from wallet.emv_card import TEST_PAN, emv_card
from wallet.testcards import demo_purse_card

KEY = bytes(range(32))
UID = bytes.fromhex("04a1b2c3d4e5f6")


@pytest.fixture
def gateway_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def terminal_client(world, gateway_url, clock):
    _, api = world.terminal("x")
    key_id, secret = api.auth
    return Client(gateway_url, key_id, secret, clock=clock)


def linked_tokens(world, wallet="a"):
    wallet_id, api = world.wallet(wallet)
    return [(x["token"], x["assurance"]) for x in ok(api.get(f"/v1/wallets/{wallet_id}/linked-cards"))["data"]]


def test_an_emv_card_is_linked_by_its_pan_token(world, terminal_client, clock):
    reader = MockReader(emv_card(UID))
    linked = link.link_card(reader, terminal_client, link_code(world), KEY, wait=1, clock=clock)
    token = tokens.pan_token(KEY, TEST_PAN)
    assert (linked.kind, linked.token, linked.assurance, linked.wallet_id) == ("emv", token, "high",
                                                                               world.wallet("a")[0])
    assert linked_tokens(world) == [(token, "high")] and reader.signals == ["accept"]
    assert TEST_PAN not in link.describe(linked)


def test_any_other_card_is_linked_by_its_uid_with_low_assurance(world, terminal_client, clock):
    reader = MockReader(plain_uid_card(UID))
    linked = link.link_card(reader, terminal_client, link_code(world, "b"), KEY, wait=1, clock=clock)
    assert linked_tokens(world, "b") == [(tokens.uid_token(KEY, UID), "low")]
    assert "low assurance" in link.describe(linked)


def test_a_purse_card_is_refused_and_never_debited(world, terminal_client, clock):
    demo = demo_purse_card(balance=1000)
    reader = MockReader(demo.card)
    with pytest.raises(link.LinkRefused, match="purse cards pay by themselves"):
        link.link_card(reader, terminal_client, link_code(world), KEY, wait=1, clock=clock)
    sent = [exchange.command[1] for exchange in reader.transcript]
    assert sent and INS_DEBIT not in sent
    assert reader.signals == ["deny"] and linked_tokens(world) == []


def test_a_spent_code_and_a_card_linked_elsewhere_are_refused_in_one_line(world, terminal_client, clock):
    code = link_code(world)
    link.link_card(MockReader(emv_card(UID)), terminal_client, code, KEY, wait=1, clock=clock)
    with pytest.raises(link.LinkRefused, match="unknown, expired or already used"):
        link.link_card(MockReader(plain_uid_card(UID)), terminal_client, code, KEY, wait=1, clock=clock)
    with pytest.raises(link.LinkRefused, match="linked to another wallet"):
        link.link_card(MockReader(emv_card(UID)), terminal_client, link_code(world, "b"), KEY, wait=1, clock=clock)
    with pytest.raises(link.LinkRefused, match="no card was presented"):
        link.link_card(MockReader(), terminal_client, link_code(world, "b"), KEY, wait=0.05, clock=clock)


def test_the_link_command_says_what_is_wrong_in_one_line(monkeypatch):
    runner = CliRunner()
    base = ["link", "--code", "ABCDE-FGHJK", "--gateway", "http://127.0.0.1:9", "--token-key", KEY.hex()]
    bad_key = runner.invoke(terminal_cli, [*base, "--terminal-key", "nonsense", "--reader", "mock"])
    assert bad_key.exit_code == 1 and "a terminal key is KEY_ID:SECRET_HEX" in bad_key.output
    good_key = ["--terminal-key", "tk_test:" + "00" * 32]
    no_card = runner.invoke(terminal_cli, [*base, *good_key, "--reader", "mock", "--wait", "0.1"])
    assert no_card.exit_code == 1 and "no card was presented within 0.1 s" in no_card.output
    import terminal.readers
    monkeypatch.setattr(terminal.readers, "open_reader", lambda spec: MockReader(demo_purse_card().card))
    purse = runner.invoke(terminal_cli, [*base, *good_key, "--reader", "mock"])
    assert purse.exit_code == 1 and "purse cards pay by themselves" in purse.output
    monkeypatch.setattr(terminal.readers, "open_reader", lambda spec: MockReader(emv_card(UID)))
    down = runner.invoke(terminal_cli, [*base, *good_key, "--reader", "mock"])
    assert down.exit_code == 1 and "cannot be reached" in down.output
    assert "Traceback" not in "".join(r.output for r in (bad_key, no_card, purse, down))
