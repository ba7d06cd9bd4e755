"""`tapstack wallet ...` commands: the card side (emulate, new-purse, purse; relay is added by
tapstack/cli.py, which hands it the terminal's reader and trace), QR codes
(decode, render) and the app side (scan, pay-bill, paycode, ticket, topup, balance)."""
import click

from wallet.app import COMMANDS as app_commands
from wallet.emulate import emulate_command
from wallet.qr import decode_command, render_command
from wallet.testcards import new_purse_command, show_purse_command


@click.group()
def cli():
    """The wallet program."""


cli.add_command(emulate_command)
cli.add_command(new_purse_command)
cli.add_command(show_purse_command)
cli.add_command(decode_command)  # decode IMAGE: show what a code holds, pay nothing
cli.add_command(render_command)
for command in app_commands:  # scan IMAGE (show, confirm, pay), pay-bill, paycode, ticket, ...
    cli.add_command(command)
