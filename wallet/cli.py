"""`tapstack wallet ...` commands."""
import click

from wallet.testcards import new_purse_command, show_purse_command

from wallet.emulate import emulate_command


@click.group()
def cli():
    """The wallet program."""


cli.add_command(emulate_command)


cli.add_command(new_purse_command)
cli.add_command(show_purse_command)
