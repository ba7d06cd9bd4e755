"""`tapstack gateway ...` commands."""
import click


@click.group()
def cli():
    """The gateway program."""


@cli.command("check")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="The gateway's data directory (default: $TAPSTACK_HOME/gateway).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object (for monitoring).")
def check(data_dir, as_json):
    """Prove the books balance and every balance matches its postings."""
    import dataclasses
    import json
    import sqlite3
    from pathlib import Path

    from gateway import ledger
    from gateway.config import Config, default_data_dir
    from gateway.store import SQLiteStore, StoreError

    db_path = Config(Path(data_dir) if data_dir else default_data_dir()).db_path
    if not db_path.is_file():
        raise click.ClickException(f"no gateway database at {db_path}")
    try:
        store = SQLiteStore(db_path, migrate=False)
        try:
            notes = store.migration_problems()
            if 1 not in {m["version"] for m in store.applied_migrations()}:
                raise click.ClickException(f"{db_path} has no ledger yet (migration 0001_ledger.sql is not applied)")
            with store.read() as tx:
                report = ledger.check(tx)
        finally:
            store.close()
    except (sqlite3.Error, StoreError) as e:
        raise click.ClickException(f"cannot read {db_path}: {e}")
    if as_json:
        click.echo(json.dumps({"database": str(db_path), **dataclasses.asdict(report), "warnings": notes}))
    else:
        for line in ledger.report_lines(report, str(db_path)):
            click.echo(line)
    for note in notes:
        click.echo(f"warning: {note}", err=True)
    if not report.ok:
        raise SystemExit(1)


ALLOW_PRIVATE_WEBHOOKS = click.option(
    "--allow-private-webhooks", is_flag=True,
    help="For development and tests only: webhook endpoints may be on loopback and private networks "
         "(refused otherwise, at registration and at delivery).")


@cli.command("serve")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="The gateway's data directory (default: $TAPSTACK_HOME/gateway).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="gunicorn worker processes.")
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Threads per worker (requests waiting on the database's group commit).")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@click.option("--deliver-webhooks/--no-deliver-webhooks", "deliver", default=True, show_default=True,
              help="Deliver webhooks from this node (one deliverer however many workers); "
                   "`deliver-webhooks` runs one apart.")
@ALLOW_PRIVATE_WEBHOOKS
def serve(data_dir, host, port, workers, threads, dev, deliver, allow_private_webhooks):
    """Serve the HTTP API (/v1) with gunicorn, and deliver its webhooks."""
    from gateway import app as gateway_app

    config = _gateway_config(data_dir, allow_private_webhooks=allow_private_webhooks)
    try:
        app = gateway_app.create_app(config)  # migrates once, before any worker starts
    except Exception as e:  # a broken migration, an unreadable database: one line, no traceback
        raise click.ClickException(f"cannot open the gateway in {config.data_dir}: {e}")
    if dev:
        if deliver:
            gateway_app.deliver_webhooks(app)
        app.run(host=host, port=port)
    else:
        gateway_app.serve(config, host=host, port=port, workers=workers, threads=threads, webhooks=deliver)


@cli.command("operator-key")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="The gateway's data directory (default: $TAPSTACK_HOME/gateway).")
def operator_key(data_dir):
    """Print the operator's API key (Authorization: Bearer op_...). Keep it secret."""
    from gateway.auth import operator_key as key_of

    config = _gateway_config(data_dir)
    try:
        click.echo(key_of(config))
    except (OSError, ValueError) as e:
        raise click.ClickException(f"cannot read the gateway's secrets in {config.data_dir}: {e}")


def _gateway_config(data_dir, **settings):
    from gateway.config import load

    try:
        return load(data_dir, **settings)
    except OSError as e:
        raise click.ClickException(f"cannot use {data_dir or 'the default data directory'}: {e.strerror or e}")


@cli.command("deliver-webhooks")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="The gateway's data directory (default: $TAPSTACK_HOME/gateway).")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--interval", type=click.FloatRange(0.05, 3600), default=1.0, show_default=True,
              help="Seconds to wait when nothing is due.")
@click.option("--timeout", type=click.FloatRange(0.1, 120), default=10.0, show_default=True,
              help="Seconds an endpoint has to answer.")
@click.option("--max-attempts", type=click.IntRange(1, 50), default=10, show_default=True)
@ALLOW_PRIVATE_WEBHOOKS
def deliver_webhooks(data_dir, once, interval, timeout, max_attempts, allow_private_webhooks):
    """POST due webhook events, signed, until stopped (Ctrl-C or SIGTERM); `serve` does this too."""
    from gateway import webhooks
    webhooks.deliver_from(data_dir, once=once, interval=interval, timeout=timeout,
                          max_attempts=max_attempts, echo=click.echo,
                          private_targets=allow_private_webhooks)


@cli.command("charge-trips")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="The gateway's data directory (default: $TAPSTACK_HOME/gateway).")
@click.option("--day", help="The operator's local day, YYYY-MM-DD (default: today, local).")
def charge_trips(data_dir, day):
    """Charge a day's token trips to the linked wallets (safe to repeat; late taps charge the difference)."""
    import sqlite3
    from datetime import datetime, timezone

    from gateway.errors import ApiError
    from gateway.services import fare_charges
    from gateway.store import SQLiteStore, StoreError

    config = _gateway_config(data_dir)
    now = datetime.now(timezone.utc)
    try:
        rules = fare_charges.read_rules(config.data_dir)
        store = SQLiteStore(config.db_path)
        try:
            with store.transaction() as tx:
                summary = fare_charges.run_day(tx, rules=rules, now=now, day=fare_charges.parse_day(day)
                                               if day else rules.local_day(now))
        finally:
            store.close()
    except fare_charges.NoFareRules as e:
        raise click.ClickException(str(e))
    except ApiError as e:
        raise click.ClickException(e.message)
    except (sqlite3.Error, StoreError) as e:
        raise click.ClickException(f"cannot use the gateway database in {config.data_dir}: {e}")
    click.echo(fare_charges.run_lines(summary))
