"""The pytest plugin as a user meets it: scenario files collected per transport, fixtures, options."""
from __future__ import annotations

import textwrap
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

SCENARIO = """\
cards:
  alice: {type: purse, balance: 500}
steps:
  - present: alice
  - expect: {outcome: accept, balance: 300}
"""


# Installed with its pytest11 entry point the plugin loads by itself; naming it with -p as
# well would register it twice.
AUTOLOADED = any(ep.value == "tapstack.testing.plugin" for ep in entry_points(group="pytest11"))
PLUGIN = () if AUTOLOADED else ("-p", "tapstack.testing.plugin")


@pytest.fixture
def run(pytester):
    def run(*args):
        return pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", *args)
    return run


def test_scenario_files_are_collected_once_per_transport(pytester, run):
    pytester.makefile(".yaml", scenario_fare=SCENARIO)
    pytester.makefile(".scenario.yaml", night=SCENARIO)
    pytester.makefile(".yaml", other="steps: not scenario\n")  # not a scenario name: ignored
    result = run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["night.scenario.yaml::mock", "night.scenario.yaml::pcscd+vpcd",
                                 "night.scenario.yaml::nfcpy-udp", "scenario_fare.yaml::mock",
                                 "scenario_fare.yaml::pcscd+vpcd", "scenario_fare.yaml::nfcpy-udp", "*6 tests collected*"])
    result = run("--collect-only", "-q", "--tapstack-transport=mock,nfcpy")
    result.stdout.fnmatch_lines(["*4 tests collected*"])
    result = run("--collect-only", "-q", "-m", "not pcscd")
    result.stdout.fnmatch_lines(["*4/6 tests collected*"])


def test_a_passing_and_a_failing_scenario(pytester, run):
    pytester.makefile(".yaml", scenario_ok=SCENARIO)
    pytester.makefile(".yaml", scenario_bad=SCENARIO.replace("balance: 300", "balance: 250"))
    result = run("--tapstack-transport=mock")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*scenario_bad.yaml:5: step 'expect' failed*",
                                 "*balance: expected 250, seen 300*", "*>> 00A404000AF0746170737461636B0100*"])
    assert "Traceback" not in result.stdout.str()


def test_a_broken_scenario_file_is_a_one_line_collection_error(pytester, run):
    pytester.makefile(".yaml", scenario_typo=SCENARIO.replace("expect", "expekt"))
    result = run("--tapstack-transport=mock")
    result.stdout.fnmatch_lines(["*scenario_typo.yaml:5: unknown key 'expekt' in a step: did you mean 'expect'?*"])
    assert result.ret != 0


def test_fields_cards_and_the_transport_marker(pytester, run):
    pytester.makepyfile(test_user=textwrap.dedent("""
        import pytest
        from terminal.tap import tap

        def test_purse(field, tapstack_cards):
            demo = tapstack_cards.purse(balance=500)
            outcome, _ = tap(field.tap(demo.card), tapstack_cards.context(fare=200))
            assert outcome.reason == "paid" and demo.balance == 300

        @pytest.mark.tapstack_transports("mock")
        def test_only_mock(field, tapstack_transport):
            assert field.kind == tapstack_transport == "mock"
    """))
    result = run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_purse?mock?", "*test_purse?pcscd+vpcd?", "*test_purse?nfcpy-udp?",
                                 "*test_only_mock?mock?", "*4 tests collected*"])
    result = run("--tapstack-transport=mock")
    result.assert_outcomes(passed=2)


def test_an_unknown_transport_is_a_usage_error(pytester, run):
    result = run("--tapstack-transport=usb")
    result.stderr.fnmatch_lines(["*--tapstack-transport: unknown transport 'usb'*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_an_unknown_transport_in_a_marker_is_a_usage_error_in_one_line(pytester, run):
    pytester.makepyfile(test_marked=textwrap.dedent("""
        import pytest

        @pytest.mark.tapstack_transports("mock", "usb")
        def test_one(field):
            pass
    """))
    result = run("--tapstack-transport=mock")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: test_marked.py::test_one: @pytest.mark.tapstack_transports('mock', 'usb'): "
                                 "unknown transport 'usb': use mock, pcscd, nfcpy or all"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_failing_test_shows_the_apdus_its_card_answered(pytester, run):
    pytester.makepyfile(test_fails=textwrap.dedent("""
        from terminal.tap import tap

        def test_emv(field, tapstack_cards):
            outcome, _ = tap(field.tap(tapstack_cards.emv(pan="5555555555554444")), tapstack_cards.context())
            assert outcome.reason == "paid"

        def test_passes(field):
            pass
    """))
    result = run("--tapstack-transport=mock")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "APDUs over mock (card numbers masked)" in out and out.count("APDUs over mock") == 1
    result.stdout.fnmatch_lines([">> 00A404000AF0746170737461636B0100", "<< 6A82",
                                 ">> 00A404000E325041592E5359532E444446303100"])
    section = out.split("APDUs over mock (card numbers masked)")[1]
    assert "5555555555554444" not in section and "555555******4444" in section


def test_every_fixture_says_what_it_is(pytester, run):
    import tapstack.testing.plugin as plugin

    fixtures = [name for name, value in vars(plugin).items() if hasattr(value, "_fixture_function_marker")
                or type(value).__name__ == "FixtureFunctionDefinition"]
    assert len(fixtures) >= 8
    result = run("--fixtures", "-v")
    out = result.stdout.str()
    for name in fixtures:
        assert f"{name} " in out or f"{name} [session scope]" in out
    for line in out.split("tapstack/testing/plugin.py")[1:]:
        assert "no docstring available" not in line.split("\n\n")[0]


def test_p_no_with_the_entry_point_name_disables_the_plugin(pytester):
    if not AUTOLOADED:
        pytest.skip("tapstack is not installed with its pytest11 entry point here")
    (name,) = [ep.name for ep in entry_points(group="pytest11") if ep.value == "tapstack.testing.plugin"]
    assert name == "tapstack.testing.plugin"  # what docs/testing.md tells users to write
    pytester.makefile(".yaml", scenario_fare=SCENARIO)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", f"no:{name}", "--collect-only", "-q")
    assert "scenario_fare.yaml" not in result.stdout.str()
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", f"no:{name}", "--tapstack-transport=mock")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # the plugin's option is gone with it


def test_the_gateway_fixture_serves_with_an_operator_key(tapstack_gateway):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{tapstack_gateway.url}/v1/payments", headers=tapstack_gateway.headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{tapstack_gateway.url}/v1/payments", timeout=10)
    assert refused.value.code == 401
