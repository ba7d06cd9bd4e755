"""`tapstack gateway ...` commands.

Every command takes `--data DIR` (the data directory: the SQLite database, or the
master key of a node on PostgreSQL) and `--database URL` (default
$TAPSTACK_DATABASE_URL, else SQLite in the data directory). A database that cannot
be used (unreachable, a wrong password, not migrated, migrated by a newer
tapstack, an unknown URL scheme) ends the command with one line and exit status 2.
"""
from __future__ import annotations

import contextlib
import functools

import click

from gateway.config import Config

DATA_HELP = "The gateway's data directory (default: $TAPSTACK_HOME/gateway)."
DATABASE_HELP = ("The database: sqlite:///PATH or postgresql://USER@HOST/DBNAME"
                 " (default: $TAPSTACK_DATABASE_URL, else gateway.db in the data directory).")


class DatabaseRefused(click.ClickException):
    """The database cannot be used: one line, exit status 2."""

    exit_code = 2


def with_database(command):
    """Add --data and --database, and hand the command a loaded Config as `config`."""
    @click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None, help=DATA_HELP)
    @click.option("--database", "database_url", metavar="URL", default=None, help=DATABASE_HELP)
    @functools.wraps(command)
    def wrapper(data_dir, database_url, **kwargs):
        import logging

        from gateway.config import load

        # the pool's own retries would print a warning each; the command says it once
        logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
        from gateway.store import StoreError
        try:
            config = load(data_dir, database_url)
        except StoreError as e:
            raise DatabaseRefused(str(e))
        except OSError as e:
            raise click.ClickException(f"cannot use {data_dir or 'the default data directory'}: {e.strerror or e}")
        try:
            return command(config=config, **kwargs)
        finally:
            config.close()
    return wrapper


def opened(config, *, checked: bool = True, **options):
    """The configured store; with `checked`, refused unless its schema is this code's."""
    from gateway.config import SecretsError
    from gateway.http.app import open_checked_store
    from gateway.store import StoreBusy, StoreError
    try:
        return open_checked_store(config) if checked else config.open_store(**options)
    except (StoreError, StoreBusy, SecretsError) as e:
        raise DatabaseRefused(_one_line(e, config))


@contextlib.contextmanager
def working_on(config):
    """The checked store for a command's work; a refusal of the work or of the database is one line."""
    from gateway.core.errors import DomainError
    from gateway.store import StoreBusy, StoreError
    store = opened(config)
    try:
        yield store
    except DomainError as e:
        raise click.ClickException(e.message)
    except (StoreError, StoreBusy) as e:
        raise DatabaseRefused(f"cannot use the gateway database {config.database}: {e}")
    finally:
        store.close()


def _one_line(error: Exception, config) -> str:
    text = " ".join(str(error).split())
    return text if config.database in text else f"{config.database}: {text}"


@click.group()
def cli():
    """The gateway program."""


@cli.command("migrate")
@with_database
def migrate(config):
    """Apply the database migrations this tapstack has and the database lacks, and report."""
    from gateway.store import StoreBusy, StoreError
    store = opened(config, checked=False, migrate=False)
    try:
        before = {m["version"] for m in store.applied_migrations()}
        applied = store.migrate()
        problems = store.migration_problems()
    except (StoreError, StoreBusy) as e:
        raise DatabaseRefused(_one_line(e, config))
    finally:
        store.close()
    for migration in applied:
        click.echo(f"applied {migration.path.name}")
    click.echo(f"{config.database}: {len(before) + len(applied)} migrations applied"
               f" ({len(applied)} now, {len(before)} before)")
    if problems:
        raise DatabaseRefused(problems[0])


@cli.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object (for monitoring).")
@with_database
def check(config, as_json):
    """Prove the books balance and every balance matches its postings."""
    import dataclasses
    import json

    from gateway.core import ledger
    from gateway.store import StoreBusy, StoreError

    if config.backend == "sqlite" and not config.db_path.is_file():
        raise DatabaseRefused(f"no gateway database at {config.db_path}")
    store = opened(config, checked=False, migrate=False)
    try:
        notes = store.migration_problems()
        if 1 not in {m["version"] for m in store.applied_migrations()}:
            raise DatabaseRefused(f"{config.database} has no ledger yet (migration 0001_ledger.sql is not applied)")
        with store.read() as tx:
            report = ledger.check(tx)
    except (StoreError, StoreBusy) as e:
        raise DatabaseRefused(f"cannot read {config.database}: {e}")
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"database": config.database, **dataclasses.asdict(report), "warnings": notes}))
    else:
        for line in ledger.report_lines(report, config.database):
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
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="gunicorn worker processes.")
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Threads per worker (requests waiting on the database).")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@click.option("--deliver-webhooks/--no-deliver-webhooks", "deliver", default=True, show_default=True,
              help="Deliver webhooks from this node (one deliverer however many workers); "
                   "`deliver-webhooks` runs one apart.")
@ALLOW_PRIVATE_WEBHOOKS
@click.option("--rate-limit", "rate_limit_per_minute", type=click.IntRange(0), default=Config.rate_limit_per_minute,
              show_default=True, help="Requests a minute per merchant key, wallet and terminal, counted over "
                                      "every node (0: no limit); more answer 429.")
@click.option("--bill-lookups", "bill_lookups_per_minute", type=click.IntRange(0),
              default=Config.bill_lookups_per_minute, show_default=True,
              help="A wallet's bill lookups by consumer or bill number a minute (0: no limit).")
@click.option("--max-webhook-endpoints", type=click.IntRange(1, 1000), default=Config.max_webhook_endpoints,
              show_default=True, help="Enabled webhook endpoints per merchant.")
@with_database
def serve(config, host, port, workers, threads, dev, deliver, allow_private_webhooks, rate_limit_per_minute,
          bill_lookups_per_minute, max_webhook_endpoints):
    """Serve the HTTP API (/v1) with gunicorn, and deliver its webhooks."""
    from gateway.config import SecretsError
    from gateway.http import app as gateway_app

    config.allow_private_webhooks = allow_private_webhooks
    config.rate_limit_per_minute = rate_limit_per_minute
    config.bill_lookups_per_minute = bill_lookups_per_minute
    config.max_webhook_endpoints = max_webhook_endpoints
    store = opened(config)  # migrates SQLite, refuses a PostgreSQL schema out of step, before any worker
    try:
        from gateway.http.app import SERVED_SECRETS
        for name in SERVED_SECRETS:
            config.secret(name)
    except SecretsError as e:
        raise DatabaseRefused(str(e))
    finally:
        store.close()
    if dev:
        app = gateway_app.create_app(config)
        if deliver:
            gateway_app.deliver_webhooks(app)
        app.run(host=host, port=port)
    else:
        gateway_app.serve(config, host=host, port=port, workers=workers, threads=threads, webhooks=deliver)


@cli.command("operator-key")
@with_database
def operator_key(config):
    """Print the operator's API key (Authorization: Bearer op_...). Keep it secret."""
    from gateway.config import SecretsError
    from gateway.http.auth import operator_key as key_of
    from gateway.store import StoreBusy, StoreError

    if config.backend != "sqlite":
        opened(config).close()  # the secrets table exists only once migrated
    try:
        click.echo(key_of(config))
    except (OSError, ValueError, SecretsError, StoreError, StoreBusy) as e:
        raise DatabaseRefused(f"cannot read the gateway's secrets ({config.database}): {e}")


@cli.command("deliver-webhooks")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--interval", type=click.FloatRange(0.05, 3600), default=1.0, show_default=True,
              help="Seconds to wait when nothing is due.")
@click.option("--timeout", type=click.FloatRange(0.1, 120), default=10.0, show_default=True,
              help="Seconds an endpoint has to answer.")
@click.option("--max-attempts", type=click.IntRange(1, 50), default=10, show_default=True)
@ALLOW_PRIVATE_WEBHOOKS
@with_database
def deliver_webhooks(config, once, interval, timeout, max_attempts, allow_private_webhooks):
    """POST due webhook events, signed, until stopped (Ctrl-C or SIGTERM); `serve` does this too."""
    import functools
    import signal
    import threading
    from datetime import datetime, timezone

    from gateway.core import webhooks
    from gateway.http import delivery

    store = opened(config)
    seal_key = config.secret(webhooks.SEAL)
    webhooks.seal_stored_secrets(store, seal_key)
    deliverer = delivery.Deliverer(store, clock=lambda: datetime.now(timezone.utc), seal_key=seal_key,
                                   timeout=timeout,
                                   policy=webhooks.RetryPolicy(max_attempts=max_attempts),
                                   post=functools.partial(delivery.http_post, private_targets=allow_private_webhooks))
    try:
        if once:
            total = 0
            while (n := deliverer.deliver_due()):
                total += n
            click.echo(f"{total} webhook deliveries attempted")
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        click.echo(f"delivering webhooks from {config.database} (Ctrl-C stops)")
        deliverer.run(stop, interval=interval)
    finally:
        store.close()


@cli.command("charge-trips")
@click.option("--day", help="The operator's local day, YYYY-MM-DD (default: today, local).")
@with_database
def charge_trips(config, day):
    """Charge a day's token trips to the linked wallets (safe to repeat; late taps charge the difference)."""
    from datetime import datetime, timezone

    from gateway.core import fare_charges

    now = datetime.now(timezone.utc)
    try:
        with working_on(config) as store, store.transaction() as tx:
            rules = fare_charges.current_rules(tx, config.data_dir)
            summary = fare_charges.run_day(tx, rules=rules, now=now, day=fare_charges.parse_day(day)
                                           if day else rules.local_day(now))
    except (fare_charges.NoFareRules, fare_charges.BrokenFareRules) as e:
        raise click.ClickException(str(e))
    click.echo(fare_charges.run_lines(summary))


@cli.command("publish-fares")
@click.argument("rules_file", type=click.File("rb"))
@with_database
def publish_fares(config, rules_file):
    """Publish a fare rules document (JSON) for every gateway node and validator.

    Publishing the same document again does nothing; a new version must be numbered
    above the current one. Validators download the highest version.
    """
    import json
    from datetime import datetime, timezone

    from gateway.core import fare_charges

    try:
        document = json.loads(rules_file.read())
    except ValueError as e:
        raise click.ClickException(f"{rules_file.name} is not JSON: {e}")
    with working_on(config) as store:
        view = store.write(lambda tx: fare_charges.publish_rules(tx, document, now=datetime.now(timezone.utc)))
    state = "already published" if view["already_published"] else "published"
    click.echo(f"fare rules version {view['version']} {state} (effective from {view['effective_from']},"
               f" sha256 {view['digest'][:16]}...)")
