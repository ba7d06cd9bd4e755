"""tapstack's pytest plugin: virtual readers on every transport, cards, a gateway, YAML scenarios.

Fixtures:
    field / reader_and_card   a Field (tapstack.testing.fields), one test per transport chosen
    pcscd_vpcd                the real pcscd with two vpcd reader slots (session-wide, stopped by pid)
    nfc_udp_port              a free UDP port for nfcpy's udp driver
    tapstack_transport        the transport name alone, one test per transport chosen
    tapstack_stage            the Stage that opens fields and owns pcscd
    tapstack_cards            a CardKit: purse(), emv(), uid(), scripted(), replay(), context()
    tapstack_gateway          opt-in: `tapstack gateway serve` in a subprocess (url, operator_key)

Choosing transports: `--tapstack-transport=mock,pcscd,nfcpy` (default all) for the run,
`@pytest.mark.tapstack_transports("mock")` for one test or module. Files named
scenario_*.yaml or *.scenario.yaml are collected as scenarios, one test per transport.
pcscd tests fail, never skip, when pcscd or vsmartcard-vpcd is missing.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tapstack.testing.fields import TRANSPORTS, Stage, StageError, parse_transports

STAGE = pytest.StashKey[Stage]()
SELECTED = pytest.StashKey[list]()
BAD_MARKERS = pytest.StashKey[list]()
MARKS = {"pcscd+vpcd": "pcscd", "nfcpy-udp": "nfcpy_udp"}


def pytest_addoption(parser):
    group = parser.getgroup("tapstack", "tapstack emulated readers")
    group.addoption("--tapstack-transport", default="all", metavar="NAMES",
                    help="transports to run reader tests and scenarios over: mock, pcscd, nfcpy or all "
                         "(comma-separated; default all)")


def pytest_configure(config):
    config.addinivalue_line("markers", "pcscd: needs the real pcscd with the vsmartcard-vpcd driver")
    config.addinivalue_line("markers", "nfcpy_udp: needs nfcpy's udp driver on loopback")
    config.addinivalue_line("markers", "tapstack_transports(*names): run this test over these transports only")
    config.stash[BAD_MARKERS] = []
    try:
        config.stash[SELECTED] = parse_transports(config.getoption("--tapstack-transport"))
    except ValueError as e:
        raise pytest.UsageError(f"--tapstack-transport: {e}") from None
    # Another test run's pcscd (a shared machine) gets two minutes to end before pcscd tests
    # fail; anything else in the way fails them at once, saying whose pcscd it is.
    config.stash[STAGE] = Stage(wait=120.0, say=lambda line: _say(config, line))


def _say(config, line: str) -> None:
    """A line on the terminal now, even while pytest captures the test's output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line(f"tapstack: {line}", yellow=True)


def pytest_unconfigure(config):
    stage = config.stash.get(STAGE, None)
    if stage is not None:
        stage.close()  # stops the pcscd it started, by pid


def _transports_for(config, node_or_marker_source) -> list[str]:
    selected = config.stash[SELECTED]
    marker = node_or_marker_source.get_closest_marker("tapstack_transports")
    if marker is not None:
        try:
            limited = parse_transports(list(marker.args))
        except ValueError as e:
            where = getattr(node_or_marker_source, "nodeid", "") or str(getattr(node_or_marker_source, "path", ""))
            args = ", ".join(repr(a) for a in marker.args)
            config.stash[BAD_MARKERS].append(f"{where}: @pytest.mark.tapstack_transports({args}): {e}")
            return []
        selected = [t for t in selected if t in limited]
    return selected


def pytest_collection_modifyitems(config, items):
    bad = config.stash.get(BAD_MARKERS, [])
    if bad:  # said once, as pytest says a bad option: no traceback
        raise pytest.UsageError("\n".join(dict.fromkeys(bad)))


def _param(kind: str):
    marks = [getattr(pytest.mark, MARKS[kind])] if kind in MARKS else []
    return pytest.param(kind, marks=marks, id=kind)


def pytest_generate_tests(metafunc):
    names = [n for n in ("reader_and_card", "tapstack_transport") if n in metafunc.fixturenames]
    if not names:
        return
    name = names[0]  # a test with a field gets its transport from the field
    if any(name in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")):
        return  # the test chose its transports itself
    kinds = _transports_for(metafunc.config, metafunc.definition)
    metafunc.parametrize(name, [_param(k) for k in kinds], indirect=True)


# --- fixtures --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tapstack_stage(pytestconfig) -> Stage:
    """The Stage that opens Fields on any transport (`stage.open("nfcpy-udp")`) and owns the
    session's one pcscd, stopped by pid when the session ends."""
    return pytestconfig.stash[STAGE]


@pytest.fixture(scope="session")
def pcscd_vpcd(tapstack_stage):
    """The real pcscd with two vpcd readers on free ports (wallet.pcscd.Pcscd)."""
    try:
        return tapstack_stage.pcscd()
    except StageError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def nfc_udp_port():
    """A UDP port free now on loopback, for nfcpy's udp driver (reader udp:127.0.0.1:PORT)."""
    from wallet.pcscd import free_ports

    return free_ports(1)[0]


@pytest.fixture
def reader_and_card(request, tapstack_stage):
    """A Field for each chosen transport: mock, pcscd+vpcd, nfcpy-udp (the reader is field.reader).

    `field.tap(card)` presents the card and returns the reader's session (`transmit(apdu)`);
    `present`, `remove`, `take_away`, `tear_after(n)`, `slow(seconds)` script the field. When
    the test fails, its report shows every APDU the card answered in this field."""
    kind = getattr(request, "param", "mock")
    try:
        f = tapstack_stage.open(kind)
    except StageError as error:
        pytest.fail(str(error), pytrace=False)
    yield f
    f.close()


@pytest.fixture
def tapstack_transport(request) -> str:
    """The transport name of this test: "mock", "pcscd+vpcd" or "nfcpy-udp" (one test per chosen transport)."""
    if "reader_and_card" in request.fixturenames:
        return request.getfixturevalue("reader_and_card").kind
    return getattr(request, "param", "mock")


@pytest.fixture
def field(reader_and_card):
    """The reader_and_card Field under a shorter name: one test per chosen transport."""
    return reader_and_card


@pytest.fixture
def tapstack_cards():
    """A CardKit: purse(), emv(), uid(), scripted(answers), python(card), load(card file),
    replay(trace), context(fare=...), pan_token(), uid_token(); cards signed by the demo issuer."""
    from tapstack.testing.kit import CardKit

    return CardKit()


@dataclass
class Gateway:
    url: str
    operator_key: str
    data_dir: Path
    process: subprocess.Popen

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.operator_key}"}


def _tapstack(*args) -> list[str]:
    return [sys.executable, "-m", "tapstack", *args]


@pytest.fixture(scope="session")
def tapstack_gateway(tmp_path_factory):
    """`tapstack gateway serve` on a free port with its own data dir, for the whole session."""
    data = tmp_path_factory.mktemp("gateway")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))}
    log = open(data / "serve.log", "wb")
    proc = subprocess.Popen(_tapstack("gateway", "serve", "--data", str(data), "--port", str(port), "--workers", "1"),
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (data / "serve.log").read_text(errors="replace")[-1500:]
                    pytest.fail(f"tapstack gateway serve did not start: {tail}", pytrace=False)
                time.sleep(0.05)
        key = subprocess.run(_tapstack("gateway", "operator-key", "--data", str(data)), capture_output=True,
                             text=True, env=env, check=True).stdout.strip()
        yield Gateway(f"http://127.0.0.1:{port}", key, data, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used a Field gets the APDUs the card answered in its report."""
    report = yield
    field = getattr(item, "funcargs", {}).get("reader_and_card")
    if report.failed and field is not None and hasattr(field, "exchanges"):
        from tapstack.testing.runner import exchange_lines
        from terminal.trace import Exchange

        exchanges = [Exchange(command, response) for command, response in field.exchanges]
        text = "\n".join(line for x in exchanges for line in exchange_lines(x)) or "(no APDU was exchanged)"
        report.sections.append((f"APDUs over {field.kind} (card numbers masked)", text))
    return report


# --- scenario files --------------------------------------------------------------------

class ScenarioFailed(Exception):
    def __init__(self, report: str):
        super().__init__(report)
        self.report = report


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario, transport, **kwargs):
        super().__init__(**kwargs)
        self.scenario = scenario
        self.transport = transport
        if transport in MARKS:
            self.add_marker(MARKS[transport])

    def runtest(self):
        from tapstack.testing.runner import run_scenario

        result = run_scenario(self.scenario, self.transport, self.config.stash[STAGE])
        if not result.ok:
            raise ScenarioFailed(result.report())

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ScenarioFailed):
            return excinfo.value.report
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, 0, f"scenario {self.scenario.name} [{self.transport}]"


class ScenarioFile(pytest.File):
    def collect(self):
        from tapstack.testing.scenario import ScenarioError, load_scenario

        try:
            scenario = load_scenario(self.path)
        except ScenarioError as e:
            raise self.CollectError(str(e)) from None
        for transport in _transports_for(self.config, self):
            if scenario.transports is None or transport in scenario.transports:
                yield ScenarioItem.from_parent(self, name=transport, scenario=scenario, transport=transport)


def pytest_collect_file(file_path: Path, parent):
    from tapstack.testing.scenario import is_scenario_file

    if is_scenario_file(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


__all__ = ["TRANSPORTS", "Gateway", "ScenarioFile", "ScenarioItem"]
