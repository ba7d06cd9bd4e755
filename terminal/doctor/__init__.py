"""`tapstack terminal doctor`: which readers this machine has, and why one is not usable.

terminal.doctor.probes collects the facts (each probe with its own timeout);
terminal.doctor.core turns them into findings, each ok, warn or fail with the command
that fixes it. This module is the command: one line per finding (or --json), exit
status 0 when a reader is usable and 1 when none is.
"""
from __future__ import annotations

import json

import click

from terminal.doctor import probes
from terminal.doctor.core import (
    SUPPORTED, Diagnosis, Facts, Finding, ReaderModel, UsableReader, diagnose, report_as_json,
)

__all__ = ["command", "diagnose", "Diagnosis", "Facts", "Finding", "ReaderModel", "SUPPORTED", "UsableReader"]


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the findings and facts as JSON.")
@click.option("--timeout", default=3.0, show_default=True, type=click.FloatRange(0.1, 60),
              help="Seconds each probe may take.")
@click.option("--tty", "ttys", multiple=True, metavar="PATH",
              help="Also probe a PN532 on this serial port (e.g. /dev/ttyAMA0); repeatable.")
@click.option("--hardware-only", is_flag=True,
              help="Do not count virtual (vpcd) readers as usable: for a validator box.")
def command(as_json: bool, timeout: float, ttys: tuple[str, ...], hardware_only: bool) -> None:
    """Say which NFC readers this machine has, and why one is not usable.

    Exits 0 when at least one reader is usable, 1 when none is.
    """
    facts = probes.collect(timeout=timeout, ttys=ttys)
    diagnosis = diagnose(facts)
    if as_json:
        report = report_as_json(facts, diagnosis)
        report["exit_code"] = diagnosis.exit_code(hardware_only)
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        for finding in diagnosis.findings:
            click.echo(finding.line())
        if hardware_only and diagnosis.usable and diagnosis.exit_code(True):
            click.echo("fail  only virtual readers are usable and --hardware-only was given")
    raise SystemExit(diagnosis.exit_code(hardware_only))
