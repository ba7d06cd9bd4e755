"""`tapstack terminal ...` commands."""
import click


@click.group()
def cli():
    """The terminal program."""
