"""`tapstack wallet ...` commands."""
import click


@click.group()
def cli():
    """The wallet program."""
