"""Shared fixtures. The reader fixtures come from tapstack's pytest plugin (tapstack.testing.plugin):
the real pcscd with vpcd readers, nfcpy udp ports, and one Field per transport:

    def test_something(field):          # or reader_and_card: the same fixture
        session = field.tap(card)        # present the card, wait for the reader to connect
        session.transmit(apdu)
        field.tear_after(1)              # the next command is processed, its answer lost
        field.remove()

pcscd is started once per session with its own config dir and free ports, and stopped by
pid. CI installs pcscd and vsmartcard-vpcd: these tests fail, never skip, without them.
`--tapstack-transport=mock` runs the reader tests over the mock reader only.
"""
from __future__ import annotations

import sys

import pytest

# Installed, the plugin loads through its pytest11 entry point (or -p): registering it a
# second time here would define its options twice.
pytest_plugins = ["tests.gateway.fixtures"]  # the gateway's fixtures, on both database backends
if "tapstack.testing.plugin" not in sys.modules:
    pytest_plugins.append("tapstack.testing.plugin")

from protocol.apdu import SW_OK, SW_WRONG_LENGTH, respond

ECHO_AID = bytes.fromhex("F0746170737461636B01")  # F0 (proprietary RID) "tapstack" 01


class EchoApplet:
    """A test applet. INS 01: answer Le bytes (0..255, Le 00 = 256, extended up to 65535) of a
    counting pattern; INS 02: echo the data; INS 03: answer 61 LL then the bytes on GET RESPONSE;
    INS 04: 6C LL unless Le is LL."""

    aid = ECHO_AID

    def __init__(self):
        self.selected = 0
        self._rest = b""

    def select(self, command):
        self.selected += 1
        return respond(SW_OK, b"\x6F\x00")

    def process(self, command):
        ins = command.ins
        if ins == 0x01:
            n = command.le or 0
            return respond(SW_OK, bytes(i & 0xFF for i in range(n)))
        if ins == 0x02:
            return respond(SW_OK, command.data)
        if ins == 0x03:
            self._rest = bytes(range(40)) * 10  # 400 bytes: 256 + 144
            return respond(0x6100)
        if ins == 0xC0:  # GET RESPONSE
            if not self._rest:
                return respond(0x6985)
            n = command.le or 256
            chunk, self._rest = self._rest[:n], self._rest[n:]
            return respond(0x6100 | min(len(self._rest), 256) & 0xFF if self._rest else SW_OK, chunk)
        if ins == 0x04:
            if command.le != 0x10:
                return respond(0x6C10)
            return respond(SW_OK, bytes(range(16)))
        return respond(SW_WRONG_LENGTH)

    def deselect(self):
        self._rest = b""


@pytest.fixture
def echo_card():
    from wallet.card import VirtualCard

    return VirtualCard(bytes.fromhex("04112233445566"), [EchoApplet()], name="echo")


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster of the session's own (tapstack.postgres.LocalPostgres): initdb and
    pg_ctl in a temporary directory, a unix socket and no TCP port, run as the postgres user
    when the tests run as root; stopped by pid at the end. fsync is off: these tests kill
    gateways, not machines (the benchmarks and docs/scale-out.md use durable settings)."""
    from tapstack.postgres import LocalPostgres
    cluster = LocalPostgres(settings={"fsync": "off", "full_page_writes": "off",
                                      "max_connections": "200"}).start()
    yield cluster
    cluster.cleanup()
