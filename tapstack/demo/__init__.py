"""`tapstack demo`: a day of the pilot in a small city, end to end through the real stacks.

city.py plans the day from a seed (pure); stack.py starts and stops the processes and
runs the preflight checks; buses.py drives `tapstack terminal validator` processes on the
day's simulated clock, on the real reader paths; shop.py operates `tapstack terminal till` as a process; world.py is the city's people and
businesses acting through the gateway's API; receiver.py is the merchants' webhook
endpoint; run.py orchestrates; summary.py reports.
docs/demo.md describes what it does and prints.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("demo")
@click.option("--seed", type=int, default=1, show_default=True, help="The city's seed: the same seed, the same day.")
@click.option("--riders", type=click.IntRange(1, 400), default=60, show_default=True,
              help="Riders in the city (about 2.5 taps each; a PC/SC tap costs ~0.8 s of card arrival and removal).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".tapstack/demo"),
              show_default=True, help="The demo's data directory, emptied at the start of each run.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="The gateway's port on 127.0.0.1.")
@click.option("--serve", is_flag=True, help="Keep the gateway up after the day, until Ctrl-C, to explore it.")
@click.option("--database", metavar="URL", default=None,
              help="Run the gateway on this empty PostgreSQL database (postgresql://...) instead of SQLite.")
@click.option("--gateway", "gateway_url", metavar="URL", default=None,
              help="Use the running gateway at URL (nodes behind a load balancer) on --database,"
                   " instead of starting one.")
def demo_command(seed, riders, data_dir, port, serve, database, gateway_url):
    """Run the whole pilot in one command: gateway, buses, wallets, bills and a shop, for one simulated day."""
    import os

    from gateway.store import StoreError
    from gateway.store.url import ENVIRONMENT, backend
    from tapstack.demo.run import Options, run
    from tapstack.demo.stack import DemoError

    os.environ.pop(ENVIRONMENT, None)  # the demo's gateway runs on the database it is given, or SQLite
    try:
        if backend(database) != ("postgresql" if database else "sqlite"):
            raise click.BadParameter("the demo runs on SQLite (no --database) or a postgresql:// database",
                                     param_hint="--database")
    except StoreError as e:
        raise click.BadParameter(str(e), param_hint="--database") from None
    if gateway_url and not database:
        raise click.BadParameter("a running gateway is used with the database it runs on: give --database too",
                                 param_hint="--gateway")

    try:
        summary = run(Options(seed, riders, data_dir, port, serve, database, gateway_url), echo=click.echo,
                      tty=sys.stdout.isatty())
    except DemoError as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        click.echo("\ndemo stopped; everything it started has been stopped", err=True)
        raise SystemExit(130) from None
    if not summary.ledger_ok:
        raise SystemExit(1)
