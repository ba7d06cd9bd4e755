"""`tapstack gateway ...` commands."""
import click


@click.group()
def cli():
    """The gateway program."""
