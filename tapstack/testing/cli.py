"""`tapstack test ...`: run tap scenario files over the emulated readers, without pytest."""
from __future__ import annotations

import time
from pathlib import Path

import click

from tapstack.testing.fields import Stage, parse_transports


@click.group("test")
def cli():
    """Emulated-reader tests: tap scenarios over mock, pcscd+vpcd and nfcpy udp readers."""


@cli.command("scenarios")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--transport", "-t", default="mock", show_default=True,
              help="mock, pcscd, nfcpy or all (comma-separated for several).")
@click.option("-v", "--verbose", is_flag=True, help="Show every step and its time.")
def scenarios_command(paths: tuple[Path, ...], transport: str, verbose: bool):
    """Run the scenario files in PATHS (files, or directories holding scenario_*.yaml / *.scenario.yaml)."""
    from tapstack.testing.runner import run_scenario
    from tapstack.testing.scenario import ScenarioError, find_scenarios, load_scenario

    try:
        transports = parse_transports(transport)
    except ValueError as e:
        raise click.UsageError(f"--transport: {e}") from None
    files = [f for p in paths for f in find_scenarios(p)]
    if not files:
        raise click.ClickException(f"no scenario files (scenario_*.yaml, *.scenario.yaml) in {', '.join(map(str, paths))}")
    loaded, broken = [], 0
    for f in files:
        try:
            loaded.append(load_scenario(f))
        except ScenarioError as e:
            click.echo(f"ERROR {e}", err=True)
            broken += 1
    passed = failed = 0
    with Stage(reuse=True) as stage:  # a desktop's own pcscd with vpcd readers will do
        for scenario in loaded:
            for kind in transports:
                if scenario.transports is not None and kind not in scenario.transports:
                    continue
                start = time.perf_counter()
                result = run_scenario(scenario, kind, stage)
                took = time.perf_counter() - start
                if result.ok:
                    passed += 1
                    click.echo(f"ok    {scenario.name} [{kind}] {len(result.steps)} steps, {took:.2f} s")
                else:
                    failed += 1
                    click.echo(f"FAIL  {scenario.name} [{kind}]")
                    click.echo(result.report())
                if verbose:
                    for s in result.steps:
                        mark = "ok " if s.ok else "FAIL"
                        click.echo(f"        {mark} line {s.step.line:<4} {s.step.source}  ({s.seconds * 1000:.1f} ms)")
    summary = f"{passed} passed, {failed} failed" + (f", {broken} file(s) with errors" if broken else "")
    click.echo(summary)
    if failed or broken:
        raise SystemExit(1)
