"""`tapstack terminal ...` commands."""
import click

from terminal.doctor import command as doctor_command
from terminal.link import link_command
from terminal.run import run_command
from terminal.trace import trace_command


@click.group()
def cli():
    """The terminal program."""


cli.add_command(doctor_command, "doctor")
cli.add_command(link_command, "link")
cli.add_command(run_command, "run")
cli.add_command(trace_command, "trace")
