"""The tear matrix (tapstack.testing.tears) over every transport chosen: each card kind torn at
each exchange of its tap, then presented again, through the bus validator. One field per
transport serves all its cases."""
from __future__ import annotations

import pytest

from tapstack.testing.fields import StageError, parse_transports
from tapstack.testing.tears import EXCHANGES, KINDS, run_tear, tear_matrix, exchanges_of

MARKS = {"pcscd+vpcd": pytest.mark.pcscd, "nfcpy-udp": pytest.mark.nfcpy_udp}


def pytest_generate_tests(metafunc):
    transports = parse_transports(metafunc.config.getoption("--tapstack-transport"))
    if "case" in metafunc.fixturenames:
        metafunc.parametrize("case", [pytest.param(c, id=c.id, marks=[MARKS[c.transport]] if c.transport in MARKS
                                                   else []) for c in tear_matrix(transports)])
    if "kind_on" in metafunc.fixturenames:
        metafunc.parametrize("kind_on", [pytest.param((k, t), id=f"{k}-{t}", marks=[MARKS[t]] if t in MARKS else [])
                                         for t in transports for k in KINDS])


@pytest.fixture(scope="module")
def field_for(tapstack_stage):
    """field_for(transport): one Field per transport for the whole module, opened when first asked."""
    opened = {}

    def field(transport):
        if transport not in opened:
            try:
                opened[transport] = tapstack_stage.open(transport)
            except StageError as error:
                pytest.fail(str(error), pytrace=False)
        return opened[transport]

    yield field
    for f in opened.values():
        f.close()


def test_the_exchanges_of_a_tap_are_the_matrix_s(kind_on, field_for):
    kind, transport = kind_on
    exchanges, decision = exchanges_of(kind, field_for(transport))
    assert exchanges == EXCHANGES[kind][transport], decision
    assert decision.reason == {"purse": "paid", "unknown": "random_uid"}.get(kind, "token")


def test_a_tear_anywhere_leaves_card_and_journal_consistent(case, field_for):
    result = run_tear(case, field_for(case.transport))
    assert result.problems == [], result.report()


def test_the_matrix_has_every_exchange_of_every_kind_on_every_transport():
    cases = tear_matrix()
    assert len(cases) == sum(n for by_transport in EXCHANGES.values() for n in by_transport.values())
    assert {(c.kind, c.transport) for c in cases} == {(k, t) for k in KINDS for t in EXCHANGES[k]}
    assert {c.index for c in cases if c.kind == "purse"} == {1, 2}
