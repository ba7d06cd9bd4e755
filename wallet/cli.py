"""`tapstack wallet ...` commands."""
import click

from wallet.testcards import new_purse_command, show_purse_command

from wallet.emulate import emulate_command
from wallet.app import COMMANDS as app_commands
from wallet.qr import render_command, scan_command


@click.group()
def cli():
    """The wallet program."""


cli.add_command(emulate_command)


cli.add_command(new_purse_command)
cli.add_command(show_purse_command)
cli.add_command(scan_command)
cli.add_command(render_command)
# The app's `scan` (decode, then pay; `--text` only decodes) replaces wallet.qr's decode-only one.
for command in app_commands:
    cli.add_command(command)
