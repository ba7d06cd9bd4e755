"""`tapstack test ...`: run scenario files over the emulated readers, without pytest.

Exit codes, for CI: 0 every scenario passed; 1 a scenario failed; 2 a file could not be
loaded, or the run cannot go as asked (a bad option, a transport that cannot start);
3 nothing to run (no scenario files, or none for the transports chosen).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from tapstack.testing.fields import Stage, StageError, parse_transports
from tapstack.testing.report import EXIT_NOTHING, EXIT_USAGE, exit_code, json_report, junit_xml

STYLES = {"ok": "green", "FAIL": "red", "ERROR": "red", "SKIP": "yellow"}


def use_color(choice: str, stream) -> bool:
    """--color always/never, or auto: a terminal and no NO_COLOR (https://no-color.org)."""
    if choice != "auto":
        return choice == "always"
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


@click.group("test")
def cli():
    """Emulated-reader tests: scenarios over mock, pcscd+vpcd and nfcpy udp readers."""


@cli.command("scenarios")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--transport", "-t", default="mock", show_default=True,
              help="mock, pcscd, nfcpy or all (comma-separated for several).")
@click.option("-v", "--verbose", is_flag=True, help="Show every step and its time.")
@click.option("--junitxml", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Also write a JUnit XML report to this file (for CI).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON report on stdout (the progress goes to stderr).")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Colour the results; auto: on a terminal, unless NO_COLOR is set.")
def scenarios_command(paths: tuple[Path, ...], transport: str, verbose: bool, junitxml: Path | None,
                      as_json: bool, color: str):
    """Run the scenario files in PATHS (files, or directories holding scenario_*.yaml / *.scenario.yaml).

    Exit status: 0 all passed, 1 a scenario failed, 2 a file with errors or a usage error,
    3 nothing to run.
    """
    from tapstack.testing.runner import run_scenario
    from tapstack.testing.scenario import find_scenarios, load_scenario
    from tapstack.testing.yamlfile import FileErrors, ScenarioError

    try:
        transports = parse_transports(transport)
    except ValueError as e:
        raise click.UsageError(f"--transport: {e}") from None
    out = sys.stderr if as_json else sys.stdout
    colored = use_color(color, out)

    def say(text: str = "", status: str | None = None) -> None:
        if status is not None:
            text = click.style(f"{status:<5}", fg=STYLES[status], bold=status != "ok") + " " + text
        click.echo(text, file=out, color=colored)

    started = time.perf_counter()
    files = [f for p in paths for f in find_scenarios(p)]
    loaded, file_errors = [], []
    for f in files:
        try:
            loaded.append(load_scenario(f))
        except FileErrors as e:
            file_errors += e.errors
        except ScenarioError as e:
            file_errors.append(e)
    for e in file_errors:
        say(str(ScenarioError(e.path, e.line, e.message)), "ERROR")
    planned = [(s, kind) for s in loaded for kind in transports if s.transports is None or kind in s.transports]
    results = []
    if not files:
        say(f"nothing to run: no scenario files (scenario_*.yaml, *.scenario.yaml) in "
            f"{', '.join(map(str, paths))}")
    elif not planned and loaded:
        say(f"nothing to run: the scenarios run over {', '.join(sorted({t for s in loaded for t in s.transports or ()}))}"
            f", not over {', '.join(transports)}")
    broken: dict[str, str] = {}  # transport -> why it cannot start
    with Stage(reuse=True) as stage:  # a desktop's own pcscd with vpcd readers will do
        if any(kind == "pcscd+vpcd" for _, kind in planned):
            try:
                stage.pcscd()
            except StageError as e:
                broken["pcscd+vpcd"] = str(e)
                say(f"pcscd+vpcd: {e}", "ERROR")
        for n, (scenario, kind) in enumerate(planned, 1):
            progress = f"{n:>{len(str(len(planned)))}} of {len(planned)}"
            if kind in broken:
                say(f"{progress}  {scenario.name} [{kind}]: not run, {kind} cannot start", "SKIP")
                continue
            result = run_scenario(scenario, kind, stage)
            results.append(result)
            if result.ok:
                say(f"{progress}  {scenario.name} [{kind}] {len(result.steps)} steps, {result.seconds:.2f} s", "ok")
            else:
                say(f"{progress}  {scenario.name} [{kind}]", "FAIL")
                say(result.report())
            if verbose:
                for s in result.steps:
                    mark = "ok " if s.ok else "FAIL"
                    say(f"        {mark} line {s.step.line:<4} {s.step.source}  ({s.seconds * 1000:.1f} ms)")
    seconds = time.perf_counter() - started
    passed = sum(1 for r in results if r.ok)
    summary = f"{passed} passed, {len(results) - passed} failed"
    if file_errors:
        summary += f", {len({e.path for e in file_errors})} file(s) with errors"
    if broken:
        summary += f", {sum(1 for _, k in planned if k in broken)} not run"
    say(f"{summary} in {seconds:.2f} s")
    if junitxml is not None:
        try:
            junitxml.write_text(junit_xml(results, file_errors, seconds), encoding="utf-8")
        except OSError as e:
            raise click.ClickException(f"cannot write {junitxml}: {e.strerror or e}") from None
    if as_json:
        click.echo(json.dumps(json_report(results, file_errors, seconds), indent=2))
    code = exit_code(results, file_errors)
    if broken:
        code = EXIT_USAGE
    elif not planned and not file_errors:
        code = EXIT_NOTHING
    raise SystemExit(code)
