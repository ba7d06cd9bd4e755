"""`tapstack terminal ...` commands."""
import click

from terminal.doctor import command as doctor_command
from terminal.link import link_command
from terminal.commands import run_command, till_command, validator_command
from terminal.trace import trace_command


@click.group()
def cli():
    """The terminal program."""


cli.add_command(doctor_command, "doctor")
cli.add_command(link_command, "link")
cli.add_command(run_command, "run")  # deprecated: validator or till
cli.add_command(till_command, "till")
cli.add_command(trace_command, "trace")
cli.add_command(validator_command, "validator")
